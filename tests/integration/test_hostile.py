"""Hostile clients against a real WSS server (TLS by trustme, tokens required).

Every case asserts three things:

(a) the hostile client gets the documented outcome;
(b) a well-behaved player (the ``observer``) in the same room keeps its full update rate with
    no desync: over the hostile phase it receives one DELTA per tick and no resync SNAPSHOT,
    the room skips no tick, and its replica's checksum equals the server's at the same tick;
(c) the server's memory stays bounded: allocations traced (``tracemalloc``) over the case to
    the server's code (gameserver/, shared/, trio/, trio_websocket/, wsproto/, h11/, ssl.py)
    stay under a few MB, and afterwards the per-connection state is gone
    (``connections_open``, the per-IP counts, ``by_player``, the room's sessions and seats back
    to just the observer) -- and no traceback or ERROR is logged.

Virtual time (``autojump_clock``) runs every deadline, ping and idle timeout: the clock only
jumps when every task is blocked and no socket is readable, so the room still ticks at exactly
its rate with respect to the clock, and the whole file takes seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import attrs
import pytest
import trio
import trio.testing

from gameserver.auth import AuthFailure, mint_token
from gameserver.server import GameServer, RoomHost, ServerConfig, Session
from shared import wire
from shared.messages import Close, Error, Input, Join, Joined, Resume, parse_server_message
from shared.protocol import SUBPROTOCOL, CloseCode, Kind
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameReader,
    check_response,
    client_request,
    frame,
    new_key,
    parse_close,
)
from tests.integration.wsclient import TestClient, connect

Mint = Callable[..., str]
ROOM = "arena-1"
OBSERVER = "observer"
MB = 1024 * 1024

BASE = ServerConfig(
    port=0,
    room_grace=1.0,
    connect_timeout=2.0,
    join_timeout=2.0,
    close_timeout=1.0,
    ping_interval=5.0,
    idle_timeout=10.0,
    # the CPU-budget monitor compares real CPU time with the (virtual) clock: keep it out
    cpu_budget=0.0,
    # a hostile client cut off without LEAVE keeps its seat (gamesync.v2) this long: short,
    # so that settled() also sees every held seat expire and its state go
    seat_hold=1.0,
)


def config(**changes: object) -> list[ServerConfig]:
    """For ``@pytest.mark.parametrize("server_config", config(...))``."""
    return [attrs.evolve(BASE, **changes)]  # type: ignore[arg-type]


@pytest.fixture
def server_config() -> ServerConfig:
    return BASE


# ---------------------------------------------------------------- (b) the observer


class Observer:
    """A well-behaved player that keeps reading in a background task and checks the server's
    checksums on the way (``Replica`` raises DesyncError on a mismatch)."""

    def __init__(self, server: GameServer, client: TestClient) -> None:
        self.server = server
        self.client = client
        self.host: RoomHost = server.rooms.rooms[ROOM]
        self.error: BaseException | None = None
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._progress = trio.Event()
        self._begin: tuple[int, ...] = ()
        self._t0 = 0.0

    @property
    def number(self) -> int:
        return self.client.joined.player

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self._scope:
                while True:
                    await self.client.pump()
                    self._progress.set()
                    self._progress = trio.Event()
        except Exception as exc:  # a desync, or the connection closed under it
            self.error = exc
        finally:
            self._done.set()
            self._progress.set()  # wake any waiter, to see the error

    async def wait_tick(self, tick: int) -> None:
        while self.client.replica.tick < tick:
            assert self.error is None, self.error
            await self._progress.wait()

    def begin(self) -> None:
        """Start of the hostile phase."""
        c = self.client
        h = self.host
        self._begin = (c.replica.tick, c.deltas, c.snapshots, c.replica.checks, h.skipped)
        self._server_tick0 = h.room.state_tick
        self._t0 = trio.current_time()

    async def end(self) -> int:
        """End of the hostile phase: stop reading, catch up with the server's current tick and
        check everything. Returns the number of ticks the phase spanned."""
        await trio.sleep(0.5)  # the room runs on after the hostile act, too
        elapsed = trio.current_time() - self._t0
        self._scope.cancel()
        await self._done.wait()
        assert self.error is None, f"the observer failed: {self.error!r}"
        room = self.host.room
        server_tick = room.state_tick
        server_sum = room.ctx.state.checksum()
        c = self.client
        with trio.fail_after(10):
            await c.wait_tick(server_tick)
        tick0, deltas0, snapshots0, checks0, skipped0 = self._begin
        ticks = server_tick - tick0
        assert c.replica.tick == server_tick
        assert c.replica.checksum() == server_sum, "the observer's replica desynced"
        assert ticks > 0
        assert c.deltas - deltas0 == ticks, "the observer missed deltas"
        assert c.snapshots == snapshots0, "the observer needed a resync snapshot"
        assert c.replica.checks > checks0
        # the room kept its rate: one tick per period of (virtual) time, none skipped
        assert self.host.skipped == skipped0
        rate = room.config.tick_rate
        assert abs((server_tick - self._server_tick0) - elapsed * rate) <= 2
        # and the observer still has its seat
        assert self.server.by_player[OBSERVER].player.number == self.number
        return ticks


@pytest.fixture
async def observer(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> AsyncIterator[Observer]:
    with trio.fail_after(10):
        client = await connect(
            nursery, auth_server.url, client_ssl, ROOM, token=mint(OBSERVER, name="Observer")
        )
        await client.wait_tick(client.replica.tick + 2)
    obs = Observer(auth_server, client)
    await nursery.start(obs.run)
    yield obs


# ---------------------------------------------------------------- (c) memory and logs

_SERVER_CODE = [
    tracemalloc.Filter(True, pattern)
    for pattern in (
        "*/gameserver/*",
        "*/shared/*",
        "*/trio/*",
        "*/trio_websocket/*",
        "*/wsproto/*",
        "*/h11/*",
        "*/ssl.py",
    )
]


class MemoryProbe:
    """Allocations made since ``start()`` and still alive, attributed (innermost frame) to the
    server's code and the libraries it runs on. Client-side allocations in trio and
    trio_websocket count too, which only makes the bound conservative."""

    def __init__(self) -> None:
        self.base = 0
        self.max_growth = 0
        self.samples = 0

    def start(self) -> None:
        tracemalloc.start()
        self.base = self.attributed()
        tracemalloc.reset_peak()

    def attributed(self) -> int:
        snapshot = tracemalloc.take_snapshot().filter_traces(_SERVER_CODE)
        return sum(stat.size for stat in snapshot.statistics("filename"))

    def sample(self) -> int:
        growth = self.attributed() - self.base
        self.max_growth = max(self.max_growth, growth)
        self.samples += 1
        return growth

    def check(self, limit: int = 4 * MB, settled: int = 1 * MB) -> None:
        """At most ``limit`` bytes at any sample, and at most ``settled`` now that the hostile
        connections are gone; the process-wide peak stays within a few times ``limit``."""
        now = self.sample()
        peak = tracemalloc.get_traced_memory()[1]
        assert self.max_growth < limit, f"server memory grew by {self.max_growth} bytes"
        assert now < settled, f"{now} bytes of server memory left over"
        assert peak < 4 * limit, f"traced peak {peak} bytes"


@pytest.fixture
def memory() -> Iterator[MemoryProbe]:
    probe = MemoryProbe()
    probe.start()
    try:
        yield probe
    finally:
        tracemalloc.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="gameserver")
    return caplog


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback and nothing at WARNING or above, from any logger."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not bad, [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


async def settled(server: GameServer, observer: Observer, timeout: float = 10.0) -> None:
    """Wait (bounded) until only the observer's connection and seat are left."""

    def clean() -> bool:
        host = observer.host
        return (
            server.stats.connections_open == 1
            and server._per_ip == {"127.0.0.1": 1}
            and set(server.by_player) == {OBSERVER}
            and set(host.sessions) == {observer.number}
            and [p.number for p in host.room.players()] == [observer.number]
            and set(server.rooms.rooms) == {ROOM}
            and server.stats.players == 1
        )

    with trio.fail_after(timeout):
        while not clean():
            await trio.sleep(0.05)


