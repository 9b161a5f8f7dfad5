"""Side by side with Colyseus: its harness and this server on the same levels, in one session.

    python tools/bench.py --compare-colyseus DIR [--levels 496,1000,1496] [--duration 20]
                          [--warmup 5] [--no-admission] [--quiet-wait 60]

``DIR`` is a Colyseus benchmark harness the user provides; it is not part of this repository.
It must hold an executable ``run.sh`` and ``load/loadclient.js`` (``harness_problem`` checks
both), and ``run.sh`` must honour these environment variables (the names are the harness's):

    COLY_LEVELS="N"   the one level (players) to run; PY_LEVELS="" PYNC_LEVELS="" (other series
                      off); PLAYERS=8 (per room); DURATION=S (measured window); WARMUP=S (after
                      the last join); PIN=1 (server on core 0, load on core 1); QUIET_WAIT=S
                      (wait for a quiet machine first); RETRIES=N; OUTDIR=PATH

and write ``OUTDIR/colyseus-N.json``, the load client's result, with at least the fields
``colyseus_side`` reads: ``ccu``, ``server.cpuPct`` (the server process's utime+stime over the
window, /proc/PID/stat), ``machine.cores.cpu0.{busyPct,softirqPct}`` (/proc/stat),
``perClient.{wsPayloadBytesPerS,stateUpdatesPerS}`` (mean over every client),
``serverSide.patchesPerRoomS`` (counted in the server), ``latencyMs.{p50,p99}`` (input sent
until the first patch echoing its sequence number, on the decoding probe bots), and, when it
has them, ``tcp.{tcpPayloadBytesPerClientS,ipBytesPerClientS}`` (``ss -ti`` on the server's
sockets at the window's ends), ``loadClient``, ``machine.{otherProcsPctOneCore,...}``,
``errors`` and ``closedEarly``.

For each level this script runs the harness at that level, then this server at the same level
through tools/bench.py's own step (fresh server on core 0, ``gamebots`` on core 1, the same
window and warm-up: ``--settle`` = the harness's WARMUP), alternating, and writes
``bench/compare-colyseus.json``. ``render`` makes the ratio table that ``tools/bench.py
--render`` puts into BENCHMARKS.md where bench/notes.md holds the marker line ``MARKER``.

The functions down to ``expand_notes`` are pure (unit-tested on hand-written result JSON);
``run`` drives the processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

TICK_RATE = 20.0  # both sides: arena at 20 Hz
ROOM_SIZE = bl.ROOM_SIZE
DEFAULT_LEVELS = "496,1000,1496"
JSON_NAME = "compare-colyseus.json"
MARKER = "<!-- bench_compare: compare-colyseus.json -->"
HARNESS_FILES = ("run.sh", "load/loadclient.js")
COMMAND_HINT = "python tools/bench.py --compare-colyseus DIR --levels 496,1000,1496"
COLYSEUS_LABEL = "Colyseus 0.18 (ws)"
OURS_LABEL = "this server (wss)"
OURS_WS_LABEL = "this server (ws)"


# ------------------------------------------------------------------ the harness directory
def harness_problem(directory: Path) -> str | None:
    """One line saying why ``directory`` is not a Colyseus harness, or None if it looks like one."""
    if not directory.is_dir():
        return f"--compare-colyseus {directory}: no such directory"
    for name in HARNESS_FILES:
        if not (directory / name).is_file():
            return (
                f"--compare-colyseus {directory}: no {name} there, so it is not a Colyseus "
                "harness (see the docstring of tools/bench_compare.py for what it must hold)"
            )
    if not os.access(directory / "run.sh", os.X_OK):
        return f"--compare-colyseus {directory}: run.sh is not executable (chmod +x it)"
    text = (directory / "run.sh").read_text(errors="replace")
    lacking = [k for k in ("COLY_LEVELS", "OUTDIR", "DURATION", "WARMUP") if k not in text]
    if lacking:
        return (
            f"--compare-colyseus {directory}: its run.sh does not read {', '.join(lacking)}, "
            "so this script cannot drive it"
        )
    return None


def harness_env(
    level: int, duration: float, warmup: float, outdir: Path, quiet_wait: float, retries: int
) -> dict[str, str]:
    """The environment that makes the harness's run.sh run Colyseus at one level only."""
    return {
        "COLY_LEVELS": str(level),
        "PY_LEVELS": "",
        "PYNC_LEVELS": "",
        "PLAYERS": str(ROOM_SIZE),
        "DURATION": f"{duration:g}",
        "WARMUP": f"{warmup:g}",
        "PIN": "1",
        "QUIET_WAIT": f"{quiet_wait:g}",
        "RETRIES": str(retries),
        "OUTDIR": str(outdir),
    }


