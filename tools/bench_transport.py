"""What a WebSocket message costs the server: trio-websocket's own I/O, or the takeover.

    taskset -c 0 .venv/bin/python tools/bench_transport.py [--players 100] [--seconds 10]

Two paths, each over TLS and over plain TCP:

``tws``       trio-websocket as documented: a reader task and message queue per connection
              (``get_message()`` in a task per connection), and an awaited ``send_message()``
              per player per tick.
``takeover``  what the server does (``gameserver/_tws.py``): the handshake by trio-websocket,
              then :class:`~gameserver._tws.FastConnection`: one frame built per tick, written
              to every player without awaiting, and every socket read once per tick.

A server in this process sends a ``--size``-byte message to each of ``--players`` connections
every tick at ``--hz``, and reads ``--input-hz`` messages of ``--input-size`` bytes per second
from each. A load client in a child process (pinned to another core when there is one; no
WebSocket library) makes the connections, drains them and sends. Over a window of
``--seconds``, the server process's CPU time (utime + stime) divided by the messages it sent
and received is the cost per message. When the server is pinned to one core, each run first
waits (up to 60 s) for that core to be quiet, and the table shows how much of the core other
processes took during the window ("others"). All traffic is on 127.0.0.1, and every run ends
within its window plus the connection time. docs/transport.md says what the figures mean.
"""

from __future__ import annotations

import argparse
import os
import platform
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
import trio_websocket
import trustme
import wsproto
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from gameserver import _tws
from shared.wsframe import OP_BINARY, binary_frame, check_response, client_request, frame, new_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

SUBPROTOCOL = "gamesync.v1"
PATHS = ("tws", "takeover")


@attrs.define
class Counts:
    sent: int = 0
    received: int = 0
    skipped: int = 0  # takeover: a player's socket was still backed up, so its message was skipped
    late: int = 0  # tick slots missed by more than a period


# ------------------------------------------------------------------ the server side
async def _tick_loop(
    path: str, conns: list[Any], counts: Counts, hz: float, payload: bytes
) -> None:
    period = 1.0 / hz
    start = trio.current_time()
    n = 0
    while True:
        n += 1
        deadline = start + n * period
        now = trio.current_time()
        if now >= deadline + period:
            missed = int((now - deadline) / period)
            n += missed
            counts.late += missed
            deadline = start + n * period
        await trio.sleep_until(deadline)
        if path == "tws":
            for ws in conns:
                await ws.send_message(payload)
            counts.sent += len(conns)
        else:
            data = binary_frame(payload)
            for conn in conns:
                conn.read_available(16384)
                for _ in conn.messages():
                    counts.received += 1
                if conn.backlog:
                    counts.skipped += 1
                else:
                    conn.write(data)
                    counts.sent += 1


async def _handle(
    path: str,
    conns: list[Any],
    counts: Counts,
    ssl_context: ssl.SSLContext | None,
    stream: trio.abc.Stream,
) -> None:
    if path == "tws":
        async with trio.open_nursery() as nursery:  # holds trio-websocket's reader task
            request = await wrap_server_stream(nursery, stream, max_message_size=4096)
            ws: WebSocketConnection = await request.accept(subprotocol=SUBPROTOCOL)
            conns.append(ws)
            try:
                while True:
                    await ws.get_message()
                    counts.received += 1
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()
    else:
        deadline = trio.current_time() + 30
        # the takeover does TLS itself (an SSLObject over memory BIOs), on the raw TCP stream
        req = await _tws.receive_request(
            stream, ssl_context, max_message_size=4096, deadline=deadline
        )
        if not isinstance(req, _tws.UpgradeRequest):
            if req is not None:
                req.close()
            return
        conns.append(await req.accept(SUBPROTOCOL, 4096))
        await trio.sleep_forever()


async def measure(path: str, tls: bool, ca: trustme.CA, ca_file: Path, args: Any) -> dict[str, Any]:
    conns: list[Any] = []
    counts = Counts()
    listeners: list[Any]
    ctx: ssl.SSLContext | None = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
    if tls and path == "tws":
        listeners = await trio.open_ssl_over_tcp_listeners(
            0, ctx, host="127.0.0.1", https_compatible=True
        )
    else:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    first = listeners[0]
    raw = first.transport_listener if isinstance(first, trio.SSLListener) else first
    assert isinstance(raw, trio.SocketListener)
    port = raw.socket.getsockname()[1]
    client_cmd = [
        sys.executable,
        __file__,
        "--client",
        f"--port={port}",
        f"--players={args.players}",
        f"--input-hz={args.input_hz}",
        f"--input-size={args.input_size}",
        f"--seconds={args.seconds + 40}",  # a bound in case we die; we stop it before
    ]
    if tls:
        client_cmd.append(f"--ca-file={ca_file}")
    others = sorted(set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0))
    if others:  # the server is pinned (taskset): keep the client off its core
        client_cmd.append(f"--cpu={others[0]}")
    result: dict[str, Any] = {"path": path, "tls": tls, "players": args.players}
    client = subprocess.Popen(client_cmd)
    try:
        async with trio.open_nursery() as nursery:
            serve: Any = partial(trio.serve_listeners, partial(_handle, path, conns, counts, ctx))
            await nursery.start(serve, listeners)
            with trio.fail_after(30):
                while len(conns) < args.players:
                    if client.poll() is not None:
                        raise SystemExit(f"the load client exited with {client.returncode}")
                    await trio.sleep(0.05)
            payload = bytes(args.size)
            nursery.start_soon(_tick_loop, path, conns, counts, args.hz, payload)
            await trio.sleep(1.0)  # settle
            core = _pinned_core()
            stat0 = _core_times(core)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            sent0, recv0, late0 = counts.sent, counts.received, counts.late
            await trio.sleep(args.seconds)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            stat1 = _core_times(core)
            sent, received = counts.sent - sent0, counts.received - recv0
            client.terminate()  # the child we started, by its handle; then close our side
            client.wait(10)
            nursery.cancel_scope.cancel()
    finally:
        if client.poll() is None:
            client.terminate()
            client.wait(10)
    cpu, wall = cpu1 - cpu0, wall1 - wall0
    share = cpu / wall
    foreign: float | None = None
    if stat0 is not None and stat1 is not None:  # who else used the server's core
        usage = bl.core_usage(stat0, stat1)
        foreign = bl.foreign_share(usage["busy_pct"], 100 * share, usage["softirq_pct"])
    result.update(
        cpu_share=share,
        sent_per_s=sent / wall,
        received_per_s=received / wall,
        us_per_message=1e6 * cpu / max(1, sent + received),
        us_per_player_s=1e6 * cpu / wall / args.players,
        players_per_core=args.players / share if share else float("inf"),
        late_ticks=counts.late - late0,
        skipped=counts.skipped,
        others_pct=foreign,
    )
    return result


