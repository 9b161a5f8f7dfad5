"""Micro-benchmarks of each row of a player-tick, with the project's own code, and its floor.

Used by tools/bench_account.py (``--part micro``). Each row is timed in isolation, ``n``
operations per batch, ``repeats`` batches, with the garbage collector off during a batch (as
``timeit`` does); a row's figure is the median batch, a floor's the fastest batch (the best this
stack did: a floor is a lower bound). Timed sections that need untimed set-up between them
(a record to arrive, a socket to drain) are timed one by one with ``perf_counter_ns``, less the
timer's own cost.

The rows, per player-tick (an arena room of 8, inputs at the tick rate, so one input and one
DELTA per player per tick):

* TLS read: ``FastConnection.read_available`` of one TLS record holding one masked INPUT frame,
  over a real TLS 1.3 connection on loopback TCP (trustme certificates; the server side is an
  ``ssl.SSLObject`` over memory BIOs on a non-blocking socket, as in the server). Its frame
  reader is a sink, so the frame parsing is not in it. Floor: a bare ``sock.recv_into`` of
  the record's size on a plain TCP socket, plus a bare ``MemoryBIO.write`` + ``SSLObject.read``
  of one record.
* frame parsing: ``FrameReader.feed`` + ``FastConnection.messages()`` of the masked frame.
  Floor: the header with ``struct.unpack_from`` and the payload unmasked by one integer XOR.
* input decoding: ``parse_client_message`` of an arena INPUT (5 bytes). Floor: one
  ``struct.unpack_from`` of the five bytes and the varint's arithmetic.
* the game's update: ``Room.tick`` of an arena room of 8 (8 inputs applied, ``Arena.update``,
  the resume history as the server keeps it), less its ``State.encode_delta``, per room / 8.
  The players wander as the bench's bots do (:class:`Wandering`), so that they keep moving.
  Floor: the arena's arithmetic on plain floats (8 moves, clamps and 6 gem checks).
* delta encoding: ``State.encode_delta`` inside those ticks (a checksum every 5th), plus the
  frame header (``binary_frame``), per room / 8. Floor: the same bytes from one
  ``struct.pack``.
* TLS write: ``FastConnection.write`` of the room's DELTA frame (71-75 bytes) over the TLS
  connection, less its ``_send_raw`` (timed inside it). Floor: bare ``SSLObject.write`` +
  ``MemoryBIO.read``.
* the send syscall: that ``_send_raw`` of the TLS record (95 bytes). Floor: a bare
  ``sock.send`` of as many bytes on a plain loopback TCP socket. The peer here is this thread,
  which is not waiting in epoll: the send wakes nobody. In the server each send wakes a bot's
  epoll on the other core, which the profile's row carries and this one does not.
* bookkeeping: per player ``MessageLimiter.take_input``, ``Room.push_input``, the stats
  counters and ``Outbound.offer_state`` (its connection's write a no-op); per room / 8 a trio
  timer wake-up (``trio.sleep_until``, the room's tick loop) and the tick histogram. Floor:
  four counter increments and a deque append.
"""

from __future__ import annotations

import gc
import math
import os
import random
import select
import socket
import ssl
import statistics
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
import trustme

from clients.bots.behaviours import TURN_CHANCE
from gameserver._tws import FastConnection
from gameserver.games.arena import INPUT, PICKUP_RADIUS, WORLD, Arena
from gameserver.limits import MessageLimiter
from gameserver.outbound import Outbound
from gameserver.room import Room, RoomConfig, ticks_for
from gameserver.stats import ServerStats
from shared.messages import Input, parse_client_message
from shared.state import State
from shared.wsframe import OP_BINARY, binary_frame, frame

ROOM = 8
TICK_RATE = 20
PER_NS = 1e-3  # ns -> µs

Batch = Callable[[int], int]  # n operations -> ns they took


@dataclass
class Figures:
    us: float  # median batch, per operation
    best_us: float  # fastest batch, per operation