# ------------------------------------------------------------------ TCP bytes (ss -ti)
@dataclass(frozen=True)
class SsTotals:
    """Sums over the established TCP sockets ``ss -tinH`` listed."""

    sockets: int
    bytes_sent: int
    segs_out: int


_SENT = re.compile(r"\bbytes_sent:(\d+)")
_SEGS = re.compile(r"\bsegs_out:(\d+)")


def parse_ss(text: str) -> SsTotals:
    """Totals from ``ss -tinH state established '( sport = :PORT )'`` output."""
    sent = [int(m) for m in _SENT.findall(text)]
    segs = [int(m) for m in _SEGS.findall(text)]
    return SsTotals(len(sent), sum(sent), sum(segs))


def read_ss(port: int, timeout: float = 10.0) -> SsTotals | None:
    try:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ss(out)


#: IPv4 (20) + TCP with timestamps (32) header bytes per segment; the harness counts the same
IP_TCP_HEADER = 52


def tcp_rates(
    samples: Sequence[tuple[float, SsTotals]], start: float, end: float, players: int
) -> dict[str, float] | None:
    """TCP payload and TCP+IP bytes the server sent per player per second, between the first
    and the last sample inside [start, end] (sockets that closed in between would make the sums
    fall: such a pair is not used)."""
    inside = [(t, s) for t, s in samples if start <= t <= end]
    if len(inside) < 2 or players <= 0:
        return None
    (t0, a), (t1, b) = inside[0], inside[-1]
    if t1 <= t0 or b.bytes_sent < a.bytes_sent:
        return None
    wall = t1 - t0
    sent = b.bytes_sent - a.bytes_sent
    segs = b.segs_out - a.segs_out
    return {
        "tcp_bytes_down_pps": round(sent / players / wall, 1),
        "wire_bytes_down_pps": round((sent + IP_TCP_HEADER * segs) / players / wall, 1),
        "tcp_window_s": round(wall, 2),
    }


# ------------------------------------------------------------------ the two sides
def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def per_player_tick_us(cpu_pct: float | None, players: int) -> float | None:
    """µs of server CPU per player per tick: the share of a core over players x ticks/s."""
    if cpu_pct is None or players <= 0:
        return None
    return round(cpu_pct / 100.0 * 1e6 / players / TICK_RATE, 2)


