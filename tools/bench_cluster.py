"""What routing a join costs in a cluster, and what ``--workers 2`` buys on this machine.

    python tools/bench_cluster.py [--part routing|capacity|all] [--routes local,workers,nodes]
                                  [--joins 200] [--json bench/cluster.json] [--quick]

**Routing** (``--part routing``): the time from opening the TCP connection to JOINED, and the
CPU each join costs the server processes, for joins that

* ``local``: reach a plain ``gameserver serve`` (no cluster) for a room it hosts;
* ``workers``: reach ``gameserver serve --workers 2``, dialling the worker that owns the room
  (its own port) and dialling the other worker, which redirects to the owner;
* ``nodes``: reach two nodes, ``gameserver serve`` on 127.0.0.2 and on 127.0.0.3 sharing a
  ``redis-server`` started here on a free port of 127.0.0.1 (each node with a certificate
  for its address), dialling the owner and dialling the other node.

For each server set-up a first player creates the room and stays seated (it keeps the room
alive and shows who owns it); then ``--joins`` players join it one after another, each with
its own token, following REDIRECTs (at most 3, as the SDKs do), and leave (LEAVE) at once.
Join time is wall time in this process; CPU per join is the servers' utime+stime from
/proc/PID/stat (the supervisor and its workers, or both nodes; Redis apart) over the joins,
minus what they used over as long an idle stretch just before, divided by the joins. The
client (this process) and the servers share the machine's cores, unpinned.

**Capacity** (``--part capacity``): arena rooms of 8 at 20 Hz, inputs at 20 Hz, against
``--workers 1`` and then ``--workers 2``, stepping up as tools/bench.py does (coarse steps,
then bisection; its gamebots, /proc sampling and measured window). Unlike tools/bench.py,
nothing is pinned: the server's processes and the bots share both cores, so the bots' CPU
is taken from what the workers could use. Saturated: both cores together >= 95% busy, p5
updates under 19/s, p99 latency over 100 ms, or a bot that did not get in.
``--cpu-budget 0`` (admission control off) in both arms, so that the limit shows up in the
service, not in refused joins.

A mode the server does not support yet (no workers, no redirects) stops the run with one
line. Every process started here (servers, Redis, bots) is stopped by its PID. Writes the
JSON (``--json``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl
import clusterlib as cl

import bench as bm

CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_HOSTS = ("127.0.0.2", "127.0.0.3")
MAX_HOPS = 3  # as the SDKs follow
WARMUP_JOINS = 10
TICK_PERIOD = 1 / 20  # arena, the default game


def say(msg: str) -> None:
    print(f"bench_cluster: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> NoReturn:
    say(msg)
    raise SystemExit(2)


def run_trio(fn: Callable[..., Any], *args: Any) -> Any:
    """``trio.run(fn, *args)``, with our own errors taken out of trio's exception groups."""
    import trio

    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        for kind in (cl.Unsupported, JoinRefused):
            found: BaseException | None = group.subgroup(kind)
            while isinstance(found, BaseExceptionGroup):
                found = found.exceptions[0]
            if found is not None:
                raise found from None
        raise


