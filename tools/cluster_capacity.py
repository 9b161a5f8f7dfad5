"""The capacity part of tools/bench_cluster.py: --workers 1 against --workers 2, with
tools/bench.py's gamebots, sampling and measured window, nothing pinned."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl
import clusterlib as cl
from cluster_procs import free_port, say, start_server

import bench as bm


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
    srv = start_server(
        procs, argv, st.work_dir, tag, port=base, workers=workers if workers > 1 else 0
    )
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
    cl.check_bots_follow((report or {}).get("errors"))
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


def measured_step(
    workers: int, players: int, st: bm.Settings, procs: bm.Procs, retries: int
) -> dict[str, Any]:
    """A capacity step, measured again (up to ``retries`` times) while other work took more
    than 10% of a core during its window; the least disturbed attempt is kept."""
    tag = f"cap-w{workers}-{players}"
    attempts = [capacity_step(workers, players, st, procs, tag)]
    while (attempts[-1].get("foreign_pct") or 0.0) > 10.0 and len(attempts) <= retries:
        bm.log(f"  other work took {attempts[-1]['foreign_pct']}% of a core: measuring again")
        attempts.append(capacity_step(workers, players, st, procs, f"{tag}-retry{len(attempts)}"))
    best = min(attempts, key=lambda a: a.get("foreign_pct") or 0.0)
    others = [a for a in attempts if a is not best]
    if others:
        best["discarded_attempts"] = others
    return best


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
            nxt = bl.choose_step(
                explicit, history, coarse=args.coarse, fine=args.fine, max_players=args.max_players
            )
            if nxt is None:
                break
            players = nxt
            bm.log(f"capacity: {name}, {players} players")
            try:
                rec = measured_step(workers, players, st, procs, args.retries)
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
