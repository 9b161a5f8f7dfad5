"""Capacity of this server and of a plain-Python baseline, side by side, on this machine.

    python tools/bench.py [--steps 200,400,...|--auto] [--duration S] [--out BENCHMARKS.md]
                          [--quick]

For each target (this server, then ``tools/baseline_server.py``) and each step, a fresh server
process is started pinned to core 0 (``taskset -c 0``), then ``gamebots`` pinned to core 1 fills
``players / 8`` arena rooms over WSS (inputs at 20 Hz) and measures a window of ``--duration``
seconds after its ramp. Meanwhile this script samples /proc: the server's CPU time, RSS and open
file descriptors, core 0 and core 1 busy time (softirq included), and this server's /metrics.
The server is stopped after every step (restarting is cleaner: no rooms, sessions or memory
carried over), and every process started here is stopped by its PID at the end, on Ctrl-C and
on failure.

A step is saturated when the server's core is >= 95% busy, the 5th-percentile update rate is
under 19/s, p99 latency is over 100 ms, or not every bot got to play. ``--auto`` (the default)
steps up by ``--coarse`` players until a step saturates, then bisects in whole rooms until the
bounds are at most ``--fine`` apart; the capacity is the largest step that did not saturate.
Then an overload step at twice the first saturated load shows what this server does past its
limit. Writes BENCHMARKS.md, bench/results.json and bench/chart.png.

``--compare-colyseus DIR --levels 496,1000,1496`` runs a Colyseus harness (in ``DIR``, provided
by the user) and this server at each level instead, alternating: tools/bench_compare.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc
import benchlib as bl

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
SERVER_CORE = "0"
LOADGEN_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TARGETS = ("gameserver", "baseline")
LABELS = {"gameserver": "this server (trio, binary deltas)", "baseline": "baseline (websockets)"}


def log(msg: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ environment
def ensure_environment() -> None:
    """Run under the project's venv, with the ``bench`` extras installed."""
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not VENV_PY.exists():
            sys.exit("bench: no .venv here; run `make test` (or `make run`) once first")
        os.execv(VENV_PY, [str(VENV_PY), *sys.argv])
    missing = [m for m in ("matplotlib", "websockets") if importlib.util.find_spec(m) is None]
    if missing:
        log(f"installing .[bench] into .venv ({', '.join(missing)} missing)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-e", ".[bench]"],
            cwd=ROOT,
            check=True,
            timeout=900,
        )
        importlib.invalidate_caches()


def help_text(cmd: list[str]) -> str:
    try:
        return subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"bench: cannot run {shlex.join(cmd)} --help: {exc}")