async def wrap_up(
    server: GameServer, observer: Observer, memory: MemoryProbe, logs: pytest.LogCaptureFixture
) -> None:
    """The end of every case: the server is back to the observer alone, the observer kept its
    full update rate with no desync (b), memory stayed bounded (c), and nothing was logged."""
    await settled(server, observer)
    await observer.end()
    memory.check()
    assert_quiet(logs)


# ---------------------------------------------------------------- raw clients


async def tcp_connect(port: int, rcvbuf: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def tls_connect(
    port: int, ctx: ssl.SSLContext, rcvbuf: int | None = None
) -> trio.SSLStream[trio.SocketStream]:
    stream = trio.SSLStream(
        await tcp_connect(port, rcvbuf), ctx, server_hostname="127.0.0.1", https_compatible=True
    )
    await stream.do_handshake()
    return stream


async def read_to_close(stream: trio.abc.ReceiveStream, limit: int = MB) -> tuple[bytes, str]:
    """Everything the server sends until it closes: (bytes, "eof" | "reset")."""
    data = b""
    while len(data) < limit:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
    raise AssertionError("the server kept sending")


def upgrade_request(
    subprotocols: Sequence[str] = (SUBPROTOCOL,), headers: Sequence[str] = ()
) -> tuple[bytes, str]:
    key = new_key()
    request = client_request("127.0.0.1", "/", key, list(subprotocols))
    extra = "".join(f"{h}\r\n" for h in headers).encode()
    return request[:-2] + extra + b"\r\n", key


async def read_response_head(stream: trio.abc.ReceiveStream) -> tuple[bytes, bytes]:
    """Read an HTTP response head: (the head without its blank line, the bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(4096)
        assert chunk, f"closed during the handshake: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


class RawWS:
    """A WebSocket client written by hand, to send what no library would."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.reader = FrameReader(max_message_size=MB, require_mask=False)
        self.joined: Joined | None = None
        self.seq = 0

    @classmethod
    async def open(
        cls,
        port: int,
        ctx: ssl.SSLContext,
        headers: Sequence[str] = (),
        rcvbuf: int | None = None,
        after: bytes = b"",
    ) -> RawWS:
        """Handshake (``after`` goes in the same write as the request, before any answer)."""
        stream = await tls_connect(port, ctx, rcvbuf)
        request, key = upgrade_request(headers=headers)
        await stream.send_all(request + after)
        head, rest = await read_response_head(stream)
        assert check_response(head, key, [SUBPROTOCOL]) == SUBPROTOCOL
        ws = cls(stream)
        ws.reader.feed(rest)
        return ws

    async def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        await self.stream.send_all(frame(opcode, payload, mask=os.urandom(4)))

    async def recv(self) -> tuple[int, bytes]:
        while (item := self.reader.next()) is None:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self.reader.feed(bytes(chunk))
        return item

    async def join(self, token: str, room: str = ROOM) -> Joined:
        await self.send(Join(room, "", "", token).to_bytes())
        while True:
            opcode, payload = await self.recv()
            if opcode == OP_BINARY:
                msg = parse_server_message(payload)
                assert isinstance(msg, Joined), msg
                self.joined = msg
                return msg

    def input_frame(self, dx: float = 0.5, dy: float = -0.5) -> bytes:
        assert self.joined is not None
        schema = self.joined.input_schema
        self.seq += 1
        payload = Input(self.seq, schema.codes_for({"dx": dx, "dy": dy})).to_bytes(schema)
        return frame(OP_BINARY, payload, mask=os.urandom(4))

    async def until_closed(self) -> tuple[list[Error | Close], int | None]:
        """Read to the end: the ERROR/CLOSE messages seen and the close frame's code."""
        told: list[Error | Close] = []
        while True:
            try:
                opcode, payload = await self.recv()
            except (EOFError, trio.BrokenResourceError):
                return told, None
            if opcode == OP_CLOSE:
                code, _ = parse_close(payload)
                return told, code
            if opcode == OP_BINARY and payload[:1] in (bytes([Kind.ERROR]), bytes([Kind.CLOSE])):
                msg = parse_server_message(payload)
                assert isinstance(msg, (Error, Close))
                told.append(msg)


def session_of(server: GameServer, player_id: str) -> Session:
    return server.by_player[player_id]


# ---------------------------------------------------------------- before TLS


@pytest.mark.parametrize(
    "garbage",
    [
        bytes(range(256)) * 4,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n",  # plaintext
        b"\x16\x03\x01\xff\xff" + b"\x01" * 64,  # a TLS record header that lies
    ],
    ids=["binary", "plain-http", "bad-tls-record"],
)
async def test_garbage_before_the_tls_handshake(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
    garbage: bytes,
) -> None:
    observer.begin()
    start = trio.current_time()
    with trio.fail_after(30):
        stream = await tcp_connect(auth_server.port)
        await stream.send_all(garbage)
        data, how = await read_to_close(stream)
    # (a) closed, without an HTTP response (at most a TLS alert), within connect_timeout
    assert b"HTTP/" not in data
    assert trio.current_time() - start <= BASE.connect_timeout + 0.5
    assert how in ("eof", "reset")
    await settled(auth_server, observer)
    assert auth_server.stats.refused["handshake"] == 1
    assert auth_server.stats.connections_accepted == 1  # the observer
    # (b) and (c)
    await observer.end()
    memory.check()
    assert_quiet(logs)


async def test_garbage_after_tls_before_the_http_request(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    start = trio.current_time()
    with trio.fail_after(30):
        stream = await tls_connect(auth_server.port, client_ssl)
        await stream.send_all(b"\x00\x01\x02\x03 \xff\xfe not http at all\r\n\r\n" * 8)
        data, how = await read_to_close(stream)
    # (a) trio-websocket (wsproto) answers a request it cannot parse with a bare 400, then
    # closes; the server itself counts the connection as a handshake that never completed
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert how == "eof"
    assert trio.current_time() - start <= BASE.connect_timeout + 0.5
    await settled(auth_server, observer)
    assert auth_server.stats.refused["handshake"] == 1
    await observer.end()
    memory.check()
    assert_quiet(logs)


async def test_request_headers_dribbled_slowly_are_cut_off_at_connect_timeout(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Slowloris: a valid upgrade request, one byte every 100 ms, never finished in time."""
    observer.begin()
    request, _ = upgrade_request()
    start = trio.current_time()
    sent = 0
    with trio.fail_after(30):
        stream = await tls_connect(auth_server.port, client_ssl)
        try:
            for i in range(len(request) - 1):
                await stream.send_all(request[i : i + 1])
                sent += 1
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass
        data, _ = await read_to_close(stream)
    assert data == b""
    assert sent < len(request) - 1
    assert trio.current_time() - start <= BASE.connect_timeout + 0.5
    await settled(auth_server, observer)
    assert auth_server.stats.refused["handshake"] == 1
    await observer.end()
    memory.check()
    assert_quiet(logs)


async def test_hundred_connections_that_never_handshake(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    start = trio.current_time()
    outcomes: list[tuple[bytes, str, float]] = []

    async def silent() -> None:
        stream = await tcp_connect(auth_server.port)
        data, how = await read_to_close(stream)
        outcomes.append((data, how, trio.current_time() - start))
        await stream.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            for _ in range(100):
                clients.start_soon(silent)
            # while they hang, all hundred hold a connection slot
            while auth_server.stats.connections_open < 101:
                await trio.sleep(0.01)
            memory.sample()
    # (a) every one was closed by the server, without a byte, at connect_timeout
    assert len(outcomes) == 100
    assert all(data == b"" for data, _, _ in outcomes)
    assert all(BASE.connect_timeout - 0.1 <= t <= BASE.connect_timeout + 0.5 for *_, t in outcomes)
    await settled(auth_server, observer)
    assert auth_server.stats.refused["handshake"] == 100
    await observer.end()
    memory.check(limit=6 * MB)  # ~20 KB per pending TLS handshake at the peak
    assert_quiet(logs)


@pytest.mark.parametrize("server_config", config(max_connections_per_ip=4))
async def test_per_ip_connection_cap_closes_extra_connections_before_tls(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        # three more connections reach the cap of four (the observer holds one)
        holders = [await tcp_connect(auth_server.port) for _ in range(3)]
        while auth_server.stats.connections_open < 4:
            await trio.sleep(0.01)
        # (a) every further connection is closed at once: no TLS byte is ever sent to it
        for _ in range(5):
            start = trio.current_time()
            extra = await tcp_connect(auth_server.port)
            data, _ = await read_to_close(extra)
            assert data == b""
            assert trio.current_time() - start < 0.1
        with pytest.raises(trio.BrokenResourceError):
            await tls_connect(auth_server.port, client_ssl)
        assert auth_server.stats.refused["connection_limit"] == 6
        assert auth_server.stats.connections_open == 4
        # once the holders are gone, a player gets in again
        for h in holders:
            await h.aclose()
        while auth_server.stats.connections_open > 1:
            await trio.sleep(0.01)
        late = await RawWS.open(auth_server.port, client_ssl)
        await late.join(mint("late"))
        await late.stream.aclose()
    await wrap_up(auth_server, observer, memory, logs)


@pytest.mark.parametrize("server_config", config(max_connections=3))
async def test_total_connection_cap(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        holders = [await tcp_connect(auth_server.port) for _ in range(2)]
        while auth_server.stats.connections_open < 3:
            await trio.sleep(0.01)
        extra = await tcp_connect(auth_server.port)
        assert await read_to_close(extra) == (b"", "eof")
        assert auth_server.stats.refused["connection_limit"] == 1
        for h in holders:
            await h.aclose()
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- the HTTP upgrade


async def _http_refusal(
    port: int, ctx: ssl.SSLContext, request: bytes
) -> tuple[int, dict[bytes, bytes], bytes, str]:
    stream = await tls_connect(port, ctx)
    await stream.send_all(request)
    data, how = await read_to_close(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body, how


async def test_plain_http_get_without_upgrade(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        status, _, _, how = await _http_refusal(
            auth_server.port,
            client_ssl,
            b"GET /no-such-file.html HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
        )
    # (a) not a file of the web demo: 404, and the TCP connection closed
    assert status == 404
    assert how == "eof"
    await wrap_up(auth_server, observer, memory, logs)


async def test_wrong_subprotocol(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    request, _ = upgrade_request(subprotocols=["gamesync.v0", "chat"])
    with trio.fail_after(30):
        status, headers, body, how = await _http_refusal(auth_server.port, client_ssl, request)
    assert status == 400
    assert b"gamesync.v1" in body
    assert b"sec-websocket-accept" not in headers
    assert how == "eof"
    await settled(auth_server, observer)
    assert auth_server.stats.refused["subprotocol"] == 1
    await observer.end()
    memory.check()
    assert_quiet(logs)


@pytest.mark.parametrize("server_config", config(allowed_origins=("https://good.example",)))
async def test_disallowed_origin(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        for origin in ("https://evil.example", "null", "https://good.example.evil.example"):
            request, _ = upgrade_request(headers=[f"Origin: {origin}"])
            status, _, body, how = await _http_refusal(auth_server.port, client_ssl, request)
            # (a) a browser's request (one Origin) gets a 101 and then only close 4003, which
            # its page can read (docs/protocol.md, "Refusals a browser can read"); then the
            # TCP connection closes
            assert (status, how) == (101, "eof"), origin
            reader = FrameReader(max_message_size=MB, require_mask=False)
            reader.feed(body)
            item = reader.next()
            assert item is not None and item[0] == OP_CLOSE, origin
            assert parse_close(item[1]) == (CloseCode.FORBIDDEN, "origin not allowed")
            assert reader.next() is None
        # the allowed Origin and a client without an Origin (not a browser) both play
        browser = await RawWS.open(
            auth_server.port, client_ssl, headers=["Origin: https://good.example"]
        )
        await browser.join(mint("browser"))
        native = await RawWS.open(auth_server.port, client_ssl)
        await native.join(mint("native"))
        assert {"browser", "native"} <= set(auth_server.by_player)
        await browser.stream.aclose()
        await native.stream.aclose()
    assert auth_server.stats.refused["origin"] == 3
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- JOIN


@pytest.mark.parametrize(
    ("make_token", "failure"),
    [
        (lambda mint: "", AuthFailure.MISSING),
        (lambda mint: mint("intruder", ttl=60, now=time.time() - 3600), AuthFailure.EXPIRED),
        (
            lambda mint: mint("intruder", rooms=["x"])[:-6] + "AAAAAA",
            AuthFailure.BAD_SIGNATURE,
        ),
        (lambda mint: mint_token(b"q" * 32, "intruder"), AuthFailure.BAD_SIGNATURE),
    ],
    ids=["no-token", "expired", "tampered", "other-key"],
)
async def test_join_without_a_valid_token(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
    make_token: Callable[[Mint], str],
    failure: AuthFailure,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.send(Join(ROOM, "", "intruder", make_token(mint)).to_bytes())
        told, code = await ws.until_closed()
    # (a) ERROR 4001 and close 4001, counted by reason; never seated
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.UNAUTHORIZED)]
    assert code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.refused[failure.value] == 1
    assert auth_server.stats.rooms_created == 1
    await wrap_up(auth_server, observer, memory, logs)


def _huge_token_resume() -> bytes:
    # a token field that says 5000 bytes: over the 128-byte limit, refused unread
    return b"\x05\x03" + wire.string(ROOM, 64) + wire.varint(5000) + b"A" * 200  # v3


def _resume_token_of(length: int) -> bytes:
    return Resume(ROOM, "A" * length, 1).to_bytes()


@pytest.mark.parametrize(
    ("payload", "code", "label", "text"),
    [
        (b"\x05", CloseCode.INVALID_PAYLOAD, "close_1007", "truncated"),
        (b"\x05\x03\x09resu", CloseCode.INVALID_PAYLOAD, "close_1007", "truncated"),  # v3
        (
            Resume(ROOM, "tok", 1).to_bytes()[:-1],  # have_tick cut off
            CloseCode.INVALID_PAYLOAD,
            "close_1007",
            "truncated",
        ),
        (_huge_token_resume(), CloseCode.INVALID_PAYLOAD, "close_1007", "exceeds limit 128"),
        (_resume_token_of(128), CloseCode.UNAUTHORIZED, "resume_bad_token", "bad resume token"),
        (
            Resume(ROOM, "\u00e9t\u00e9 \U0001f600 !!", 1).to_bytes(),
            CloseCode.UNAUTHORIZED,
            "resume_bad_token",
            "bad resume token",
        ),
        (
            Resume(ROOM, "A" * 54, 1).to_bytes(),  # base64url of the right length, forged
            CloseCode.UNAUTHORIZED,
            "resume_bad_token",
            "bad resume token",
        ),
        (
            Resume("no such room!", "A" * 54, 1).to_bytes(),
            CloseCode.UNAUTHORIZED,
            "resume_bad_token",
            "bad resume token",
        ),
        (
            Resume(ROOM, "A" * 54, 1, version=1).to_bytes(),
            CloseCode.PROTOCOL_ERROR,
            "close_1002",
            "protocol version 1",
        ),
        (
            Resume(ROOM, "A" * 54, 1, version=9).to_bytes(),
            CloseCode.PROTOCOL_ERROR,
            "close_1002",
            "protocol version 9",
        ),
        (
            Resume(ROOM, "A" * 54, 1).to_bytes()[:-1] + b"\xff" * 9 + b"\x7f",  # > 64 bits
            CloseCode.INVALID_PAYLOAD,
            "close_1007",
            "64 bits",
        ),
    ],
    ids=[
        "kind-only",
        "truncated-room",
        "truncated-tick",
        "huge-token",
        "long-garbage-token",
        "unicode-token",
        "forged-token",
        "bad-room",
        "version-1",
        "version-9",
        "huge-tick",
    ],
)
async def test_malformed_resume(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
    payload: bytes,
    code: int,
    label: str,
    text: str,
) -> None:
    """A RESUME instead of JOIN that is cut short, too big, forged or of the wrong version:
    ERROR with a clear text and the close code, counted under its label, never a seat, no
    traceback in the log."""
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.send(payload)
        told, close_code = await ws.until_closed()
    assert [(type(m), m.code) for m in told] == [(Error, code)]
    assert text in told[0].message, told[0].message
    assert close_code == code
    stats = auth_server.stats
    counted = stats.refused if code == CloseCode.UNAUTHORIZED else stats.protocol_errors
    assert counted[label] == 1
    if code == CloseCode.UNAUTHORIZED:
        assert stats.resume_refusals == {label: 1}
    assert stats.resumes == 0
    await wrap_up(auth_server, observer, memory, logs)


async def test_a_resume_for_the_observers_seat_with_a_forged_token_changes_nothing(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The observer's real token with its MAC flipped: 4001, and the observer plays on."""
    token = observer.client.joined.resume_token
    assert token
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.send(Resume(ROOM, forged, observer.client.replica.tick).to_bytes())
        told, close_code = await ws.until_closed()
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.UNAUTHORIZED)]
    assert close_code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.resume_refusals == {"resume_bad_token": 1}
    await wrap_up(auth_server, observer, memory, logs)


async def test_no_join_within_the_join_timeout(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A completed WebSocket handshake, then nothing but pings: closed with 4007."""
    observer.begin()
    start = trio.current_time()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        for _ in range(10):
            await ws.send(b"still here", OP_PING)
            await trio.sleep(0.1)
        told, code = await ws.until_closed()
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.JOIN_TIMEOUT)]
    assert code == CloseCode.JOIN_TIMEOUT
    assert trio.current_time() - start <= BASE.join_timeout + BASE.close_timeout + 0.5
    assert auth_server.stats.refused["join_timeout"] == 1
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- after JOIN


@pytest.mark.parametrize(
    ("payload", "opcode", "code"),
    [
        (b"hello, I am text", OP_TEXT, CloseCode.UNSUPPORTED_DATA),
        (b"\x03", OP_BINARY, CloseCode.INVALID_PAYLOAD),  # INPUT cut short before its seq
        (b"\x04\x05ev", OP_BINARY, CloseCode.INVALID_PAYLOAD),  # EVENT whose name is cut short
        (b"\x03" + b"\x00" * 5000, OP_BINARY, CloseCode.MESSAGE_TOO_BIG),
        (b"\x7f\x00", OP_BINARY, CloseCode.PROTOCOL_ERROR),  # unknown message kind
        (b"", OP_BINARY, CloseCode.PROTOCOL_ERROR),  # empty message
    ],
    ids=["text-frame", "truncated-input", "truncated-event", "oversized", "unknown-kind", "empty"],
)
async def test_bad_message_after_joining(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
    payload: bytes,
    opcode: int,
    code: int,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        joined = await ws.join(mint("hostile"))
        await observer.wait_tick(observer.host.room.state_tick + 1)
        await ws.send(payload, opcode)
        told, close_code = await ws.until_closed()
    # (a) ERROR with the code, then the close frame with the same code
    assert [(type(m), m.code) for m in told] == [(Error, code)]
    assert close_code == code
    assert sum(auth_server.stats.protocol_errors.values()) == 1
    await settled(auth_server, observer)
    assert joined.player not in [p.number for p in observer.host.room.players()]
    await observer.end()
    memory.check()
    assert_quiet(logs)


async def test_oversized_frame_header_is_refused_before_its_payload(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame header announcing 2**40 bytes: 1009 at once, nothing buffered for it."""
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.join(mint("hostile"))
        header = bytes((0x82, 0x80 | 127)) + (1 << 40).to_bytes(8, "big") + b"mask"
        await ws.stream.send_all(header + b"\x03\x01")
        told, close_code = await ws.until_closed()
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.MESSAGE_TOO_BIG)]
    assert close_code == CloseCode.MESSAGE_TOO_BIG
    await wrap_up(auth_server, observer, memory, logs)


