"""`gameserver serve --workers 2` as a user runs it: a supervisor and two worker processes.

Every test bounds its waits and kills the processes it started (the supervisor and the
workers, by PID) however it ends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import attrs
import psutil  # type: ignore[import-untyped]
import pytest
import trio
from prometheus_client.registry import CollectorRegistry
from trio_websocket import ConnectionClosed

from clients.client import Lost, Rejoined, open_game_client
from gameserver.metrics import serve_metrics
from gameserver.supervisor_metrics import http_get
from shared.messages import Close, Delta, Redirect
from tests.integration.wsclient import JoinRefused, TestClient, connect

WORKER_LINE = re.compile(r"^worker (\d+) \(pid (\d+)\) listening on (\S+)$")


@attrs.define
class Cluster:
    """A running supervisor: its process, every line it printed, its workers by index."""

    proc: trio.Process
    lines: list[str]
    state: Path
    pids: set[int] = attrs.Factory(set)  # every worker pid seen: killed at the end
    #: the supervisor's private folder for the directory's socket (removed at the end: a
    #: supervisor killed with SIGKILL cannot)
    sock_dir: Path | None = None
    changed: trio.Event = attrs.Factory(trio.Event)

    def workers(self) -> dict[int, tuple[int, str]]:
        """The latest (pid, url) of each worker."""
        found: dict[int, tuple[int, str]] = {}
        for line in self.lines:
            m = WORKER_LINE.match(line)
            if m:
                found[int(m[1])] = (int(m[2]), m[3])
        return found

    def url(self) -> str:
        return next(line for line in self.lines if line.startswith("listening on ")).split()[-1]

    def metrics_port(self) -> int:
        line = next(x for x in self.lines if x.startswith("metrics on ") and "all workers" in x)
        return int(line.split()[2].rsplit(":", 1)[1].split("/")[0])

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.state / "dev-ca.pem"))

    async def wait_for(self, pattern: str, after: int = 0, timeout: float = 30) -> re.Match[str]:
        with trio.fail_after(timeout):
            while True:
                for line in self.lines[after:]:
                    if m := re.search(pattern, line):
                        return m
                await self.changed.wait()


async def _read(cluster: Cluster) -> None:
    assert cluster.proc.stdout is not None
    buf = b""
    while chunk := await cluster.proc.stdout.receive_some(4096):
        buf += chunk
        *done, buf = buf.split(b"\n")
        for raw in done:
            line = raw.decode()
            cluster.lines.append(line)
            if m := WORKER_LINE.match(line):
                cluster.pids.add(int(m[2]))
        cluster.changed.set()
        cluster.changed = trio.Event()


def _kill_all(cluster: Cluster) -> None:
    try:  # the workers it started that never printed a line too
        cluster.pids |= {c.pid for c in psutil.Process(cluster.proc.pid).children()}
    except psutil.Error:
        pass
    for pid in [cluster.proc.pid, *cluster.pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
async def start(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[object]:
    started: list[Cluster] = []

    async def _start(*extra: str) -> Cluster:
        state = tmp_path / "state"
        proc = await trio.lowlevel.open_process(
            [
                sys.executable, "-m", "gameserver", "serve", "--workers", "2",
                "--port", "0", "--state-dir", str(state), "--log-level", "WARNING",
                "--no-web", *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        cluster = Cluster(proc, [], state)
        started.append(cluster)
        nursery.start_soon(_read, cluster)
        await cluster.wait_for("^listening on ", timeout=60)
        assert set(cluster.workers()) == {0, 1}
        argv = psutil.Process(cluster.workers()[0][0]).cmdline()
        sock = next(a for a in argv if a.startswith("--directory=unix:"))
        cluster.sock_dir = Path(sock.removeprefix("--directory=unix:")).parent
        assert cluster.sock_dir.stat().st_mode & 0o777 == 0o700
        return cluster

    try:
        yield _start
    finally:
        for cluster in started:
            _kill_all(cluster)
            with trio.move_on_after(5):
                await cluster.proc.wait()
            if cluster.sock_dir is not None:
                shutil.rmtree(cluster.sock_dir, ignore_errors=True)


async def _token(state: Path, player: str) -> str:
    result = await trio.run_process(
        [sys.executable, "-m", "gameserver", "token", "--state-dir", str(state),
         "--player", player],
        capture_stdout=True,
    )  # fmt: skip
    return result.stdout.decode().strip()


async def _get(port: int, path: str) -> tuple[int, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        body = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                body += chunk
    head, _, rest = body.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest.decode()


def _listening_ports(pid: int) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


async def _join_at(
    cluster: Cluster, nursery: trio.Nursery, url: str, room: str, who: str
) -> tuple[TestClient, str]:
    """JOIN at ``url``, following the workers' REDIRECTs (the room lives on one worker):
    the client, and the URL of the worker that seated it."""
    token = await _token(cluster.state, who)
    for _ in range(3):
        try:
            return await connect(nursery, url, cluster.ssl(), room, who, token=token), url
        except JoinRefused as refused:
            if not isinstance(refused.msg, Redirect):
                raise
            assert refused.msg.room == room
            url = refused.msg.url
    raise AssertionError(f"more than 3 redirects for room {room!r}")


async def _join(
    cluster: Cluster, nursery: trio.Nursery, url: str, room: str, who: str
) -> TestClient:
    return (await _join_at(cluster, nursery, url, room, who))[0]


async def test_workers_share_the_port_report_metrics_and_drain_on_sigterm(
    start: object, nursery: trio.Nursery
) -> None:
    cluster: Cluster = await start("--metrics-port", "0", "--drain-timeout", "1")  # type: ignore[operator]
    base = int(cluster.url().rsplit(":", 1)[1])
    workers = cluster.workers()
    (pid0, url0), (pid1, url1) = workers[0], workers[1]
    assert pid0 != pid1 and url0 != url1 != cluster.url()
    # each worker listens on its own port, the shared one, and its own metrics port
    own = [int(url0.rsplit(":", 1)[1]), int(url1.rsplit(":", 1)[1])]
    assert {own[0], base} <= _listening_ports(pid0)
    assert {own[1], base} <= _listening_ports(pid1)
    assert own[0] not in _listening_ports(pid1)
    # a player on each worker's own port, and three on the shared one
    a = await _join(cluster, nursery, url0, "on-w0", "alice")
    b = await _join(cluster, nursery, url1, "on-w1", "bob")
    shared = [await _join(cluster, nursery, cluster.url(), f"s{i}", f"p{i}") for i in range(3)]
    for client in (a, b, *shared):
        await client.wait_tick(client.replica.tick + 2)
    # the aggregate metrics: every sample labelled with its worker
    status, text = await _get(cluster.metrics_port(), "/metrics")
    assert status == 200
    players = dict(re.findall(r'^gameserver_players\{worker="(\d)"\} (\S+)$', text, re.M))
    assert set(players) == {"0", "1"} and sum(float(v) for v in players.values()) == 5
    assert float(players["0"]) >= 1 and float(players["1"]) >= 1
    assert 'gameserver_worker_up{worker="0"} 1.0' in text
    assert 'gameserver_worker_restarts_total{worker="1"} 0.0' in text
    assert (await _get(cluster.metrics_port(), "/readyz"))[0] == 200
    assert (await _get(cluster.metrics_port(), "/healthz"))[0] == 200
    # SIGTERM: every worker drains (the players get 1001 after --drain-timeout), exit 0
    cluster.proc.send_signal(signal.SIGTERM)
    for client in (a, b, *shared):
        with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
            while True:
                msg = await client.pump()
                if isinstance(msg, Close):
                    assert msg.code == 1001
        assert closed.value.reason.code == 1001
    with trio.fail_after(15):
        assert await cluster.proc.wait() == 0
    assert not any(psutil.pid_exists(p) for p in (pid0, pid1))
    assert cluster.sock_dir is not None and not cluster.sock_dir.exists()  # cleaned up
    assert cluster.proc.stderr is not None
    err = (await cluster.proc.stderr.receive_some(65536)).decode()
    assert "Traceback" not in err


async def test_a_worker_killed_is_restarted_and_the_other_workers_rooms_are_unaffected(
    start: object, nursery: trio.Nursery
) -> None:
    cluster: Cluster = await start("--metrics-port", "0")  # type: ignore[operator]
    workers = cluster.workers()
    # rooms are placed on the least-loaded worker: the second room goes to the other worker
    # (dialling a worker's own port, so that the URL a player ends at names its worker)
    first = workers[0][1]
    steady, steady_url = await _join_at(cluster, nursery, first, "steady", "carol")
    doomed, doomed_url = await _join_at(cluster, nursery, first, "doomed", "dave")
    assert steady_url != doomed_url
    ((index, (pid0, url0)),) = [(i, w) for i, w in workers.items() if w[1] == doomed_url]
    other = 1 - index
    await steady.wait_tick(steady.replica.tick + 2)
    ticks: list[int] = []
    restarted = trio.Event()

    async def watch_steady() -> None:
        # every message the player on worker 1 gets: a per-tick delta, each the next tick
        while not restarted.is_set():
            msg = await steady.pump()
            if isinstance(msg, Delta):
                assert msg.base is None
                ticks.append(msg.tick)

    async def kill_and_wait() -> None:
        seen = len(cluster.lines)
        os.kill(pid0, signal.SIGKILL)
        m = await cluster.wait_for(rf"^worker {index} \(pid (\d+)\) listening on (\S+)$", seen)
        assert int(m[1]) != pid0 and m[2] == url0  # a new process, the same port
        restarted.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            inner.start_soon(watch_steady)
            inner.start_soon(kill_and_wait)
    # the player on the killed worker lost its connection; the other's player saw every tick
    with trio.fail_after(5), pytest.raises(ConnectionClosed):
        while True:
            await doomed.pump()
    assert len(ticks) >= 10  # the restart took at least the 0.5 s backoff
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert steady.replica.tick == ticks[-1]
    # the killed worker serves again, on its own URL; the directory still names it for its
    # room (the same node id), so a join for that room at the other worker is redirected
    # there, and the restarted worker adopts the lease
    again, at = await _join_at(cluster, nursery, workers[other][1], "doomed", "dave")
    assert at == url0
    await again.wait_tick(again.replica.tick + 2)
    status, text = await _get(cluster.metrics_port(), "/metrics")
    assert status == 200
    assert f'gameserver_worker_restarts_total{{worker="{index}"}} 1.0' in text
    assert f'gameserver_worker_restarts_total{{worker="{other}"}} 0.0' in text
    cluster.proc.send_signal(signal.SIGINT)
    with trio.fail_after(15):
        assert await cluster.proc.wait() == 0


async def test_an_sdk_player_of_a_killed_worker_is_seated_again(
    start: object, nursery: trio.Nursery
) -> None:
    """The Python SDK (dialling worker 0's own port: it ends at the room's worker, so the test
    knows which) loses its worker to kill -9. The SDK reconnects
    to its worker's URL (refused until the restart), then RESUMEs there: the restarted worker
    adopts the room's lease (the same node id) but the seat is gone (4013), so the SDK JOINs
    the room again, on the worker the directory names, and plays on."""
    cluster: Cluster = await start()  # type: ignore[operator]
    workers = cluster.workers()
    token = await _token(cluster.state, "erin")
    with trio.fail_after(60):
        async with open_game_client(
            workers[0][1], "phoenix", token=token, ssl_context=cluster.ssl()
        ) as erin:
            (index,) = [i for i, (_, url) in workers.items() if url == erin.url]
            pid, url = workers[index]
            first = erin.player
            list(erin.iter_connection_events())
            seen = len(cluster.lines)
            os.kill(pid, signal.SIGKILL)
            events = []
            while not isinstance(event := await erin.next_connection_event(), Rejoined):
                events.append(event)
                assert not (isinstance(event, Lost) and not event.rejoining), event
            await cluster.wait_for(rf"^worker {index} \(pid (\d+)\) listening on ", seen)
            assert any(isinstance(e, Lost) and e.rejoining for e in events), events
            assert erin.joined.room == "phoenix" and event.previous_player == first
            assert erin.url == url  # the room's worker, restarted on its own port
            seq = await erin.send_input(dx=1.0)
            await erin.wait_for_ack(seq)
    cluster.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        assert await cluster.proc.wait() == 0


async def test_workers_leave_when_the_supervisor_is_killed(start: object) -> None:
    cluster: Cluster = await start("--drain-timeout", "0.5")  # type: ignore[operator]
    pids = [pid for pid, _ in cluster.workers().values()]
    os.kill(cluster.proc.pid, signal.SIGKILL)
    with trio.fail_after(15):
        while any(_alive(p) for p in pids):
            await trio.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gameserver", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "-2"], "--workers"),
        (["--workers", "many"], "--workers"),
        (["--workers", "1.5"], "--workers"),
        (["--workers", "9999"], "--workers"),
        (["--workers", "2", "--public-url", "https://x"], "--public-url"),
        (["--workers", "2", "--port", "65535"], "--port 65535"),
        (["--workers", "2", "--port", "9000", "--metrics-port", "9002"], "overlap"),
    ],
)
def test_a_bad_workers_setting_is_one_line(flags: list[str], named: str, tmp_path: Path) -> None:
    done = _run_cli("serve", "--port", "0", "--state-dir", str(tmp_path), *flags)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and named in done.stderr, done.stderr
    assert not (tmp_path / "secret.key").exists()  # refused before anything was made


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_a_port_in_use_is_one_line(busy_port: int, tmp_path: Path) -> None:
    # the second worker's own port (base + 2) is taken
    base = str(busy_port - 2)
    done = _run_cli(
        "serve", "--workers", "2", "--port", base, "--state-dir", str(tmp_path),
        "--log-level", "WARNING",
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"127.0.0.1:{busy_port}" in done.stderr and "already in use" in done.stderr


@pytest.mark.parametrize("tls", [False, True])
async def test_the_supervisor_fetches_a_workers_endpoint_over_http_and_https(
    tls: bool, nursery: trio.Nursery, server_ssl: ssl.SSLContext
) -> None:
    calls = 0

    async def scrape() -> bytes:
        nonlocal calls
        calls += 1
        return b"# the aggregate\n"

    port = await nursery.start(
        partial(
            serve_metrics,
            "127.0.0.1",
            0,
            CollectorRegistry(auto_describe=False),
            ready=lambda: False,
            ssl_context=server_ssl if tls else None,
            scrape=scrape,
        )
    )
    client = None
    if tls:
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    assert await http_get("127.0.0.1", port, "/metrics", client, timeout=5) == (
        200,
        b"# the aggregate\n",
    )
    assert calls == 1
    got = await http_get("127.0.0.1", port, "/readyz", client, timeout=5)
    assert got is not None and got[0] == 503
    closed = _free_port()
    assert await http_get("127.0.0.1", closed, "/metrics", client, timeout=5) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