def colyseus_side(doc: Mapping[str, Any], th: bl.Thresholds | None = None) -> dict[str, Any]:
    """One level of the harness (its load client's result JSON) in this script's terms."""
    th = th or bl.Thresholds()
    players = int(_num(doc.get("ccu")) or 0)
    cpu = _num(_get(doc, "server", "cpuPct"))
    busy = _num(_get(doc, "machine", "cores", "cpu0", "busyPct"))
    softirq = _num(_get(doc, "machine", "cores", "cpu0", "softirqPct"))
    core = (
        bl.server_core_share(cpu, busy, softirq)
        if cpu is not None and busy is not None and softirq is not None
        else None
    )
    updates = _num(_get(doc, "perClient", "stateUpdatesPerS"))
    patches = _num(_get(doc, "serverSide", "patchesPerRoomS"))
    p99 = _num(_get(doc, "latencyMs", "p99"))
    lost = int(_num(doc.get("closedEarly")) or 0)
    errors = int(_num(doc.get("errors")) or 0)
    reasons = []
    load = max(cpu or 0.0, core or 0.0)
    if cpu is None or load >= th.cpu_pct:
        reasons.append("cpu " + ("-" if cpu is None else f"{load:.0f}%"))
    if updates is None or updates < th.min_update_p5:
        reasons.append("mean updates " + ("-" if updates is None else f"{updates:.1f}/s"))
    if patches is not None and patches < th.min_update_p5:
        reasons.append(f"server patches {patches:.1f}/room/s")
    if p99 is None or p99 > th.max_latency_p99_ms:
        reasons.append("p99 latency " + ("-" if p99 is None else f"{p99:.0f} ms"))
    if lost:
        reasons.append(f"{lost} bots left early")
    if errors:
        reasons.append(f"{errors} errors")
    other = max(
        0.0,
        _num(_get(doc, "machine", "otherProcsPctOneCore")) or 0.0,
        (_num(_get(doc, "machine", "otherPctOneCore")) or 0.0)
        - (_num(_get(doc, "machine", "softirqPctOneCore")) or 0.0),
    )
    lc = _get(doc, "loadClient") or {}
    cli_busy = _num(_get(doc, "machine", "cores", "cpu1", "busyPct"))
    inputs = _num(_get(doc, "perClient", "inputsSentPerS"))
    loadgen_bound = bool(
        (_num(lc.get("cpuPct")) or 0.0) >= 90.0
        or (inputs is not None and inputs < th.min_update_p5)
        or (_num(lc.get("eventLoopDelayP99Ms")) or 0.0) > 60.0
        or (cli_busy or 0.0) >= 97.0
    )
    return {
        "target": players,
        "players": players - lost,
        "cpu_pct": cpu,
        "core_pct": core,
        "us_per_player_tick": per_player_tick_us(cpu, players - lost),
        "updates": updates,
        "updates_kind": "mean",
        "latency_p50_ms": _num(_get(doc, "latencyMs", "p50")),
        "latency_p99_ms": p99,
        "bytes_down_pps": _num(_get(doc, "perClient", "wsPayloadBytesPerS")),
        "tcp_bytes_down_pps": _num(_get(doc, "tcp", "tcpPayloadBytesPerClientS")),
        "wire_bytes_down_pps": _num(_get(doc, "tcp", "ipBytesPerClientS")),
        "loadgen_core_pct": cli_busy,
        "loadgen_bound": loadgen_bound,
        "disturbed": other > 10.0,
        "other_pct": round(other, 1),
        "reasons": reasons,
    }


def our_side(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One tools/bench.py step record in this script's terms (the step's own saturation rules,
    benchlib.saturation_reasons, decide whether it was sustained)."""
    players = int(rec.get("connected") or 0)
    cpu = _num(rec.get("server_cpu_pct"))
    reasons = list(rec.get("saturated") or bl.saturation_reasons(rec))
    if rec.get("error"):
        reasons = ["not measured: " + str(rec["error"])]
    return {
        "target": int(rec.get("target") or 0),
        "players": players,
        "cpu_pct": cpu,
        "core_pct": _num(rec.get("server_core_pct")),
        "us_per_player_tick": per_player_tick_us(cpu, players),
        "updates": _num(rec.get("updates_p5")),
        "updates_kind": "p5",
        "latency_p50_ms": _num(rec.get("latency_p50_ms")),
        "latency_p99_ms": _num(rec.get("latency_p99_ms")),
        "bytes_down_pps": _num(rec.get("bytes_down_pps")),
        "tcp_bytes_down_pps": _num(rec.get("tcp_bytes_down_pps")),
        "wire_bytes_down_pps": _num(rec.get("wire_bytes_down_pps")),
        "loadgen_core_pct": _num(rec.get("core1_busy_pct")),
        "loadgen_bound": bool(rec.get("loadgen_bound")),
        "disturbed": bl.contaminated(rec),
        "other_pct": bl.disturbance(rec),
        "refused": dict(rec.get("refused") or {}),
        "reasons": reasons,
    }


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def capacity(levels: Iterable[tuple[int, bool]]) -> dict[str, Any]:
    """The highest level sustained and the lowest that was not, over the levels run.
    ``reached_top``: the highest level run was sustained, so the limit lies above it."""
    ordered = sorted(levels)
    ok = [n for n, good in ordered if good]
    bad = [n for n, good in ordered if not good]
    return {
        "players": max(ok) if ok else None,
        "first_failed": min(bad) if bad else None,
        "reached_top": bool(ordered) and ordered[-1][1],
    }


def compare(levels: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ratio table's figures: ``levels`` holds, per level, ``players`` and the two sides
    (``colyseus``, ``ours``) as made by colyseus_side and our_side (either may be None), and
    with ``--plain-too`` a third, ``ours_ws`` (this server over plain ws, as Colyseus runs):
    then each cell also has ``ours_ws`` and ``ratio_ws`` (ws / Colyseus)."""
    has_ws = any(lv.get("ours_ws") for lv in levels)
    rows = []
    for lv in sorted(levels, key=lambda x: x["players"]):
        c, o, w = lv.get("colyseus"), lv.get("ours"), lv.get("ours_ws")
        row: dict[str, Any] = {"players": lv["players"]}
        for key in (
            "cpu_pct",
            "us_per_player_tick",
            "bytes_down_pps",
            "tcp_bytes_down_pps",
            "wire_bytes_down_pps",
            "latency_p99_ms",
        ):
            row[key] = {
                "colyseus": c.get(key) if c else None,
                "ours": o.get(key) if o else None,
                "ratio": ratio(o.get(key) if o else None, c.get(key) if c else None),
            }
            if has_ws:
                row[key]["ours_ws"] = w.get(key) if w else None
                row[key]["ratio_ws"] = ratio(w.get(key) if w else None, c.get(key) if c else None)
        rows.append(row)
    caps: dict[str, Any] = {}
    for side in ("colyseus", "ours", "ours_ws") if has_ws else ("colyseus", "ours"):
        caps[side] = capacity(
            (lv["players"], not lv[side]["reasons"]) for lv in levels if lv.get(side)
        )
    caps["ratio"] = ratio(caps["ours"]["players"], caps["colyseus"]["players"])
    if has_ws:
        caps["ratio_ws"] = ratio(caps["ours_ws"]["players"], caps["colyseus"]["players"])
    return {"rows": rows, "capacity": caps}