# an abuse allowance of 1 s: 60 dropped inputs beyond the rate (60/s) before the 1008 close
@pytest.mark.parametrize("server_config", config(abuse_allowance=1.0))
async def test_input_flood(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = observer.host.room
    stats = auth_server.stats
    observer.begin()
    with trio.fail_after(60):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.join(mint("flooder"))
        # the limits this player got (the server raises the configured ones to at least
        # 3 inputs per tick, burst 1.5 s of ticks)
        limiter = session_of(auth_server, "flooder").limiter
        rate, burst = limiter.inputs.rate, limiter.inputs.capacity
        allowance = limiter.abuse.capacity
        per_tick = rate / room.config.tick_rate
        assert (rate, burst, allowance, per_tick) == (60.0, 30.0, 60.0, 3.0)

        # phase 1: twice the allowed rate, sent right after each tick's delta so that every
        # tick's read finds exactly 2 * per_tick inputs. The excess is dropped and counted;
        # the abuse allowance refills as fast as it is spent, so the connection stays.
        ticks = 60
        seen = 0
        while seen < ticks:
            opcode, payload = await ws.recv()
            if opcode == OP_BINARY and payload[0] == Kind.DELTA:
                seen += 1
                await ws.stream.send_all(b"".join(ws.input_frame() for _ in range(6)))
        await observer.wait_tick(room.state_tick + 2)
        sent = ws.seq
        applied = room.counters.inputs_applied
        assert stats.inputs_dropped == sent - applied
        # the burst, then per_tick a tick (the first tick's refill is lost to the full bucket)
        assert burst + per_tick * (ticks - 1) - 2 <= applied <= burst + per_tick * ticks
        assert stats.inputs_dropped >= sent / 2 - burst
        assert not stats.protocol_errors
        assert "flooder" in auth_server.by_player

        # phase 2: 3000 inputs in one write. The next read finds the abuse bucket holding at
        # most `allowance` tokens: that many drops, then the next one closes the connection.
        dropped_before = stats.inputs_dropped
        bucket_drops_before = limiter.dropped
        flood = b"".join(ws.input_frame() for _ in range(3000))
        async with trio.open_nursery() as inner:
            inner.start_soon(ws.stream.send_all, flood)
            told, code = await ws.until_closed()
            inner.cancel_scope.cancel()
    # (a) ERROR 1008 then close 1008; what was dropped is counted
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.POLICY_VIOLATION)]
    assert code == CloseCode.POLICY_VIOLATION
    assert stats.protocol_errors == {"flood": 1}
    # the bucket dropped `allowance` (with a fraction left over, `allowance` + 1) and judged the
    # next one abuse; the room's per-tick queue (8) may have dropped a few more
    assert allowance <= limiter.dropped - bucket_drops_before <= allowance + 1
    assert stats.inputs_dropped - dropped_before >= limiter.dropped - bucket_drops_before
    assert room.counters.inputs_applied - applied <= burst
    await wrap_up(auth_server, observer, memory, logs)


