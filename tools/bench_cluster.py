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
import json
import shlex
import signal
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clusterlib as cl
from cluster_capacity import capacity
from cluster_join import JoinRefused, RouteRun, measure_routes, run_trio
from cluster_procs import (
    Server,
    Tokens,
    free_port,
    node_certificates,
    redis_server,
    say,
    start_server,
)

import bench as bm

NODE_HOSTS = ("127.0.0.2", "127.0.0.3")


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
                measure_routes, srv.url, "bench-local",
                lambda owner: [RouteRun(cl.Route.LOCAL, owner, "bench-local")],
                tokens, dev_ctx, [srv.proc.pid], [], args.joins, "local",
            )  # fmt: skip
        finally:
            procs.stop(srv.proc)
    if "workers" in groups:
        bm.log("routing: --workers 2")
        base = free_port(block=3)
        argv = ["--port", str(base), "--workers", "2", *flags]
        srv = start_server(procs, argv, work, "workers", port=base, workers=2)
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
                measure_routes, urls[0], "bench-workers", worker_runs, tokens, dev_ctx,
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
                    measure_routes, urls[0], "bench-nodes", node_runs, tokens,
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
    p.add_argument(
        "--retries", type=int, default=2, help="capacity: re-runs of a step other work disturbed"
    )
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
