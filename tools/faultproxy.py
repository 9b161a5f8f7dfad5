"""A fault-injection TCP proxy: latency, jitter, a bandwidth cap, stalls, cuts and outages, on
demand, for tests (a trio library) and for people (a command line with a stdin console).

::

    python tools/faultproxy.py --listen 127.0.0.1:9443 --target 127.0.0.1:8443 \\
        --latency 80ms --jitter 20ms --bandwidth 64KB/s
    python tools/faultproxy.py --listen 127.0.0.1:9443 --target 127.0.0.1:8443 \\
        --script "at 5s cut; at 5s down 3; at 20s latency 300" --duration 30

    async with open_fault_proxy("127.0.0.1", server_port) as proxy:
        connect_to("127.0.0.1", proxy.port)
        proxy.set_latency(80, jitter=20)
        proxy.cut()          # RST on every connection, no close frame
        proxy.down(3)        # refuse new connections for 3 s

It forwards bytes and knows nothing of TLS or WebSocket, so it works for wss:// as well (the
client still checks the server's certificate: connect by an address the certificate names).
Faults are per direction: upstream is client -> target, downstream is target -> client. The
command line and its console / script language are in faultcli.py. See docs/faults.md.

Memory is bounded: each direction of each connection holds at most ``buffer_size`` bytes
(default 256 KiB); when a stalled, delayed or capped direction has that much, the proxy stops
reading from its source and TCP's own flow control pushes back on the sender.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

DEFAULT_BUFFER = 256 * 1024
CHUNK = 64 * 1024
#: the token bucket holds this many seconds of the cap (the largest burst after an idle spell)
BURST_SECONDS = 0.05
MIN_WAIT = 1e-4  # seconds: the shortest wait for tokens


class Direction(enum.Enum):
    UPSTREAM = "upstream"  # client -> target
    DOWNSTREAM = "downstream"  # target -> client


BOTH = (Direction.UPSTREAM, Direction.DOWNSTREAM)


class DownMode(enum.Enum):
    REFUSE = "refuse"  # accept and reset at once: a network that refuses
    BLACKHOLE = "blackhole"  # accept and hold, forward nothing until up: a network that drops


class RemoteTargetError(ValueError):
    """A non-loopback address without ``allow_remote``: tests keep their traffic on 127.x."""


# ------------------------------------------------------------------ pure parts
def loopback_host(host: str, *, allow_remote: bool = False, what: str = "target") -> str:
    """``host`` as an address to use: localhost means 127.0.0.1; anything but a loopback IP
    raises RemoteTargetError unless ``allow_remote``."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    if allow_remote:
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RemoteTargetError(
            f"{what} {host} is not a loopback address (127.x): pass --allow-remote "
            "(allow_remote=True) to proxy elsewhere"
        )
    return host