# ------------------------------------------------------------------ ports, certificates, tokens
def free_port(host: str = "127.0.0.1", block: int = 1) -> int:
    """A port P such that P..P+block-1 are free on ``host`` (now; a race is unlikely)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            base = int(s.getsockname()[1])
        if base + block > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for p in range(base, base + block):
                    s2 = stack.enter_context(socket.socket())
                    s2.bind((host, p))
            return base
        except OSError:
            continue
    fail(f"no block of {block} free ports on {host}")


@dataclass
class Tls:
    ca_file: Path
    certs: dict[str, tuple[Path, Path]]  # host -> (chain, key)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def node_certificates(work: Path, hosts: Sequence[str]) -> Tls:
    """A throwaway CA and one certificate per node address (trustme, a dev dependency)."""
    try:
        import trustme
    except ImportError:
        fail("the nodes need trustme for their certificates: pip install -e '.[dev]'")
    ca = trustme.CA()
    ca_file = work / "nodes-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certs = {}
    for host in hosts:
        issued = ca.issue_cert(host)
        chain, key = work / f"{host}.pem", work / f"{host}-key.pem"
        chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        certs[host] = (chain, key)
    return Tls(ca_file, certs)


class Tokens:
    def __init__(self, secret_file: Path) -> None:
        from gameserver.auth import mint_token, read_secret_file

        self._secret = read_secret_file(secret_file)
        self._mint = mint_token

    def __call__(self, player: str) -> str:
        return self._mint(self._secret, player, ttl=3600.0)


# ------------------------------------------------------------------ processes
def cpu_ticks(pids: Sequence[int]) -> int:
    """utime+stime of these processes and their children (bm.tree_cpu)."""
    return sum(bm.tree_cpu(pid) for pid in pids)


@dataclass
class Server:
    """One started server process (a plain server, a supervisor or a node)."""

    proc: subprocess.Popen[str]
    cmd: list[str]
    out: Path
    err: Path
    url: str = ""
    workers: list[cl.WorkerLine] = field(default_factory=list)


def start_server(
    procs: bm.Procs, argv: list[str], work: Path, tag: str, timeout: float = 60.0
) -> Server:
    cmd = [str(bm.VENV_PY), "-m", "gameserver.cli", "serve", *argv]
    out, err = work / f"{tag}.out", work / f"{tag}.err"
    with out.open("w") as o, err.open("w") as e:
        proc = procs.start(cmd, o, e)
    bm.log(f"{tag}: {shlex.join(cmd)} (pid {proc.pid})")
    try:
        url = bm.wait_for_lines(out, proc, ["listening on "], timeout)["listening on "]
    except RuntimeError as exc:
        tail = err.read_text().strip().splitlines()[-1:] or [""]
        fail(f"{tag}: {exc}: {tail[0]}")
    return Server(proc, cmd, out, err, url, cl.parse_worker_lines(out.read_text()))


@contextlib.contextmanager
def redis_server(procs: bm.Procs, work: Path) -> Iterator[tuple[str, int]]:
    """A redis-server on a free port of 127.0.0.1, no persistence; stopped by PID."""
    exe = shutil.which("redis-server")
    if exe is None:
        fail("redis-server is not installed (bash tools/ensure_redis.sh installs it)")
    port = free_port()
    cmd = [
        str(exe), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(work), "--protected-mode", "yes",
    ]  # fmt: skip
    with (work / "redis.log").open("w") as log:
        proc = procs.start(cmd, log, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                fail(f"redis-server did not answer on port {port}; see {work / 'redis.log'}")
            time.sleep(0.05)
        bm.log(f"redis-server on 127.0.0.1:{port} (pid {proc.pid})")
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        procs.stop(proc, signal.SIGTERM, 5.0)


# ------------------------------------------------------------------ the join client (trio)
class JoinRefused(Exception):
    pass


async def _connect(nursery: Any, url: str, ctx: ssl.SSLContext) -> Any:
    import trio_websocket

    from shared.protocol import SUBPROTOCOL_V2

    return await trio_websocket.connect_websocket_url(
        nursery, url, ssl_context=ctx, subprotocols=[SUBPROTOCOL_V2]
    )


async def timed_join(
    nursery: Any, url: str, room: str, token: str, ctx: ssl.SSLContext, *, stay: bool = False
) -> tuple[cl.JoinSample, Any]:
    """Join ``room`` through ``url``, following REDIRECTs; the connections live in
    ``nursery``. Returns the sample and, if ``stay``, the open connection (else None: it sent
    LEAVE and closes in the background). Raises JoinRefused on an ERROR or too many hops."""
    from shared.messages import Error, Join, Leave, Redirect, parse_server_message
    from shared.protocol import Kind

    t0 = time.perf_counter()
    hops = 0
    while True:
        ws = await _connect(nursery, url, ctx)
        await ws.send_message(Join(room, token=token).to_bytes())
        reached = time.perf_counter()
        data = await ws.get_message()
        kind = data[0] if data else -1
        if kind == Kind.JOINED:
            done = time.perf_counter()
            sample = cl.JoinSample(
                round((done - t0) * 1000, 3), hops, url, round((reached - t0) * 1000, 3)
            )
            if stay:
                return sample, ws
            await ws.send_message(Leave().to_bytes())
            nursery.start_soon(ws.aclose)
            return sample, None
        msg = parse_server_message(bytes(data)) if kind in (Kind.REDIRECT, Kind.ERROR) else None
        nursery.start_soon(ws.aclose)  # the next hop does not wait for this close
        if isinstance(msg, Redirect):
            hops += 1
            if hops > MAX_HOPS:
                raise JoinRefused(f"more than {MAX_HOPS} redirects (last to {msg.url})")
            url = msg.url
            continue
        if isinstance(msg, Error):
            raise JoinRefused(f"ERROR {msg.code} {msg.message!r} from {url}")
        raise JoinRefused(f"unexpected first message kind {kind} from {url}")


async def one_join(url: str, room: str, token: str, ctx: ssl.SSLContext) -> cl.JoinSample:
    """A join that leaves at once; returns when its connections are closed."""
    import trio

    async with trio.open_nursery() as nursery:
        sample, _ = await timed_join(nursery, url, room, token, ctx)
    return sample


@dataclass
class RouteRun:
    route: cl.Route
    dial: str  # the URL each measured join dials
    room: str


async def _measure_routes(
    holder_url: str,
    room: str,
    runs_for: Any,
    tokens: Tokens,
    ctx: ssl.SSLContext,
    pids: list[int],
    redis_pids: list[int],
    joins: int,
    tag: str,
) -> list[dict[str, Any]]:
    """Seat the holder, then measure each route ``runs_for(owner_url)`` returns."""
    import trio

    rows = []
    async with trio.open_nursery() as nursery:
        sample, holder = await timed_join(
            nursery, holder_url, room, tokens(f"{tag}-holder"), ctx, stay=True
        )
        bm.log(f"  room {room!r} lives at {sample.url} (the holder took {sample.hops} redirects)")

        async def drain() -> None:  # keep the holder reading (pings, deltas)
            with contextlib.suppress(Exception):
                while True:
                    await holder.get_message()

        nursery.start_soon(drain)
        for run in runs_for(sample.url):
            rows.append(await _measure(run, tokens, ctx, pids, redis_pids, joins, tag))
        await holder.aclose()
        nursery.cancel_scope.cancel()
    return rows


async def _measure(
    run: RouteRun,
    tokens: Tokens,
    ctx: ssl.SSLContext,
    pids: list[int],
    redis_pids: list[int],
    joins: int,
    tag: str,
) -> dict[str, Any]:
    import trio

    name = run.route.value
    warm = time.monotonic()
    for i in range(WARMUP_JOINS):
        sample = await one_join(run.dial, run.room, tokens(f"{tag}-{name}-warm{i}"), ctx)
        cl.check_redirected(run.route, sample.hops, run.dial, run.room)
    per_join = (time.monotonic() - warm) / WARMUP_JOINS
    toks = [tokens(f"{tag}-{name}-{i}") for i in range(joins)]
    rng = random.Random(f"{tag}-{name}")
    # a join completes in the room's next tick: start each at a random phase of the tick, as
    # real joins arrive, or back-to-back joins would lock onto the tick and all wait ~1 period
    phases = [rng.uniform(0.0, TICK_PERIOD) for _ in range(joins)]
    # idle: the same rooms open, no joins, about as long as the joins will take
    idle_s = max(1.0, min(10.0, (per_join + TICK_PERIOD / 2) * joins))
    t0, s0, r0 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    await trio.sleep(idle_s)
    t1, s1, r1 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    c1 = time.process_time()
    samples = []
    for tok, phase in zip(toks, phases, strict=True):
        await trio.sleep(phase)
        sample = await one_join(run.dial, run.room, tok, ctx)
        samples.append(sample)
    t2, s2, r2 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    client_cpu = time.process_time() - c1
    row: dict[str, Any] = {"route": name, "label": run.route.label, "dialled": run.dial}
    row.update(cl.summarize_joins(samples))
    row["server_cpu_ms"] = cl.cpu_ms_per_join(s2 - s1, t2 - t1, s1 - s0, t1 - t0, joins, CLK_TCK)
    row["redis_cpu_ms"] = (
        cl.cpu_ms_per_join(r2 - r1, t2 - t1, r1 - r0, t1 - t0, joins, CLK_TCK)
        if redis_pids
        else None
    )
    row["client_cpu_ms"] = round(1000 * client_cpu / joins, 3)
    row["wall_s"] = round(t2 - t1, 2)
    bm.log(
        f"  {name}: at the owner p50 {row['reach_ms_p50']} ms, JOINED p50 {row['ms_p50']} ms, "
        f"p99 {row['ms_p99']} ms, hops {row['hops']}, "
        f"server CPU {row['server_cpu_ms']} ms/join"
    )
    return row


# ------------------------------------------------------------------ routing set-ups
def common_flags(state_dir: Path, secret: Path) -> list[str]:
    return [
        "--state-dir", str(state_dir), "--secret-file", str(secret), "--log-level", "WARNING",
        "--seat-hold", "0", "--max-connections-per-ip", "0", "--cpu-budget", "0",
    ]  # fmt: skip


def routing(
    args: argparse.Namespace, procs: bm.Procs, work: Path, problems: list[str]
) -> list[dict[str, Any]]:
    from gameserver.tls import ensure_dev_certificate

    state_dir = work / "state"
    dev = ensure_dev_certificate(state_dir)
    secret = bm_secret(state_dir)
    tokens = Tokens(secret)
    dev_ctx = ssl.create_default_context(cafile=str(dev.ca_file))
    flags = common_flags(state_dir, secret)
    rows: list[dict[str, Any]] = []
    groups = args.route_groups
    if "local" in groups:
        bm.log("routing: one plain server")
        srv = start_server(procs, ["--port", "0", *flags], work, "local")
        try:
            rows += run_trio(
                _measure_routes, srv.url, "bench-local",
                lambda owner: [RouteRun(cl.Route.LOCAL, owner, "bench-local")],
                tokens, dev_ctx, [srv.proc.pid], [], args.joins, "local",
            )  # fmt: skip
        finally:
            procs.stop(srv.proc)
    if "workers" in groups:
        bm.log("routing: --workers 2")
        base = free_port(block=3)
        srv = start_server(procs, ["--port", str(base), "--workers", "2", *flags], work, "workers")
        try:
            cl.check_workers(srv.workers, 2)
            urls = [w.url for w in srv.workers]

            def worker_runs(owner: str) -> list[RouteRun]:
                own = next((u for u in urls if cl.endpoint(u) == cl.endpoint(owner)), owner)
                return [
                    RouteRun(cl.Route.WORKERS_OWNER, own, "bench-workers"),
                    RouteRun(cl.Route.WORKERS_REDIRECT, cl.other_url(own, urls), "bench-workers"),
                ]

            rows += run_trio(
                _measure_routes, urls[0], "bench-workers", worker_runs, tokens, dev_ctx,
                [srv.proc.pid], [], args.joins, "workers",
            )  # fmt: skip
        except cl.Unsupported as exc:
            problems.append(f"workers: {exc}")
            say(problems[-1])
        finally:
            procs.stop(srv.proc)
    if "nodes" in groups:
        bm.log("routing: two nodes on 127.0.0.2 and 127.0.0.3 sharing a Redis")
        tls = node_certificates(work, NODE_HOSTS)
        with redis_server(procs, work) as (redis_url, redis_pid):
            nodes: list[Server] = []
            try:
                for i, host in enumerate(NODE_HOSTS):
                    port = free_port(host)
                    cert, key = tls.certs[host]
                    public = f"wss://{host}:{port}/"
                    argv = [
                        "--host", host, "--port", str(port), "--cert", str(cert),
                        "--key", str(key), "--directory", redis_url, "--public-url", public,
                        "--node-id", f"bench-node-{'ab'[i]}", *flags,
                    ]  # fmt: skip
                    nodes.append(start_server(procs, argv, work, f"node-{'ab'[i]}"))
                urls = [n.url for n in nodes]

                def node_runs(owner: str) -> list[RouteRun]:
                    return [
                        RouteRun(cl.Route.NODES_OWNER, owner, "bench-nodes"),
                        RouteRun(cl.Route.NODES_REDIRECT, cl.other_url(owner, urls), "bench-nodes"),
                    ]

                rows += run_trio(
                    _measure_routes, urls[0], "bench-nodes", node_runs, tokens,
                    tls.client_context(), [n.proc.pid for n in nodes], [redis_pid],
                    args.joins, "nodes",
                )  # fmt: skip
            except cl.Unsupported as exc:
                problems.append(f"nodes: {exc}")
                say(problems[-1])
            finally:
                for n in nodes:
                    procs.stop(n.proc)
    return rows


def bm_secret(state_dir: Path) -> Path:
    from gameserver.auth import SECRET_FILE, load_secret

    load_secret(None, state_dir, create=True, env={})
    return state_dir / SECRET_FILE


# ------------------------------------------------------------------ capacity
class TreeSampler(bm.Sampler):
    """bm.Sampler over a process tree: the supervisor and its workers count as one server
    (CPU and RSS summed, open descriptors summed), both cores' busy time as usual."""

    def _run(self) -> None:
        next_scrape = 0.0
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                core0, core1 = bm.read_cores()
                pids = _tree(self.pid)
                stats = [bl.parse_pid_stat(Path(f"/proc/{p}/stat").read_text()) for p in pids]
                fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)
            except (OSError, ValueError):
                return
            proc = bl.ProcTimes(
                sum(s.utime for s in stats),
                sum(s.stime for s in stats),
                sum(s.rss_pages for s in stats),
            )
            bots = bm.tree_cpu(self.bots_pid) if self.bots_pid else 0
            self.samples.append(bm.Sample(t, core0, core1, proc, fds, bots))
            if self.metrics_url and t >= next_scrape:
                scraped = bm.scrape(self.metrics_url)
                if scraped is not None:
                    self.scrapes.append((time.monotonic(), scraped))
                next_scrape = t + self.scrape_every
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))


