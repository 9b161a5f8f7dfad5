"""``gameserver serve --workers N``: a supervisor process and N worker processes (trio layer).

The CLI has already checked every setting and made the state directory, the development
certificate and the signing secret (once, so the workers never race to make them). Then
:func:`supervise`:

1. reserves the ports: the shared base port ``--port`` (every worker listens on it with
   ``SO_REUSEPORT``: the kernel spreads new connections over them), each worker's own port
   (``base + 1 + i``; free ones with ``--port 0``) and, with ``--metrics-port M``, ``M`` (the
   aggregate) and ``M + 1 + i`` (each worker's own metrics, admin API and dashboard). They
   are held (bound, never listening) for the supervisor's life, so a restarted worker gets
   the same ports back, and a port in use is one line before anything starts;
2. unless ``--directory`` was given, serves an :class:`EmbeddedDirectory` on a Unix socket in
   a private temporary directory (0700), which the workers use (``--directory unix:PATH``);
3. starts each worker: ``python -m gameserver serve <the user's flags> --port=OWN
   --shared-port=BASE --worker-index=I --node-id=<node>/wI --public-url=URL
   [--directory=unix:PATH] [--metrics-port=M+1+I]`` in its own session (a terminal's
   Ctrl-C reaches the supervisor only, which forwards it), stdout read by the supervisor,
   stderr (the logs) shared. ``<node>`` is ``--node-id`` or the host name; the URL is
   ``--public-url`` with the worker's port, or its listening address;
4. once every worker printed its ready line: serves the aggregate ``/metrics`` (every
   worker's samples with a ``worker="i"`` label, plus ``gameserver_worker_up`` and
   ``gameserver_worker_restarts_total``), ``/healthz`` (some worker serves) and ``/readyz``
   (every worker is ready) on ``M``; prints ``worker I (pid P) listening on URL`` for each
   (its public URL, as the directory gives it out) and, last, ``listening on
   wss://HOST:BASE`` (the listening address; the ready line);
5. restarts a worker that exits (0.5 s doubling to 10 s; back to 0.5 s after 30 s up), with
   the same node id and ports, so it adopts the leases naming it. A worker that exits before
   it ever listened, during start-up, stops everything (its error is on stderr);
6. forwards SIGTERM and SIGINT to every worker (the first SIGTERM drains them; a second, or
   a SIGINT, stops them at once), waits for them (killing any still there after
   ``--drain-timeout`` + ``--close-timeout`` + 10 s) and exits 0.

Decisions (ports, command lines, restarts, readiness) are pure, in :mod:`gameserver.workers`.
A worker watches its parent: if the supervisor disappears (``kill -9``), the worker drains
and exits (:func:`watch_parent`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from gameserver.directory.embedded import EmbeddedDirectory
from gameserver.directory.remote import serve_directory
from gameserver.directory.types import DirectoryLimits
from gameserver.metrics import serve_metrics
from gameserver.supervisor_metrics import http_get, merge_worker_metrics
from gameserver.workers import (
    GiveUp,
    Restart,
    State,
    Supervision,
    WorkerOutput,
    WorkerReady,
    WorkerSpec,
    check_disjoint,
    describe_exit,
    format_url,
    plan_workers,
    wanted_ports,
)

log = logging.getLogger("gameserver.supervisor")

#: seconds between polls of each worker's /readyz (with --metrics-port)
PROBE_INTERVAL = 1.0
#: a worker's stdout line is cut at this many bytes
MAX_OUTPUT_LINE = 4096


class WorkerStartupError(Exception):
    """The workers could not start (exit status 1); ``str()`` is the one line to print."""


class PortError(Exception):
    """A port could not be reserved: ``flag`` names the setting, ``error`` the reason."""

    def __init__(self, flag: str, host: str, port: int, error: OSError) -> None:
        super().__init__(f"{flag} {host}:{port}: {error}")
        self.flag, self.host, self.port, self.error = flag, host, port, error


@attrs.frozen
class SupervisorOptions:
    """What the supervisor needs of the resolved settings (built by the CLI)."""

    count: int
    args: tuple[str, ...]  # the user's serve flags, minus those set per worker
    host: str
    port: int
    secure: bool
    metrics_port: int | None
    metrics_host: str
    metrics_tls: bool
    public_url: str | None
    node_id: str | None
    directory: str | None
    drain_timeout: float
    close_timeout: float
    limits: DirectoryLimits
    web: bool = False
    #: the server's certificate, for the aggregate endpoint with --metrics-tls
    ssl_context: ssl.SSLContext | None = None
    executable: str = sys.executable

    @property
    def scheme(self) -> str:
        return "wss" if self.secure else "ws"


# ------------------------------------------------------------------ ports
class _Reservation:
    """Ports held bound (never listening) for the supervisor's life."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def reserve(self, flag: str, host: str, port: int, *, shared: bool = False) -> int:
        try:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise PortError(flag, host, port, exc) from None
        seen: set[tuple[int, object]] = set()
        for family, kind, proto, _, addr in infos:
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if shared:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((addr[0], port, *addr[2:]))
            except OSError as exc:
                sock.close()
                raise PortError(flag, host, port, exc) from None
            self.sockets.append(sock)
            port = port or sock.getsockname()[1]  # 0: the first address picks; the rest follow
        return port

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@attrs.frozen
class Ports:
    base: int
    own: tuple[int, ...]
    metrics: int | None
    worker_metrics: tuple[int, ...] | None