@pytest.mark.parametrize("server_config", config(idle_timeout=5.0, ping_interval=2.0))
async def test_client_that_never_reads(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = observer.host.room
    # bulk up every delta so the stuck client's socket fills within the test
    gem = room.game_cls.schema.types[1]
    bulk = [room.ctx.state.spawn(gem, value=0) for _ in range(150)]

    async def churn() -> None:
        t = 0
        while True:
            t += 1
            for i, g in enumerate(bulk):
                g.x = float((t * 7 + i) % 1000)
                g.y = float((t * 13 + i) % 1000)
            await trio.sleep(room.dt)

    with trio.fail_after(10):
        await observer.wait_tick(room.state_tick + 2)
    observer.begin()
    async with trio.open_nursery() as inner:
        inner.start_soon(churn)
        with trio.fail_after(60):
            # joins, then never reads a byte again (nor sends one)
            ws = await RawWS.open(auth_server.port, client_ssl, rcvbuf=4096)
            await ws.send(Join(ROOM, "", "", mint("stuck")).to_bytes())
            while "stuck" not in auth_server.by_player:
                await trio.sleep(0.01)
            stuck = session_of(auth_server, "stuck")
            last_rx = trio.current_time()
            # its socket fills: the server holds back what the kernel will not take
            while not stuck.conn.backlog:
                await trio.sleep(0.05)
            full_at = trio.current_time() - last_rx
            assert full_at < auth_server.config.idle_timeout
            ended: list[float] = []

            async def note_end() -> None:
                # when the session ended, to 10 ms (the loop below samples memory, which takes
                # a tracemalloc snapshot: too slow a clock for the idle deadline)
                while stuck.end is None:
                    await trio.sleep(0.01)
                ended.append(trio.current_time())

            inner.start_soon(note_end)
            while stuck.end is None:
                memory.sample()
                assert stuck.outbound.queued_bytes <= auth_server.config.outbound_limit
                assert stuck.outbound.queue_length <= 3
                await trio.sleep(0.5)
            while not ended:
                await trio.sleep(0.01)
            closed_at = ended[0] - last_rx
        inner.cancel_scope.cancel()
    # (a) closed for idleness: 1001 after idle_timeout (it never answered the ping)
    assert stuck.end.code == CloseCode.GOING_AWAY
    assert "idle" in stuck.end.reason
    assert auth_server.stats.protocol_errors["idle_timeout"] == 1
    cfg = auth_server.config
    assert cfg.idle_timeout <= closed_at <= cfg.idle_timeout + 0.5
    assert auth_server.stats.deltas_skipped > 0
    await settled(auth_server, observer, timeout=cfg.close_timeout + 2)
    assert stuck.conn.closed
    await observer.end()
    memory.check()
    assert_quiet(logs)


@pytest.mark.parametrize("server_config", config(idle_timeout=10.0, ping_interval=4.0))
async def test_ping_flood_from_a_client_that_never_reads(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    ping = frame(OP_PING, b"p" * 125, mask=b"abcd")
    with trio.fail_after(60):
        ws = await RawWS.open(auth_server.port, client_ssl, rcvbuf=4096)
        await ws.join(mint("pinger"))
        pinger = session_of(auth_server, "pinger")
        deadline = trio.current_time() + 10
        carry = b""
        try:
            while trio.current_time() < deadline and pinger.end is None:
                # 100 pings and part of the next per write: every TLS record ends mid-frame
                await ws.stream.send_all(carry + ping * 100 + ping[:50])
                carry = ping[50:]
        except trio.BrokenResourceError:
            pass
    backlog = pinger.conn.backlog
    buffered = len(pinger.conn.reader._buf)
    grown = memory.sample()
    # (c) the server holds a bounded amount for this client, or has disconnected it
    bounded = backlog <= auth_server.config.outbound_limit and buffered <= 64 * 1024
    assert bounded and grown < 4 * MB, (
        f"pong backlog {backlog} bytes, frame reader buffer {buffered} bytes, "
        f"server memory grew by {grown} bytes"
    )
    await ws.stream.aclose()
    await settled(auth_server, observer, timeout=5)
    await observer.end()
    memory.check()
    assert_quiet(logs)


async def test_ping_flood_before_join_from_a_client_that_never_reads(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    ping = frame(OP_PING, b"p" * 125, mask=b"abcd")
    with trio.fail_after(60):
        ws = await RawWS.open(auth_server.port, client_ssl, rcvbuf=4096)
        carry = b""
        try:
            for _ in range(300):  # about 4 MB, well within the join deadline
                await ws.stream.send_all(carry + ping * 100 + ping[:50])
                carry = ping[50:]
        except trio.BrokenResourceError:
            pass
        grown = memory.sample()
        elapsed = trio.current_time() - observer._t0
    assert elapsed < auth_server.config.join_timeout
    # (c) a connection that has not even sent JOIN holds a bounded amount of server memory
    assert grown < 4 * MB, f"server memory grew by {grown} bytes"
    await ws.stream.aclose()
    await wrap_up(auth_server, observer, memory, logs)