def _tree(pid: int) -> list[int]:
    out = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += _tree(int(child))
    return out


def capacity_step(
    workers: int, players: int, st: bm.Settings, procs: bm.Procs, tag: str
) -> dict[str, Any]:
    rooms = players // bl.ROOM_SIZE
    rec: dict[str, Any] = {"server": f"workers-{workers}", "target": rooms * bl.ROOM_SIZE}
    rec.update(rooms=rooms, tag=tag, background=bm.wait_for_quiet())
    metrics_port = free_port(block=workers + 1)
    base = free_port(block=workers + 1)
    argv = ["--port", str(base), "--metrics-port", str(metrics_port), *st.server_extra]
    if workers > 1:
        argv += ["--workers", str(workers)]
    srv = start_server(procs, argv, st.work_dir, tag)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    report_path = st.work_dir / f"{tag}.report.json"
    cmd = bm.bots_command("gameserver", st, srv.url, rooms, report_path, None)[3:]  # no taskset
    rec["server_cmd"] = shlex.join(srv.cmd)
    rec["bots_cmd"] = shlex.join(cmd)
    sampler = TreeSampler(srv.proc.pid, metrics_url, scrape_every=1.0)
    last = None
    try:
        if workers > 1:
            cl.check_workers(srv.workers, workers)
        first = bm.scrape(metrics_url)
        with (st.work_dir / f"{tag}.bots.out").open("w") as bout:
            bots = procs.start(cmd, bout, bout)
            sampler.bots_pid = bots.pid
            sampler.start()
            try:
                bots.wait(60 + 3 * players / st.ramp + st.duration)
            except subprocess.TimeoutExpired:
                rec["bots_timeout"] = True
            t_exit = time.monotonic()
            procs.stop(bots, signal.SIGINT, 15.0)
            sampler.stop()
            last = bm.scrape(metrics_url)
    finally:
        if sampler._thread.ident is not None:  # started
            sampler.stop()
        procs.stop(srv.proc, signal.SIGINT, 20.0)
    report = None
    with contextlib.suppress(OSError, ValueError):
        report = json.loads(report_path.read_text())
    rec["report"] = report
    bm.fill_step(rec, report, sampler, t_exit, st.duration, first, last)
    rec["machine_busy_pct"] = cl.machine_busy(rec.get("core0_busy_pct"), rec.get("core1_busy_pct"))
    rec["foreign_pct"] = cl.foreign_machine_pct(rec)
    window = rec.get("series", {}).get("window")
    inside = sampler.scrapes
    if window and len(inside) >= 2:
        t0 = sampler.samples[0].t if sampler.samples else 0.0
        lo, hi = t0 + window[0], t0 + window[1]
        inside = [(t, s) for t, s in sampler.scrapes if lo <= t <= hi] or inside
        (ta, sa), (tb, sb) = inside[0], inside[-1]
        if tb > ta:
            rec.update(cl.window_figures(sa, sb, tb - ta))
    rec["saturated"] = cl.capacity_reasons(rec)
    bm.log(
        f"  -> {rec['connected']}/{rec['target']}, server {rec.get('server_cpu_pct')}%, bots "
        f"{rec.get('bots_cpu_pct')}%, machine {rec['machine_busy_pct']}%, p5 "
        f"{rec.get('updates_p5')}, p99 {rec.get('latency_p99_ms')}: "
        + ("; ".join(rec["saturated"]) or "ok")
    )
    return rec