def _reserve_ports(opts: SupervisorOptions, held: _Reservation) -> Ports:
    own = wanted_ports(opts.port, opts.count)
    mwanted = None
    if opts.metrics_port is not None:
        mwanted = wanted_ports(opts.metrics_port, opts.count, "--metrics-port")
        check_disjoint([opts.port, *own], [opts.metrics_port, *mwanted])
    base = held.reserve("--port", opts.host, opts.port, shared=True)
    own_ports = tuple(held.reserve("--port", opts.host, p) for p in own)
    metrics = worker_metrics = None
    if opts.metrics_port is not None and mwanted is not None:
        metrics = held.reserve("--metrics-port", opts.metrics_host, opts.metrics_port)
        worker_metrics = tuple(
            held.reserve("--metrics-port", opts.metrics_host, p) for p in mwanted
        )
    return Ports(base, own_ports, metrics, worker_metrics)


# ------------------------------------------------------------------ the worker's side
async def open_shared_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """A worker's listeners on the shared base port, with ``SO_REUSEPORT``: every worker
    listens on it and the kernel spreads new connections over them."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(addr)
                sock.listen(socket.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


async def watch_parent(parent: int, interval: float = 1.0) -> None:
    """In a worker: once the supervisor (pid ``parent``) is gone, SIGTERM ourselves (drain)."""
    while os.getppid() == parent:
        await trio.sleep(interval)
    log.warning("the supervisor (pid %d) is gone; draining", parent)
    os.kill(os.getpid(), signal.SIGTERM)


# ------------------------------------------------------------------ the supervisor
def supervise(opts: SupervisorOptions) -> int:
    """Run the workers until a signal stops them (see the module docstring); exit status 0.
    Raises PortError (a port is in use...), PlanError (settings that cannot be laid out) or
    WorkerStartupError (a worker failed to start)."""
    held = _Reservation()
    sock_dir: Path | None = None
    try:
        ports = _reserve_ports(opts, held)
        directory = None  # the user's --directory reaches the workers as the user gave it
        if opts.directory is None:
            sock_dir = _private_dir()
            directory = f"unix:{sock_dir / 'directory.sock'}"
        specs = plan_workers(
            executable=opts.executable,
            args=opts.args,
            host=opts.host,
            scheme=opts.scheme,
            shared_port=ports.base,
            ports=ports.own,
            metrics_ports=ports.worker_metrics,
            directory=directory,
            node_id=opts.node_id or socket.gethostname(),
            public_url=opts.public_url,
        )
        trio.run(_supervise, opts, ports, specs, sock_dir)
    finally:
        held.close()
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)
    return 0


def _private_dir() -> Path:
    """A 0700 directory for the directory's socket, with a path short enough for one
    (108 bytes on Linux): under $TMPDIR if that is short, else /tmp."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="gameserver-", dir=base))


