"""tools/bench_field.py's pure parts: the derived figures, the must-show checks, the table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_field as bf


def _rec(players: int, cpu: float, bytes_: float, calls: float, ticks: float) -> dict[str, Any]:
    return {
        "connected": players,
        "target": players,
        "rooms": 1,
        "server_cpu_pct": cpu,
        "bytes_down_pps": bytes_,
        "tick_p99_ms": 20.0,
        "updates_p5": 20.0,
        "failed": 0,
        "desyncs": 0,
        "metrics_window": {"ticks": ticks, "encode_calls": calls, "window_s": 10.0},
    }


def test_derived_figures_per_player_tick_and_per_room_tick() -> None:
    d = bf.derived(_rec(256, 64.0, 3000.0, 97_340.0, 200.0), 256)
    # 0.64 core-seconds per second over 256 players x 20 ticks: 125 µs per player-tick
    assert d["cpu_us_per_player_tick"] == 125.0
    assert d["encode_calls_per_room_tick"] == 486.7
    assert d["encode_calls_per_player_tick"] == 1.9
    assert d["encode_calls_per_s"] == 9734
    empty = bf.derived({"connected": 0}, 16)
    assert empty["cpu_us_per_player_tick"] is None and empty["encode_calls_per_room_tick"] is None


def test_verdicts_pass_and_fail_on_the_limits() -> None:
    arena = bf.derived(_rec(256, 60.0, 1200.0, 2600.0, 200.0), 8)
    small = bf.derived(_rec(256, 70.0, 2600.0, 192_000.0, 3200.0), 16)
    big = bf.derived(_rec(256, 80.0, 3100.0, 194_000.0, 200.0), 256)
    v = bf.verdicts([small, big], arena)
    assert v["bytes_spread"] == round(3100 / 2600, 3) and v["bytes_ok"]
    assert v["cpu_ratio_largest"] == round(80 / 60, 2) and v["cpu_ok"]
    assert v["encode_ok"] and v["players_x_entities_growth"] == 256.0
    # a server that encodes per player: calls per player-tick grow with the room
    bad = bf.derived(_rec(256, 95.0, 4000.0, 200.0 * 256 * 256, 200.0), 256)
    v2 = bf.verdicts([small, bad], arena)
    assert not v2["bytes_ok"] and not v2["cpu_ok"] and not v2["encode_ok"]
    table = bf.render([small, bad], arena, v2)
    assert table.count("NOT MET") == 3
    assert "| field | 16 x 1 | 16 | 81 |" in table and "| arena | 8 x 1 |" in table