def check_gamebots(gamebots: str) -> str:
    """``gamebots --help``, once it is known to be the load tester this bench drives."""
    out = help_text([gamebots])
    needed = ("--procs", "--protocol", "--ramp", "--input-hz", "--verify-sample", "--metrics-url")
    lacking = [flag for flag in needed if flag not in out]
    if lacking:
        sys.exit(
            f"bench: {gamebots} lacks {', '.join(lacking)}: it is not the load tester this bench "
            "drives (yet). Install the new gamebots, or pass --gamebots PATH."
        )
    return out


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    packages: dict[str, str | None] = {}
    for name in ("trio", "trio-websocket", "websockets", "wsproto", "matplotlib"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = [line for line in git("status", "--porcelain").splitlines() if line]
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "packages": packages,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(dirty),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ------------------------------------------------------------------ processes
def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Procs:
    """Every process this script starts, so that each can be stopped by its PID."""

    def __init__(self) -> None:
        self.live: dict[int, subprocess.Popen[str]] = {}

    def start(self, cmd: list[str], stdout: TextIO, stderr: TextIO) -> subprocess.Popen[str]:
        # own session: a Ctrl-C in the terminal reaches this script only, which then stops the
        # children in order; PR_SET_PDEATHSIG stops them if this script is killed outright.
        # Only called while no other thread runs (preexec_fn is not thread-safe).
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.live[proc.pid] = proc
        return proc

    def stop(
        self, proc: subprocess.Popen[str], sig: int = signal.SIGINT, grace: float = 10.0
    ) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.live.pop(proc.pid, None)

    def stop_all(self) -> None:
        for proc in list(self.live.values()):
            log(f"stopping pid {proc.pid}")
            self.stop(proc, signal.SIGTERM, 5.0)


def wait_for_lines(
    path: Path, proc: subprocess.Popen[str], prefixes: list[str], timeout: float
) -> dict[str, str]:
    """The first line starting with each prefix in ``path`` (a child's stdout file)."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            for prefix in prefixes:
                if line.startswith(prefix) and prefix not in found:
                    found[prefix] = line[len(prefix) :].strip()
        if len(found) == len(prefixes):
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it listened")
        time.sleep(0.05)
    raise RuntimeError(f"server did not print {prefixes} within {timeout:.0f} s")


# ------------------------------------------------------------------ sampling
def read_cores() -> tuple[bl.CpuTimes, bl.CpuTimes]:
    cpus = bl.parse_proc_stat(Path("/proc/stat").read_text())
    return cpus[f"cpu{SERVER_CORE}"], cpus[f"cpu{LOADGEN_CORE}"]


@dataclass
class Sample:
    t: float
    core0: bl.CpuTimes
    core1: bl.CpuTimes
    proc: bl.ProcTimes
    fds: int
    bots_cpu: int  # clock ticks used by the load generator's processes so far


def tree_cpu(pid: int) -> int:
    """utime+stime of a process and its live children (the load generator may fork workers,
    a ``--workers`` supervisor starts its workers), and of its reaped children."""
    total = 0
    with contextlib.suppress(OSError, ValueError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        total += bl.parse_pid_stat(stat).cpu
        rest = stat[stat.rindex(")") + 2 :].split()
        total += int(rest[16 - 3]) + int(rest[17 - 3])  # cutime + cstime: reaped children
        # the children of every thread: a trio process spawns from a worker thread
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    total += tree_cpu(int(child))
    return total


@dataclass
class Sampler:
    """A thread sampling /proc every ``interval`` s and scraping /metrics every ``scrape_every``."""

    pid: int
    metrics_url: str | None
    bots_pid: int = 0
    interval: float = 0.25
    scrape_every: float = 2.0
    samples: list[Sample] = field(default_factory=list)
    scrapes: list[tuple[float, dict[bl.MetricKey, float]]] = field(default_factory=list)
    tcp_port: int = 0  # when set, `ss -ti` totals of the server's sockets every tcp_every s
    tcp_every: float = 2.0
    tcp: list[tuple[float, bc.SsTotals]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        next_scrape = next_tcp = 0.0
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                core0, core1 = read_cores()
                proc = bl.parse_pid_stat(Path(f"/proc/{self.pid}/stat").read_text())
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except (OSError, ValueError):
                return  # the server is gone
            bots = tree_cpu(self.bots_pid) if self.bots_pid else 0
            self.samples.append(Sample(t, core0, core1, proc, fds, bots))
            if self.metrics_url and t >= next_scrape:
                scraped = scrape(self.metrics_url)
                if scraped is not None:
                    self.scrapes.append((time.monotonic(), scraped))
                next_scrape = t + self.scrape_every
            if self.tcp_port and t >= next_tcp:
                totals = bc.read_ss(self.tcp_port)
                if totals is not None:
                    self.tcp.append((time.monotonic(), totals))
                next_tcp = t + self.tcp_every
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))


def scrape(url: str, timeout: float = 2.0) -> dict[bl.MetricKey, float] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bl.parse_prometheus(resp.read().decode())
    except (OSError, ValueError):
        return None


def background_load(seconds: float = 1.0) -> dict[str, float]:
    """Both cores' busy share with nothing of ours running (other users of the machine)."""
    a0, a1 = read_cores()
    time.sleep(seconds)
    b0, b1 = read_cores()
    return {
        "core0_busy_pct": bl.core_usage(a0, b0)["busy_pct"],
        "core1_busy_pct": bl.core_usage(a1, b1)["busy_pct"],
    }


def wait_for_quiet(
    limit_pct: float = 10.0, max_wait: float = 60.0, quiet_s: int = 3
) -> dict[str, float]:
    """Wait (boundedly) until neither core has been busier than ``limit_pct`` for ``quiet_s``
    seconds in a row with nothing of ours running: other work on this shared machine would
    skew the step."""
    t0 = time.monotonic()
    calm = 0
    while True:
        bg = background_load(1.0)
        waited = time.monotonic() - t0
        calm = calm + 1 if max(bg.values()) <= limit_pct else 0
        if calm >= quiet_s or waited >= max_wait:
            if waited > quiet_s + 1.5:
                log(f"  waited {waited:.0f} s for the machine to be quiet: {bg}")
            return {**bg, "waited_s": round(waited, 1)}


# ------------------------------------------------------------------ one step
@dataclass
class Settings:
    duration: float
    ramp: float
    verify_sample: int
    procs: int
    gamebots: str
    state_dir: Path
    work_dir: Path
    input_hz: float = 20.0
    server_extra: list[str] = field(default_factory=list)
    bots_extra: list[str] = field(default_factory=list)
    tcp_sample: bool = False  # also the server's TCP bytes sent (ss -ti), for --compare-colyseus


def server_command(target: str, st: Settings) -> list[str]:
    if target == "gameserver":
        return [
            "taskset", "-c", SERVER_CORE, str(VENV_PY), "-m", "gameserver.cli", "serve",
            "--port", "0", "--state-dir", str(st.state_dir), "--log-level", "WARNING",
            "--metrics-port", "0", *st.server_extra,
        ]  # fmt: skip
    return [
        "taskset", "-c", SERVER_CORE, str(VENV_PY), str(ROOT / "tools" / "baseline_server.py"),
        "--port", "0", "--cert", str(st.state_dir / "dev-cert.pem"),
        "--key", str(st.state_dir / "dev-key.pem"),
    ]  # fmt: skip


def bots_command(
    target: str,
    st: Settings,
    url: str,
    rooms: int,
    report: Path,
    metrics_url: str | None,
    room_size: int = bl.ROOM_SIZE,
) -> list[str]:
    cmd = [
        "taskset", "-c", LOADGEN_CORE, st.gamebots, "--url", url,
        "--rooms", str(rooms), "--players", str(room_size),
        "--duration", f"{st.duration:g}", "--report", str(report),
        "--ca-file", str(st.state_dir / "dev-ca.pem"), "--ramp", f"{st.ramp:g}",
        "--input-hz", f"{st.input_hz:g}", "--verify-sample", str(st.verify_sample),
        "--procs", str(st.procs),
        "--protocol", "gamesync" if target == "gameserver" else "json",
    ]  # fmt: skip
    if target == "gameserver":
        cmd += st.bots_extra
    if metrics_url:
        cmd += ["--metrics-url", metrics_url]
    return cmd


def run_step(
    target: str,
    players: int,
    st: Settings,
    procs: Procs,
    tag: str,
    room_size: int = bl.ROOM_SIZE,
) -> dict[str, Any]:
    """One step: ``players`` in rooms of ``room_size`` (tools/bench_field.py passes its game and
    room size in ``st.server_extra`` / ``st.bots_extra``)."""
    rooms = players // room_size
    players = rooms * room_size
    log(f"{target}: {players} players ({rooms} rooms)")
    rec: dict[str, Any] = {"server": target, "target": players, "rooms": rooms, "tag": tag}
    rec["background"] = wait_for_quiet()
    out_path = st.work_dir / f"{tag}.server.out"
    err_path = st.work_dir / f"{tag}.server.err"
    report_path = st.work_dir / f"{tag}.report.json"
    bots_out = st.work_dir / f"{tag}.bots.out"
    sampler: Sampler | None = None
    first = last = None
    t_exit = time.monotonic()
    with (
        out_path.open("w") as out,
        err_path.open("w") as err,
        bots_out.open("w") as bout,
    ):
        cmd = server_command(target, st)
        rec["server_cmd"] = shlex.join(cmd)
        server = procs.start(cmd, out, err)
        try:
            prefixes = ["listening on "] + (["metrics on "] if target == "gameserver" else [])
            try:
                lines = wait_for_lines(out_path, server, prefixes, timeout=30)
            except RuntimeError as exc:
                rec["error"] = f"{exc}; see {err_path}"
                rec["server_output_tail"] = err_path.read_text()[-2000:]
                lines = {}
            if lines:
                url = lines["listening on "]
                metrics_url = lines.get("metrics on ")
                cmd = bots_command(target, st, url, rooms, report_path, metrics_url, room_size)
                rec["bots_cmd"] = shlex.join(cmd)
                budget = 60 + 3 * players / st.ramp + st.duration
                first = scrape(metrics_url) if metrics_url else None
                bots = procs.start(cmd, bout, bout)
                port = int(url.rsplit(":", 1)[1].split("/")[0]) if st.tcp_sample else 0
                sampler = Sampler(server.pid, metrics_url, bots.pid, tcp_port=port)
                sampler.start()
                try:
                    bots.wait(budget)
                except subprocess.TimeoutExpired:
                    log(f"gamebots still running after {budget:.0f} s: stopping it")
                    rec["bots_timeout"] = True
                t_exit = time.monotonic()
                procs.stop(bots, signal.SIGINT, 15.0)
                rec["bots_exit"] = bots.returncode
                sampler.stop()
                last = scrape(metrics_url) if metrics_url else None
        finally:
            if sampler is not None:
                sampler.stop()
            procs.stop(server, signal.SIGINT, 15.0)
    rec["server_exit"] = server.returncode
    for line in err_path.read_text().splitlines():
        if line.startswith("stats {"):
            rec["baseline_stats"] = json.loads(line[6:])
    report = None
    if report_path.exists():
        with contextlib.suppress(ValueError):
            report = json.loads(report_path.read_text())
    if report is None and "error" not in rec:
        rec["error"] = f"no report from gamebots (exit {rec.get('bots_exit')}); see {bots_out}"
        rec["bots_output_tail"] = bots_out.read_text()[-2000:]
    rec["report"] = report
    fill_step(rec, report, sampler or Sampler(0, None), t_exit, st.duration, first, last)
    rec["saturated"] = bl.saturation_reasons(rec)
    rec["loadgen_bound"] = bl.loadgen_bound(rec)
    log(
        "  -> {}/{} connected, proc CPU {}%, core0 {}%, core1 {}%, p5 {}/s, p99 {} ms: {}".format(
            rec["connected"],
            players,
            rec.get("server_cpu_pct"),
            rec.get("core0_busy_pct"),
            rec.get("core1_busy_pct"),
            rec.get("updates_p5"),
            rec.get("latency_p99_ms"),
            "; ".join(rec["saturated"]) or "ok",
        )
    )
    return rec


def fill_step(
    rec: dict[str, Any],
    report: dict[str, Any] | None,
    sampler: Sampler,
    t_exit: float,
    duration: float,
    first: dict[bl.MetricKey, float] | None,
    last: dict[bl.MetricKey, float] | None,
) -> None:
    """The step's figures from the bots' report, the /proc samples and the /metrics scrapes."""
    rep = report or {}
    players = rep.get("players") or {}
    lat = rep.get("latency_ms") or {}
    rec.update(
        connected=players.get("connected", 0),
        failed=players.get("failed", rec["target"]),
        updates_mean=rep.get("updates_per_player_per_s"),
        updates_p5=rep.get("updates_per_player_per_s_p5"),
        updates_p50=rep.get("updates_per_player_per_s_p50"),
        latency_p50_ms=lat.get("p50"),
        latency_p95_ms=lat.get("p95"),
        latency_p99_ms=lat.get("p99"),
        bytes_down_pps=rep.get("bytes_down_per_player_per_s"),
        bytes_up_pps=rep.get("bytes_up_per_player_per_s"),
        desyncs=rep.get("desyncs"),
        errors=rep.get("errors"),
        disconnects=rep.get("disconnects"),
        snapshot_resyncs=rep.get("snapshot_resyncs"),
    )
    samples = sampler.samples
    times = [s.t for s in samples]
    start, end = bl.measured_window(
        times, [s.fds for s in samples], t_exit, float(rep.get("duration_s") or duration)
    )
    idx = bl.window_indices(times, start, end)
    rec["series"] = {
        "t": [round(s.t - times[0], 2) for s in samples] if samples else [],
        "fds": [s.fds for s in samples],
        "window": [round(start - times[0], 2), round(end - times[0], 2)] if samples else None,
    }
    if idx is not None:
        a, b = samples[idx[0]], samples[idx[1]]
        wall = b.t - a.t
        rec["window_s"] = round(wall, 2)
        rec["server_cpu_pct"] = bl.process_cpu_pct(a.proc, b.proc, wall, CLK_TCK)
        core0 = bl.core_usage(a.core0, b.core0)
        core1 = bl.core_usage(a.core1, b.core1)
        rec["core0_busy_pct"] = core0["busy_pct"]
        rec["core0_softirq_pct"] = core0["softirq_pct"]
        rec["core0_steal_pct"] = core0["steal_pct"]
        rec["core1_busy_pct"] = core1["busy_pct"]
        rec["server_core_pct"] = bl.server_core_share(
            rec["server_cpu_pct"], core0["busy_pct"], core0["softirq_pct"]
        )
        rec["bots_cpu_pct"] = round(100.0 * (b.bots_cpu - a.bots_cpu) / CLK_TCK / wall, 1)
        rec["foreign_core0_pct"] = bl.foreign_share(
            core0["busy_pct"], rec["server_cpu_pct"], core0["softirq_pct"]
        )
        rec["foreign_core1_pct"] = bl.foreign_share(
            core1["busy_pct"],
            rec["bots_cpu_pct"],
            core1["softirq_pct"],
            2.0,  # 2: this script
        )
        window = samples[idx[0] : idx[1] + 1]
        rec["rss_mb"] = round(max(s.proc.rss_pages for s in window) * PAGE / 2**20, 1)
        rec["open_fds"] = max(s.fds for s in window)
    tcp = bc.tcp_rates(sampler.tcp, start, end, int(rec["connected"] or 0))
    if tcp is not None:
        rec.update(tcp)
    # this server's own view, over the scrapes inside the window
    inside = [(t, s) for t, s in sampler.scrapes if start <= t <= end]
    if len(inside) >= 2:
        (t0, s0), (t1, s1) = inside[0], inside[-1]

        def delta(name: str) -> float:
            return (bl.metric(s1, name) or 0.0) - (bl.metric(s0, name) or 0.0)

        room_count = bl.metric(s1, "gameserver_rooms") or 0.0
        own = {
            "window_s": round(t1 - t0, 2),
            "rooms": room_count,
            "tick_rate_measured": round(delta("gameserver_ticks_total") / (t1 - t0) / room_count, 2)
            if room_count
            else None,
            "ticks_late": delta("gameserver_ticks_late_total"),
            "ticks_skipped": delta("gameserver_ticks_skipped_total"),
            "deltas_skipped": delta("gameserver_deltas_skipped_total"),
            "ticks": delta("gameserver_ticks_total"),
            "encode_calls": delta("gameserver_encode_calls_total"),
        }
        p99 = bl.bucket_quantile(
            bl.histogram_buckets(s0, "gameserver_tick_seconds"),
            bl.histogram_buckets(s1, "gameserver_tick_seconds"),
            0.99,
        )
        own["tick_p99_ms"] = None if p99 is None else round(p99 * 1000, 1)
        rec["metrics_window"] = own
    if last is not None:
        base = first or {}
        refused = bl.labelled(last, "gameserver_connections_refused_total", "reason")
        before = bl.labelled(base, "gameserver_connections_refused_total", "reason")
        rec["refused"] = {
            k: v - before.get(k, 0.0) for k, v in refused.items() if v - before.get(k, 0.0)
        }
    # the tick figures: the bots' report (its server section) first, our scrapes otherwise
    server = rep.get("server") or {}
    own = rec.get("metrics_window") or {}
    for key in ("tick_rate_measured", "ticks_late", "ticks_skipped"):
        rec[key] = server.get(key, own.get(key))
    rec["tick_p99_ms"] = server.get("tick_ms_p99", own.get("tick_p99_ms"))
    if rec["server"] == "baseline" and "baseline_stats" in rec:
        stats = rec["baseline_stats"]  # whole run, not only the window
        rec["ticks_late"] = stats.get("ticks_late")
        rec["ticks_skipped"] = stats.get("ticks_skipped")


def measure(
    target: str,
    players: int,
    st: Settings,
    procs: Procs,
    tag: str,
    args: argparse.Namespace,
    room_size: int = bl.ROOM_SIZE,
) -> dict[str, Any]:
    """One step, run again (up to ``--retries`` times) while other processes on this shared
    machine took a noticeable share of either core during its window; the least disturbed
    attempt is kept, the others are attached to it."""
    attempts = [run_step(target, players, st, procs, tag, room_size)]
    while (
        bl.contaminated(attempts[-1])
        and len(attempts) <= args.retries
        and not attempts[-1].get("error")
    ):
        last = attempts[-1]
        log(
            f"  other processes used {last.get('foreign_core0_pct')}% of core 0 and "
            f"{last.get('foreign_core1_pct')}% of core 1: measuring this step again"
        )
        attempts.append(
            run_step(target, players, st, procs, f"{tag}-retry{len(attempts)}", room_size)
        )
    best = min(attempts, key=bl.disturbance)
    others = [a for a in attempts if a is not best]
    if others:
        best["discarded_attempts"] = others
    return best


# ------------------------------------------------------------------ the search
@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fits(self, estimate: float, share: float = 1.0) -> bool:
        return self.elapsed() + estimate <= self.seconds * share


def step_estimate(players: int, st: Settings) -> float:
    return 14.0 + players / st.ramp + st.duration


def sweep(
    target: str,
    st: Settings,
    procs: Procs,
    args: argparse.Namespace,
    budget: Budget,
    share: float,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    history: list[tuple[int, bool]] = []
    explicit = list(args.step_list) if args.step_list else None
    notes: list[str] = []
    while True:
        nxt = bl.choose_step(
            explicit, history, coarse=args.coarse, fine=args.fine, max_players=args.max_players
        )
        if nxt is None:
            break
        players = nxt
        if not budget.fits(step_estimate(players, st), share):
            notes.append(f"stopped before the {players}-player step: time budget")
            log(notes[-1])
            break
        rec = measure(target, players, st, procs, f"{target}-{len(steps):02d}-{players}", args)
        steps.append(rec)
        if rec.get("error"):  # a tooling failure, not a measurement: stop this target
            notes.append(f"stopped at the {players}-player step: {rec['error']}")
            log(notes[-1])
            rec["saturated"] = ["not measured"]
            break
        history.append((players, bool(rec["saturated"])))
    _good, bad = bl.search_bounds(history)
    cap = bl.capacity((p, s) for p, s in history if bad is None or p < bad)
    result: dict[str, Any] = {
        "steps": steps,
        "capacity": cap,
        "first_saturated": bad,
        "notes": notes,
    }
    cap_step = next((s for s in steps if s["target"] == cap), None)
    bad_step = next((s for s in steps if s["target"] == bad), None)
    result["capacity_step"] = None if cap_step is None else cap_step["tag"]
    result["first_saturated_reasons"] = None if bad_step is None else bad_step["saturated"]
    result["first_saturated_loadgen_bound"] = bool(bad_step and bad_step["loadgen_bound"])
    return result


# ------------------------------------------------------------------ outputs
def step_by_tag(result: dict[str, Any], tag: str | None) -> dict[str, Any] | None:
    return next((s for s in result["steps"] if s["tag"] == tag), None) if tag else None


def fmt_errors(errors: dict[str, Any] | None) -> str:
    if not errors:
        return "none"
    return ", ".join(f"{k} x{int(v)}" for k, v in sorted(errors.items()))


def capacity_line(name: str, result: dict[str, Any]) -> str:
    cap, bad = result["capacity"], result["first_saturated"]
    label = LABELS[name]
    if cap is None:
        return f"- **{label}**: every step saturated (first: {bad} players)."
    if bad is None:
        return (
            f"- **{label}**: **{cap} players** ({cap // bl.ROOM_SIZE} rooms) without saturating; "
            "the search stopped before finding the limit (higher bound not reached)."
        )
    why = ", ".join(result["first_saturated_reasons"] or [])
    extra = (
        " (the load generator's core was saturated there too)"
        if result["first_saturated_loadgen_bound"]
        else ""
    )
    return (
        f"- **{label}**: **{cap} players** ({cap // bl.ROOM_SIZE} rooms of 8); "
        f"{bad} players saturated it ({why}){extra}."
    )


def peak_line(name: str, result: dict[str, Any]) -> str:
    steps = list(result["steps"]) + ([result["overload"]] if result.get("overload") else [])
    peak = bl.peak_served(steps)
    if peak is None:
        return f"- {LABELS[name]}: none"
    offered = (
        f" of {peak['target']} offered ({fmt_errors(peak.get('errors'))})"
        if peak["connected"] < peak["target"]
        else ""
    )
    return (
        f"- {LABELS[name]}: **{peak['connected']} players**{offered}, at "
        f"{bl._fmt(peak.get('server_cpu_pct'))}% CPU, p99 {bl._fmt(peak.get('latency_p99_ms'))} ms"
    )


def bandwidth_line(name: str, result: dict[str, Any]) -> str:
    step = step_by_tag(result, result.get("capacity_step"))
    if step is None or not step.get("bytes_down_pps"):
        return f"- {LABELS[name]}: -"
    down = step["bytes_down_pps"]
    per_update = down / step["updates_mean"] if step.get("updates_mean") else None
    return (
        f"- {LABELS[name]}: **{down:,.0f} B/s down** per player at {step['target']} players "
        f"({per_update:,.0f} B per update at {step['updates_mean']:.1f} updates/s), "
        f"{step['bytes_up_pps']:,.0f} B/s up"
        if per_update
        else f"- {LABELS[name]}: {down:,.0f} B/s down per player"
    )


def overload_lines(over: dict[str, Any] | None, result: dict[str, Any]) -> list[str]:
    if over is None:
        return ["Not run."]
    lines = [
        f"{over['target']} players ({over['rooms']} rooms) against this server, twice the first "
        f"saturated step ({result['first_saturated'] or 'none found; twice the largest step'}).",
        "",
        f"- joined and played: {over['connected']} of {over['target']} bots; failed "
        f"{over['failed']}; errors by kind: {fmt_errors(over.get('errors'))}; server-side "
        f"refusals by reason: {fmt_errors(over.get('refused'))}",
        f"- rooms kept ticking: measured tick rate {bl._fmt(over.get('tick_rate_measured'), 2)} Hz"
        f" per room (configured 20), ticks late / skipped in the window "
        f"{bl._fmt(over.get('ticks_late'), 0)} / {bl._fmt(over.get('ticks_skipped'), 0)}, tick "
        f"p99 {bl._fmt(over.get('tick_p99_ms'))} ms",
        f"- the players who got in: {bl._fmt(over.get('updates_mean'))} updates/s mean, "
        f"{bl._fmt(over.get('updates_p5'))} p5; latency p50 / p95 / p99 "
        f"{bl._fmt(over.get('latency_p50_ms'))} / {bl._fmt(over.get('latency_p95_ms'))} / "
        f"{bl._fmt(over.get('latency_p99_ms'))} ms; desyncs {over.get('desyncs')}",
        f"- server: process CPU {bl._fmt(over.get('server_cpu_pct'))}%, core 0 busy "
        f"{bl._fmt(over.get('core0_busy_pct'))}%, RSS {bl._fmt(over.get('rss_mb'))} MB; load "
        f"generator core 1 busy {bl._fmt(over.get('core1_busy_pct'))}%"
        + (
            " (**saturated: the bots' figures are bots-bound**)"
            if over.get("loadgen_bound")
            else ""
        ),
    ]
    return lines


def render_markdown(results: dict[str, Any], chart: str = "bench/chart.png") -> str:
    meta = results["meta"]
    m = meta["machine"]
    th = meta["thresholds"]
    pk = m["packages"]
    targets = results["targets"]
    out = [
        "# Benchmarks",
        "",
        "Generated by `tools/bench.py` on "
        f"{m['date_utc']} (commit {m['git_commit']}"
        + (f", {m['git_dirty_files']} files uncommitted" if m["git_dirty_files"] else "")
        + "). Re-run it rather than editing this file.",
        "",
        "## Summary",
        "",
        "Capacity: the largest step that did not saturate, 8 players per arena room, 20 Hz ticks, "
        "inputs at 20 Hz, WSS on 127.0.0.1, server alone on one core:",
        "",
    ]
    for name in TARGETS:
        if name in targets:
            out.append(capacity_line(name, targets[name]))
    out += [
        "",
        "Most players actually served within the limits (p5 >= 19 updates/s, p99 <= 100 ms, "
        "CPU < 95%) in any step, counting only the bots that got in:",
        "",
    ]
    for name in TARGETS:
        if name in targets:
            out.append(peak_line(name, targets[name]))
    out += ["", "Downstream WebSocket payload per player per second at the capacity step:", ""]
    for name in TARGETS:
        if name in targets:
            out.append(bandwidth_line(name, targets[name]))
    if "gameserver" in targets:
        out += ["", "Overload (this server at twice its first saturated load):", ""]
        out += overload_lines(targets["gameserver"].get("overload"), targets["gameserver"])
    out += [
        "",
        f"![latency p99 and server CPU against players]({chart})",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m['machine']}); kernel {m['kernel']}",
        f"- {m['python']}, {m['openssl']}",
        f"- trio {pk.get('trio')}, trio-websocket {pk.get('trio-websocket')}, "
        f"websockets {pk.get('websockets')} (wsproto {pk.get('wsproto')})",
        "",
        "## How it was measured",
        "",
        f"    {meta['command']}",
        "",
        f"- Each step starts a fresh server process pinned to core {SERVER_CORE} and stops it "
        "afterwards (restarted between steps: no rooms, sessions or memory carried over). The "
        f"load generator, `gamebots`, runs pinned to core {LOADGEN_CORE}; all traffic is on "
        "127.0.0.1.",
        f"- The bots join at {meta['settings']['ramp']:g} per second, settle, then measure "
        f"{meta['settings']['duration']:g} s. Update rates and latency (input sent until the first "
        "update acknowledging it) are the bots' own; bytes are WebSocket payload bytes.",
        "- Server CPU is the process's utime+stime over the measured window (/proc/PID/stat), "
        f"and core {SERVER_CORE}'s busy share from /proc/stat (user+system+irq+softirq; softirq "
        "in brackets: loopback TCP work the kernel does on the server's core). RSS is the peak "
        "in the window. The window is found from the server's open file descriptors (they fall "
        "when the bots leave) and the bots' exit time.",
        "- Tick p99 and ticks late/skipped for this server come from its /metrics over the "
        "bots' window (the report's `server` section; p99 interpolated within the tick "
        "histogram's buckets, 0.5, 1, 2, 5, 10, 20, 50, 100, 250 ms, so it is coarse). For the "
        "baseline, ticks late/skipped are counted by the baseline itself over the whole run "
        "(ramp included); it has no tick histogram.",
        f"- Saturated: the server uses >= {th['cpu_pct']:g}% of its core (the larger of its "
        "process share and process + softirq on core 0, capped at the core's busy share, so "
        f"other processes on the core do not count), p5 update rate < {th['min_update_p5']:g}/s, "
        f"p99 latency > {th['max_latency_p99_ms']:g} ms, or not every bot got to play (e.g. "
        f"joins refused). A load-generator core over {th['loadgen_busy_pct']:g}% busy is "
        "flagged **bots-bound**: such a step measures the bots, not the server.",
        "- This server runs with its defaults except `--max-connections-per-ip 0` (every bot "
        "comes from 127.0.0.1) and a `--secret-file` shared with the bots (they join with "
        "signed tokens). Its CPU-budget admission control stays on (`--cpu-budget`, default "
        "0.85 of a core): past it, joins are refused with 4006 rather than slowing every room, "
        "so its limit shows up as refused joins before the 95% CPU rule.",
        "- The machine is shared: before each step the bench waits (up to 60 s) for both cores "
        "to be under 10% busy, and a step during which other processes took over 10% of a core "
        f"(busy time not explained by the server, the bots and softirq) is measured again "
        f"(up to {meta['settings'].get('retries', 1)} times; the least disturbed attempt is "
        "kept).",
        "- Search: "
        + (
            f"coarse steps of {meta['settings']['coarse']} players until a step saturates, then "
            f"bisection in whole rooms until the bounds are at most {meta['settings']['fine']} "
            "apart."
            if meta["settings"]["auto"]
            else f"the steps given ({meta['settings']['steps']}), stopping at the first "
            "saturated one."
        ),
        "- The baseline (`tools/baseline_server.py`) is what a Python user would otherwise "
        "write: the same arena game class, one asyncio task per room at 20 Hz, the full state "
        "as JSON every tick through `websockets.broadcast()` over TLS with the same "
        "certificate. The bots speak its JSON protocol (`--protocol json`).",
        "",
        "Example commands of one step (ports were picked by the servers):",
        "",
    ]
    for name in TARGETS:
        if name in targets and targets[name]["steps"]:
            s = targets[name]["steps"][0]
            out += [f"    {s['server_cmd']}", f"    {s.get('bots_cmd', '')}"]
    for name in TARGETS:
        if name not in targets:
            continue
        res = targets[name]
        rows = list(res["steps"])
        rows.sort(key=lambda s: s["target"])
        if res.get("overload"):
            rows.append(res["overload"])
        out += ["", f"## {LABELS[name]}", "", bl.render_table(rows)]
        for note in res.get("notes") or []:
            out += ["", f"Note: {note}"]
    odd = oddities(results)
    if odd:
        out += ["", "## Notes on this run", ""] + [f"- {line}" for line in odd]
    notes = Path(__file__).resolve().parent.parent / "bench" / "notes.md"
    if notes.exists():  # measurements made by other tools, each with its own command
        out += ["", bc.expand_notes(notes.read_text().rstrip(), notes.parent)]
    return "\n".join(out) + "\n"