def _pinned_core() -> str | None:
    cpus = os.sched_getaffinity(0)
    return f"cpu{next(iter(cpus))}" if len(cpus) == 1 else None


def _wait_for_quiet(core: str | None, limit_pct: float = 10.0, patience: float = 60.0) -> None:
    """Wait (up to ``patience`` seconds) until the server's core is under ``limit_pct`` busy."""
    end = time.monotonic() + patience
    while core is not None and time.monotonic() < end:
        before = _core_times(core)
        time.sleep(1.0)
        after = _core_times(core)
        if before is None or after is None:
            return
        if bl.core_usage(before, after)["busy_pct"] < limit_pct:
            return


def _core_times(core: str | None) -> bl.CpuTimes | None:
    if core is None:
        return None
    try:
        return bl.parse_proc_stat(Path("/proc/stat").read_text()).get(core)
    except OSError:
        return None


# ------------------------------------------------------------------ the load client
def _client(args: Any) -> None:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        _client_loop(args)
    except (ConnectionError, ssl.SSLError):
        pass  # the server went away: the run is over


def _client_loop(args: Any) -> None:
    ctx = None
    if args.ca_file:
        ctx = ssl.create_default_context(cafile=args.ca_file)
    sel = selectors.DefaultSelector()
    socks: list[Any] = []
    for _ in range(args.players):
        raw = socket.create_connection(("127.0.0.1", args.port))
        sock: Any = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        key = new_key()
        sock.sendall(client_request(f"127.0.0.1:{args.port}", "/", key, [SUBPROTOCOL]))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("the server closed during the handshake")
            head += chunk
        check_response(head.partition(b"\r\n\r\n")[0], key, [SUBPROTOCOL])
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    message = frame(OP_BINARY, bytes(args.input_size), mask=os.urandom(4))
    pending = {sock: b"" for sock in socks}
    end = time.monotonic() + args.seconds
    interval = 1.0 / args.input_hz if args.input_hz > 0 else None
    next_send = time.monotonic()
    while time.monotonic() < end:
        if interval is not None and time.monotonic() >= next_send:
            next_send += interval
            for sock in socks:
                pending[sock] += message
                try:
                    sent = sock.send(pending[sock])
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    continue
                pending[sock] = pending[sock][sent:]
        for ready, _ in sel.select(timeout=0):
            sock = ready.fileobj
            try:
                while sock.recv(65536):
                    pass
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
        # batch: each round drains what a few ticks sent, as a real client's loop would
        wait = 0.02 if interval is None else min(0.02, max(0.0, next_send - time.monotonic()))
        time.sleep(wait)


# ------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--players", type=int, default=100, help="connections (default 100)")
    p.add_argument("--hz", type=float, default=20.0, help="ticks per second (default 20)")
    p.add_argument("--size", type=int, default=64, help="bytes sent per player per tick")
    p.add_argument("--input-hz", type=float, default=20.0, help="messages per player per s in")
    p.add_argument("--input-size", type=int, default=8, help="bytes per message in")
    p.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    p.add_argument("--path", choices=PATHS, action="append", help="default: both")
    p.add_argument("--plain-only", action="store_true")
    p.add_argument("--tls-only", action="store_true")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ca-file", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        _client(args)
        return
    tls_modes = [True, False]
    if args.plain_only:
        tls_modes = [False]
    if args.tls_only:
        tls_modes = [True]
    ca = trustme.CA()
    print(
        f"# CPython {platform.python_version()}, {ssl.OPENSSL_VERSION}, trio {trio.__version__},"
        f" trio-websocket {trio_websocket.__version__}, wsproto {wsproto.__version__};"
        f" {args.players} players, {args.hz:g} Hz, {args.size} B out per tick,"
        f" {args.input_hz:g}/s x {args.input_size} B in, {args.seconds:g} s window"
    )
    print(
        "| path | transport | server CPU % | msgs out/s | msgs in/s | µs CPU per message |"
        " µs CPU per player-second | players per core (linear) | late ticks |"
        " others on the core % |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        for tls in tls_modes:
            for path in args.path or PATHS:
                _wait_for_quiet(_pinned_core())
                r = trio.run(measure, path, tls, ca, ca_file, args)
                print(
                    f"| {path} | {'TLS' if tls else 'plain'} | {100 * r['cpu_share']:.1f} |"
                    f" {r['sent_per_s']:,.0f} | {r['received_per_s']:,.0f} |"
                    f" {r['us_per_message']:.1f} | {r['us_per_player_s']:,.0f} |"
                    f" {r['players_per_core']:,.0f} | {r['late_ticks']} |"
                    f" {'-' if r['others_pct'] is None else r['others_pct']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