# ------------------------------------------------------------------ rendering
def _f(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _cap(c: Mapping[str, Any]) -> str:
    if c["players"] is None:
        return f"none ({c['first_failed']} failed)" if c["first_failed"] else "-"
    return f"≥ {c['players']}" if c["reached_top"] else str(c["players"])


def _flags(side: Mapping[str, Any] | None) -> str:
    if not side:
        return "not run"
    out = ["; ".join(side["reasons"]) or "ok"]
    if side.get("loadgen_bound"):
        out.append("load-gen-bound")
    if side.get("disturbed"):
        out.append(f"disturbed ({side['other_pct']}% of a core by others)")
    return ", ".join(out)


def render(result: Mapping[str, Any]) -> str:
    """The markdown of a comparison run (the JSON ``run`` writes)."""
    meta = result["meta"]
    cmp = result["compare"]
    has_ws = "ours_ws" in cmp["capacity"]
    admission = (
        "admission control off (`--cpu-budget 0`)"
        if meta.get("no_admission")
        else "admission control at its default (`--cpu-budget 0.85`)"
    )
    out = [
        f"Run on {meta.get('date_utc', '?')} (commit {meta.get('git_commit', '?')}), "
        f"{meta['duration']:g} s windows after a {meta['warmup']:g} s warm-up, levels "
        f"{', '.join(str(n) for n in meta['levels'])}, alternating Colyseus then this server "
        f"at each level{' (over wss, then over plain ws as Colyseus runs)' if has_ws else ''}; "
        f"this server with {admission}.",
        "",
        f"    {meta['command']}",
        "",
    ]
    if has_ws:
        out += [
            f"| measure | players | {COLYSEUS_LABEL} | {OURS_LABEL} | wss / Colyseus "
            f"| {OURS_WS_LABEL} | ws / Colyseus |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    else:
        out += [
            f"| measure | players | {COLYSEUS_LABEL} | {OURS_LABEL} | ours / Colyseus |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
    measures = [
        ("server CPU, % of a core", "cpu_pct"),
        ("server CPU per player-tick, µs", "us_per_player_tick"),
        ("bytes down per player per s, WebSocket payload", "bytes_down_pps"),
        ("bytes down per player per s, TCP payload", "tcp_bytes_down_pps"),
        ("bytes down per player per s, TCP+IP", "wire_bytes_down_pps"),
        ("p99 input-to-state latency, ms", "latency_p99_ms"),
    ]
    for title, key in measures:
        for row in cmp["rows"]:
            cell = row[key]
            if cell["colyseus"] is None and cell["ours"] is None:
                continue
            line = (
                f"| {title} | {row['players']} | {_f(cell['colyseus'])} | {_f(cell['ours'])} "
                f"| {_ratio(cell['ratio'])} |"
            )
            if has_ws:
                line += f" {_f(cell['ours_ws'])} | {_ratio(cell['ratio_ws'])} |"
            out.append(line)
    caps = cmp["capacity"]
    line = (
        f"| capacity: highest level sustained | of {len(meta['levels'])} | "
        f"{_cap(caps['colyseus'])} | {_cap(caps['ours'])} | {_ratio(caps['ratio'])} |"
    )
    if has_ws:
        line += f" {_cap(caps['ours_ws'])} | {_ratio(caps['ratio_ws'])} |"
    out.append(line)
    out += [
        "",
        "Per level (sustained: updates ≥ 19/s, p99 ≤ 100 ms, server CPU < 95%, every bot played):",
        "",
        "| players | side | joined | updates/s | p50 / p99 ms | core 0 % | load-gen core 1 % "
        "| verdict |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for lv in sorted(result["levels"], key=lambda x: x["players"]):
        sides = [(COLYSEUS_LABEL, "colyseus"), (OURS_LABEL, "ours")]
        if has_ws:
            sides.append((OURS_WS_LABEL, "ours_ws"))
        for label, key in sides:
            s = lv.get(key)
            if not s:
                out.append(f"| {lv['players']} | {label} | - | - | - | - | - | not run |")
                continue
            out.append(
                f"| {lv['players']} | {label} | {s['players']} | {_f(s['updates'], 2)} "
                f"({s['updates_kind']}) | {_f(s['latency_p50_ms'])} / {_f(s['latency_p99_ms'])} "
                f"| {_f(s['core_pct'])} | {_f(s['loadgen_core_pct'])} | {_flags(s)} |"
            )
    return "\n".join(out)


def expand_notes(notes: str, bench_dir: Path) -> str:
    """bench/notes.md with its MARKER line replaced by the table of bench/compare-colyseus.json
    (or by a line saying it has not been run)."""
    if MARKER not in notes:
        return notes
    path = bench_dir / JSON_NAME
    try:
        table = render(json.loads(path.read_text()))
    except FileNotFoundError:
        table = f"Not run yet on this checkout (no bench/{JSON_NAME}): `{COMMAND_HINT}`."
    except (ValueError, KeyError, TypeError) as exc:
        table = f"bench/{JSON_NAME} could not be read ({type(exc).__name__}: {exc})."
    return notes.replace(MARKER, table)


# ------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """tools/bench.py's flags for this mode."""
    g = p.add_argument_group("side by side with Colyseus (tools/bench_compare.py)")
    g.add_argument(
        "--compare-colyseus",
        metavar="DIR",
        type=Path,
        help="run the Colyseus harness in DIR and this server at each of --levels, alternating",
    )
    g.add_argument("--levels", default=DEFAULT_LEVELS, help=f"players (default {DEFAULT_LEVELS})")
    g.add_argument("--warmup", type=float, default=5.0, help="seconds after the last join")
    g.add_argument("--quiet-wait", type=float, default=60.0, help="harness: wait for quiet")
    g.add_argument(
        "--plain-too",
        action="store_true",
        help="also this server over plain ws (--insecure), like for like with Colyseus",
    )
    g.add_argument(
        "--no-admission",
        action="store_true",
        help="this server with --cpu-budget 0 (default: its default admission control)",
    )


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        args.level_list = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        p.error(f"--levels {args.levels!r}: players, comma-separated (e.g. 496,1000)")
    if args.compare_colyseus is None:
        return
    if not args.level_list or min(args.level_list) < ROOM_SIZE:
        p.error(f"--levels: at least one level, each of {ROOM_SIZE} players or more")
    if args.warmup < 0 or args.quiet_wait < 0:
        p.error("--warmup and --quiet-wait are seconds, 0 or more")


# ------------------------------------------------------------------ driving the processes
def run_harness(directory: Path, level: int, args: Any, work: Path, bm: Any) -> dict[str, Any]:
    """The harness at one level; its result JSON (or an ``error``)."""
    outdir = work / f"colyseus-{level}"
    outdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **harness_env(level, args.duration, args.warmup, outdir, args.quiet_wait, args.retries),
    }
    log_path = work / f"colyseus-{level}.run.log"
    bound = (args.quiet_wait + args.warmup + args.duration + 260) * (args.retries + 1) + 600
    bm.log(f"colyseus: {level} players (harness {directory}/run.sh)")
    with log_path.open("w") as logf:
        proc = subprocess.Popen(
            [str(directory / "run.sh")],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,  # its own group: stopped as a whole below
        )
        try:
            proc.wait(bound)
        except subprocess.TimeoutExpired:
            bm.log(f"  the harness ran past {bound:.0f} s: stopping it")
        finally:  # also on Ctrl-C: the harness stops its own server on SIGTERM
            stop_group(proc)
    path = outdir / f"colyseus-{level}.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        tail = log_path.read_text(errors="replace")[-1500:]
        return {"error": f"no result from the harness ({exc}); see {log_path}", "tail": tail}
    doc["run_sh_exit"] = proc.returncode
    side = colyseus_side(doc)
    bm.log(
        f"  -> colyseus {side['players']}/{level}, CPU {side['cpu_pct']}%, updates "
        f"{side['updates']}/s, p99 {side['latency_p99_ms']} ms: {'; '.join(side['reasons']) or 'ok'}"
    )
    return doc


def stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """Stop a harness this script started: its process group (its id is the harness's pid)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def run(args: Any, bm: Any, argv: list[str] | None) -> int:
    """``tools/bench.py --compare-colyseus DIR``: ``bm`` is the tools/bench.py module."""
    directory = Path(args.compare_colyseus).resolve()
    problem = harness_problem(directory)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    for tool in ("node", "npm", "taskset", "ss"):
        if shutil.which(tool) is None:
            print(f"bench: --compare-colyseus needs {tool} on PATH", file=sys.stderr)
            return 2
    import dataclasses
    import tempfile

    bots_help = bm.check_gamebots(args.gamebots)
    serve_help = bm.help_text([str(bm.VENV_PY), "-m", "gameserver.cli", "serve"])
    signal.signal(signal.SIGTERM, bm._raise_interrupt)
    os.sched_setaffinity(0, {int(bm.LOADGEN_CORE)})
    from gameserver.tls import ensure_dev_certificate

    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    state_dir = work / "state"
    ensure_dev_certificate(state_dir)
    server_extra, bots_extra = bm.auth_and_limits(state_dir, serve_help, bots_help)
    if args.no_admission:
        server_extra = [*server_extra, "--cpu-budget", "0"]
    st = bm.Settings(
        duration=args.duration,
        ramp=args.ramp,
        verify_sample=args.verify_sample,
        procs=args.procs,
        gamebots=args.gamebots,
        state_dir=state_dir,
        work_dir=work,
        server_extra=server_extra,
        bots_extra=[*bots_extra, "--settle", f"{args.warmup:g}"],
        tcp_sample=True,
    )
    machine = bm.machine_info()
    levels = [bl.round_to_rooms(n) for n in args.level_list]
    meta = {
        "command": ("python tools/bench.py " + shlex.join(argv or sys.argv[1:])).strip(),
        "harness": str(directory),
        "levels": levels,
        "duration": args.duration,
        "warmup": args.warmup,
        "ramp": args.ramp,
        "verify_sample": args.verify_sample,
        "no_admission": bool(args.no_admission),
        "plain_too": bool(args.plain_too),
        "date_utc": machine["date_utc"],
        "git_commit": machine["git_commit"],
        "machine": machine,
        "work_dir": str(work),
    }
    procs = bm.Procs()
    bm.log(f"bench --compare-colyseus: logs in {work}")
    done: list[dict[str, Any]] = []
    finished = False
    started = time.monotonic()
    try:
        for n in levels:
            lv: dict[str, Any] = {"players": n}
            done.append(lv)
            doc = run_harness(directory, n, args, work, bm)
            lv["colyseus_raw"] = doc
            lv["colyseus"] = None if "error" in doc else colyseus_side(doc)
            rec = bm.measure("gameserver", n, dataclasses.replace(st), procs, f"ours-{n}", args)
            lv["ours_raw"] = rec
            lv["ours"] = our_side(rec)
            if args.plain_too:
                plain = dataclasses.replace(st, server_extra=[*st.server_extra, "--insecure"])
                rec = bm.measure("gameserver", n, plain, procs, f"ours-ws-{n}", args)
                lv["ours_ws_raw"] = rec
                lv["ours_ws"] = our_side(rec)
        finished = True
    except KeyboardInterrupt:
        bm.log("interrupted: stopping what runs")
    finally:
        procs.stop_all()
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    result = {"meta": meta, "levels": done, "compare": compare(done)}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / (JSON_NAME if finished else "compare-colyseus.partial.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    bm.log(f"wrote {path}")
    results_json = args.results_dir / "results.json"
    if finished and results_json.exists() and args.results_dir.resolve() == bm.ROOT / "bench":
        bm.main(["--render", str(results_json), "--out", str(args.out)])
    return 0 if finished else 1