def oddities(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, res in results["targets"].items():
        steps = list(res["steps"]) + ([res["overload"]] if res.get("overload") else [])
        for s in steps:
            bg = s.get("background") or {}
            if max(bg.get("core0_busy_pct", 0), bg.get("core1_busy_pct", 0)) > 10:
                lines.append(
                    f"{name} {s['target']} players: the machine was busy before the step "
                    f"(core 0 {bg['core0_busy_pct']}%, core 1 {bg['core1_busy_pct']}%): other "
                    "work on the machine may have skewed it."
                )
            foreign = max(s.get("foreign_core0_pct") or 0.0, s.get("foreign_core1_pct") or 0.0)
            if foreign > 10:
                lines.append(
                    f"{name} {s['target']} players: other processes used about "
                    f"{s.get('foreign_core0_pct')}% of core 0 and {s.get('foreign_core1_pct')}% of "
                    "core 1 during the window (busy time not explained by the server, the bots "
                    "and softirq); the step may be skewed."
                )
            for d in s.get("discarded_attempts") or []:
                lines.append(
                    f"{name} {s['target']} players: measured again; an earlier attempt was "
                    f"disturbed by other processes (about {d.get('foreign_core0_pct')}% of core 0,"
                    f" {d.get('foreign_core1_pct')}% of core 1; kept in results.json)."
                )
            if s.get("error"):
                lines.append(f"{name} {s['target']} players: {s['error']}")
            if s.get("loadgen_bound"):
                lines.append(f"{name} {s['target']} players: load generator saturated.")
            if s.get("core0_steal_pct") and s["core0_steal_pct"] > 2:
                lines.append(
                    f"{name} {s['target']} players: {s['core0_steal_pct']}% steal time on core 0."
                )
            if s.get("refused") and not s.get("overload"):
                lines.append(
                    f"{name} {s['target']} players: the server refused joins "
                    f"({fmt_errors(s['refused'])})."
                )
                cpu = s.get("server_cpu_pct")
                in_window = ((s.get("report") or {}).get("server") or {}).get("connections_refused")
                if cpu is not None and cpu < 85.0 and not in_window:
                    lines.append(
                        f"{name} {s['target']} players: those joins were refused during the "
                        f"ramp, yet the seated players then took only {cpu}% of a core: the "
                        "CPU-budget admission control (`--cpu-budget`, default 0.85 of a "
                        "core over 2 s) also counts "
                        "the CPU of the join burst (TLS and WebSocket handshakes at the ramp "
                        "rate), so under a steady stream of joins it refuses below its budget."
                    )
    return lines


def draw_chart(results: dict[str, Any], path: Path) -> None:
    """The sweep's chart (drawn by the code gamebots --chart shares: clients/bots/chart.py)."""
    from clients.bots.chart import draw_bench

    draw_bench(results, path, LABELS)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Capacity of this server and the baseline, side by side."
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--steps", help="players per step, comma-separated (e.g. 200,400,600)")
    mode.add_argument("--auto", action="store_true", help="coarse steps, then bisect (default)")
    p.add_argument(
        "--duration", type=float, help="measured seconds per step (default 10; 20 to compare)"
    )
    p.add_argument("--out", type=Path, help="markdown report (default BENCHMARKS.md)")
    p.add_argument("--results-dir", type=Path, help="results.json and chart.png (default bench/)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (to a temp dir)")
    p.add_argument("--ramp", type=float, default=100.0, help="bots joining per second")
    p.add_argument("--coarse", type=int, default=200, help="auto: players added per step")
    p.add_argument("--fine", type=int, default=64, help="auto: stop bisecting at this gap")
    p.add_argument("--max-players", type=int, default=4000, help="auto: highest step")
    p.add_argument("--targets", default=",".join(TARGETS), help="gameserver,baseline")
    p.add_argument("--no-overload", action="store_true", help="skip the overload step")
    p.add_argument("--time-budget", type=float, default=840.0, help="seconds for the whole run")
    p.add_argument(
        "--retries", type=int, default=2, help="re-runs of a step other processes disturbed"
    )
    p.add_argument("--verify-sample", type=int, default=16, help="bots checking every checksum")
    p.add_argument("--procs", type=int, default=1, help="gamebots processes (all on core 1)")
    p.add_argument("--gamebots", default=str(VENV / "bin" / "gamebots"), help="the load tester")
    p.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rewrite the markdown and chart from an earlier results.json",
    )
    bc.add_arguments(p)
    args = p.parse_args(argv)
    bc.check_arguments(p, args)
    args.duration = args.duration or (20.0 if args.compare_colyseus else 10.0)
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.steps = args.steps or "48,96"
        args.time_budget = min(args.time_budget, 300.0)
        if args.out is None and args.results_dir is None:
            args.results_dir = Path(tempfile.mkdtemp(prefix="bench-quick-"))
            args.out = args.results_dir / "BENCHMARKS.md"
    args.out = args.out or ROOT / "BENCHMARKS.md"
    args.results_dir = args.results_dir or ROOT / "bench"
    args.step_list = [int(x) for x in args.steps.split(",") if x.strip()] if args.steps else None
    args.auto = args.step_list is None
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.target_list) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        p.error("needs two cores: the server on core 0, the bots on core 1")
    return args