def run_batches(batch: Batch, n: int, repeats: int) -> Figures:
    times = []
    for _ in range(repeats):
        enabled = gc.isenabled()
        gc.disable()
        try:
            times.append(batch(n) / n)
        finally:
            if enabled:
                gc.enable()
    return Figures(statistics.median(times) * PER_NS, min(times) * PER_NS)


def timer_cost() -> float:
    """ns of one ``perf_counter_ns()`` pair (subtracted from sections timed one by one)."""
    pc = time.perf_counter_ns
    samples = []
    for _ in range(5):
        t0 = pc()
        for _ in range(10000):
            pc()
        samples.append((pc() - t0) / 10000)
    return min(samples)


# ------------------------------------------------------------------ sockets and TLS
class _SinkReader:
    """A frame reader that drops what it is fed: the TLS row without the frame parsing. (Not a
    subclass: FrameReader may be compiled by mypyc, which interpreted classes cannot extend.)"""

    buffered = 0

    def feed(self, data: bytes) -> None:
        pass

    def next(self) -> None:
        return None


class _TimedState:
    """A room's State with its ``encode_deltas`` timed into ``inner[0]`` (plus the frame
    header of each coding, as the room frames them); everything else is the State's. A
    compiled State's methods cannot be replaced on the instance, hence the stand-in."""

    def __init__(self, real: State, inner: list[int]) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._real)

    def __len__(self) -> int:
        return len(self._real)

    def encode_deltas(self, *args: Any, **kwargs: Any) -> tuple[bytes | None, bytes | None]:
        t0 = time.perf_counter_ns()
        out = self._real.encode_deltas(*args, **kwargs)
        for data in out:
            if data is not None:
                binary_frame(data)  # the room's frame header, once per room and coding
        self._inner[0] += time.perf_counter_ns() - t0
        return out


class _NullConnection(FastConnection):
    """A connection whose writes go nowhere: the outbound bookkeeping without the I/O."""

    def write(self, frame_bytes: bytes) -> None:
        pass


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of a loopback TCP connection, TCP_NODELAY as trio sets it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, client


@dataclass
class TlsPair:
    server: socket.socket
    sslobj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    client: ssl.SSLSocket
    conn: FastConnection

    def close(self) -> None:
        self.client.close()
        self.server.close()


def tls_pair() -> TlsPair:
    """A TLS connection on loopback: the server side as the server has it (SSLObject over
    memory BIOs on a non-blocking socket, in a FastConnection), the client a blocking
    ``ssl.SSLSocket``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(sctx)
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)
    server, client_raw = _tcp_pair()
    server.setblocking(False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = sctx.wrap_bio(incoming, outgoing, server_side=True)
    result: list[ssl.SSLSocket] = []
    th = threading.Thread(
        target=lambda: result.append(cctx.wrap_socket(client_raw, server_hostname="127.0.0.1"))
    )
    th.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            sslobj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                _send_all(server, pending)
            select.select([server], [], [], max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise RuntimeError("TLS handshake on loopback did not finish") from None
            data = server.recv(65536)
            if not data:
                raise RuntimeError("TLS handshake: the client closed") from None
            incoming.write(data)
    pending = outgoing.read()
    if pending:
        _send_all(server, pending)
    th.join(10)
    client = result[0]
    conn = FastConnection(server, sslobj, incoming, outgoing, max_message_size=4096)
    return TlsPair(server, sslobj, incoming, outgoing, client, conn)


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)
            continue
        view = view[sent:]


def _wait_readable(sock: socket.socket) -> None:
    if not select.select([sock], [], [], 5.0)[0]:
        raise RuntimeError("loopback socket not readable within 5 s")


def _drain_tls(client: ssl.SSLSocket, n: int) -> None:
    got = 0
    while got < n:
        got += len(client.recv(65536))


def _drain_raw(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        got += len(sock.recv(65536))


# ------------------------------------------------------------------ the messages
def input_message(seq: int = 1000) -> bytes:
    return Input(seq, INPUT.codes_for({"dx": 0.5, "dy": -0.25})).to_bytes(INPUT)


def masked_input_frame(seq: int = 1000) -> bytes:
    return frame(OP_BINARY, input_message(seq), os.urandom(4))


def arena_room() -> tuple[Room, list[int]]:
    """A room of 8 arena players, joined, with the resume history the server keeps."""
    cfg = RoomConfig(
        seat_hold_ticks=ticks_for(Arena.seat_hold, TICK_RATE),
        history_ticks=10 * TICK_RATE,
        input_queue_limit=1 << 30,
    )
    room = Room("bench", Arena, cfg)
    numbers = [room.seat(f"p{i}", f"bot{i}").number for i in range(ROOM)]
    room.tick()
    return room, numbers


def delta_frame() -> bytes:
    """An arena room's DELTA in which all 8 players moved, framed (what a player receives)."""
    room, numbers = arena_room()
    codes = INPUT.codes_for({"dx": 0.5, "dy": -0.25})
    for seq in (1, 2):
        for number in numbers:
            room.push_input(number, seq, codes)
        out = room.tick()
    return binary_frame(out.delta)