@attrs.define
class TokenBucket:
    """A token bucket in bytes: ``rate`` per second, at most ``capacity`` saved up."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        capacity = max(1.0, rate * BURST_SECONDS)
        return cls(rate, capacity, capacity, now)

    def set_rate(self, rate: float, now: float) -> None:
        self.refill(now)
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = min(self.tokens, self.capacity)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, want: int, now: float) -> tuple[int, float]:
        """(bytes that may go now, seconds to wait if that is 0). It waits for a whole
        ``min(want, capacity)`` rather than dribbling out single bytes."""
        self.refill(now)
        unit = min(float(want), self.capacity)
        if self.tokens + 1e-6 >= unit:  # float dust must not make a wait too short to see
            n = min(want, int(self.tokens + 1e-6))
            self.tokens -= n
            return n, 0.0
        return 0, max(MIN_WAIT, (unit - self.tokens) / self.rate)


@attrs.define
class Faults:
    """The faults of one direction (all connections); change them through FaultProxy."""

    latency: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, +- around latency; never reorders
    bandwidth: float | None = None  # bytes per second per connection; None = no cap
    stalled: bool = False


@attrs.frozen
class ProxyStats:
    connections: int  # accepted and forwarded to the target
    active: int  # open now
    refused: int  # reset at once while down
    blackholed: int  # accepted while down (blackhole mode), held until up
    cuts: int  # cut() calls
    cut_connections: int  # connections aborted by cut()
    target_failures: int  # the target refused or could not be reached (client reset)
    bytes_upstream: int  # delivered to the target
    bytes_downstream: int  # delivered to the clients
    buffered_upstream: int  # held in the proxy now
    buffered_downstream: int
    max_buffered: int  # the most one direction of one connection ever held

    def line(self) -> str:
        return (
            f"connections {self.connections} (active {self.active}, refused {self.refused}, "
            f"blackholed {self.blackholed}, target failures {self.target_failures})  "
            f"cuts {self.cuts} ({self.cut_connections} connections)  "
            f"bytes up {self.bytes_upstream} down {self.bytes_downstream}  "
            f"buffered up {self.buffered_upstream} down {self.buffered_downstream} "
            f"(max {self.max_buffered})"
        )


# ------------------------------------------------------------------ the trio layer
def _reset(stream: trio.SocketStream | None) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, not FIN, and drops what is unsent."""
    if stream is None:
        return
    sock = stream.socket
    if sock.fileno() < 0:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _close(stream: trio.SocketStream | None) -> None:
    if stream is not None and stream.socket.fileno() >= 0:
        stream.socket.close()


class _Conn:
    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.target: trio.SocketStream | None = None
        self.scope = trio.CancelScope()
        self.pipes: list[_Pipe] = []
        self.aborted = False

    def abort(self) -> None:
        """RST both sides now; the connection's tasks end."""
        self.aborted = True
        self.scope.cancel()
        _reset(self.client)
        _reset(self.target)


class _Pipe:
    """One direction of one connection: a reader filling a bounded queue of (release time,
    bytes), and a writer draining it as the faults allow."""

    def __init__(
        self,
        proxy: FaultProxy,
        conn: _Conn,
        direction: Direction,
        src: trio.SocketStream,
        dst: trio.SocketStream,
    ) -> None:
        self.proxy = proxy
        self.conn = conn
        self.direction = direction
        self.faults = proxy.faults[direction]
        self.src = src
        self.dst = dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.buffered = 0
        self.eof = False
        self.last_release = -math.inf
        self.bucket: TokenBucket | None = None
        self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    async def _wait(self, deadline: float = math.inf) -> None:
        event = self._wake
        with trio.move_on_at(deadline):
            await event.wait()

    async def pump_in(self) -> None:
        limit = self.proxy.buffer_size
        try:
            while True:
                while self.buffered >= limit:
                    await self._wait()
                data = await self.src.receive_some(min(CHUNK, limit - self.buffered))
                if not data:
                    break
                delay = self.faults.latency
                if self.faults.jitter:
                    delay += self.proxy.rng.uniform(-self.faults.jitter, self.faults.jitter)
                release = max(trio.current_time() + max(0.0, delay), self.last_release)
                self.last_release = release
                self.queue.append((release, data))
                self.buffered += len(data)
                self.proxy._note_buffered(self.buffered)
                self.wake()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.conn.abort()  # the source reset: so does the other side
            return
        self.eof = True
        self.wake()

    async def pump_out(self) -> None:
        try:
            while True:
                f = self.faults
                if f.stalled or not self.queue:
                    if self.eof and not self.queue and not f.stalled:
                        break  # a stalled direction holds the FIN too
                    await self._wait()
                    continue
                release, data = self.queue[0]
                now = trio.current_time()
                if release > now:
                    await self._wait(release)
                    continue
                n = len(data)
                if f.bandwidth is not None:
                    if self.bucket is None:
                        self.bucket = TokenBucket.full(f.bandwidth, now)
                    elif self.bucket.rate != f.bandwidth:
                        self.bucket.set_rate(f.bandwidth, now)
                    n, wait = self.bucket.take(n, now)
                    if not n:
                        await self._wait(now + wait)
                        continue
                await self.dst.send_all(data[:n])
                if n == len(data):
                    self.queue.popleft()
                else:
                    self.queue[0] = (release, data[n:])
                self.buffered -= n
                self.proxy._count(self.direction, n)
                self.wake()
            await self.dst.send_eof()  # forward the FIN: half-close, as TCP does
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.conn.abort()


