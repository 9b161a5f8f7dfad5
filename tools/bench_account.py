"""The account of one player-tick of the server at capacity, and of the load generator.

    python tools/bench_account.py [--part all|profile|micro|bots|native] [--players 1000]
                                  [--bots 1500] [--seconds 15] [--json bench/account.json]
    python tools/bench_account.py --render bench/account.json     # the markdown only

Rows of a player-tick (tools/accountlib.py): TLS read (recv syscall + decrypt), frame parsing,
input decoding, the game's update, delta encoding (per room, / 8), TLS write (encrypt), the
send syscall, and bookkeeping (limits, stats, outbound, scheduler: the rest). The sources:

``profile``  The real server at ``--players`` (arena rooms of 8, 20 Hz, inputs at 20 Hz, WSS,
             ``--cpu-budget 0``), started as tools/bench.py starts it (pinned to core 0, the
             bots pinned to core 1, same flags). Once the bots are in, ``py-spy record --format
             raw --nonblocking`` samples it for ``--seconds`` (py-spy itself on core 1). Each
             sample goes to a row by the table of frame names in tools/accountlib.py; a row's
             share of the samples times the server's CPU over the window (utime+stime, /proc),
             divided by the player-ticks served (DELTAs sent and skipped, from /metrics), is its
             µs per player-tick.
``micro``    Each row in isolation with the project's own code, timeit-style, pinned to core 0,
             beside its floor: the cheapest this stack does the same (tools/account_micro.py).
``bots``     ``gamebots`` with ``--bots`` bots (as bench.py runs them: ``--verify-sample 16``,
             inputs at 20 Hz, pinned to core 1) against a server on core 0, which may not hold
             that many (it saturates; what is measured is the bots' own cost): their CPU per bot
             and per bot-tick (a state message received, an input sent), and a py-spy profile
             of where it goes.
``native``   (not in ``all``) The server at ``--players`` again, sampled by ``perf record -e
             cpu-clock`` instead of py-spy: its CPU split by shared object (CPython's
             interpreter, the kernel, OpenSSL, the compiled modules, libc, CPython's C
             modules), each as a share and µs per player-tick. Then the transport alone at the
             same load: tools/bench_transport.py's takeover over TLS pinned to core 0, with the
             server's message sizes (from /metrics), no rooms, game or encoding; and the rooms'
             ticks alone (tools/account_rooms.py, as many rooms, no sockets). Needs perf.

Writes the JSON (``--json``) and puts the markdown into bench/notes.md between the
``account:begin`` / ``account:end`` markers (``--no-notes`` to leave it); then
``tools/bench.py --render bench/results.json`` renders BENCHMARKS.md. Every process started
here is stopped by its PID. Fails with one line when py-spy is missing or cannot attach.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accountlib as al
import benchlib as bl

import bench as bm
from gameserver.config import ServerConfig

ROOT = bm.ROOT
TICK_RATE = 20
#: issue 14's target, and the admission budget it is measured at (``--cpu-budget``'s default)
TARGET_PLAYERS = 1500
BUDGET = ServerConfig().cpu_budget
NOTES = ROOT / "bench" / "notes.md"
BEGIN = "<!-- account:begin (written by tools/bench_account.py) -->"
END = "<!-- account:end -->"


class AccountError(Exception):
    """A reason to stop with one line (no traceback)."""


# ------------------------------------------------------------------ py-spy
def find_py_spy() -> str:
    for candidate in (bm.VENV / "bin" / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise AccountError(
        "py-spy is not installed: `.venv/bin/pip install -e '.[bench]'` (or `pip install py-spy`)"
    )


def check_attach(py_spy: str, pid: int) -> None:
    """A one-off ``py-spy dump`` of ``pid``: fails fast (one line) if ptrace is not allowed."""
    try:
        res = subprocess.run(
            [py_spy, "dump", "--pid", str(pid), "--nonblocking"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AccountError(f"py-spy cannot attach to pid {pid}: {exc}") from None
    if res.returncode != 0:
        raise AccountError(f"py-spy cannot attach to pid {pid}: {last_line(res.stderr)}{HINT}")


HINT = (
    " (py-spy needs ptrace: run as root, or `sysctl kernel.yama.ptrace_scope=0`, "
    "or the SYS_PTRACE capability in a container)"
)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def record(
    py_spy: str, pid: int, seconds: float, rate: int, out: Path, native: bool = False
) -> str:
    """Sample ``pid``. ``native``: C frames too (the compiled modules), but py-spy must then
    stop the process for each sample, which lands samples in system calls more often: about
    half the samples in send and recv at 400 players here, where stime is a quarter of the CPU."""
    cmd = [
        "taskset", "-c", bm.LOADGEN_CORE, py_spy, "record", "--pid", str(pid),
        "--rate", str(rate), "--duration", f"{seconds:g}", "--format", "raw",
        "--output", str(out), "--native" if native else "--nonblocking",
    ]  # fmt: skip
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AccountError(f"py-spy record failed: {exc}") from None
    if res.returncode != 0 or not out.exists():
        raise AccountError(f"py-spy record of pid {pid} failed: {last_line(res.stderr)}{HINT}")
    return shlex.join(cmd)


# ------------------------------------------------------------------ perf
def find_perf() -> str:
    found = shutil.which("perf")
    if found is None:
        raise AccountError(
            "perf is not installed (Debian: `apt-get install linux-perf`); the split by "
            "library needs it"
        )
    return found


def perf_sampler(args: argparse.Namespace, perf: str) -> Sampler:
    """``perf record -e cpu-clock`` of the process (a software clock: this guest has no
    hardware counters), then its samples by shared object, as text."""

    def sample(pid: int, out: Path) -> str:
        data = out.with_suffix(".perf.data")
        cmd = [
            "taskset", "-c", bm.LOADGEN_CORE, perf, "record", "-e", "cpu-clock",
            "-F", str(args.rate), "-p", str(pid), "-o", str(data), "--", "sleep",
            f"{args.seconds:g}",
        ]  # fmt: skip
        report = [
            perf, "report", "-i", str(data), "--no-children", "--sort", "dso", "--stdio",
        ]  # fmt: skip
        try:
            rec = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
            rep = subprocess.run(report, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AccountError(f"perf failed: {exc}") from None
        if rec.returncode != 0 or rep.returncode != 0 or not al.parse_perf_dso(rep.stdout):
            why = last_line(rec.stderr if rec.returncode else rep.stderr)
            raise AccountError(
                f"perf record of pid {pid} gave no samples: {why} (perf needs "
                "`sysctl kernel.perf_event_paranoid=1` or root)"
            )
        out.write_text(rep.stdout)
        return shlex.join(cmd)

    return sample


def run_tool(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run one of the tools (``cmd`` as shown: taskset, core, ``.venv/bin/python``, script,
    arguments) with this checkout's interpreter, from the checkout."""
    try:
        return subprocess.run(
            [*cmd[:3], str(bm.VENV_PY), *cmd[4:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AccountError(f"{Path(cmd[4]).name} failed: {exc}") from None


def transport_floor(players: int, size: int, input_size: int, seconds: float) -> dict[str, Any]:
    """tools/bench_transport.py's takeover over TLS, pinned to the server's core: the same
    players, messages and sizes as the server's, through the same connection code, with no
    rooms, game or encoding. Its CPU per player-tick is what the transport alone costs."""
    cmd = [
        "taskset", "-c", bm.SERVER_CORE, ".venv/bin/python", "tools/bench_transport.py",
        "--players", str(players), "--size", str(size), "--input-size", str(input_size),
        "--hz", str(TICK_RATE), "--input-hz", str(TICK_RATE), "--seconds", f"{seconds:g}",
        "--path", "takeover", "--tls-only",
    ]  # fmt: skip
    run = run_tool(cmd, seconds + 180)
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] == "takeover":
            cpu = float(cells[2]) / 100
            return {
                "command": shlex.join(cmd),
                "cpu": cpu,
                "us_per_player_tick": round(cpu * 1e6 / (players * TICK_RATE), 2),
                "size": size,
                "input_size": input_size,
            }
    raise AccountError(f"bench_transport printed no takeover row: {last_line(run.stderr)}")


def rooms_alone(players: int) -> dict[str, Any]:
    """tools/account_rooms.py pinned to the server's core: the room's tick of moving players
    with as many rooms as the server had, ticked in turn, no sockets."""
    cmd = [
        "taskset", "-c", bm.SERVER_CORE, ".venv/bin/python", "tools/account_rooms.py",
        "--players", str(players),
    ]  # fmt: skip
    run = run_tool(cmd, 600)
    try:
        return {**json.loads(run.stdout.strip().splitlines()[-1]), "command": shlex.join(cmd)}
    except (ValueError, IndexError):
        raise AccountError(f"account_rooms printed no figures: {last_line(run.stderr)}") from None


# ------------------------------------------------------------------ a load run
def settings(args: argparse.Namespace, work: Path, duration: float) -> bm.Settings:
    state = work / "state"
    state.mkdir(parents=True, exist_ok=True)
    return bm.Settings(
        duration=duration,
        ramp=args.ramp,
        verify_sample=16,
        procs=1,
        gamebots=str(bm.VENV / "bin" / "gamebots"),
        state_dir=state,
        work_dir=work,
    )


def players_now(metrics_url: str) -> float:
    s = bm.scrape(metrics_url) or {}
    return bl.metric(s, "gameserver_players") or 0.0


def counter(s: dict[bl.MetricKey, float] | None, name: str) -> float:
    return (bl.metric(s or {}, f"{name}_total") or bl.metric(s or {}, name)) or 0.0


#: samples a process: (pid, where its text goes) -> the command that did it
Sampler = Callable[[int, Path], str]


def py_spy_sampler(args: argparse.Namespace, py_spy: str) -> Sampler:
    def sample(pid: int, out: Path) -> str:
        check_attach(py_spy, pid)
        return record(py_spy, pid, args.seconds, args.rate, out, getattr(args, "native", False))

    return sample


def load_run(
    args: argparse.Namespace,
    players: int,
    target: str,
    work: Path,
    sample: Sampler,
    cmd_key: str = "py_spy_cmd",
) -> dict[str, Any]:
    """Start a server and ``players`` bots as tools/bench.py does, wait until they are in, then
    sample ``target`` ("server" or "bots") for ``--seconds`` (py-spy, or perf for the split by
    library), reading CPU and /metrics over the same window."""
    rooms = players // bl.ROOM_SIZE
    players = rooms * bl.ROOM_SIZE
    settle = 5.0
    st = settings(args, work, duration=settle + args.seconds + 10.0)
    bots_help = bm.check_gamebots(st.gamebots)
    serve_help = bm.help_text([str(bm.VENV_PY), "-m", "gameserver.cli", "serve"])
    st.server_extra, st.bots_extra = bm.auth_and_limits(st.state_dir, serve_help, bots_help)
    st.server_extra += ["--cpu-budget", "0"]
    rec: dict[str, Any] = {"players_target": players, "rooms": rooms, "profiled": target}
    rec["background"] = bm.wait_for_quiet()
    procs = bm.Procs()
    tag = f"{target}-{players}"
    out_path, err_path = work / f"{tag}.server.out", work / f"{tag}.server.err"
    bots_out = work / f"{tag}.bots.out"
    raw = work / f"{tag}.pyspy.txt"
    try:
        with out_path.open("w") as out, err_path.open("w") as err, bots_out.open("w") as bout:
            cmd = bm.server_command("gameserver", st)
            rec["server_cmd"] = shlex.join(cmd)
            server = procs.start(cmd, out, err)
            try:
                lines = bm.wait_for_lines(out_path, server, ["listening on ", "metrics on "], 30)
            except RuntimeError as exc:
                raise AccountError(f"{exc}; see {err_path}") from None
            url, metrics_url = lines["listening on "], lines["metrics on "]
            cmd = bm.bots_command(
                "gameserver", st, url, rooms, work / f"{tag}.report.json", metrics_url
            )
            rec["bots_cmd"] = shlex.join(cmd)
            bots = procs.start(cmd, bout, bout)
            deadline = time.monotonic() + 30 + 2 * players / st.ramp
            while time.monotonic() < deadline and players_now(metrics_url) < players:
                if bots.poll() is not None:
                    raise AccountError(f"gamebots exited early; see {bots_out}")
                time.sleep(0.5)
            time.sleep(settle)
            pid = server.pid if target == "server" else bots.pid
            m0 = bm.scrape(metrics_url)
            k0 = kernel_times(server.pid)
            s0, b0, c0, t0 = proc_times(server.pid), bm.tree_cpu(bots.pid), bm.read_cores(), now()
            rec[cmd_key] = sample(pid, raw)
            s1, b1, c1, t1 = proc_times(server.pid), bm.tree_cpu(bots.pid), bm.read_cores(), now()
            k1 = kernel_times(server.pid)
            m1 = bm.scrape(metrics_url)
            procs.stop(bots, signal.SIGINT, 15.0)
            procs.stop(server, signal.SIGINT, 15.0)
    finally:
        procs.stop_all()
    wall = t1 - t0
    rec["window_s"] = round(wall, 2)
    rec["server_cpu"] = round((s1 - s0) / bm.CLK_TCK / wall, 4)
    # the part of it in the kernel (stime: the send and recv syscalls, loopback TCP)
    rec["server_sys_cpu"] = round((k1 - k0) / bm.CLK_TCK / wall, 4)
    rec["bots_cpu"] = round((b1 - b0) / bm.CLK_TCK / wall, 4)
    rec["core0"] = bl.core_usage(c0[0], c1[0])
    rec["core1"] = bl.core_usage(c0[1], c1[1])
    rec["players"] = bl.metric(m1 or {}, "gameserver_players")
    sent = counter(m1, "gameserver_sent_messages") - counter(m0, "gameserver_sent_messages")
    skipped = counter(m1, "gameserver_deltas_skipped") - counter(m0, "gameserver_deltas_skipped")
    ticks = counter(m1, "gameserver_ticks") - counter(m0, "gameserver_ticks")
    received = counter(m1, "gameserver_received_messages") - counter(
        m0, "gameserver_received_messages"
    )
    rec["player_ticks_per_s"] = round((sent + skipped) / wall, 1)
    rec["messages_received_per_s"] = round(received / wall, 1)
    rec["messages_sent_per_s"] = round(sent / wall, 1)
    rec["room_ticks_per_s"] = round(ticks / wall, 1)
    out_bytes = counter(m1, "gameserver_sent_bytes") - counter(m0, "gameserver_sent_bytes")
    in_bytes = counter(m1, "gameserver_received_bytes") - counter(m0, "gameserver_received_bytes")
    rec["bytes_per_message_sent"] = round(out_bytes / sent, 1) if sent else None
    rec["bytes_per_message_received"] = round(in_bytes / received, 1) if received else None
    rec["raw"] = raw.read_text()
    return rec


def proc_times(pid: int) -> int:
    try:
        return bl.parse_pid_stat(Path(f"/proc/{pid}/stat").read_text()).cpu
    except (OSError, ValueError):
        raise AccountError(f"process {pid} is gone") from None


def kernel_times(pid: int) -> int:
    """The process's system time (stime), in clock ticks."""
    try:
        return bl.parse_pid_stat(Path(f"/proc/{pid}/stat").read_text()).stime
    except (OSError, ValueError):
        raise AccountError(f"process {pid} is gone") from None


def now() -> float:
    return time.monotonic()


def kernel_part(prof: dict[str, Any]) -> str:
    """ ", of which 17.2% in the kernel (...)" when the run measured it."""
    sys_cpu = prof.get("server_sys_cpu")
    if sys_cpu is None or not prof.get("server_cpu"):
        return ""
    return (
        f", of which {100 * sys_cpu:.1f}% in the kernel ({sys_cpu / prof['server_cpu']:.0%} of "
        "it: stime, the send and recv syscalls with loopback TCP's work)"
    )


# ------------------------------------------------------------------ the parts
def part_profile(args: argparse.Namespace, work: Path, py_spy: str) -> dict[str, Any]:
    rec = load_run(args, args.players, "server", work / "profile", py_spy_sampler(args, py_spy))
    t = al.tally(al.parse_raw(rec.pop("raw")), al.SERVER_RULES)
    rec["samples"] = t.total
    rec["rows"] = al.profile_rows(t, rec["server_cpu"], rec["player_ticks_per_s"], al.SERVER_ROWS)
    return rec


def part_bots(args: argparse.Namespace, work: Path, py_spy: str) -> dict[str, Any]:
    rec = load_run(args, args.bots, "bots", work / "bots", py_spy_sampler(args, py_spy))
    t = al.tally(al.parse_raw(rec.pop("raw")), al.BOT_RULES)
    rec["samples"] = t.total
    # a bot-tick: one state message received and one input sent (inputs at the tick rate)
    units = rec["messages_sent_per_s"]
    rec["rows"] = al.profile_rows(t, rec["bots_cpu"], units, al.BOT_ROWS)
    per_tick = al.us_per_unit(1.0, rec["bots_cpu"], units)
    rec["us_per_bot_tick"] = round(per_tick, 2)
    rec["ms_cpu_per_bot_per_s"] = round(rec["bots_cpu"] * 1000 / max(1, args.bots), 3)
    # one core's worth of bots at the full rate (20 state messages in, 20 inputs out per second)
    rec["core_needed_at_full_rate"] = round(per_tick * args.bots * TICK_RATE / 1e6, 3)
    return rec


def part_native(args: argparse.Namespace, work: Path, perf: str) -> dict[str, Any]:
    """The server at ``--players`` by shared object (perf), and the transport alone at the
    same load (tools/bench_transport.py)."""
    rec = load_run(
        args, args.players, "server", work / "native", perf_sampler(args, perf), "perf_cmd"
    )
    dso = al.parse_perf_dso(rec.pop("raw"))
    rec["rows"] = al.native_rows(dso, rec["server_cpu"], rec["player_ticks_per_s"])
    size = round(rec.get("bytes_per_message_sent") or 40)
    input_size = round(rec.get("bytes_per_message_received") or 5)
    bm.log(f"the transport alone at {args.players} players ({size} B out, {input_size} B in)")
    seated = int(rec.get("players") or args.players)
    rec["transport"] = transport_floor(seated, size, input_size, args.seconds)
    bm.log(f"the rooms' ticks alone at {seated} players")
    rec["rooms"] = rooms_alone(seated)
    return rec


def part_micro(args: argparse.Namespace) -> dict[str, Any]:
    import account_micro as am

    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(bm.SERVER_CORE)})
    try:
        rows = am.run_all(args.micro_n, args.micro_repeats)
    finally:  # this script's own sampling stays off the server's core
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {int(bm.LOADGEN_CORE)})
    meta = rows.pop("_meta")
    return {"rows": rows, **meta, "core": bm.SERVER_CORE}