# ------------------------------------------------------------------ the rows
def bench_tls_read(pair: TlsPair, n: int, repeats: int, overhead: float) -> Figures:
    conn = pair.conn
    conn.reader = _SinkReader()  # type: ignore[assignment]
    msg = masked_input_frame()
    pc = time.perf_counter_ns

    def batch(k: int) -> int:
        total = 0
        for _ in range(k):
            pair.client.sendall(msg)
            _wait_readable(pair.server)
            t0 = pc()
            conn.read_available()
            total += pc() - t0
        return total - int(k * overhead)

    return run_batches(batch, n, repeats)


def floor_tls_read(pair: TlsPair, n: int, repeats: int, overhead: float) -> Figures:
    """bare recv of the record's size (plain TCP) + bare BIO write and SSLObject.read."""
    msg = masked_input_frame()
    server, client = _tcp_pair()
    record_size = len(msg) + 22  # TLS 1.3 record: 5-byte header, content type, 16-byte tag
    raw = os.urandom(record_size)
    buf = bytearray(65536)
    pc = time.perf_counter_ns
    sslobj, incoming = pair.sslobj, pair.incoming

    def recv_batch(k: int) -> int:
        total = 0
        for _ in range(k):
            client.sendall(raw)
            _wait_readable(server)
            t0 = pc()
            server.recv_into(buf)
            total += pc() - t0
        return total - int(k * overhead)

    def decrypt_batch(k: int) -> int:
        total = 0
        for _ in range(k):
            pair.client.sendall(msg)
            _wait_readable(pair.server)
            record = pair.server.recv(65536)
            t0 = pc()
            incoming.write(record)
            sslobj.read(4096)
            total += pc() - t0
        return total - int(k * overhead)

    try:
        a = run_batches(recv_batch, n, repeats)
        b = run_batches(decrypt_batch, n, repeats)
    finally:
        server.close()
        client.close()
    return Figures(a.us + b.us, a.best_us + b.best_us)