def capacity(
    args: argparse.Namespace, procs: bm.Procs, work: Path, problems: list[str]
) -> dict[str, Any]:
    from gameserver.tls import ensure_dev_certificate

    bots_help = bm.check_gamebots(args.gamebots)
    serve_help = bm.help_text([str(bm.VENV_PY), "-m", "gameserver.cli", "serve"])
    state_dir = work / "state"
    ensure_dev_certificate(state_dir)
    server_extra, bots_extra = bm.auth_and_limits(state_dir, serve_help, bots_help)
    st = bm.Settings(
        duration=args.duration, ramp=args.ramp, verify_sample=args.verify_sample,
        procs=args.procs, gamebots=args.gamebots, state_dir=state_dir, work_dir=work,
        server_extra=[*server_extra, "--log-level", "WARNING", "--state-dir", str(state_dir),
                      "--cpu-budget", "0"],
        bots_extra=bots_extra,
    )  # fmt: skip
    arms: dict[str, Any] = {}
    for workers in (1, 2):
        name = f"--workers {workers}"
        history: list[tuple[int, bool]] = []
        steps = []
        explicit = list(args.step_list) if args.step_list else None
        while True:
            if explicit is not None:
                if not explicit or any(sat for _, sat in history):
                    break
                players = bl.round_to_rooms(explicit.pop(0))
            else:
                nxt = bl.next_auto_step(
                    history, coarse=args.coarse, fine=args.fine, max_players=args.max_players
                )
                if nxt is None:
                    break
                players = nxt
            bm.log(f"capacity: {name}, {players} players")
            try:
                rec = capacity_step(workers, players, st, procs, f"cap-w{workers}-{players}")
            except cl.Unsupported as exc:
                problems.append(f"capacity {name}: {exc}")
                say(problems[-1])
                break
            steps.append(rec)
            history.append((players, bool(rec["saturated"])))
        _good, bad = bl.search_bounds(history)
        cap = bl.capacity((p, s) for p, s in history if bad is None or p < bad)
        arms[name] = {"steps": steps, "capacity": cap, "first_saturated": bad}
    one, two = arms["--workers 1"]["capacity"], arms["--workers 2"]["capacity"]
    return {"arms": arms, "verdict": cl.capacity_verdict(one, two)}


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--part",
        choices=("routing", "capacity", "all"),
        default="all",
        help="what to measure (default all)",
    )
    p.add_argument(
        "--routes",
        default=",".join(cl.ROUTE_GROUPS),
        help="routing set-ups to measure: local, workers, nodes (comma-separated)",
    )
    p.add_argument("--joins", type=int, default=200, help="measured joins per route")
    p.add_argument("--steps", help="capacity: players per step (default: search)")
    p.add_argument("--coarse", type=int, default=200, help="capacity: players added per step")
    p.add_argument("--fine", type=int, default=64, help="capacity: stop bisecting at this gap")
    p.add_argument("--max-players", type=int, default=2000, help="capacity: highest step")
    p.add_argument("--duration", type=float, default=10.0, help="capacity: measured seconds")
    p.add_argument("--ramp", type=float, default=100.0, help="capacity: bots joining per second")
    p.add_argument("--verify-sample", type=int, default=16, help="bots checking every checksum")
    p.add_argument("--procs", type=int, default=1, help="gamebots processes")
    p.add_argument("--gamebots", default=str(bm.VENV / "bin" / "gamebots"), help="the load tester")
    p.add_argument(
        "--json", type=Path, default=bm.ROOT / "bench" / "cluster.json", help="results file"
    )
    p.add_argument("--quick", action="store_true", help="20 joins, capacity 48,96 (smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.joins = min(args.joins, 20)
        args.steps = args.steps or "48,96"
        args.duration = min(args.duration, 3.0)
        if args.json == bm.ROOT / "bench" / "cluster.json":
            args.json = Path(tempfile.mkdtemp(prefix="bench-cluster-")) / "cluster.json"
    args.route_groups = [g.strip() for g in args.routes.split(",") if g.strip()]
    unknown = set(args.route_groups) - set(cl.ROUTE_GROUPS)
    if unknown:
        p.error(f"unknown --routes {sorted(unknown)}; choose from {list(cl.ROUTE_GROUPS)}")
    if args.joins < 1:
        p.error("--joins must be at least 1")
    args.step_list = [int(x) for x in args.steps.split(",") if x.strip()] if args.steps else None
    return args


def main(argv: list[str] | None = None) -> int:
    bm.ensure_environment()
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, bm._raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-run-"))
    command = "python tools/bench_cluster.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    results: dict[str, Any] = {
        "meta": {"command": command.strip(), "machine": bm.machine_info(), "work_dir": str(work)},
    }
    procs = bm.Procs()
    bm.log(f"bench_cluster: logs in {work}")
    out: list[str] = []
    problems: list[str] = []
    try:
        if args.part in ("routing", "all"):
            rows = routing(args, procs, work, problems)
            results["routing"] = rows
            out += ["Routing a join:", "", cl.render_routes(rows), ""]
        if args.part in ("capacity", "all"):
            cap = capacity(args, procs, work, problems)
            results["capacity"] = cap
            out += [
                "Capacity (server and bots share both cores):",
                "",
                cl.render_capacity(cap["arms"]),
                "",
                cap["verdict"],
            ]
    except (cl.Unsupported, JoinRefused) as exc:
        problems.append(str(exc))
        say(problems[-1])
    except KeyboardInterrupt:
        bm.log("interrupted: stopping what runs")
    finally:
        procs.stop_all()
    results["unsupported"] = problems
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(out))
    bm.log(f"wrote {args.json}")
    for line in problems:  # again, last: what could not be measured
        say(line)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
