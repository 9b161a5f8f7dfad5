"""Views at scale: the ``field`` game at 16, 64 and 256 players per room at equal density,
against ``arena`` with the same total number of players, in one run on this machine.

    python tools/bench_field.py [--levels 16,64,256] [--total 256] [--duration 10]
                                [--json bench/field.json] [--quick]

Each level runs ``--total`` players in rooms of that size (256 players: 16 rooms of 16, 4 of
64, 1 of 256). The server runs with ``--max-players LEVEL`` so each field room is that size:
field's world then has one 250-unit cell per seat (1000 x 1000 units at 16 up to 4000 x 4000 at
256) and 4 creatures and pickups per seat, the same density at every level. Then arena plays
the same total in its own rooms of 8. Every step is one of tools/bench.py's (a fresh server on
core 0 with ``taskset``, ``gamebots`` on core 1, inputs at 20 Hz, /proc and /metrics sampled
over the measured window; field's bots ``roam``: straight legs across cells).

Per level it reports bytes down per player per second (the bots' WebSocket payload), the
server's CPU per player-tick (µs: its CPU share over players x ticks per second), encode calls
per room-tick (the increase of ``gameserver_encode_calls_total`` over
``gameserver_ticks_total``'s), the tick p99 (``gameserver_tick_seconds``), and the ratio of
field's CPU per player-tick to arena's. What it must show (issue 12): bytes down per player
within 1.3x from the smallest level to the largest; encode calls growing with the room
(occupied cells and changed entities), not with players x entities; field's CPU per
player-tick at 256 within 1.5x of arena's. Writes the JSON (``--json``) and prints a markdown
table; every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl

import bench as bm

TICK_RATE = 20  # both games
ARENA_ROOM = bl.ROOM_SIZE
#: field's non-player entities per seat (gameserver/games/field.py, NPC_PER_SEAT)
FIELD_NPC_PER_SEAT = 4
#: the must-show limits
BYTES_SPREAD_MAX = 1.3
CPU_RATIO_MAX = 1.5


def derived(rec: dict[str, Any], room_size: int) -> dict[str, Any]:
    """The figures this bench reports, from one tools/bench.py step record."""
    players = rec.get("connected") or 0
    cpu = rec.get("server_cpu_pct")
    mw = rec.get("metrics_window") or {}
    ticks = mw.get("ticks") or 0.0
    calls = mw.get("encode_calls")
    window = mw.get("window_s") or 0.0
    per_player_tick = (
        round(cpu / 100.0 / (players * TICK_RATE) * 1e6, 1) if cpu is not None and players else None
    )
    per_room_tick = round(calls / ticks, 1) if calls is not None and ticks else None
    return {
        "room_size": room_size,
        "rooms": rec.get("rooms"),
        "players": players,
        "target": rec.get("target"),
        "bytes_down_pps": rec.get("bytes_down_pps"),
        "server_cpu_pct": cpu,
        "cpu_us_per_player_tick": per_player_tick,
        "encode_calls_per_room_tick": per_room_tick,
        "encode_calls_per_player_tick": round(per_room_tick / room_size, 2)
        if per_room_tick is not None
        else None,
        "encode_calls_per_s": round(calls / window) if calls is not None and window else None,
        "tick_p99_ms": rec.get("tick_p99_ms"),
        "updates_p5": rec.get("updates_p5"),
        "latency_p99_ms": rec.get("latency_p99_ms"),
        "failed": rec.get("failed"),
        "desyncs": rec.get("desyncs"),
        "refused": rec.get("refused"),
        "core1_busy_pct": rec.get("core1_busy_pct"),
        "saturated": rec.get("saturated"),
    }


def verdicts(levels: list[dict[str, Any]], arena: dict[str, Any] | None) -> dict[str, Any]:
    """The must-show checks over the measured levels (None where a figure is missing)."""
    out: dict[str, Any] = {}
    bytes_ = [lv["bytes_down_pps"] for lv in levels if lv.get("bytes_down_pps")]
    if len(bytes_) >= 2:
        spread = max(bytes_) / min(bytes_)
        out["bytes_spread"] = round(spread, 3)
        out["bytes_ok"] = spread <= BYTES_SPREAD_MAX
    arena_cpu = (arena or {}).get("cpu_us_per_player_tick")
    for lv in levels:
        cpu = lv.get("cpu_us_per_player_tick")
        lv["cpu_vs_arena"] = round(cpu / arena_cpu, 2) if cpu and arena_cpu else None
    if levels and levels[-1].get("cpu_vs_arena") is not None:
        out["cpu_ratio_largest"] = levels[-1]["cpu_vs_arena"]
        out["cpu_ok"] = levels[-1]["cpu_vs_arena"] <= CPU_RATIO_MAX
    # encode calls: per player-tick they stay flat as the room grows 16x (so per room-tick they
    # grow with the room: its cells and its changed entities), while players x entities, what
    # encoding once per player would cost, grows with the square of the room
    calls = [
        (lv["room_size"], lv["encode_calls_per_player_tick"])
        for lv in levels
        if lv.get("encode_calls_per_player_tick")
    ]
    if len(calls) >= 2:
        (n0, c0), (n1, c1) = calls[0], calls[-1]
        out["encode_per_player_tick_growth"] = round(c1 / c0, 2)
        out["players_x_entities_growth"] = round((n1 / n0) ** 2, 1)
        out["encode_ok"] = c1 / c0 < 2.0
    return out


def render(levels: list[dict[str, Any]], arena: dict[str, Any] | None, v: dict[str, Any]) -> str:
    f = bl._fmt
    head = (
        "| game | players/room x rooms | cells/room | entities/room | B down/player/s "
        "| server CPU µs/player-tick | vs arena | encode calls/room-tick (/player-tick) "
        "| tick p99 ms | p5 updates/s | failed / desyncs |"
    )
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    rows = [head, rule]
    for lv in levels:
        n = lv["room_size"]
        rows.append(
            f"| field | {n} x {f(lv['rooms'])} | {n} | {n + 1 + FIELD_NPC_PER_SEAT * n} "
            f"| {f(lv['bytes_down_pps'], 0)} | {f(lv['cpu_us_per_player_tick'])} "
            f"| {f(lv.get('cpu_vs_arena'), 2)} | {f(lv['encode_calls_per_room_tick'])} "
            f"({f(lv['encode_calls_per_player_tick'], 2)}) | {f(lv['tick_p99_ms'])} "
            f"| {f(lv['updates_p5'])} | {f(lv['failed'], 0)} / {f(lv['desyncs'], 0)} |"
        )
    if arena is not None:
        rows.append(
            f"| arena | {ARENA_ROOM} x {f(arena['rooms'])} | - | {ARENA_ROOM + 6} "
            f"| {f(arena['bytes_down_pps'], 0)} | {f(arena['cpu_us_per_player_tick'])} | 1 "
            f"| {f(arena['encode_calls_per_room_tick'])} "
            f"({f(arena['encode_calls_per_player_tick'], 2)}) | {f(arena['tick_p99_ms'])} "
            f"| {f(arena['updates_p5'])} | {f(arena['failed'], 0)} / {f(arena['desyncs'], 0)} |"
        )
    lines = ["\n".join(rows), ""]
    if "bytes_spread" in v:
        lines.append(
            f"- bytes down per player, largest / smallest level: {v['bytes_spread']:.2f}x "
            f"(limit {BYTES_SPREAD_MAX}x): {'ok' if v['bytes_ok'] else 'NOT MET'}"
        )
    if "encode_per_player_tick_growth" in v:
        lines.append(
            f"- encode calls per player-tick grow {v['encode_per_player_tick_growth']:.2f}x "
            f"while players x entities per room grow {v['players_x_entities_growth']:g}x: "
            f"{'ok' if v['encode_ok'] else 'NOT MET'}"
        )
    if "cpu_ratio_largest" in v:
        lines.append(
            f"- server CPU per player-tick at the largest level / arena's: "
            f"{v['cpu_ratio_largest']:.2f}x (limit {CPU_RATIO_MAX}x): "
            f"{'ok' if v['cpu_ok'] else 'NOT MET'}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="field (views) at 16/64/256 per room vs arena")
    p.add_argument("--levels", default="16,64,256", help="players per field room")
    p.add_argument("--total", type=int, default=256, help="players per level (default 256)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per step")
    p.add_argument("--ramp", type=float, default=100.0, help="bots joining per second")
    p.add_argument("--verify-sample", type=int, default=16, help="bots checking every checksum")
    p.add_argument("--no-arena", action="store_true", help="skip the arena step")
    p.add_argument("--json", type=Path, default=bm.ROOT / "bench" / "field.json")
    p.add_argument("--gamebots", default=str(bm.VENV / "bin" / "gamebots"))
    p.add_argument("--quick", action="store_true", help="3 s steps, 64 players (smoke run)")
    args = p.parse_args(argv)
    args.level_list = [int(x) for x in args.levels.split(",") if x.strip()]
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.total = min(args.total, 64)
        args.level_list = [n for n in args.level_list if n <= args.total] or [args.total]
        if args.json == bm.ROOT / "bench" / "field.json":
            args.json = Path(tempfile.mkdtemp(prefix="bench-field-")) / "field.json"
    bad = [n for n in args.level_list if n < 1 or args.total % n]
    if bad:
        p.error(f"--total {args.total} is not a whole number of rooms of {bad}")
    if (os.cpu_count() or 1) < 2:
        p.error("needs two cores: the server on core 0, the bots on core 1")
    return args


def main(argv: list[str] | None = None) -> int:
    bm.ensure_environment()
    args = parse_args(argv)
    bots_help = bm.check_gamebots(args.gamebots)
    serve_help = bm.help_text([str(bm.VENV_PY), "-m", "gameserver.cli", "serve"])
    signal.signal(signal.SIGTERM, bm._raise_interrupt)
    os.sched_setaffinity(0, {int(bm.LOADGEN_CORE)})
    from gameserver.tls import ensure_dev_certificate

    work = Path(tempfile.mkdtemp(prefix="bench-field-run-"))
    state_dir = work / "state"
    ensure_dev_certificate(state_dir)
    server_extra, bots_extra = bm.auth_and_limits(state_dir, serve_help, bots_help)
    # admission control off, as in the peer comparison: a ramp's TLS handshakes would
    # otherwise count against the CPU budget and refuse bots (4006) at a load it holds
    server_extra = [*server_extra, "--cpu-budget", "0"]
    base = bm.Settings(
        duration=args.duration,
        ramp=args.ramp,
        verify_sample=args.verify_sample,
        procs=1,
        gamebots=args.gamebots,
        state_dir=state_dir,
        work_dir=work,
        server_extra=server_extra,
        bots_extra=bots_extra,
    )
    command = "python tools/bench_field.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    results: dict[str, Any] = {
        "meta": {
            "command": command.strip(),
            "machine": bm.machine_info(),
            "total": args.total,
            "levels": args.level_list,
            "duration": args.duration,
            "verify_sample": args.verify_sample,
            "work_dir": str(work),
        },
        "field": [],
        "arena": None,
        "steps": {},
    }
    procs = bm.Procs()
    bm.log(f"bench_field: logs and reports in {work}")
    levels: list[dict[str, Any]] = []
    arena: dict[str, Any] | None = None
    try:
        if not args.no_arena:
            rec = bm.measure(
                "gameserver", args.total, base, procs, f"arena-{args.total}", _retries(1)
            )
            results["steps"]["arena"] = rec
            arena = derived(rec, ARENA_ROOM)
        for n in args.level_list:
            st = dataclasses.replace(
                base,
                server_extra=[*base.server_extra, "--max-players", str(n)],
                bots_extra=[*base.bots_extra, "--game", "field"],
            )
            rec = bm.measure(
                "gameserver", args.total, st, procs, f"field-{n}", _retries(1), room_size=n
            )
            results["steps"][f"field-{n}"] = rec
            levels.append(derived(rec, n))
    except KeyboardInterrupt:
        bm.log("interrupted: stopping what runs")
    finally:
        procs.stop_all()
    v = verdicts(levels, arena)
    results.update(field=levels, arena=arena, verdicts=v)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    table = render(levels, arena, v)
    results["table"] = table
    print(table)
    bm.log(f"wrote {args.json}")
    return 0


def _retries(n: int) -> argparse.Namespace:
    return argparse.Namespace(retries=n)


if __name__ == "__main__":
    sys.exit(main())