# ------------------------------------------------------------------ markdown
def render(data: dict[str, Any]) -> str:
    prof = data.get("profile")
    micro = data.get("micro")
    bots = data.get("bots")
    native = data.get("native")
    parts = [p for p in (prof, micro, bots, native) if p]
    commands = {p.get("command", "") for p in parts}
    one = len(commands) == 1
    out = [
        f"Measured {data.get('date_utc', '?')} at commit {data.get('git_commit', '?')} on the "
        "2-core machine (figures provisional: the machine was shared with other work)"
        + (", with:" if one else "."),
        "",
    ]
    if one:
        out += [f"    {commands.pop()}", ""]

    def own(part: dict[str, Any]) -> list[str]:
        return [] if one else [f"    {part.get('command', '')}", ""]

    if prof:
        out += own(prof)
        out += [
            f"**Profile** (py-spy, {prof['samples']:,} samples over {prof['window_s']:g} s): "
            f"{prof.get('players') or prof['players_target']:.0f} players in "
            f"{prof['rooms']} rooms, server CPU {100 * prof['server_cpu']:.1f}% of core 0"
            f"{kernel_part(prof)} "
            f"(softirq on core 0 {prof['core0']['softirq_pct']}%, not in the rows), "
            f"{prof['player_ticks_per_s']:,.0f} player-ticks/s, so "
            f"{al.us_per_unit(1.0, prof['server_cpu'], prof['player_ticks_per_s']):.1f} µs of "
            "server CPU per player-tick; "
            f"{prof.get('messages_received_per_s', 0) / max(1.0, prof['player_ticks_per_s']):.2f}"
            " messages (inputs) received per player-tick. The server and the bots were "
            "started with:",
            "",
            f"    {prof['server_cmd']}",
            f"    {prof['bots_cmd']}",
            f"    {prof['py_spy_cmd']}",
            "",
        ]
    if micro:
        out += own(micro)
        out += [
            f"**Micro-benchmarks** (tools/account_micro.py, pinned to core {micro['core']}): "
            f"median of {micro['repeats']} batches of {micro['n']:,} (some rows more), per "
            "player-tick; the floor is the fastest batch of the cheapest way this stack does "
            "the same work (each row's floor is named in the tool's docstring).",
            "",
        ]
    rows = al.SERVER_ROWS
    if prof or micro:
        out += [al.account_table(rows, (prof or {}).get("rows"), (micro or {}).get("rows")), ""]
    if prof:
        hidden = [
            title for key, title in rows
            if key in al.COMPILED_IN and not prof["rows"].get(key, {}).get("samples")
        ]  # fmt: skip
        if hidden:
            out += [
                f"{', '.join(hidden).capitalize()} run in modules compiled with mypyc: py-spy "
                "samples Python frames, so their time is in the profile row of the code that "
                "calls them (named in their cells); their micro-benchmark rows show them alone.",
                "",
            ]
        out += ["Where each profile row's samples are (share of all samples):", ""]
        out += [al.parts_lines(prof["rows"], rows), ""]
    if micro:
        out += ["What each micro-benchmark timed:", ""]
        out += [f"- {title}: {micro['rows'][k]['how']}" for k, title in rows if k in micro["rows"]]
        out += [""]
    if bots:
        verdict = (
            "one core of gamebots is **not** the limit"
            if bots["core_needed_at_full_rate"] < 0.9
            else "one core of gamebots **is** the limit"
        )
        out += [
            f"**The load generator** at {bots['players_target']:,} bots "
            f"({bots['rooms']} rooms, `--verify-sample 16`, inputs at 20 Hz, pinned to core 1), "
            f"against a server on core 0 at {100 * bots['server_cpu']:.0f}% of its core "
            f"({bots['messages_sent_per_s']:,.0f} state messages/s reached the bots, "
            f"{bots['messages_sent_per_s'] / max(1, bots['players_target']):.1f} per bot). "
            f"gamebots used {100 * bots['bots_cpu']:.1f}% of core 1 "
            f"(core 1 busy {bots['core1']['busy_pct']}%): "
            f"{bots['ms_cpu_per_bot_per_s']:.3f} ms of CPU per bot per second, "
            f"{bots['us_per_bot_tick']:.1f} µs per bot-tick (one state message in, one input "
            f"out). At the full 20 updates/s, {bots['players_target']:,} bots would need "
            f"{100 * bots['core_needed_at_full_rate']:.0f}% of a core: {verdict}. "
            f"py-spy, {bots['samples']:,} samples:",
            "",
            *[line for line in own(bots) if line],
            f"    {bots['bots_cmd']}",
            f"    {bots['py_spy_cmd']}",
            "",
            al.bots_table(al.BOT_ROWS, bots["rows"]),
            "",
            al.parts_lines(bots["rows"], al.BOT_ROWS),
            "",
        ]
    if native:
        out += render_native(native, [] if one else own(native))
    return "\n".join(out).rstrip() + "\n"