@attrs.define
class _Run:
    """The supervisor's running state, shared by its tasks."""

    opts: SupervisorOptions
    ports: Ports
    sup: Supervision
    nursery: trio.Nursery
    stop: trio.Event = attrs.Factory(trio.Event)
    changed: trio.Event = attrs.Factory(trio.Event)
    failure: str | None = None

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


def _say(line: str) -> None:
    print(line, flush=True)


async def _supervise(
    opts: SupervisorOptions, ports: Ports, specs: Sequence[WorkerSpec], sock_dir: Path | None
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            run = _Run(opts, ports, Supervision(specs), nursery)
            if sock_dir is not None:
                embedded = EmbeddedDirectory(opts.limits, clock=trio.current_time)
                path = str(sock_dir / "directory.sock")
                await nursery.start(
                    partial(serve_directory, embedded, path, clock=trio.current_time)
                )
            nursery.start_soon(_watch_signals, run, signals)
            for spec in specs:
                nursery.start_soon(_run_worker, run, spec)
            while not (run.sup.all_ready() or run.sup.stopping):
                await run.changed.wait()
            if not run.sup.stopping:
                await _announce(run, nursery)
            while not run.sup.all_done():
                await run.changed.wait()
            nursery.cancel_scope.cancel()
    if run.failure is not None:
        raise WorkerStartupError(run.failure)


async def _announce(run: _Run, nursery: trio.Nursery) -> None:
    opts, ports, sup = run.opts, run.ports, run.sup
    if ports.metrics is not None:
        await _probe_all(run)
        nursery.start_soon(_probe_loop, run)
        start = partial(
            serve_metrics,
            opts.metrics_host,
            ports.metrics,
            CollectorRegistry(auto_describe=False),  # unused: scrape answers /metrics
            healthy=sup.healthy,
            ready=sup.ready,
            ssl_context=opts.ssl_context if opts.metrics_tls else None,
            scrape=partial(_scrape, run),
        )
        port = await nursery.start(start)
        scheme = "https" if opts.metrics_tls else "http"
        _say(f"metrics on {scheme}://{opts.metrics_host}:{port}/metrics (all workers)")
    for slot in sup.slots:
        _say(f"worker {slot.spec.index} (pid {slot.pid}) listening on {slot.spec.public_url}")
    url = format_url(opts.scheme, opts.host, ports.base)
    if opts.web:
        page = url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        _say(f"web demo on {page}/")
    sup.announced = True
    _say(f"listening on {url}")  # the last line: ready


async def _watch_signals(run: _Run, signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        log.info("received %s; passing it to the workers", name)
        first = not run.sup.stopping
        _send(run.sup.signal(signum), signum)
        run.stop.set()
        run.wake()
        if first:
            opts = run.opts
            grace = opts.drain_timeout + opts.close_timeout + 10.0
            run.nursery.start_soon(_kill_after, run, grace)


async def _kill_after(run: _Run, seconds: float) -> None:
    await trio.sleep(seconds)
    left = run.sup.running()
    if left:
        log.warning("workers still running after %.0f s: killing %s", seconds, left)
        _send(left, signal.SIGKILL)


def _send(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


async def _run_worker(run: _Run, spec: WorkerSpec) -> None:
    sup, i = run.sup, spec.index
    while not sup.stopping:
        proc = await trio.lowlevel.open_process(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        sup.started(i, proc.pid, trio.current_time())
        if sup.stopping:  # a signal came while it was being started: it missed it
            _send([proc.pid], signal.SIGTERM)
        try:
            assert proc.stdout is not None
            async for line in _lines(proc.stdout):
                _on_output(run, sup.output(i, line))
            returncode = await proc.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
            raise
        decision = sup.exited(i, returncode, trio.current_time())
        run.wake()
        if isinstance(decision, GiveUp):
            if run.failure is None:
                run.failure = decision.message
            _send(sup.give_up(), signal.SIGTERM)
            run.stop.set()
            run.nursery.start_soon(_kill_after, run, 5.0)
            run.wake()
            return
        if not isinstance(decision, Restart):
            return
        log.warning(
            "worker %d exited (%s); restarting it in %.1f s",
            i,
            describe_exit(returncode),
            decision.delay,
        )
        with trio.move_on_after(decision.delay):
            await run.stop.wait()
    sup.slots[i].state = State.DONE
    run.wake()


def _on_output(run: _Run, event: WorkerReady | WorkerOutput) -> None:
    if isinstance(event, WorkerReady):
        if run.sup.announced:
            url = run.sup.slots[event.index].spec.public_url
            _say(f"worker {event.index} (pid {event.pid}) listening on {url}")
        run.wake()
    else:
        _say(f"worker {event.index}: {event.text}")


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buf = bytearray()
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            if buf:
                yield buf[:MAX_OUTPUT_LINE].decode(errors="replace")
            return
        buf += data
        while (end := buf.find(b"\n")) >= 0:
            yield buf[: min(end, MAX_OUTPUT_LINE)].decode(errors="replace").rstrip("\r")
            del buf[: end + 1]
        if len(buf) > MAX_OUTPUT_LINE:
            yield buf[:MAX_OUTPUT_LINE].decode(errors="replace")
            buf.clear()


# ------------------------------------------------------------------ metrics and probes
def _scrape_host(host: str) -> str:
    """Where the supervisor reaches the workers' metrics (bound to every address: loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _client_tls(run: _Run) -> ssl.SSLContext | None:
    if not run.opts.metrics_tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # our own child on this machine, on the port we gave it
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _probe_all(run: _Run) -> None:
    host, tls = _scrape_host(run.opts.metrics_host), _client_tls(run)

    async def probe(slot_index: int) -> None:
        slot = run.sup.slots[slot_index]
        port = slot.spec.metrics_port
        if port is None:
            return
        got = await http_get(host, port, "/readyz", tls, timeout=PROBE_INTERVAL)
        slot.probe_ready = got is not None and got[0] == 200

    async with trio.open_nursery() as nursery:
        for slot in run.sup.slots:
            nursery.start_soon(probe, slot.spec.index)


async def _probe_loop(run: _Run) -> None:
    while True:
        await trio.sleep(PROBE_INTERVAL)
        await _probe_all(run)


async def _scrape(run: _Run) -> bytes:
    host, tls = _scrape_host(run.opts.metrics_host), _client_tls(run)
    texts: dict[int, str] = {}

    async def fetch(slot_index: int) -> None:
        port = run.sup.slots[slot_index].spec.metrics_port
        if port is None:
            return
        got = await http_get(host, port, "/metrics", tls, timeout=2.0)
        if got is not None and got[0] == 200:
            texts[slot_index] = got[1].decode("utf-8", errors="replace")

    async with trio.open_nursery() as nursery:
        for slot in run.sup.slots:
            nursery.start_soon(fetch, slot.spec.index)
    return merge_worker_metrics(texts, list(_own_metrics(run)))


def _own_metrics(run: _Run) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "gameserver_worker_up", "1 while the worker is listening.", labels=["worker"]
    )
    restarts = CounterMetricFamily(
        "gameserver_worker_restarts", "Times the worker was restarted.", labels=["worker"]
    )
    for slot in run.sup.slots:
        label = [str(slot.spec.index)]
        up.add_metric(label, 1.0 if slot.state is State.READY else 0.0)
        restarts.add_metric(label, float(slot.restarts))
    yield up
    yield restarts
