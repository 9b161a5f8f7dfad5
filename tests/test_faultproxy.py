"""tools/faultproxy.py and its command line tools/faultcli.py: the pure parts, and the proxy on real loopback TCP in front of a trio
echo server (port 0), timed on trio's MockClock where the test is about time."""

from __future__ import annotations

import functools
import importlib
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
# by name, not an import statement: tools/ is no package (as in tests/test_bench_tools.py)
fp: Any = importlib.import_module("faultproxy")
fc: Any = importlib.import_module("faultcli")


# ------------------------------------------------------------------ an echo server
class Echo:
    """A trio echo server on 127.0.0.1:0 that records how each connection ended."""

    def __init__(self) -> None:
        self.port = 0
        self.endings: list[str] = []  # "eof" (FIN) or "reset" (RST)
        self.accepted = 0
        self.sink_sent = 0  # bytes pushed by `flood`

    async def handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    self.endings.append("eof")
                    return
                if data.startswith(b"FLOOD "):
                    await self.flood(stream, int(data.split()[1]))
                    continue
                await stream.send_all(data)
        except trio.BrokenResourceError:
            self.endings.append("reset")
        finally:
            await stream.aclose()

    async def flood(self, stream: trio.SocketStream, total: int) -> None:
        """Send ``total`` bytes of a counting pattern as fast as the peer takes them."""
        block = 65536
        for offset in range(0, total, block):
            n = min(block, total - offset)
            await stream.send_all(pattern(offset, n))
            self.sink_sent += n


_BLOCK = os.urandom(65521)  # a prime length: a chunk out of place would not line up
_BLOCK2 = _BLOCK * 2


def pattern(offset: int, n: int) -> bytes:
    """Bytes offset..offset+n of an endless repetition of _BLOCK."""
    out = bytearray()
    while n:
        start = offset % len(_BLOCK)
        take = min(n, len(_BLOCK))
        out += _BLOCK2[start : start + take]
        offset += take
        n -= take
    return bytes(out)


@asynccontextmanager
async def open_echo() -> AsyncIterator[Echo]:
    echo = Echo()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), echo.handle, 0
        )
        echo.port = listeners[0].socket.getsockname()[1]
        yield echo
        nursery.cancel_scope.cancel()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    async with open_echo() as e:
        yield e


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[Any]:
    async with fp.open_fault_proxy("127.0.0.1", echo.port, seed=1) as p:
        yield p


async def connect(proxy: Any) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        assert data, f"EOF after {len(buf)} of {n} bytes"
        buf += data
    return bytes(buf)


async def round_trip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    return await receive_exactly(stream, len(data))


# ------------------------------------------------------------------ pure parts
def test_parse_duration_units_and_defaults() -> None:
    assert fc.parse_duration("80ms") == pytest.approx(0.08)
    assert fc.parse_duration("80", "ms") == pytest.approx(0.08)
    assert fc.parse_duration("1.5s") == 1.5
    assert fc.parse_duration("3") == 3.0
    assert fc.parse_duration("2m") == 120.0
    for bad in ("", "-1s", "fast", "3 parsecs", "1e999"):
        with pytest.raises(ValueError):
            fc.parse_duration(bad)


def test_parse_size_and_rate() -> None:
    assert fc.parse_size("256KiB") == 256 * 1024
    assert fc.parse_size("64KB") == 64_000
    assert fc.parse_size("4096") == 4096
    assert fc.parse_rate("64KB/s") == 64_000
    assert fc.parse_rate("1Mbit/s") == 125_000
    assert fc.parse_rate("2MiBps") == 2 * 1024**2
    assert fc.parse_rate("off") is None
    for bad in ("0", "0KB/s", "fast", "-5KB/s", "64 furlongs/s"):
        with pytest.raises(ValueError):
            fc.parse_rate(bad)


def test_parse_hostport() -> None:
    assert fc.parse_hostport("127.0.0.1:9443") == ("127.0.0.1", 9443)
    assert fc.parse_hostport("[::1]:80") == ("::1", 80)
    assert fc.parse_hostport(":9443") == ("127.0.0.1", 9443)
    for bad in ("127.0.0.1", "127.0.0.1:http", "h:70000"):
        with pytest.raises(ValueError):
            fc.parse_hostport(bad)