def render_native(native: dict[str, Any], command: list[str]) -> list[str]:
    per_tick = al.us_per_unit(1.0, native["server_cpu"], native["player_ticks_per_s"])
    out = [
        "**By library** (perf, `cpu-clock`"
        + (f"; measured {native['measured']}" if native.get("measured") else "")
        + f"): {native.get('players') or native['players_target']:.0f}"
        f" players, server CPU {100 * native['server_cpu']:.1f}% of core 0, {per_tick:.1f} µs "
        "per player-tick. perf samples every frame, Python's or not, so this splits the same "
        "time as the rows above by where the CPU ran:",
        "",
        *command,
        f"    {native['perf_cmd']}",
        "",
        al.native_table(native["rows"]),
        "",
    ]
    floor = native.get("transport")
    if floor:
        share = floor["us_per_player_tick"] / per_tick if per_tick else 0.0
        out += [
            f"**The transport alone** at the same load (tools/bench_transport.py's takeover: "
            f"the same connection code, {floor['size']} B out and {floor['input_size']} B in per "
            "player-tick over TLS, no rooms, game or encoding): "
            f"{100 * floor['cpu']:.1f}% of core 0, {floor['us_per_player_tick']:.1f} µs per "
            f"player-tick, {share:.0%} of the server's.",
            "",
            f"    {floor['command']}",
            "",
        ]
    rooms = native.get("rooms")
    if floor and rooms:
        both = floor["us_per_player_tick"] + rooms["us_per_player"]
        budget = BUDGET * 1e6 / (TARGET_PLAYERS * TICK_RATE)
        out += [
            f"**The room's tick alone** (tools/account_rooms.py: {rooms['rooms']} arena rooms of "
            "wandering players ticked in turn, as the server's timer does, no sockets): "
            f"{rooms['us_per_player']:.1f} µs per player ({rooms['encode_us_per_player']:.1f} "
            f"of it the encoding). The transport and the room's tick alone come to {both:.1f} µs "
            f"per player-tick, {both / per_tick:.0%} of the server's, before any of the "
            f"server's own code around them; {TARGET_PLAYERS:,} players at the admission "
            f"budget ({BUDGET:g} of a core) need {budget:.1f} µs per player-tick.",
            "",
            f"    {rooms['command']}",
            "",
        ]
    return out


