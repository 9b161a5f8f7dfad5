"""The lean bot engine: many bots in one process, cheap enough to load-test the server.

A bot here is neither a task nor a thread. Each bot opens its connection (TCP, TLS, WebSocket
upgrade, JOIN) in the trio thread, and is then handed to the process's :class:`Engine`: one
thread with one epoll object that serves every ready bot synchronously (``recv_into`` -> TLS ->
frame -> message) and sends every bot's inputs on a fixed schedule, each bot in a random phase
slot. TLS is the stdlib's ``SSLObject`` over memory BIOs on a non-blocking socket. In the
steady state no trio machinery runs at all: the trio thread sleeps until the window closes.

Bots with ``verify=True`` keep a full :class:`~shared.replica.Replica` and check every server
checksum; chase bots keep a replica too (they steer by it), checked only if they verify. The
others read only what they measure from a state message, by direct indexing: its tick (which
must follow the previous one) and their own input ack. Latency is the time from sending input
``seq`` until the first state message whose ack for this bot is at least ``seq``.

In a cluster a bot's JOIN (or RESUME) may be answered with REDIRECT: the bot connects to the
URL it names and sends the same message again, at most 3 times per join (as the SDKs do; then
it fails as ``redirect_loop``), and counts them (``redirects`` in the report).
"""

from __future__ import annotations

import errno
import heapq
import json
import math
import os
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from clients.routing import MAX_REDIRECTS, check_redirect_url
from shared import delta_v3, wire
from shared.delta_v3 import coding_for
from shared.errors import RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    Error,
    Join,
    Joined,
    Redirect,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUPPORTED_SUBPROTOCOLS, Kind, version_of_subprotocol
from shared.replica import Replica
from shared.schema import Code, InputSchema
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

if TYPE_CHECKING:
    from clients.bots.behaviours import Behaviour

READ_CHUNK = 65536
LATENCY_BUCKET_MS = 0.5  # histogram resolution
LATENCY_BUCKETS = 4000  # up to 2 s; slower lands in the last bucket
_BUCKETS_PER_S = 1000.0 / LATENCY_BUCKET_MS
_LAST_BUCKET = LATENCY_BUCKETS - 1
#: send times of the last RING inputs are kept; an ack further behind than that loses samples
RING = 256
_RING_MASK = RING - 1
#: bytes a bot may have waiting to be sent before it counts as failed
MAX_BACKLOG = 1 << 20
#: input slots per input period: the phase resolution (3.1 ms at 20 Hz)
SLOTS = 16
#: a slot that starts this much after its time counts as late (the engine is overloaded);
#: a few ms are normal scheduling jitter (epoll timeouts have millisecond resolution)
LATE_SLOT_S = 0.010

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR

_KIND_SNAPSHOT = int(Kind.SNAPSHOT)
_KIND_DELTA = int(Kind.DELTA)
_KIND_ROOM_EVENT = int(Kind.ROOM_EVENT)
_KIND_ERROR = int(Kind.ERROR)
_KIND_CLOSE = int(Kind.CLOSE)
_KIND_INPUT = int(Kind.INPUT)

#: WebSocket masking keys come from a strong source of entropy (RFC 6455 section 10.3), 1024 per
#: os.urandom call: per frame that costs about what a Mersenne-twister draw did (0.12 against
#: 0.10 µs; one os.urandom(4) per frame costs 1.2 µs). ``list.pop`` and ``list.extend`` are
#: atomic, so the trio thread and the engine thread share the pool and never reuse a key; a
#: forked child starts with an empty pool, never with its parent's keys.
_mask_pool: list[int] = []
_mask_pop = _mask_pool.pop
_unpack_keys = struct.Struct("<1024I").unpack
os.register_at_fork(after_in_child=_mask_pool.clear)


def _refill_mask_pool() -> None:
    _mask_pool.extend(_unpack_keys(os.urandom(4096)))


