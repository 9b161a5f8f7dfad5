"""The lean bot engine: many bots in one process, cheap enough to load-test the server.

A bot here is not a task. Each process has one epoll object; one trio task waits for it to
become readable and then serves every ready bot synchronously (``recv`` -> TLS -> frames ->
messages), and one task sends every bot's inputs on a fixed schedule with a random phase per
bot. TLS is the stdlib's ``SSLObject`` over memory BIOs on a non-blocking socket. Only the
opening handshake awaits per bot.

Bots with ``verify=True`` keep a full :class:`~shared.replica.Replica` and check every server
checksum; the others read only what they measure (tick, their own input ack) from each state
message. Latency is the time from sending input ``seq`` until the first state message whose ack
for this bot is at least ``seq``.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import trio

from shared import wire
from shared.errors import RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    Error,
    Input,
    Join,
    Joined,
    RoomEvent,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL, Kind
from shared.replica import Replica
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    check_response,
    client_request,
    close_payload,
    frame,
    new_key,
    parse_close,
)

READ_CHUNK = 65536
LATENCY_BUCKET_MS = 0.5  # histogram resolution
LATENCY_BUCKETS = 4000  # up to 2 s; slower lands in the last bucket


class BotFailed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class LatencyHistogram:
    """Fixed 0.5 ms buckets; mergeable across processes."""

    def __init__(self) -> None:
        self.counts = [0] * LATENCY_BUCKETS

    def add(self, ms: float) -> None:
        i = int(ms / LATENCY_BUCKET_MS)
        self.counts[i if i < LATENCY_BUCKETS else LATENCY_BUCKETS - 1] += 1

    def merge(self, counts: list[int]) -> None:
        for i, c in enumerate(counts):
            self.counts[i] += c

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        total = self.total
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return round((i + 0.5) * LATENCY_BUCKET_MS, 2)
        return round(LATENCY_BUCKETS * LATENCY_BUCKET_MS, 2)


class LeanConnection:
    """A client WebSocket over a non-blocking socket, TLS by SSLObject; synchronous I/O."""

    def __init__(self, sock: socket.socket, sslobj: ssl.SSLObject | None) -> None:
        self.sock = sock
        self.ssl = sslobj
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.reader = FrameReader(max_message_size=1 << 24, require_mask=False)
        self.backlog = bytearray()
        self.eof = False
        self.closed_by_peer: tuple[int, str] | None = None
        self.bytes_down = 0  # WebSocket payload bytes
        self.bytes_up = 0
        self.unread: list[bytes] = []  # messages read during the handshake phase

    @classmethod
    async def connect(
        cls, url: str, ssl_context: ssl.SSLContext | None, subprotocols: list[str]
    ) -> LeanConnection:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err not in (0, 115, 36):  # EINPROGRESS
            sock.close()
            raise BotFailed("connect", os.strerror(err))
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            raise BotFailed("connect", os.strerror(err))
        sslobj = None
        conn = cls(sock, None)
        try:
            if secure:
                ctx = ssl_context or ssl.create_default_context()
                sslobj = ctx.wrap_bio(conn.incoming, conn.outgoing, server_hostname=host)
                conn.ssl = sslobj
                await conn._tls_handshake()
            key = new_key()
            path = parts.path or "/"
            conn._write_plain(client_request(f"{host}:{port}", path, key, subprotocols))
            await conn.drain()
            head = await conn._read_http_head()
            check_response(head, key)
        except BaseException:
            sock.close()
            raise
        return conn

    async def _tls_handshake(self) -> None:
        assert self.ssl is not None
        while True:
            try:
                self.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_raw(self.outgoing.read())
                await self.drain()
                await trio.lowlevel.wait_readable(self.sock)
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    raise BotFailed("tls", "EOF during TLS handshake") from None
                self.incoming.write(data)
            except ssl.SSLError as exc:
                raise BotFailed("tls", str(exc)) from None
        self._send_raw(self.outgoing.read())

    async def _read_http_head(self) -> bytes:
        buf = b""
        while b"\r\n\r\n" not in buf:
            await trio.lowlevel.wait_readable(self.sock)
            buf += self._recv_plain()
            if self.eof and b"\r\n\r\n" not in buf:
                raise BotFailed("handshake", buf[:200].decode("latin-1", "replace"))
            if len(buf) > 65536:
                raise BotFailed("handshake", "response head too large")
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.reader.feed(rest)
        return head

    # -------------------------------------------------------------- raw I/O
    def _send_raw(self, data: bytes) -> None:
        if not data:
            return
        if self.backlog:
            self.backlog += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise BotFailed("send", str(exc)) from None
        if sent < len(data):
            self.backlog += data[sent:]

    async def drain(self) -> None:
        while self.backlog:
            await trio.lowlevel.wait_writable(self.sock)
            try:
                sent = self.sock.send(self.backlog)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise BotFailed("send", str(exc)) from None
            del self.backlog[:sent]

    def _write_plain(self, data: bytes) -> None:
        if self.ssl is None:
            self._send_raw(data)
            return
        self.ssl.write(data)
        self._send_raw(self.outgoing.read())

    def _recv_plain(self) -> bytes:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise BotFailed("recv", str(exc)) from None
        if not data:
            self.eof = True
        if self.ssl is None:
            return data
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        chunks = []
        while True:
            try:
                chunk = self.ssl.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            except ssl.SSLError as exc:
                raise BotFailed("tls", str(exc)) from None
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # -------------------------------------------------------------- messages
    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        self.bytes_up += len(payload)
        self._write_plain(frame(opcode, payload, os.urandom(4)))

    def read_messages(self) -> list[bytes]:
        """Read what arrived and return complete data messages (text is returned encoded)."""
        data = self._recv_plain()
        if data:
            self.reader.feed(data)
        out = []
        while True:
            item = self.reader.next()
            if item is None:
                break
            opcode, payload = item
            if opcode in (OP_BINARY, OP_TEXT):
                self.bytes_down += len(payload)
                out.append(payload)
            elif opcode == OP_PING:
                self._write_plain(frame(OP_PONG, payload, os.urandom(4)))
            elif opcode == OP_CLOSE:
                self.closed_by_peer = parse_close(payload)
                break
        return out

    async def next_message(self) -> bytes:
        """Await one message (only while joining; afterwards the epoll task reads)."""
        while True:
            if self.unread:
                return self.unread.pop(0)
            self.unread = self.read_messages()
            if self.unread:
                continue
            if self.closed_by_peer is not None:
                raise BotFailed(f"closed:{self.closed_by_peer[0]}", self.closed_by_peer[1])
            if self.eof:
                raise BotFailed("eof", "server closed the connection")
            await trio.lowlevel.wait_readable(self.sock)

    def close(self, code: int = 1000) -> None:
        try:
            self._write_plain(frame(OP_CLOSE, close_payload(code), os.urandom(4)))
        except (BotFailed, ssl.SSLError, OSError):
            pass
        self.sock.close()


class Bot:
    """One simulated player on the lean engine."""

    def __init__(
        self,
        index: int,
        room: str,
        *,
        verify: bool,
        rng: random.Random,
        behaviour: Callable[[Bot], tuple[float, float]] | None = None,
        protocol: str = "gamesync",
    ) -> None:
        self.index = index
        self.room = room
        self.verify = verify
        self.rng = rng
        self.behaviour = behaviour or wander
        self.protocol = protocol
        self.conn: LeanConnection | None = None
        self.joined: Joined | None = None
        self.player = 0
        self.replica: Replica | None = None
        self.seq = 0
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.dir = (0.0, 0.0)
        self.tick = -1
        # measurements (reset when the measured window opens)
        self.updates = 0
        self.snapshots = 0
        self.latency = LatencyHistogram()
        self.desyncs = 0
        self.failed: str | None = None
        self.close_code: int | None = None
        self.bytes_down0 = 0
        self.bytes_up0 = 0

    async def start(self, url: str, ssl_context: ssl.SSLContext | None, game: str) -> None:
        if self.protocol == "json":
            self.conn = await LeanConnection.connect(url, ssl_context, [])
            self.conn.send(json.dumps({"type": "join", "room": self.room}).encode(), OP_TEXT)
            while True:
                msg = json.loads(await self.conn.next_message())
                if msg.get("type") == "joined":
                    self.player = int(msg["player"])
                    return
        self.conn = await LeanConnection.connect(url, ssl_context, [SUBPROTOCOL])
        self.conn.send(Join(self.room, game, f"bot{self.index}").to_bytes())
        msg = parse_server_message(await self.conn.next_message())
        if isinstance(msg, Error | Close):
            raise BotFailed(
                f"ServerError:{msg.code}", msg.message if isinstance(msg, Error) else msg.reason
            )
        if not isinstance(msg, Joined):
            raise BotFailed("protocol", f"expected JOINED, got {type(msg).__name__}")
        self.joined = msg
        self.player = msg.player
        if self.verify:
            self.replica = Replica(msg.schema)

    def send_input(self, now: float) -> None:
        conn = self.conn
        assert conn is not None
        dx, dy = self.behaviour(self)
        self.seq += 1
        self.sent_at[self.seq] = now
        if self.protocol == "json":
            conn.send(
                json.dumps(
                    {"type": "input", "seq": self.seq, "dx": round(dx, 2), "dy": round(dy, 2)}
                ).encode(),
                OP_TEXT,
            )
            return
        assert self.joined is not None
        schema = self.joined.input_schema
        conn.send(Input(self.seq, schema.codes_for({"dx": dx, "dy": dy})).to_bytes(schema))

    def on_readable(self, now: float) -> None:
        conn = self.conn
        assert conn is not None
        msgs = conn.read_messages()
        if conn.unread:
            msgs = conn.unread + msgs
            conn.unread = []
        for data in msgs:
            self.on_message(data, now)
        if conn.closed_by_peer is not None and self.failed is None:
            self.close_code = conn.closed_by_peer[0]
            self.failed = f"closed:{self.close_code}"
        elif conn.eof and self.failed is None:
            self.failed = "eof"

    def _ack(self, ack: int, now: float) -> None:
        if ack <= self.acked:
            return
        sent_at = self.sent_at
        for seq in range(self.acked + 1, ack + 1):
            t = sent_at.pop(seq, None)
            if t is not None:
                self.latency.add((now - t) * 1000.0)
        self.acked = ack

    def on_message(self, data: bytes, now: float) -> None:
        if self.protocol == "json":
            msg = json.loads(data)
            if "tick" in msg:
                self.updates += 1
                ack = msg.get("acks", {}).get(str(self.player))
                if ack is not None:
                    self._ack(int(ack), now)
            return
        kind = data[0] if data else 0
        if self.replica is not None:
            self._on_message_verified(data, now)
            return
        try:
            if kind == Kind.DELTA:
                r = wire.Reader(data, 1)
                flags = r.u8()
                tick = r.varint()
                if flags & 1:
                    r.fixed(4)
                if self.tick >= 0 and tick != self.tick + 1:
                    raise BotFailed("desync", f"delta {tick} after {self.tick}")
                self.tick = tick
                self.updates += 1
                for _ in range(r.varint()):
                    player = r.varint()
                    inc = r.varint()
                    if player == self.player and inc:
                        self._ack(self.acked + inc, now)
            elif kind == Kind.SNAPSHOT:
                r = wire.Reader(data, 1)
                self.tick = r.varint()
                r.fixed(4)
                self.updates += 1
                self.snapshots += 1
                for _ in range(r.varint()):
                    player = r.varint()
                    seq = r.varint()
                    if player == self.player:
                        self._ack(seq, now)
            elif kind in (Kind.ERROR, Kind.CLOSE):
                msg = parse_server_message(data)
                assert isinstance(msg, Error | Close)
                self.failed = f"ServerError:{msg.code}"
        except RemoteProtocolError as exc:
            self.failed = "protocol"
            raise BotFailed("protocol", str(exc)) from None

    def _on_message_verified(self, data: bytes, now: float) -> None:
        replica = self.replica
        assert replica is not None and self.joined is not None
        try:
            msg = parse_server_message(data, self.joined.schema, replica.type_of)
            if isinstance(msg, Snapshot):
                replica.apply_snapshot(msg)
                self.snapshots += 1
                self.updates += 1
            elif isinstance(msg, Delta):
                replica.apply_delta(msg)
                self.updates += 1
            elif isinstance(msg, Error | Close):
                self.failed = f"ServerError:{msg.code}"
                return
            elif isinstance(msg, RoomEvent):
                return
            else:
                return
        except RemoteProtocolError as exc:
            self.desyncs += 1
            self.failed = "desync"
            raise BotFailed("desync", str(exc)) from None
        self.tick = replica.tick
        ack = replica.acks.get(self.player)
        if ack is not None:
            self._ack(ack, now)

    def open_window(self) -> None:
        assert self.conn is not None
        self.updates = 0
        self.snapshots = 0
        self.latency = LatencyHistogram()
        self.bytes_down0 = self.conn.bytes_down
        self.bytes_up0 = self.conn.bytes_up


def wander(bot: Bot) -> tuple[float, float]:
    """A random walk: keep a heading, turn a little each input."""
    if bot.dir == (0.0, 0.0) or bot.rng.random() < 0.1:
        angle = bot.rng.uniform(0, 2 * math.pi)
        bot.dir = (math.cos(angle), math.sin(angle))
    return bot.dir


class Poller:
    """One epoll object for all bots of a process; one task serves whatever is ready."""

    def __init__(self, on_error: Callable[[Bot, BotFailed], None]) -> None:
        self.ep = select.epoll()
        self.bots: dict[int, Bot] = {}
        self.on_error = on_error

    def add(self, bot: Bot) -> None:
        assert bot.conn is not None
        fd = bot.conn.sock.fileno()
        self.bots[fd] = bot
        self.ep.register(fd, select.EPOLLIN)
        if bot.conn.unread:
            bot.on_readable(time.perf_counter())

    def remove(self, bot: Bot) -> None:
        if bot.conn is None:
            return
        fd = bot.conn.sock.fileno()
        if self.bots.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    async def serve(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self.ep.fileno())
                now = time.perf_counter()
                for fd, _ in self.ep.poll(0, 1024):
                    bot = self.bots.get(fd)
                    if bot is None:
                        continue
                    try:
                        bot.on_readable(now)
                    except BotFailed as exc:
                        self.on_error(bot, exc)
                        continue
                    if bot.failed is not None:
                        self.on_error(bot, BotFailed(bot.failed))
        finally:
            self.ep.close()


def report_fields(bots: list[Bot], window: float) -> dict[str, Any]:
    """Per-process raw figures; :func:`merge_reports` turns them into the final report."""
    hist = LatencyHistogram()
    rates = []
    down = up = 0
    for bot in bots:
        if bot.conn is None or bot.failed is not None:
            continue
        hist.merge(bot.latency.counts)
        rates.append(bot.updates / window)
        down += bot.conn.bytes_down - bot.bytes_down0
        up += bot.conn.bytes_up - bot.bytes_up0
    return {"latency_counts": hist.counts, "rates": rates, "bytes_down": down, "bytes_up": up}