def put_in_notes(markdown: str, notes: Path = NOTES) -> bool:
    """Replace the text between the markers in bench/notes.md; False if they are missing."""
    text = notes.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    notes.write_text(f"{head}{BEGIN}\n\n{markdown}\n{END}{tail}")
    return True


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The account of a player-tick, and of the bots.")
    p.add_argument(
        "--part",
        choices=("all", "profile", "micro", "bots", "native"),
        default="all",
        help="all: profile, micro and bots; native: the split by library (perf) and the "
        "transport alone",
    )
    p.add_argument("--players", type=int, default=1000, help="profile: players (rooms of 8)")
    p.add_argument("--bots", type=int, default=1500, help="bots: bots (rooms of 8)")
    p.add_argument("--seconds", type=float, default=15.0, help="py-spy's window")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--native",
        action="store_true",
        help="profile C frames too (splits the compiled rows; stops the process per sample, "
        "which over-weights system calls)",
    )
    p.add_argument("--ramp", type=float, default=100.0, help="bots joining per second")
    p.add_argument("--micro-n", type=int, default=2000, help="micro: operations per batch")
    p.add_argument("--micro-repeats", type=int, default=9, help="micro: batches")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "account.json")
    p.add_argument("--no-notes", action="store_true", help="leave bench/notes.md alone")
    p.add_argument("--render", type=Path, metavar="ACCOUNT_JSON", help="measure nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.render is not None:
            data = json.loads(args.render.read_text())
        else:
            data = measure(args, argv)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=1) + "\n")
            bm.log(f"wrote {args.json}")
        markdown = render(data)
    except AccountError as exc:
        print(f"bench_account: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_account: interrupted", file=sys.stderr)
        return 130
    print(markdown)
    if not args.no_notes:
        if put_in_notes(markdown):
            bm.log(f"updated {NOTES}; run tools/bench.py --render bench/results.json")
        else:
            bm.log(f"no account markers in {NOTES}: left it alone")
    return 0