def test_only_loopback_unless_allowed() -> None:
    assert fp.loopback_host("127.0.0.1") == "127.0.0.1"
    assert fp.loopback_host("127.4.5.6") == "127.4.5.6"
    assert fp.loopback_host("localhost") == "127.0.0.1"
    assert fp.loopback_host("::1") == "::1"
    for remote in ("10.0.0.1", "0.0.0.0", "example.com", "8.8.8.8"):
        with pytest.raises(fp.RemoteTargetError, match="--allow-remote"):
            fp.loopback_host(remote)
        assert fp.loopback_host(remote, allow_remote=True) == remote


async def test_open_refuses_a_remote_target() -> None:
    with pytest.raises(fp.RemoteTargetError):
        async with fp.open_fault_proxy("192.0.2.1", 80):
            pass  # pragma: no cover


@given(
    rate=st.floats(100, 1e7),
    steps=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 200_000)), max_size=40),
)
def test_token_bucket_never_exceeds_its_rate(rate: float, steps: list[tuple[float, int]]) -> None:
    bucket = fp.TokenBucket.full(rate, 0.0)
    now = taken = 0.0
    for dt, want in steps:
        now += dt
        n, wait = bucket.take(want, now)
        assert 0 <= n <= want
        assert (n == 0) == (wait > 0)
        if n == 0:  # waiting as told is always enough
            n2, _ = bucket.take(want, now + wait + 1e-9)
            assert n2 > 0
            n, now = n2, now + wait + 1e-9
        taken += n
        assert taken <= bucket.capacity + rate * now + 1e-6


def test_parse_command() -> None:
    C, V, D = fc.Command, fc.Verb, fp.Direction
    assert fc.parse_command("latency 200") == C(V.LATENCY, pytest.approx(0.2))
    assert fc.parse_command("latency 1s downstream") == C(V.LATENCY, 1.0, D.DOWNSTREAM)
    assert fc.parse_command("bw 64KB/s up") == C(V.BANDWIDTH, 64_000.0, D.UPSTREAM)
    assert fc.parse_command("bandwidth off") == C(V.BANDWIDTH, None)
    assert fc.parse_command("stall downstream") == C(V.STALL, None, D.DOWNSTREAM)
    assert fc.parse_command("RESUME") == C(V.RESUME)
    assert fc.parse_command("down 3") == C(V.DOWN, 3.0)
    assert fc.parse_command("down") == C(V.DOWN, None)
    assert fc.parse_command("down 500ms blackhole") == C(V.DOWN, 0.5, None, fp.DownMode.BLACKHOLE)
    assert fc.parse_command("cut") == C(V.CUT)
    for bad in ("", "explode", "latency", "latency fast", "cut now", "stall sideways", "down 1 2"):
        with pytest.raises(ValueError):
            fc.parse_command(bad)


def test_parse_script_orders_steps_and_keeps_ties() -> None:
    steps = fc.parse_script("at 5s cut; at 5s down 3\nat 1s latency 200 # slow first\n\n")
    assert [(t, c.verb.value) for t, c in steps] == [
        (1.0, "latency"),
        (5.0, "cut"),
        (5.0, "down"),
    ]
    for bad in ("cut", "at cut", "at 5s explode", "at soon cut", "at 1s help"):
        with pytest.raises(ValueError):
            fc.parse_script(bad)


# ------------------------------------------------------------------ forwarding
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=20_000), min_size=1, max_size=12),
    jitter_ms=st.sampled_from([0, 3]),
)
async def test_data_passes_intact_whatever_the_chunking(
    chunks: list[bytes], jitter_ms: int
) -> None:
    async with open_echo() as echo, fp.open_fault_proxy("127.0.0.1", echo.port) as proxy:
        proxy.set_latency(jitter_ms, jitter=jitter_ms)
        stream = await connect(proxy)
        expected = b"".join(chunks)
        async with trio.open_nursery() as nursery:

            async def sender() -> None:
                for chunk in chunks:
                    await stream.send_all(chunk)

            nursery.start_soon(sender)
            assert await receive_exactly(stream, len(expected)) == expected
        await stream.aclose()
        stats = proxy.stats()
        assert stats.bytes_upstream == stats.bytes_downstream == len(expected)