# for masking a payload of n < 126 bytes with one integer XOR: the 4-byte key repeated
_MASK_REPEAT = [0] + [sum(1 << (32 * i) for i in range((n + 3) // 4)) for n in range(1, 126)]
_MASK_LOW = [(1 << (8 * n)) - 1 for n in range(126)]
# INPUT message heads for seq < 128 (one varint byte)
_INPUT_HEAD = [bytes((_KIND_INPUT, s)) for s in range(128)]


class BotFailed(Exception):
    """A bot stopped playing. ``kind`` is what the report counts it under; ``close_code`` is
    the WebSocket or protocol close code when the server ended the session."""

    def __init__(self, kind: str, detail: str = "", close_code: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.close_code = close_code


#: failures of reaching a node (TCP, TLS, the WebSocket handshake): after a redirect they are
#: counted as ``redirect_unreachable`` (the node's public URL does not work from here)
CONNECT_KINDS = frozenset(
    {"refused", "connect", "tls_closed", "tls_verify", "tls", "tls_not_tls", "handshake"}
)


def follow_redirect(msg: Redirect, current: str, entry: str, hops: int) -> str:
    """The URL to dial for a REDIRECT received at ``current`` after ``hops`` redirects of
    this join (the SDKs' rules, clients.routing); BotFailed if it must not be followed."""
    problem = check_redirect_url(msg.url, entry)
    if problem is not None:
        raise BotFailed(
            "redirect_url", f"{current} redirected to {msg.url!r}: {problem.value}", 4015
        )
    if hops >= MAX_REDIRECTS:
        raise BotFailed(
            "redirect_loop",
            f"more than {MAX_REDIRECTS} redirects for one join (the last: {current} to {msg.url})",
            4015,
        )
    return msg.url


async def connect_node(
    url: str, ssl_context: ssl.SSLContext | None, subprotocols: list[str], redirected: bool
) -> LeanConnection:
    """``LeanConnection.connect``; a node named by a redirect that cannot be reached fails
    as ``redirect_unreachable``."""
    try:
        return await LeanConnection.connect(url, ssl_context, subprotocols)
    except BotFailed as exc:
        if not redirected or exc.kind not in CONNECT_KINDS:
            raise
        raise BotFailed("redirect_unreachable", f"{url}: {exc}") from None
    except OSError as exc:
        if not redirected:
            raise
        raise BotFailed("redirect_unreachable", f"{url}: {exc}") from None


def _connect_failed(err: int) -> BotFailed:
    """``refused`` (nothing listens there) or ``connect`` (any other socket error)."""
    kind = "refused" if err == errno.ECONNREFUSED else "connect"
    return BotFailed(kind, f"[Errno {err}] {os.strerror(err)}")


class LatencyHistogram:
    """Fixed 0.5 ms buckets up to 2 s; mergeable across bots and processes."""

    def __init__(self) -> None:
        self.counts = [0] * LATENCY_BUCKETS

    def add(self, ms: float) -> None:
        i = int(ms / LATENCY_BUCKET_MS)
        self.counts[i if i < LATENCY_BUCKETS else _LAST_BUCKET] += 1

    def merge(self, counts: list[int] | dict[str, int] | dict[int, int]) -> None:
        """Add another histogram: a full list of counts, or a sparse ``{bucket: count}``."""
        mine = self.counts
        if isinstance(counts, dict):
            for i, c in counts.items():
                mine[min(int(i), _LAST_BUCKET)] += c
        else:
            for i, c in enumerate(counts):
                if c:
                    mine[i] += c

    def sparse(self) -> dict[str, int]:
        """The non-zero buckets, JSON-ready."""
        return {str(i): c for i, c in enumerate(self.counts) if c}

    def reset(self) -> None:
        """Zero every bucket in place (bots hold a reference to ``counts``)."""
        self.counts[:] = [0] * LATENCY_BUCKETS

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile in ms (bucket midpoint, nearest rank); None without samples."""
        total = self.total
        if not total:
            return None
        rank = max(1, q * total)
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if c and seen >= rank:
                return round((i + 0.5) * LATENCY_BUCKET_MS, 2)
        return round(LATENCY_BUCKETS * LATENCY_BUCKET_MS, 2)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame with a fresh masking key (what ``wsframe.frame`` makes, cheaper)."""
    n = len(payload)
    try:
        key = _mask_pop()
    except IndexError:
        _refill_mask_pool()
        key = _mask_pop()
    if n < 126:
        # the whole frame as one little-endian integer: head (2 bytes), key (4), payload
        masked = int.from_bytes(payload, "little") ^ (key * _MASK_REPEAT[n] & _MASK_LOW[n])
        head = (0x80 | opcode) | (0x80 | n) << 8
        return (masked << 48 | key << 16 | head).to_bytes(n + 6, "little")
    return frame(opcode, payload, key.to_bytes(4, "little"))


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos``; RemoteProtocolError if malformed."""
    r = wire.Reader(data, pos)
    value = r.varint()
    return value, r.pos


class LeanConnection:
    """A client WebSocket over a non-blocking socket, TLS by SSLObject; synchronous I/O."""

    def __init__(self, sock: socket.socket, sslobj: ssl.SSLObject | None) -> None:
        self.sock = sock
        self.ssl = sslobj
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.reader = FrameReader(max_message_size=1 << 24, require_mask=False)
        #: the reader holds part of a frame: the single-frame fast path must not be taken
        self.partial = False
        self.backlog = bytearray()
        #: called when the backlog becomes non-empty (the engine then waits for EPOLLOUT)
        self.on_backlog: Callable[[LeanConnection], None] | None = None
        self.eof = False
        self.closed_by_peer: tuple[int, str] | None = None
        self.bytes_down = 0  # WebSocket payload bytes
        self.bytes_up = 0
        self.unread: list[bytes] = []  # messages read during the handshake phase
        #: a receive buffer shared by every connection of one engine (None: plain recv)
        self.rview: memoryview | None = None
        #: the subprotocol the server selected (gamesync.v2 / gamesync.v1), None if none
        self.subprotocol: str | None = None

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
        conn = cls(sock, None)
        try:
            err = sock.connect_ex(addr)
            if err not in (0, 115, 36):  # EINPROGRESS
                raise _connect_failed(err)
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise _connect_failed(err)
            if secure:
                ctx = ssl_context or ssl.create_default_context()
                conn.ssl = ctx.wrap_bio(conn.incoming, conn.outgoing, server_hostname=host)
                await conn._tls_handshake()
            key = new_key()
            path = parts.path or "/"
            conn._write_plain(client_request(f"{host}:{port}", path, key, subprotocols))
            await conn.drain()
            head = await conn._read_http_head()
            try:
                conn.subprotocol = check_response(head, key, subprotocols)
            except RemoteProtocolError as exc:
                raise BotFailed("handshake", str(exc)) from None
        except BaseException:
            sock.close()
            raise
        return conn

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def version(self) -> int:
        """The gamesync protocol version negotiated (1 when no gamesync subprotocol was)."""
        return version_of_subprotocol(self.subprotocol) or 1

    def reset(self) -> None:
        """Abort the connection as a lost network would: RST (SO_LINGER 0), no close frame."""
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    async def _tls_handshake(self) -> None:
        try:
            await self._tls_handshake_steps()
        except BotFailed as exc:
            if exc.kind != "send":
                raise
            # a reset while sending the hello: the server closed before the handshake
            raise BotFailed("tls_closed", str(exc).partition(": ")[2]) from None

    async def _tls_handshake_steps(self) -> None:
        assert self.ssl is not None
        while True:
            try:
                self.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_raw(self.outgoing.read())
                await self.drain()
                await trio.lowlevel.wait_readable(self.sock)
                try:
                    data = self.sock.recv(READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    # the server closed the connection before or during the TLS handshake
                    raise BotFailed("tls_closed", str(exc)) from None
                if not data:
                    raise BotFailed("tls_closed", "EOF during the TLS handshake") from None
                self.incoming.write(data)
            except ssl.SSLCertVerificationError as exc:
                raise BotFailed("tls_verify", str(exc)) from None
            except ssl.SSLError as exc:
                # the peer answered in plain text (HTTP, ws://): no TLS server at this port
                kind = "tls_not_tls" if exc.reason == "WRONG_VERSION_NUMBER" else "tls"
                raise BotFailed(kind, str(exc)) from None
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
        if rest:
            self.reader.feed(rest)
            self.partial = True
        return head

    # -------------------------------------------------------------- raw I/O
    def _send_raw(self, data: bytes) -> None:
        if not data:
            return
        if self.backlog:
            self._queue(data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise BotFailed("send", str(exc)) from None
        if sent < len(data):
            self._queue(data[sent:])

    def _queue(self, data: bytes) -> None:
        was_empty = not self.backlog
        self.backlog += data
        if len(self.backlog) > MAX_BACKLOG:
            raise BotFailed("send_backlog", f"{len(self.backlog)} bytes unsent")
        if was_empty and self.on_backlog is not None:
            self.on_backlog(self)

    def flush(self) -> bool:
        """Send what the backlog holds, without blocking; True once it is empty."""
        while self.backlog:
            try:
                sent = self.sock.send(self.backlog)
            except BlockingIOError:
                return False
            except OSError as exc:
                raise BotFailed("send", str(exc)) from None
            del self.backlog[:sent]
        return True

    async def drain(self) -> None:
        while not self.flush():
            await trio.lowlevel.wait_writable(self.sock)

    def _write_plain(self, data: bytes) -> None:
        sslobj = self.ssl
        if sslobj is None:
            self._send_raw(data)
            return
        sslobj.write(data)
        self._send_raw(self.outgoing.read())

    def _recv_plain(self) -> bytes:
        view = self.rview
        try:
            if view is None:
                data = self.sock.recv(READ_CHUNK)
                n = len(data)
            else:
                n = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise BotFailed("recv", str(exc)) from None
        sslobj = self.ssl
        if not n:
            self.eof = True
            if sslobj is None:
                return b""
            self.incoming.write_eof()
        elif sslobj is None:
            return data if view is None else bytes(view[:n])
        else:
            self.incoming.write(data if view is None else view[:n])
        assert sslobj is not None
        try:
            plain = sslobj.read(READ_CHUNK)
        except ssl.SSLWantReadError:
            return b""
        except ssl.SSLZeroReturnError:
            self.eof = True
            return b""
        except ssl.SSLError as exc:
            raise BotFailed("tls", str(exc)) from None
        if not plain:
            self.eof = True
            return b""
        if not self.incoming.pending and not sslobj.pending():
            return plain  # the usual case: one TLS record, one read
        chunks = [plain]
        while True:
            try:
                plain = sslobj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            except ssl.SSLError as exc:
                raise BotFailed("tls", str(exc)) from None
            if not plain:
                self.eof = True
                break
            chunks.append(plain)
        return b"".join(chunks)

    # -------------------------------------------------------------- messages
    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        self.bytes_up += len(payload)
        data = masked_frame(opcode, payload)
        sslobj = self.ssl
        if sslobj is not None:
            sslobj.write(data)
            data = self.outgoing.read()
        self._send_raw(data)

    def read_messages(self) -> list[bytes]:
        """Read what arrived and return complete data messages (text is returned encoded)."""
        data = self._recv_plain()
        if not data:
            return []
        if not self.partial:
            # fast path: exactly one whole unfragmented binary frame (one tick's message)
            n = len(data)
            if n > 2 and data[0] == 0x82:
                length = data[1]
                if length < 126:
                    if length == n - 2:
                        self.bytes_down += length
                        return [data[2:]]
                elif length == 126 and 130 <= n and (data[2] << 8 | data[3]) == n - 4:
                    self.bytes_down += n - 4
                    return [data[4:]]
        reader = self.reader
        reader.feed(data)
        out = []
        while True:
            item = reader.next()
            if item is None:
                break
            opcode, payload = item
            if opcode == OP_BINARY or opcode == OP_TEXT:
                self.bytes_down += len(payload)
                out.append(payload)
            elif opcode == OP_PING:
                self._write_plain(masked_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.closed_by_peer = parse_close(payload)
                break
        self.partial = reader.buffered > 0
        return out

    async def next_message(self) -> bytes:
        """Await one message (only while joining; afterwards the engine reads)."""
        while True:
            if self.unread:
                return self.unread.pop(0)
            try:
                self.unread = self.read_messages()
            except RemoteProtocolError as exc:
                raise BotFailed("protocol", str(exc)) from None
            if self.unread:
                continue
            if self.closed_by_peer is not None:
                code, reason = self.closed_by_peer
                raise BotFailed(f"closed:{code}", reason, code)
            if self.eof:
                raise BotFailed("eof", "the server closed the connection", 1006)
            await trio.lowlevel.wait_readable(self.sock)

    def close(self, code: int = 1000) -> None:
        """Send a close frame if the socket takes it right away, then close the socket."""
        try:
            if not self.backlog and self.closed_by_peer is None and not self.eof:
                self._write_plain(masked_frame(OP_CLOSE, close_payload(code)))
        except (BotFailed, ssl.SSLError, OSError):
            pass
        self.sock.close()


class InputEncoder:
    """Input field bytes for a steer, cached per tuple of wire codes.

    The steer's values go to the fields named by ``fields`` (a behaviour's ``inputs``: ``dx,
    dy`` for arena's behaviours, ``dir`` for pong's), quantized by their field types; every
    other field keeps its default. The cache is bounded by the fields' code ranges (201 x 201
    codes for arena's axes), so steering never encodes the same input twice.
    """

    _shared: dict[tuple[bytes, tuple[str, ...]], InputEncoder] = {}

    def __init__(self, schema: InputSchema, fields: tuple[str, ...] = ("dx", "dy")) -> None:
        self.schema = schema
        #: (position in the steer's values, field index) of each field the schema has
        self.picks = tuple((k, schema.index[f]) for k, f in enumerate(fields) if f in schema.index)
        self.to_codes = tuple((k, schema.types[i].to_code) for k, i in self.picks)
        self.defaults: list[Code] = list(schema.defaults)
        self.cache: dict[tuple[Code, ...], bytes] = {}
        self.idle = self.encode(*(0.0 for _ in fields))

    @classmethod
    def for_schema(
        cls, schema: InputSchema, fields: tuple[str, ...] = ("dx", "dy")
    ) -> InputEncoder:
        """One encoder per distinct input schema and fields, shared by all bots of the process."""
        key = (schema.to_bytes(), fields)
        enc = cls._shared.get(key)
        if enc is None:
            enc = cls._shared[key] = cls(schema, fields)
        return enc

    def encode(self, *values: float) -> bytes:
        key = tuple([to_code(values[k]) for k, to_code in self.to_codes])
        data = self.cache.get(key)
        if data is None:
            codes = list(self.defaults)
            for (_, i), code in zip(self.picks, key, strict=True):
                codes[i] = code
            data = self.cache[key] = self.schema.encode_all(codes)
        return data


class Bot:
    """One simulated player on the lean engine."""

    __slots__ = (
        "acked",
        "behaviour",
        "bytes_down0",
        "bytes_up0",
        "close_code",
        "codes",
        "coding",
        "conn",
        "desyncs",
        "encoder",
        "entry",
        "event_bytes",
        "events_received",
        "events_sent",
        "failed",
        "heading",
        "index",
        "inputs_sent",
        "joined",
        "json_state",
        "keep_behaviour",
        "lat",
        "name",
        "next_event_at",
        "own_id",
        "player",
        "player_id",
        "protocol",
        "redirects",
        "replica",
        "rng",
        "room",
        "sent_ring",
        "seq",
        "slot",
        "snapshots",
        "snapshots0",
        "steering",
        "tick",
        "token",
        "updates",
        "updates0",
        "url",
        "verify",
        "window_opened",
    )

    def __init__(
        self,
        index: int,
        room: str,
        *,
        verify: bool,
        rng: random.Random,
        behaviour: Behaviour | None = None,
        protocol: str = "gamesync",
        name: str = "",
        player_id: str = "",
        token: str = "",
        latency: LatencyHistogram | None = None,
    ) -> None:
        if behaviour is None:
            from clients.bots.behaviours import WANDER

            behaviour = WANDER
        self.index = index
        self.room = room
        self.verify = verify
        self.rng = rng
        self.behaviour = behaviour
        self.protocol = protocol
        self.name = name or f"bot{index}"
        self.player_id = player_id or self.name
        self.token = token
        self.conn: LeanConnection | None = None
        self.joined: Joined | None = None
        self.player = 0
        self.replica: Replica | None = None
        #: the state coding of the connection (shared.delta_v3.coding_for), set by JOINED
        self.coding = 2
        self.json_state: dict[str, Any] | None = None
        self.encoder: InputEncoder | None = None
        self.codes = b""
        #: the values the inputs carry, one per field of ``behaviour.inputs`` (see steer)
        self.steering: tuple[float, ...] = ()
        self.heading = 0.0
        self.own_id = 0
        self.next_event_at = 0.0
        self.event_bytes = b""
        self.seq = 0
        self.acked = 0
        self.sent_ring = [-1.0] * RING  # send times by seq % RING; -1: none waiting
        self.slot = rng.randrange(SLOTS)  # the bot's phase within an input period
        self.tick = -1
        #: latency samples go straight into this list of bucket counts (shared per process)
        self.lat = (latency or LatencyHistogram()).counts
        # measurements: running totals, and their values when the measured window opened
        self.updates = 0
        self.updates0 = 0
        self.snapshots = 0
        self.snapshots0 = 0
        self.bytes_down0 = 0
        self.bytes_up0 = 0
        self.inputs_sent = 0
        self.events_sent = 0
        self.events_received = 0
        self.desyncs = 0
        self.failed: str | None = None
        self.close_code: int | None = None
        #: open_window ran for this bot (it may join, or come back, after the window opened)
        self.window_opened = False
        #: the engine takes the bot back after a resume: its behaviour goes on where it was
        self.keep_behaviour = False
        #: the URL of the node the bot is seated on ("" before; a resume goes there first)
        self.url = ""
        #: the URL the bot dials first (``gamebots --url``, or one of ``--also-url``)
        self.entry = ""
        #: REDIRECTs followed (cluster nodes sending a join or resume to the room's owner)
        self.redirects = 0

    def drop_delay(self, mean: float) -> float:
        """Seconds until this bot's connection is next cut (``gamebots --drop-every``)."""
        return self.rng.expovariate(1.0 / mean)

    @property
    def needs_replica(self) -> bool:
        return self.verify or self.behaviour.needs_replica

    async def start(self, url: str, ssl_context: ssl.SSLContext | None, game: str) -> None:
        """Connect to ``url`` and join, following REDIRECTs (at most 3); returns once JOINED
        arrived (the snapshot may follow). :attr:`url` is then the node's URL."""
        if self.protocol == "json":
            self.conn = await LeanConnection.connect(url, ssl_context, [])
            self.conn.send(json.dumps({"type": "join", "room": self.room}).encode(), OP_TEXT)
            while True:
                msg = json.loads(await self.conn.next_message())
                if msg.get("type") == "joined":
                    self.player = int(msg["player"])
                    return
                if msg.get("type") == "error":
                    code = int(msg.get("code", 0))
                    raise BotFailed(f"ServerError:{code}", str(msg.get("message", "")), code)
        entry = current = url
        hops = 0
        while True:
            conn = self.conn = await connect_node(
                current, ssl_context, list(SUPPORTED_SUBPROTOCOLS), hops > 0
            )
            conn.send(Join(self.room, game, self.name, self.token, conn.version).to_bytes())
            try:
                msg = parse_server_message(await conn.next_message(), version=conn.version)
            except RemoteProtocolError as exc:
                raise BotFailed("protocol", str(exc)) from None
            if not isinstance(msg, Redirect):
                break
            conn.close()
            current = follow_redirect(msg, current, entry, hops)
            hops += 1
            self.redirects += 1
        self.url = current
        if isinstance(msg, Error):
            raise BotFailed(f"ServerError:{msg.code}", msg.message, msg.code)
        if isinstance(msg, Close):
            raise BotFailed(f"closed:{msg.code}", msg.reason, msg.code)
        if not isinstance(msg, Joined):
            raise BotFailed("protocol", f"expected JOINED, got {type(msg).__name__}")
        self.on_joined(msg)

    def on_joined(self, msg: Joined) -> None:
        behaviour = self.behaviour
        why = behaviour.misfit(msg.input_schema, msg.schema)
        if why is not None:
            raise BotFailed(f"misfit:{behaviour.name}", f"game {msg.game}: {why}")
        self.joined = msg
        self.player = msg.player
        self.coding = coding_for(msg.version, msg.view)
        self.encoder = InputEncoder.for_schema(msg.input_schema, behaviour.inputs)
        self.codes = self.encoder.idle
        if self.needs_replica:
            # a view room (JOINED flag VIEW) sends the bot's view: view checksums
            self.replica = Replica(
                msg.schema, view=msg.view, coding=coding_for(msg.version, msg.view)
            )

    @property
    def tick_rate(self) -> float:
        """The room's tick rate (JOINED); 20 Hz for the JSON baseline, which doesn't say."""
        return float(self.joined.tick_rate) if self.joined is not None else 20.0

    # -------------------------------------------------------------- sending
    def steer(self, *values: float) -> None:
        """Set what the following inputs carry: one value per field of ``behaviour.inputs``
        (``dx, dy`` for arena's behaviours, ``dir`` for pong's)."""
        self.steering = values
        if self.encoder is not None:
            self.codes = self.encoder.encode(*values)

    @property
    def dx(self) -> float:
        """The first steering value (arena: the x direction); 0 before any steer."""
        return self.steering[0] if self.steering else 0.0

    @property
    def dy(self) -> float:
        """The second steering value (arena: the y direction); 0 if there is none."""
        return self.steering[1] if len(self.steering) > 1 else 0.0

    def send_input(self, now: float) -> None:
        self.behaviour.step(self, now)
        seq = self.seq + 1
        self.seq = seq
        self.sent_ring[seq & _RING_MASK] = now
        self.inputs_sent += 1
        conn = self.conn
        assert conn is not None
        if self.encoder is None:  # the JSON baseline
            msg = {"type": "input", "seq": seq, "dx": round(self.dx, 2), "dy": round(self.dy, 2)}
            conn.send(json.dumps(msg).encode(), OP_TEXT)
            return
        if seq < 0x80:
            conn.send(_INPUT_HEAD[seq] + self.codes)
        elif seq < 0x4000:
            conn.send(bytes((_KIND_INPUT, (seq & 0x7F) | 0x80, seq >> 7)) + self.codes)
        else:
            conn.send(b"\x03" + wire.varint(seq) + self.codes)

    def send_event(self) -> None:
        """Send this bot's room event (chatty bots); the JSON baseline has none."""
        if self.encoder is None or not self.event_bytes:
            return
        assert self.conn is not None
        self.conn.send(self.event_bytes)
        self.events_sent += 1

    # -------------------------------------------------------------- receiving
    def on_readable(self, now: float) -> None:
        conn = self.conn
        assert conn is not None
        try:
            msgs = conn.read_messages()
        except RemoteProtocolError as exc:
            self.failed = "protocol"
            raise BotFailed("protocol", str(exc)) from None
        for data in msgs:
            self.on_message(data, now)
        if conn.closed_by_peer is not None:
            code, reason = conn.closed_by_peer
            self.close_code = code
            self.failed = f"closed:{code}"
            raise BotFailed(self.failed, reason, code)
        if conn.eof:
            self.close_code = 1006
            self.failed = "eof"
            raise BotFailed("eof", "the server closed the connection", 1006)

    def _ack(self, ack: int, now: float) -> None:
        acked = self.acked
        if ack <= acked:
            return
        if ack - acked > RING:
            acked = ack - RING
        ring = self.sent_ring
        lat = self.lat
        for seq in range(acked + 1, ack + 1):
            i = seq & _RING_MASK
            t = ring[i]
            if t >= 0.0:
                ring[i] = -1.0
                b = int((now - t) * _BUCKETS_PER_S)
                lat[b if b < LATENCY_BUCKETS else _LAST_BUCKET] += 1
        self.acked = ack

    def on_message(self, data: bytes, now: float) -> None:
        """Handle one server message (raises BotFailed when the bot must stop)."""
        if self.replica is not None:
            self._on_message_replica(data, now)
            return
        if self.encoder is None:
            self._on_json(data, now)
            return
        try:
            kind = data[0]
            if kind == _KIND_DELTA:
                b = data[2]
                if b < 0x80:
                    tick = b
                    pos = 3
                elif data[3] < 0x80:  # ticks 128..16383
                    tick = (b & 0x7F) | data[3] << 7
                    pos = 4
                else:
                    tick, pos = _varint_at(data, 2)
                if data[1] & 1:
                    pos += 4
                if tick != self.tick + 1 and self.tick >= 0:
                    self.desyncs += 1
                    self.failed = "desync"
                    raise BotFailed("desync", f"delta for tick {tick} after tick {self.tick}")
                self.tick = tick
                self.updates += 1
                if self.coding == 3:
                    self._ack_v3(data, pos, now)
                    return
                n = data[pos]
                if not n:
                    return
                pos += 1
                if n < 0x80 and self.player < 0x80:
                    pairs = data[pos : pos + 2 * n]
                    if len(pairs) == 2 * n and pairs.isascii():  # every varint is one byte
                        i = pairs[::2].find(self.player)
                        if i >= 0 and pairs[2 * i + 1]:
                            self._ack(self.acked + pairs[2 * i + 1], now)
                        return
                r = wire.Reader(data, pos - 1)
                for _ in range(r.varint()):
                    player = r.varint()
                    inc = r.varint()
                    if player == self.player and inc:
                        self._ack(self.acked + inc, now)
            elif kind == _KIND_SNAPSHOT:
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
            else:
                self._on_other(data)
        except (RemoteProtocolError, IndexError) as exc:
            self.failed = "protocol"
            raise BotFailed("protocol", str(exc) or "message truncated") from None

    def _ack_v3(self, data: bytes, pos: int, now: float) -> None:
        """The bot's own increment in a gamesync.v3 DELTA's acks (``pos``: after the tick and
        checksum): bit ``player - ack_base`` of the bitmask (increment 1), else its pair."""
        flags = data[1]
        r = wire.Reader(data, pos)
        if flags & delta_v3.FLAG_ACK_BITS:
            base = r.varint()
            bits = r.varint()
            if (
                0 <= self.player - base < delta_v3.ACK_BITS_SPAN
                and bits >> (self.player - base) & 1
            ):
                self._ack(self.acked + 1, now)
                return
        if flags & delta_v3.FLAG_ACK_PAIRS:
            for _ in range(r.varint()):
                player = r.varint()
                inc = r.varint()
                if player == self.player and inc:
                    self._ack(self.acked + inc, now)
                    return

    def _on_other(self, data: bytes) -> None:
        kind = data[0] if data else 0
        if kind == _KIND_ROOM_EVENT:
            self.events_received += 1
        elif kind == _KIND_ERROR or kind == _KIND_CLOSE:
            msg = parse_server_message(data)
            assert isinstance(msg, Error | Close)
            self.close_code = msg.code
            if isinstance(msg, Error):
                self.failed = f"ServerError:{msg.code}"
                raise BotFailed(self.failed, msg.message, msg.code)
            self.failed = f"closed:{msg.code}"
            raise BotFailed(self.failed, msg.reason, msg.code)

    def _on_message_replica(self, data: bytes, now: float) -> None:
        replica = self.replica
        assert replica is not None and self.joined is not None
        kind = data[0] if data else 0
        if kind != _KIND_DELTA and kind != _KIND_SNAPSHOT:
            try:
                self._on_other(data)
            except RemoteProtocolError as exc:
                self.failed = "protocol"
                raise BotFailed("protocol", str(exc)) from None
            return
        try:
            msg = parse_server_message(
                data,
                self.joined.schema,
                replica.type_of,
                coding=replica.coding,
                predict=replica.predicted,
            )
            if isinstance(msg, Delta):
                replica.apply_delta(msg, verify=self.verify)
            elif isinstance(msg, Snapshot):
                replica.apply_snapshot(msg)
                self.snapshots += 1
        except RemoteProtocolError as exc:
            self.desyncs += 1
            self.failed = "desync"
            raise BotFailed("desync", str(exc)) from None
        self.updates += 1
        self.tick = replica.tick
        ack = replica.acks.get(self.player)
        if ack is not None:
            self._ack(ack, now)

    def _on_json(self, data: bytes, now: float) -> None:
        if self.behaviour.needs_replica or b'"tick"' not in data:
            msg = json.loads(data)
            if "tick" not in msg:
                if msg.get("type") == "error":
                    code = int(msg.get("code", 0))
                    self.failed = f"ServerError:{code}"
                    raise BotFailed(self.failed, str(msg.get("message", "")), code)
                return
            self.json_state = msg
            self.updates += 1
            ack = msg.get("acks", {}).get(str(self.player))
            if ack is not None:
                self._ack(int(ack), now)
            return
        # the lean path: only the tick and this bot's ack
        self.updates += 1
        start = data.find(b'"acks"')
        if start < 0:
            return
        start = data.find(b"{", start)
        end = data.find(b"}", start)
        acks = json.loads(data[start : end + 1])
        ack = acks.get(str(self.player))
        if ack is not None:
            self._ack(int(ack), now)

    # -------------------------------------------------------------- the measured window
    def open_window(self) -> None:
        assert self.conn is not None
        self.window_opened = True
        self.updates0 = self.updates
        self.snapshots0 = self.snapshots
        self.bytes_down0 = self.conn.bytes_down
        self.bytes_up0 = self.conn.bytes_up

    def window_figures(self, window: float) -> tuple[float, int, int, int]:
        """(updates per second, bytes down, bytes up, snapshot resyncs) since open_window."""
        assert self.conn is not None
        # the first snapshot a bot ever gets is not a resync
        resyncs = self.snapshots - max(self.snapshots0, 1)
        return (
            (self.updates - self.updates0) / window if window > 0 else 0.0,
            self.conn.bytes_down - self.bytes_down0,
            self.conn.bytes_up - self.bytes_up0,
            max(resyncs, 0),
        )


class Engine:
    """Every joined bot of a process: one thread, one epoll object, synchronous I/O.

    The trio thread hands bots over with :meth:`add` once they have joined, sets the measured
    window with :meth:`schedule_window` and waits on :attr:`window_closed`. The engine thread
    reads every readable bot, sends each input slot's bots their input on schedule, opens and
    closes the window at its (``time.perf_counter``) times, and calls ``on_error`` (from this
    thread) for each bot that fails; failed bots leave the engine.

    With ``drop_every`` > 0 it also cuts each bot's connection at random (exponential
    intervals of that mean, per bot, from its admission until the window closes): the bot
    leaves the engine, its socket is reset (RST, no close frame) and ``on_cut(bot, now)`` is
    called from this thread; the bot may come back through :meth:`add` once it resumed.
    """

    def __init__(
        self,
        on_error: Callable[[Bot, BotFailed], None],
        *,
        input_hz: float | None = None,
        slots: int = SLOTS,
        on_window_close: Callable[[float], None] | None = None,
        drop_every: float = 0.0,
        on_cut: Callable[[Bot, float], None] | None = None,
    ) -> None:
        self.on_error = on_error
        self.on_window_close = on_window_close
        self.drop_every = drop_every
        self.on_cut = on_cut
        #: (time, bot index, bot) of the next cut of each bot in the engine (a heap)
        self.cuts: list[tuple[float, int, Bot]] = []
        self.next_cut = math.inf
        self.cut_count = 0
        self.input_hz = input_hz
        self.slots = slots
        self.ep = select.epoll()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.ep.register(self.wake_r, _EPOLLIN)
        self.bots: dict[int, Bot] = {}
        self.slot_lists: list[list[Bot]] = [[] for _ in range(slots)]
        self.pending: deque[Bot] = deque()
        self.latency = LatencyHistogram()
        self.rview = memoryview(bytearray(READ_CHUNK))
        self.hz: float | None = None
        self.late_slots = 0
        self.open_at = float("inf")
        self.close_at = float("inf")
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.cpu_opened = 0.0
        self.cpu_closed = 0.0
        #: bumped when the window opens (the latency histogram starts over)
        self.epoch = 0
        self.window_closed = threading.Event()
        self.crashed: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- control (any thread)
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="gamebots-engine", daemon=True)
        self._thread.start()

    def add(self, bot: Bot) -> None:
        """Take over a bot that has joined (the caller must not touch it afterwards)."""
        self.pending.append(bot)
        self._wake()

    def schedule_window(self, open_at: float, close_at: float) -> None:
        """Open and close the measured window at these ``time.perf_counter()`` times."""
        self.open_at = open_at
        self.close_at = close_at
        self._wake()

    def close_window_now(self) -> None:
        self.close_at = 0.0
        if self.opened_at is None:
            self.open_at = 0.0
        self._wake()

    def stop(self) -> None:
        """End the thread (and wait for it); the bots' connections stay open."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.ep.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # -------------------------------------------------------------- the engine thread
    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug: don't leave the trio side waiting forever
            self.crashed = exc
            self.window_closed.set()

    def _admit(self, now: float) -> None:
        while self.pending:
            bot = self.pending.popleft()
            conn = bot.conn
            assert conn is not None
            fd = conn.fileno()
            conn.rview = self.rview
            conn.on_backlog = self._want_write
            self.bots[fd] = bot
            self.ep.register(fd, _EPOLLIN)
            if self.hz is None:
                self.hz = self.input_hz or bot.tick_rate
            if bot.keep_behaviour:
                bot.keep_behaviour = False
            else:
                bot.behaviour.start(bot, now)
            if bot.behaviour.sends_inputs:
                self.slot_lists[bot.slot % self.slots].append(bot)
            if self.opened_at is not None and not bot.window_opened:
                bot.open_window()
            if self.drop_every > 0:
                heapq.heappush(self.cuts, (now + bot.drop_delay(self.drop_every), bot.index, bot))
                self.next_cut = self.cuts[0][0]
            unread, conn.unread = conn.unread, []
            try:
                for data in unread:
                    bot.on_message(data, now)
                if conn.backlog:
                    self._want_write(conn)
                # a message that arrived along with JOINED may sit in the TLS buffer
                bot.on_readable(time.perf_counter())
            except BotFailed as exc:
                self._fail(bot, exc)

    def _want_write(self, conn: LeanConnection) -> None:
        fd = conn.fileno()
        if fd in self.bots:
            self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)

    def _detach(self, bot: Bot) -> None:
        """Take ``bot`` out of the engine (epoll, its input slot)."""
        conn = bot.conn
        assert conn is not None
        fd = conn.fileno()
        if self.bots.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            lst = self.slot_lists[bot.slot % self.slots]
            if bot in lst:
                lst.remove(bot)

    def _cut_due(self, now: float) -> None:
        """Cut the connections whose time has come (``drop_every``)."""
        cuts = self.cuts
        while cuts and cuts[0][0] <= now:
            _, _, bot = heapq.heappop(cuts)
            conn = bot.conn
            if (
                conn is None
                or self.bots.get(conn.fileno()) is not bot
                or self.closed_at is not None
            ):
                continue  # it failed meanwhile; or the window closed: no more cuts
            self._detach(bot)
            conn.reset()
            self.cut_count += 1
            if self.on_cut is not None:
                self.on_cut(bot, now)
        self.next_cut = cuts[0][0] if cuts else math.inf

    def _fail(self, bot: Bot, exc: BotFailed) -> None:
        self._detach(bot)
        if bot.failed is None:
            bot.failed = exc.kind
        if bot.close_code is None:
            bot.close_code = exc.close_code
        self.on_error(bot, exc)

    def _open_window(self, now: float) -> None:
        self.latency.reset()
        self.late_slots = 0
        self.epoch += 1
        for bot in self.bots.values():
            bot.open_window()
        self.opened_at = now
        self.cpu_opened = time.process_time()

    def _close_window(self, now: float) -> None:
        self.closed_at = now
        self.cpu_closed = time.process_time()
        if self.on_window_close is not None:
            self.on_window_close(now - (self.opened_at or now))
        self.window_closed.set()

    def _loop(self) -> None:
        poll = self.ep.poll
        bots = self.bots
        perf = time.perf_counter
        wake_r = self.wake_r
        slots = self.slots
        slot_lists = self.slot_lists
        slot = 0
        next_slot = 0.0
        step = 0.0  # seconds between slots; 0 until the input rate is known
        while not self._stopping:
            now = perf()
            if self.pending:
                self._admit(now)
            if self.opened_at is None and now >= self.open_at:
                self._open_window(now)
            if self.closed_at is None and now >= self.close_at:
                self._close_window(now)
            if now >= self.next_cut:
                self._cut_due(now)
            if not step and self.hz:
                step = 1.0 / self.hz / slots
                next_slot = now
            if step and now >= next_slot:
                if now - next_slot > LATE_SLOT_S:
                    self.late_slots += 1
                    if now - next_slot > step * slots:  # a whole period behind: skip ahead
                        next_slot = now
                failures: list[tuple[Bot, BotFailed]] | None = None
                for sender in slot_lists[slot]:
                    try:
                        sender.send_input(perf())
                    except BotFailed as exc:
                        failures = [*(failures or ()), (sender, exc)]
                for sender, failure in failures or ():
                    self._fail(sender, failure)
                slot = slot + 1 if slot + 1 < slots else 0
                next_slot += step
            deadline = next_slot if step else now + 0.05
            if self.opened_at is None and self.open_at < deadline:
                deadline = self.open_at
            elif self.closed_at is None and self.close_at < deadline:
                deadline = self.close_at
            if self.next_cut < deadline:
                deadline = self.next_cut
            timeout = deadline - perf()
            for fd, ev in poll(timeout if timeout > 0 else 0, 1024):
                bot: Bot | None = bots.get(fd)
                if bot is None:
                    if fd == wake_r:
                        try:
                            os.read(wake_r, 4096)
                        except BlockingIOError:
                            pass
                    continue
                try:
                    if ev & _EPOLLOUT and bot.conn.flush():  # type: ignore[union-attr]
                        self.ep.modify(fd, _EPOLLIN)
                    if ev & _EPOLL_READ_EVENTS:
                        bot.on_readable(perf())
                except BotFailed as exc:
                    self._fail(bot, exc)