def auth_and_limits(
    state_dir: Path, serve_help: str, bots_help: str
) -> tuple[list[str], list[str]]:
    """Extra flags for this server and for its bots, as far as the installed CLIs have them.

    Every bot connects from 127.0.0.1, so the per-IP connection cap is lifted; players need a
    signed token, so the server and the bots share a signing secret made here.
    """
    server: list[str] = []
    bots: list[str] = []
    if "--max-connections-per-ip" in serve_help:
        server += ["--max-connections-per-ip", "0"]
    if "--secret-file" in serve_help:
        try:
            from gameserver.auth import SECRET_FILE, load_secret
        except ImportError:
            return server, bots
        load_secret(None, state_dir, create=True, env={})
        secret = state_dir / SECRET_FILE
        server += ["--secret-file", str(secret)]
        if "--secret-file" in bots_help:
            bots += ["--secret-file", str(secret)]
        elif "--state-dir" in bots_help:
            bots += ["--state-dir", str(state_dir)]
    return server, bots


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ensure_environment()
    args = parse_args(argv)
    if args.render is not None:
        results: dict[str, Any] = json.loads(args.render.read_text())
        draw_chart(results, args.results_dir / "chart.png")
        chart = os.path.relpath(args.results_dir / "chart.png", args.out.resolve().parent)
        args.out.write_text(render_markdown(results, chart))
        log(f"wrote {args.out} and {args.results_dir / 'chart.png'} from {args.render}")
        return 0
    if args.compare_colyseus is not None:
        return bc.run(args, sys.modules[__name__], argv)
    bots_help = check_gamebots(args.gamebots)
    serve_help = help_text([str(VENV_PY), "-m", "gameserver.cli", "serve"])
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # this script's own sampling stays off the server's core
    os.sched_setaffinity(0, {int(LOADGEN_CORE)})
    from gameserver.tls import ensure_dev_certificate

    command = "python tools/bench.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    state_dir = work / "state"
    ensure_dev_certificate(state_dir)  # both servers use this CA, certificate and key
    server_extra, bots_extra = auth_and_limits(state_dir, serve_help, bots_help)
    st = Settings(
        duration=args.duration,
        ramp=args.ramp,
        verify_sample=args.verify_sample,
        procs=args.procs,
        gamebots=args.gamebots,
        state_dir=state_dir,
        work_dir=work,
        server_extra=server_extra,
        bots_extra=bots_extra,
    )
    th = bl.Thresholds()
    results = {
        "meta": {
            "command": command.strip(),
            "machine": machine_info(),
            "thresholds": dataclasses.asdict(th),
            "settings": {
                "duration": args.duration,
                "ramp": args.ramp,
                "auto": args.auto,
                "steps": args.steps,
                "coarse": args.coarse,
                "fine": args.fine,
                "max_players": args.max_players,
                "verify_sample": args.verify_sample,
                "procs": args.procs,
                "retries": args.retries,
                "input_hz": st.input_hz,
                "room_size": bl.ROOM_SIZE,
                "restart_between_steps": True,
                "server_core": SERVER_CORE,
                "loadgen_core": LOADGEN_CORE,
            },
            "work_dir": str(work),
        },
        "targets": {},
    }
    procs = Procs()
    budget = Budget(args.time_budget)
    log(f"bench: logs and reports in {work}")
    finished = False
    try:
        shares = {"gameserver": 0.5 if "baseline" in args.target_list else 1.0, "baseline": 1.0}
        for target in args.target_list:
            res = sweep(target, st, procs, args, budget, shares[target])
            results["targets"][target] = res
            if target == "gameserver" and not args.no_overload and res["steps"]:
                base = res["first_saturated"] or max(s["target"] for s in res["steps"])
                players = bl.round_to_rooms(2 * base)
                if budget.fits(step_estimate(players, st), 0.62 if shares[target] < 1 else 1.0):
                    over = measure(target, players, st, procs, f"{target}-overload-{players}", args)
                    over["overload"] = True
                    res["overload"] = over
                else:
                    res["notes"].append("overload step skipped: time budget")
        finished = True
    except KeyboardInterrupt:
        log("interrupted: stopping what runs")
    finally:
        procs.stop_all()
        results["meta"]["elapsed_s"] = round(budget.elapsed(), 1)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        name = "results.json" if finished else "results.partial.json"
        (args.results_dir / name).write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {args.results_dir / name}")
    draw_chart(results, args.results_dir / "chart.png")
    chart = os.path.relpath(args.results_dir / "chart.png", args.out.resolve().parent)
    args.out.write_text(render_markdown(results, chart))
    log(f"wrote {args.out} and {args.results_dir / 'chart.png'} in {budget.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