class FaultProxy:
    """A running proxy (made by open_fault_proxy). Every control is synchronous and takes effect
    at once, for every connection, current and future."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        buffer_size: int,
        rng: random.Random,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.buffer_size = buffer_size
        self.rng = rng
        self.faults = {d: Faults() for d in Direction}
        self.listen_host = ""
        self.port = 0
        self.down_mode = DownMode.REFUSE
        self._down_until = -math.inf
        self._changed = trio.Event()
        self._conns: set[_Conn] = set()
        self._connections = self._refused = self._blackholed = 0
        self._cuts = self._cut_connections = self._target_failures = 0
        self._bytes = {d: 0 for d in Direction}
        self._max_buffered = 0

    # ---------------------------------------------------------------- controls
    @property
    def upstream(self) -> Faults:
        return self.faults[Direction.UPSTREAM]

    @property
    def downstream(self) -> Faults:
        return self.faults[Direction.DOWNSTREAM]

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def set_latency(
        self, ms: float, *, jitter: float | None = None, direction: Direction | None = None
    ) -> None:
        """Delay every byte by ``ms`` milliseconds (+- ``jitter`` ms if given; order is kept).
        Bytes already in the proxy keep the delay they were given."""
        if not (ms >= 0 and math.isfinite(ms)):
            raise ValueError(f"latency must be 0 or more ms, not {ms}")
        for d in _directions(direction):
            self.faults[d].latency = ms / 1000
        if jitter is not None:
            self.set_jitter(jitter, direction=direction)

    def set_jitter(self, ms: float, *, direction: Direction | None = None) -> None:
        if not (ms >= 0 and math.isfinite(ms)):
            raise ValueError(f"jitter must be 0 or more ms, not {ms}")
        for d in _directions(direction):
            self.faults[d].jitter = ms / 1000

    def set_bandwidth(
        self, bytes_per_s: float | None, *, direction: Direction | None = None
    ) -> None:
        """Cap each connection at ``bytes_per_s`` in the direction(s); None lifts the cap."""
        if bytes_per_s is not None and not (bytes_per_s > 0 and math.isfinite(bytes_per_s)):
            raise ValueError(f"bandwidth must be above 0 bytes/s, not {bytes_per_s}")
        for d in _directions(direction):
            self.faults[d].bandwidth = bytes_per_s
        self._notify()

    def stall(self, direction: Direction | None = None) -> None:
        """Stop forwarding (a blackhole): bytes are held, sockets stay open."""
        for d in _directions(direction):
            self.faults[d].stalled = True
        self._notify()

    def resume(self, direction: Direction | None = None) -> None:
        """Forward again, the held bytes first, in order."""
        for d in _directions(direction):
            self.faults[d].stalled = False
        self._notify()

    def cut(self) -> int:
        """Abort every connection now with RST on both sides (no FIN, no close frame; unsent
        bytes are lost). Returns how many were cut."""
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        self._cuts += 1
        self._cut_connections += len(conns)
        return len(conns)

    def down(self, seconds: float | None = None, mode: DownMode = DownMode.REFUSE) -> None:
        """Refuse (reset at once) or blackhole (hold, forward nothing) new connections, for
        ``seconds`` or until up(). Open connections are not touched: cut() or stall() them."""
        if seconds is not None and not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"down needs 0 or more seconds, not {seconds}")
        self.down_mode = mode
        self._down_until = math.inf if seconds is None else trio.current_time() + seconds
        self._notify()

    def up(self) -> None:
        self._down_until = -math.inf
        self._notify()

    @property
    def is_down(self) -> bool:
        return trio.current_time() < self._down_until

    def stats(self) -> ProxyStats:
        buffered = {d: 0 for d in Direction}
        for conn in self._conns:
            for pipe in conn.pipes:
                buffered[pipe.direction] += pipe.buffered
        return ProxyStats(
            connections=self._connections,
            active=len(self._conns),
            refused=self._refused,
            blackholed=self._blackholed,
            cuts=self._cuts,
            cut_connections=self._cut_connections,
            target_failures=self._target_failures,
            bytes_upstream=self._bytes[Direction.UPSTREAM],
            bytes_downstream=self._bytes[Direction.DOWNSTREAM],
            buffered_upstream=buffered[Direction.UPSTREAM],
            buffered_downstream=buffered[Direction.DOWNSTREAM],
            max_buffered=self._max_buffered,
        )

    # ---------------------------------------------------------------- internals
    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        for conn in self._conns:
            for pipe in conn.pipes:
                pipe.wake()

    def _count(self, direction: Direction, n: int) -> None:
        self._bytes[direction] += n

    def _note_buffered(self, n: int) -> None:
        self._max_buffered = max(self._max_buffered, n)

    async def _serve(
        self,
        listener: trio.SocketListener,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.listen_host, self.port = listener.socket.getsockname()[:2]
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError:  # out of file descriptors and the like: wait, go on
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._handle, stream)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.is_down and self.down_mode is DownMode.REFUSE:
            self._refused += 1
            _reset(client)
            return
        conn = _Conn(client)
        self._conns.add(conn)
        try:
            with conn.scope:
                if self.is_down:
                    self._blackholed += 1
                    while self.is_down:
                        event = self._changed
                        with trio.move_on_at(self._down_until):
                            await event.wait()
                try:
                    conn.target = await trio.open_tcp_stream(self.target_host, self.target_port)
                except OSError:
                    self._target_failures += 1
                    conn.abort()
                    return
                self._connections += 1
                up = _Pipe(self, conn, Direction.UPSTREAM, client, conn.target)
                down = _Pipe(self, conn, Direction.DOWNSTREAM, conn.target, client)
                conn.pipes = [up, down]
                async with trio.open_nursery() as nursery:
                    for pipe in conn.pipes:
                        nursery.start_soon(pipe.pump_in)
                        nursery.start_soon(pipe.pump_out)
        finally:
            self._conns.discard(conn)
            if conn.aborted:
                _reset(conn.target)  # opened after the cut began
            else:
                _close(client)
                _close(conn.target)


def _directions(direction: Direction | None) -> tuple[Direction, ...]:
    return BOTH if direction is None else (direction,)


@asynccontextmanager
async def open_fault_proxy(
    target_host: str,
    target_port: int,
    listen_host: str = "127.0.0.1",
    listen_port: int = 0,
    *,
    allow_remote: bool = False,
    buffer_size: int = DEFAULT_BUFFER,
    seed: int | None = None,
) -> AsyncIterator[FaultProxy]:
    """Listen on ``listen_host:listen_port`` (port 0: any; read ``proxy.port``) and forward
    each connection to ``target_host:target_port``. Raises RemoteTargetError for a
    non-loopback address unless ``allow_remote``. ``seed`` fixes the jitter."""
    target = loopback_host(target_host, allow_remote=allow_remote, what="target")
    listen = loopback_host(listen_host, allow_remote=allow_remote, what="listen address")
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be at least 1 byte, not {buffer_size}")
    proxy = FaultProxy(target, target_port, buffer_size=buffer_size, rng=random.Random(seed))
    listeners = await trio.open_tcp_listeners(listen_port, host=listen)  # OSError: in use
    for extra in listeners[1:]:
        await extra.aclose()
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy._serve, listeners[0])
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


if __name__ == "__main__":  # the command line lives in faultcli.py, beside this file
    import faultcli

    sys.exit(faultcli.main())