async def test_half_close_is_forwarded(echo: Echo, proxy: Any) -> None:
    stream = await connect(proxy)
    assert await round_trip(stream, b"hello") == b"hello"
    await stream.send_eof()  # FIN upstream: the echo server sees EOF and closes, FIN back
    assert await stream.receive_some(10) == b""
    await stream.aclose()
    with trio.fail_after(5):
        while not echo.endings:
            await trio.sleep(0.01)
    assert echo.endings == ["eof"]
    assert proxy.stats().connections == 1


async def test_unreachable_target_resets_the_client() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with fp.open_fault_proxy("127.0.0.1", dead_port) as proxy:
        stream = await connect(proxy)
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some(10)
        assert proxy.stats().target_failures == 1


# ------------------------------------------------------------------ latency, jitter, bandwidth
async def test_latency_delays_each_direction(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    stream = await connect(proxy)
    assert await round_trip(stream, b"warm") == b"warm"
    proxy.set_latency(100)
    t0 = trio.current_time()
    assert await round_trip(stream, b"ping") == b"ping"
    rtt = trio.current_time() - t0
    assert 0.2 - 1e-9 <= rtt < 0.21  # 100 ms each way, and nothing else on the mock clock
    proxy.set_latency(0)
    proxy.set_latency(150, direction=fp.Direction.DOWNSTREAM)
    t0 = trio.current_time()
    assert await round_trip(stream, b"pong") == b"pong"
    assert 0.15 - 1e-9 <= trio.current_time() - t0 < 0.16
    await stream.aclose()


async def test_jitter_spreads_the_delay_but_keeps_the_order(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    proxy.set_latency(50, jitter=40, direction=fp.Direction.UPSTREAM)
    stream = await connect(proxy)
    received = bytearray()
    expected = b"".join(struct.pack(">I", i) for i in range(200))
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            while len(received) < len(expected):
                data = await stream.receive_some(65536)
                assert data
                received.extend(data)

        nursery.start_soon(reader)
        for i in range(200):
            await stream.send_all(struct.pack(">I", i))
            await trio.sleep(0.002)  # each word its own segment, each its own jitter
    assert bytes(received) == expected  # TCP never reorders; neither does the proxy
    await stream.aclose()


async def test_jitter_delays_vary_within_bounds(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    proxy.set_latency(50, jitter=20, direction=fp.Direction.UPSTREAM)
    stream = await connect(proxy)
    rtts = []
    for i in range(40):
        t0 = trio.current_time()
        assert await round_trip(stream, b"%d" % i) == b"%d" % i
        rtts.append(trio.current_time() - t0)
        await trio.sleep(0.1)  # past the last release: each delay is its own draw
    assert all(0.03 <= r <= 0.0701 for r in rtts)
    assert max(rtts) - min(rtts) > 0.01  # it does jitter
    await stream.aclose()


async def test_bandwidth_cap_holds_over_mocked_time(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    rate = 20_000
    proxy.set_bandwidth(rate, direction=fp.Direction.DOWNSTREAM)
    stream = await connect(proxy)
    total = 100_000
    t0 = trio.current_time()
    marks = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, os.urandom(total))

        async def sample() -> None:
            for _ in range(4):
                await trio.sleep(1.0)
                marks.append(proxy.stats().bytes_downstream)

        nursery.start_soon(sample)
        await receive_exactly(stream, total)
        elapsed = trio.current_time() - t0
    burst = rate * fp.BURST_SECONDS
    assert (total - burst) / rate <= elapsed <= total / rate + 0.1
    for k, delivered in enumerate(marks, start=1):  # at each second: within a burst of rate*t
        assert rate * k - burst - 1 <= delivered <= rate * k + burst
    assert proxy.stats().bytes_upstream == total  # the upstream was not capped
    proxy.set_bandwidth(None)
    t0 = trio.current_time()
    assert await round_trip(stream, b"x" * 50_000) == b"x" * 50_000
    assert trio.current_time() - t0 < 0.01
    await stream.aclose()


# ------------------------------------------------------------------ stall, cut, down
async def test_stall_holds_bytes_and_resume_delivers_them_in_order(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    stream = await connect(proxy)
    assert await round_trip(stream, b"before") == b"before"
    proxy.stall()
    for i in range(10):
        await stream.send_all(b"%03d;" % i)
    with trio.move_on_after(30) as waited:
        await stream.receive_some(100)
    assert waited.cancelled_caught  # 30 s of silence: nothing got through
    assert proxy.stats().buffered_upstream == 40
    assert echo.endings == []  # the sockets stayed open
    proxy.resume()
    expected = b"".join(b"%03d;" % i for i in range(10))
    assert await receive_exactly(stream, len(expected)) == expected
    proxy.stall(fp.Direction.DOWNSTREAM)  # one direction: the target still gets the bytes
    await stream.send_all(b"half")
    with trio.fail_after(5):
        while proxy.stats().bytes_upstream < 6 + 40 + 4:
            await trio.sleep(0.01)
    assert proxy.stats().buffered_downstream == 4
    proxy.resume(fp.Direction.DOWNSTREAM)
    assert await receive_exactly(stream, 4) == b"half"
    await stream.aclose()


async def test_a_stall_holds_the_fin_too(echo: Echo, proxy: Any) -> None:
    stream = await connect(proxy)
    assert await round_trip(stream, b"x") == b"x"
    proxy.stall(fp.Direction.UPSTREAM)
    await stream.send_eof()
    await trio.sleep(0.2)
    assert echo.endings == []
    proxy.resume()
    with trio.fail_after(5):
        while not echo.endings:
            await trio.sleep(0.01)
    assert echo.endings == ["eof"]
    await stream.aclose()


async def test_cut_resets_every_connection_with_no_fin(echo: Echo, proxy: Any) -> None:
    streams = [await connect(proxy) for _ in range(3)]
    for s in streams:
        assert await round_trip(s, b"hi") == b"hi"
    proxy.stall(fp.Direction.DOWNSTREAM)  # bytes in flight are dropped by the cut
    await streams[0].send_all(b"lost")
    with trio.fail_after(5):
        while proxy.stats().buffered_downstream < 4:
            await trio.sleep(0.01)
    assert proxy.cut() == 3
    for s in streams:
        # RST: receive raises (ECONNRESET) instead of returning b"" (a FIN)
        with pytest.raises(trio.BrokenResourceError) as info:
            await s.receive_some(10)
        assert isinstance(info.value.__cause__, ConnectionResetError)
        await s.aclose()
    with trio.fail_after(5):
        while len(echo.endings) < 3:
            await trio.sleep(0.01)
    assert echo.endings == ["reset"] * 3  # the server side was reset too
    stats = proxy.stats()
    assert (stats.cuts, stats.cut_connections, stats.active) == (1, 3, 0)
    proxy.resume()
    fresh = await connect(proxy)  # a cut is not an outage: new connections work
    assert await round_trip(fresh, b"again") == b"again"
    await fresh.aclose()


async def test_down_refuses_then_up_accepts(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    proxy.down()
    assert proxy.is_down
    refused = await connect(proxy)  # the kernel accepts; the proxy resets at once
    with pytest.raises(trio.BrokenResourceError):
        await refused.receive_some(10)
    await refused.aclose()
    assert echo.accepted == 0
    proxy.up()
    ok = await connect(proxy)
    assert await round_trip(ok, b"up") == b"up"
    await ok.aclose()
    proxy.down(3)  # for 3 s: then up by itself
    await trio.sleep(2.9)
    early = await connect(proxy)
    with pytest.raises(trio.BrokenResourceError):
        await early.receive_some(10)
    await early.aclose()
    await trio.sleep(0.2)
    assert not proxy.is_down
    late = await connect(proxy)
    assert await round_trip(late, b"back") == b"back"
    await late.aclose()
    stats = proxy.stats()
    assert (stats.refused, stats.connections) == (2, 2)


async def test_down_blackhole_holds_new_connections_until_up(
    echo: Echo, proxy: Any, autojump_clock: trio.testing.MockClock
) -> None:
    proxy.down(5, fp.DownMode.BLACKHOLE)
    stream = await connect(proxy)
    await stream.send_all(b"waiting")
    t0 = trio.current_time()
    assert await receive_exactly(stream, 7) == b"waiting"
    assert trio.current_time() - t0 >= 5.0 - 1e-6  # nothing moved while down
    stats = proxy.stats()
    assert (stats.blackholed, stats.refused, stats.connections) == (1, 0, 1)
    await stream.aclose()


async def test_buffer_bound_holds_under_a_stalled_direction(
    echo: Echo, autojump_clock: trio.testing.MockClock
) -> None:
    bound = 64 * 1024
    total = 16 * 1024 * 1024  # far beyond what the kernel buffers on loopback (~200 KB)
    async with fp.open_fault_proxy("127.0.0.1", echo.port, buffer_size=bound) as proxy:
        stream = await connect(proxy)
        proxy.stall(fp.Direction.DOWNSTREAM)
        await stream.send_all(b"FLOOD %d" % total)
        await trio.sleep(10)
        sent = echo.sink_sent
        await trio.sleep(10)
        assert echo.sink_sent == sent < total  # the server is blocked: backpressure
        stats = proxy.stats()
        assert stats.buffered_downstream == bound
        assert stats.max_buffered <= bound
        proxy.resume()
        offset = 0
        while offset < total:  # everything arrives, in order, once resumed
            data = await stream.receive_some(1 << 20)
            assert data == pattern(offset, len(data))
            offset += len(data)
        assert proxy.stats().max_buffered <= bound
        await stream.aclose()


# ------------------------------------------------------------------ the command line
def _run_cli(
    *args: str, timeout: float = 20, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOLS / "faultproxy.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "127.0.0.1:0"],
        ["--listen", "127.0.0.1", "--target", "127.0.0.1:1"],
        ["--listen", ":0", "--target", "127.0.0.1:1", "--latency", "fast"],
        ["--listen", ":0", "--target", "127.0.0.1:1", "--bandwidth", "0"],
        ["--listen", ":0", "--target", "127.0.0.1:1", "--script", "at 1s explode"],
        ["--listen", ":0", "--target", "10.1.2.3:80"],
        ["--listen", ":0", "--target", "127.0.0.1:1", "--frobnicate"],
    ],
)
def test_cli_bad_arguments_are_one_line_and_exit_2(args: list[str]) -> None:
    proc = _run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("faultproxy: error: ")
    assert "Traceback" not in proc.stderr


def _echo_process_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    return srv, srv.getsockname()[1]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _connect_retry(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_cli_script_cuts_and_the_run_stops_by_itself() -> None:
    srv, target = _echo_process_server()
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TOOLS / "faultproxy.py"),
            "--listen",
            f"127.0.0.1:{port}",
            "--target",
            f"127.0.0.1:{target}",
            "--latency",
            "10ms",
            "--script",
            "at 1s cut; at 1s down 30",
            "--duration",
            "2s",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = _connect_retry(port, time.monotonic() + 10)
        server_side, _ = srv.accept()
        client.sendall(b"hi")
        assert server_side.recv(10) == b"hi"
        ready, _, _ = select.select([client], [], [], 10)  # the cut at 1 s
        assert ready
        with pytest.raises(ConnectionResetError):
            client.recv(10)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.close()
    assert proc.returncode == 0, err
    assert err == ""
    lines = out.splitlines()
    assert "listening on 127.0.0.1:" in lines[0]
    assert any(line.endswith("cut 1 connection(s)") for line in lines)
    assert any("down (refuse new connections) for 30 s" in line for line in lines)
    assert "stopped:" in lines[-1] and "cuts 1 (1 connections)" in lines[-1]


def test_cli_console_commands() -> None:
    srv, target = _echo_process_server()
    script = "help\nlatency 200 downstream\nbogus\nbandwidth 64KB/s\nstats\nquit\n"
    try:
        proc = _run_cli("--listen", ":0", "--target", f"127.0.0.1:{target}", stdin=script)
    finally:
        srv.close()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "commands (DIR: upstream|downstream" in out
    assert "latency 200 ms, downstream" in out
    assert "error: unknown command 'bogus' (try help)" in out
    assert "bandwidth 64000 bytes/s per connection, both directions" in out
    assert "connections 0 (active 0" in out
    assert out.splitlines()[-1].split("] ", 1)[1].startswith("stopped: ")


def test_cli_listen_address_in_use_is_one_line() -> None:
    srv, port = _echo_process_server()
    try:
        proc = _run_cli("--listen", f"127.0.0.1:{port}", "--target", "127.0.0.1:1")
    finally:
        srv.close()
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