def bench_frames(n: int, repeats: int) -> tuple[Figures, Figures]:
    msg = masked_input_frame()
    server, client = _tcp_pair()
    conn = FastConnection(server, None, None, None, max_message_size=4096)
    reader = conn.reader

    def batch(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            reader.feed(msg)
            for _m in conn.messages():
                pass
        return time.perf_counter_ns() - t0

    head = struct.Struct("!BB4s")

    def floor(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            _b0, b1, key = head.unpack_from(msg)
            length = b1 & 0x7F
            mask = int.from_bytes((key * ((length + 3) >> 2))[:length], "little")
            (int.from_bytes(msg[6:], "little") ^ mask).to_bytes(length, "little")
        return time.perf_counter_ns() - t0

    try:
        return run_batches(batch, n, repeats), run_batches(floor, n, repeats)
    finally:
        server.close()
        client.close()


def bench_decode(n: int, repeats: int) -> tuple[Figures, Figures]:
    data = input_message()
    parse = parse_client_message

    def batch(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            parse(data, INPUT, version=2)
        return time.perf_counter_ns() - t0

    five = struct.Struct("<5B")

    def floor(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            _kind, lo, hi, _dx, _dy = five.unpack_from(data)
            (lo & 0x7F) | hi << 7
        return time.perf_counter_ns() - t0

    return run_batches(batch, n, repeats), run_batches(floor, n, repeats)


class Wandering:
    """The inputs of players who wander as the bench's bots do (``gamebots``' default
    behaviour): each keeps a heading and turns by up to 90 degrees with the bots' chance per
    input, so that they keep moving (a constant input would park them against a wall within
    seconds, and a room whose players stand still encodes and updates almost nothing)."""

    def __init__(self, players: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.headings = [self.rng.uniform(0.0, 2 * math.pi) for _ in range(players)]
        self.codes = [self._codes(h) for h in self.headings]

    @staticmethod
    def _codes(heading: float) -> tuple[Any, ...]:
        return INPUT.codes_for({"dx": math.cos(heading), "dy": math.sin(heading)})

    def step(self) -> list[tuple[Any, ...]]:
        """Each player's input for the next tick (untimed: the bots build them)."""
        rng = self.rng
        for i in range(len(self.headings)):
            if rng.random() < TURN_CHANCE:
                self.headings[i] += rng.uniform(-math.pi / 2, math.pi / 2)
                self.codes[i] = self._codes(self.headings[i])
        return self.codes


def bench_room(n: int, repeats: int, overhead: float) -> dict[str, Figures]:
    """Room ticks of 8 / 8: the update (tick less encode_deltas) and the encoding (v3, and v2
    for the resume history, as the bench's rooms do), per player."""
    room, numbers = arena_room()
    room.codings = frozenset((3,))  # the bench's bots speak gamesync.v3
    inner = [0]
    pc = time.perf_counter_ns
    room.ctx.state = _TimedState(room.ctx.state, inner)  # type: ignore[assignment]
    seq = [0]
    ticks: list[int] = []
    encodes: list[int] = []
    steer = Wandering(len(numbers))

    def batch(k: int) -> int:
        total = 0
        inner[0] = 0
        for _ in range(k):
            seq[0] += 1
            for number, codes in zip(numbers, steer.step(), strict=True):
                room.push_input(number, seq[0], codes)
            t0 = pc()
            room.tick()
            total += pc() - t0
        ticks.append(total - int(k * overhead))
        encodes.append(inner[0] - int(k * overhead))
        return total

    run_batches(batch, n, repeats)
    update = [(t - e) / n / ROOM for t, e in zip(ticks, encodes, strict=True)]
    encode = [e / n / ROOM for e in encodes]
    return {
        "update": Figures(statistics.median(update) * PER_NS, min(update) * PER_NS),
        "encode": Figures(statistics.median(encode) * PER_NS, min(encode) * PER_NS),
    }


def floor_update(n: int, repeats: int) -> Figures:
    """The arena's arithmetic on plain floats: 8 moves with clamps, 6 gem checks each, / 8."""
    xs = [100.0 + 90 * i for i in range(ROOM)]
    ys = [500.0] * ROOM
    vx, vy, dt = 100.0, -50.0, 1.0 / TICK_RATE
    gems = [(50.0 + 150 * i, 900.0) for i in range(6)]

    def batch(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            for i in range(ROOM):
                x = min(max(xs[i] + vx * dt, 0.0), WORLD)
                y = min(max(ys[i] + vy * dt, 0.0), WORLD)
                xs[i] = x if x < WORLD else 0.0
                ys[i] = y if y > 0.0 else WORLD
                for gx, gy in gems:
                    if abs(gx - x) < PICKUP_RADIUS and abs(gy - y) < PICKUP_RADIUS:
                        pass
        return (time.perf_counter_ns() - t0) // ROOM

    return run_batches(batch, n, repeats)


def floor_encode(n: int, repeats: int) -> Figures:
    """The DELTA's bytes (kind, flag, tick, 8 acks, 8 patches of x and y) from one struct.pack,
    plus its frame header, per room / 8."""
    fmt = struct.Struct("<BBHB" + "BB" * ROOM + "BB" + "BBHH" * ROOM + "B")
    args: list[int] = [4, 0, 1000, ROOM]
    for i in range(ROOM):
        args += [i + 1, 1]
    args += [0, ROOM]
    for i in range(ROOM):
        args += [i + 7, 3, 1000 + i, 2000 + i]
    args.append(0)

    def batch(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            body = fmt.pack(*args)
            b"\x82" + bytes((len(body),)) + body
        return (time.perf_counter_ns() - t0) // ROOM

    return run_batches(batch, n, repeats)


def bench_write(
    pair: TlsPair, n: int, repeats: int, overhead: float
) -> tuple[Figures, Figures, Figures, int]:
    """FastConnection.write of the DELTA frame, split into its TLS part and its send syscall
    (its ``sock.send`` timed inside it); the floor of the TLS part (bare SSLObject.write + BIO read);
    and the size of the record sent."""
    data = delta_frame()
    conn = pair.conn
    pc = time.perf_counter_ns
    real_send = conn._send  # the socket's send, as FastConnection.write calls it
    inner = [0]
    sizes: list[int] = []

    def timed_send(raw: bytes) -> int:
        t0 = pc()
        sent = real_send(raw)
        inner[0] += pc() - t0
        if len(sizes) < 4:
            sizes.append(len(raw))
        return sent

    conn._send = timed_send  # type: ignore[assignment]
    outer: list[int] = []
    sends: list[int] = []

    def batch(k: int) -> int:
        total = 0
        inner[0] = 0
        for _ in range(k):
            t0 = pc()
            conn.write(data)
            total += pc() - t0
            _drain_tls(pair.client, len(data))
        sends.append(inner[0] - int(k * overhead))
        outer.append(total - int(2 * k * overhead))  # its own timer pair and the inner one
        return total

    def floor(k: int) -> int:
        total = 0
        for _ in range(k):
            t0 = pc()
            pair.sslobj.write(data)
            record = pair.outgoing.read()
            total += pc() - t0
            _send_all(pair.server, record)
            _drain_tls(pair.client, len(data))
        return total - int(k * overhead)

    try:
        run_batches(batch, n, repeats)
    finally:
        conn._send = real_send
    tls = [(o - s) / n for o, s in zip(outer, sends, strict=True)]
    send = [s / n for s in sends]
    return (
        Figures(statistics.median(tls) * PER_NS, min(tls) * PER_NS),
        Figures(statistics.median(send) * PER_NS, min(send) * PER_NS),
        run_batches(floor, n, repeats),
        sizes[0] if sizes else len(data) + 22,
    )


def floor_send(record_size: int, n: int, repeats: int, overhead: float) -> Figures:
    """A bare ``sock.send`` of ``record_size`` bytes on a plain loopback TCP socket."""
    server, client = _tcp_pair()
    server.setblocking(False)
    raw = os.urandom(record_size)
    pc = time.perf_counter_ns

    def floor(k: int) -> int:
        total = 0
        for _ in range(k):
            t0 = pc()
            server.send(raw)
            total += pc() - t0
            _drain_raw(client, record_size)
        return total - int(k * overhead)

    try:
        return run_batches(floor, n, repeats)
    finally:
        server.close()
        client.close()


def bench_bookkeeping(n: int, repeats: int, overhead: float) -> tuple[Figures, Figures]:
    """Per player: limits, input queue, counters, outbound; per room / 8: a timer wake-up and
    the tick histogram."""
    room, numbers = arena_room()
    number = numbers[0]
    stats = ServerStats()
    server, client = _tcp_pair()
    conn = _NullConnection(server, None, None, None)
    outbound = Outbound(conn, lambda: b"", 256 * 1024, stats)
    limiter = MessageLimiter(60.0, 30.0, 5.0, 10.0, 3.0, 0.0)
    codes = INPUT.codes_for({"dx": 0.5, "dy": -0.25})
    data = delta_frame()
    seq = [0]
    clock = [0.0]

    def per_player(k: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            seq[0] += 1
            clock[0] += 0.05
            now = clock[0]
            if limiter.take_input(now):
                room.push_input(number, seq[0], codes)
            stats.messages_in += 1
            stats.bytes_in += 5
            outbound.offer_state(data)
        spent = time.perf_counter_ns() - t0
        room.tick()  # empties the input queue (untimed)
        return spent

    wakeups: list[float] = []

    async def wake(k: int) -> None:
        hist = stats.tick_histogram
        pc = time.perf_counter
        t0 = time.perf_counter_ns()
        for _ in range(k):
            await trio.sleep_until(trio.current_time())
            t = pc()
            hist.observe(pc() - t)
        wakeups.append((time.perf_counter_ns() - t0) / k)

    def per_room(k: int) -> int:
        trio.run(wake, k)
        return int(wakeups[-1] * k / ROOM)

    fields = _Counters()
    queue: deque[int] = deque()

    def floor(k: int) -> int:
        t0 = time.perf_counter_ns()
        for i in range(k):
            fields.a += 1
            fields.b += 5
            fields.c += 1
            fields.d += 73
            queue.append(i)
            queue.popleft()
        return time.perf_counter_ns() - t0

    try:
        a = run_batches(per_player, n, repeats)
        b = run_batches(per_room, n, repeats)
        return Figures(a.us + b.us, a.best_us + b.best_us), run_batches(floor, n, repeats)
    finally:
        server.close()
        client.close()


class _Counters:
    __slots__ = ("a", "b", "c", "d")

    def __init__(self) -> None:
        self.a = self.b = self.c = self.d = 0


# ------------------------------------------------------------------ all of it
def run_all(n: int = 2000, repeats: int = 9) -> dict[str, dict[str, Any]]:
    """Every row: ``{"us": median, "floor_us": best floor, "how": what was timed}``."""
    overhead = timer_cost()
    out: dict[str, dict[str, Any]] = {}
    pair = tls_pair()
    try:
        read = bench_tls_read(pair, n, repeats, overhead)
        read_floor = floor_tls_read(pair, n, repeats, overhead)
        tls_write, send, write_floor, record_size = bench_write(pair, n, repeats, overhead)
    finally:
        pair.close()
    send_floor = floor_send(record_size, n, repeats, overhead)
    frames, frames_floor = bench_frames(n * 5, repeats)
    decode, decode_floor = bench_decode(n * 5, repeats)
    room = bench_room(max(1, n // 2), repeats, overhead)
    update_floor = floor_update(n, repeats)
    encode_floor = floor_encode(n * 2, repeats)
    book, book_floor = bench_bookkeeping(n, repeats, overhead)

    def put(key: str, row: Figures, floor: Figures, how: str) -> None:
        # a floor is the best this stack did; where the row is that very operation (the send
        # syscall: the same sock.send on the same kind of socket), its own best batch can beat
        # the bare one by noise, and then it is the floor
        out[key] = {
            "us": round(row.us, 3),
            "floor_us": round(min(floor.best_us, row.best_us), 3),
            "best_us": round(row.best_us, 3),
            "how": how,
        }

    put("tls_read", read, read_floor, "FastConnection.read_available of one INPUT record")
    put("frames", frames, frames_floor, "FrameReader.feed + FastConnection.messages()")
    put("decode", decode, decode_floor, "parse_client_message of an arena INPUT")
    put("update", room["update"], update_floor, "Room.tick less encode_deltas, 8 players / 8")
    put("encode", room["encode"], encode_floor, "State.encode_deltas (v3 + v2) + binary_frame, / 8")
    put("tls_write", tls_write, write_floor, "FastConnection.write less its _send_raw")
    put("send", send, send_floor, f"FastConnection._send_raw of its {record_size} B record")
    put("bookkeeping", book, book_floor, "limits, queue, counters, offer_state; wake-up / 8")
    out["_meta"] = {"n": n, "repeats": repeats, "timer_ns": round(overhead, 1)}
    return out