def measure(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    m = bm.machine_info()
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "tools/bench_account.py", *given])
    data: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "git_commit": m["git_commit"],
        "machine": {k: m[k] for k in ("cpu_model", "cores", "kernel", "python", "openssl")},
    }
    if args.render is None and args.json.exists() and args.part != "all":
        with contextlib.suppress(ValueError):  # keep the other parts of an earlier run
            old = json.loads(args.json.read_text())
            kept = {k: old[k] for k in ("profile", "micro", "bots", "native") if k in old}
            data.update(kept)
            if kept:  # the account's date stays that of the parts kept; the new part has its own
                for key in ("date_utc", "git_commit"):
                    data[key] = old.get(key, data[key])
    py_spy = find_py_spy() if args.part in ("all", "profile", "bots") else ""
    with tempfile.TemporaryDirectory(prefix="bench-account-") as tmp:
        work = Path(tmp)
        if args.part in ("all", "micro"):
            bm.log("micro-benchmarks")
            data["micro"] = {**part_micro(args), "command": command}
        if args.part in ("all", "profile"):
            bm.log(f"profile of the server at {args.players} players")
            data["profile"] = {**part_profile(args, work, py_spy), "command": command}
        if args.part in ("all", "bots"):
            bm.log(f"profile of gamebots at {args.bots} bots")
            data["bots"] = {**part_bots(args, work, py_spy), "command": command}
        if args.part == "native":
            perf = find_perf()
            bm.log(f"the server at {args.players} players by library (perf)")
            data["native"] = {
                **part_native(args, work, perf),
                "command": command,
                "measured": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d} at {m['git_commit']}",
            }
    return data


if __name__ == "__main__":
    sys.exit(main())
