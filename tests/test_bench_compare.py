"""tools/bench_compare.py (``tools/bench.py --compare-colyseus``): the mapping of a Colyseus
harness's result JSON, the ratio table, and the refusal of a directory that is no harness."""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
bc: Any = importlib.import_module("bench_compare")
bench: Any = importlib.import_module("bench")

# a harness load client's result, hand-written: the fields bench_compare reads, and a few more
COLY_1000: dict[str, Any] = {
    "label": "colyseus-1000",
    "ccu": 1000,
    "rooms": 125,
    "server": {"pid": 4242, "cpuPct": 66.6, "rssMiBMax": 180.0},
    "machine": {
        "busyPctOfAllCores": 70.0,
        "softirqPctOneCore": 9.0,
        "otherPctOneCore": 12.0,
        "otherProcsPctOneCore": 1.5,
        "cores": {"cpu0": {"busyPct": 74.0, "softirqPct": 6.0}, "cpu1": {"busyPct": 60.0}},
    },
    "loadClient": {"cpuPct": 58.0, "eventLoopDelayP99Ms": 20.0},
    "perClient": {
        "wsPayloadBytesPerS": 3260.0,
        "stateUpdatesPerS": 19.96,
        "inputsSentPerS": 19.9,
        "msgsPerS": 20.0,
    },
    "tcp": {"tcpPayloadBytesPerClientS": 3340.0, "ipBytesPerClientS": 5700.0},
    "serverSide": {"patchesPerRoomS": 19.92},
    "latencyMs": {"p50": 26.0, "p99": 56.0},
    "errors": 0,
    "closedEarly": 0,
}


def _coly(players: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(COLY_1000)
    doc["ccu"] = players
    for path, value in changes.items():
        cur = doc
        *head, last = path.split("__")
        for key in head:
            cur = cur[key]
        cur[last] = value
    return doc


def _ours(players: int, cpu: float, p99: float = 50.0, **kw: Any) -> dict[str, Any]:
    rec = {
        "target": players,
        "connected": players,
        "failed": 0,
        "server_cpu_pct": cpu,
        "server_core_pct": cpu + 1.0,
        "core0_busy_pct": cpu + 1.0,
        "core1_busy_pct": 60.0,
        "updates_p5": 20.0,
        "latency_p50_ms": 25.0,
        "latency_p99_ms": p99,
        "bytes_down_pps": 1267.0,
        "tcp_bytes_down_pps": 1750.0,
        "wire_bytes_down_pps": 2970.0,
        "foreign_core0_pct": 0.0,
        "foreign_core1_pct": 0.0,
    }
    rec.update(kw)
    rec["saturated"] = bench.bl.saturation_reasons(rec)
    return rec


# ------------------------------------------------------------------ the two sides
def test_colyseus_side_maps_the_harness_fields() -> None:
    side = bc.colyseus_side(COLY_1000)
    assert side["players"] == 1000
    assert side["cpu_pct"] == 66.6
    assert side["core_pct"] == 72.6  # process + softirq on core 0, under its 74% busy share
    assert side["us_per_player_tick"] == pytest.approx(33.3)  # 0.666 core / 1000 / 20 Hz
    assert side["updates"] == 19.96 and side["updates_kind"] == "mean"
    assert side["latency_p99_ms"] == 56.0
    assert side["bytes_down_pps"] == 3260.0
    assert side["tcp_bytes_down_pps"] == 3340.0 and side["wire_bytes_down_pps"] == 5700.0
    assert side["reasons"] == []
    assert not side["loadgen_bound"] and not side["disturbed"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"server__cpuPct": 96.0}, "cpu 96%"),
        ({"perClient__stateUpdatesPerS": 18.2}, "mean updates 18.2/s"),
        ({"serverSide__patchesPerRoomS": 17.0}, "server patches 17.0/room/s"),
        ({"latencyMs__p99": 140.0}, "p99 latency 140 ms"),
        ({"closedEarly": 3}, "3 bots left early"),
    ],
)
def test_colyseus_side_applies_the_same_limits(changes: dict[str, Any], reason: str) -> None:
    assert reason in bc.colyseus_side(_coly(1000, **changes))["reasons"]


def test_colyseus_side_flags_a_disturbed_or_load_bound_level() -> None:
    side = bc.colyseus_side(_coly(1000, machine__otherProcsPctOneCore=25.0, loadClient__cpuPct=93))
    assert side["disturbed"] and side["other_pct"] == 25.0
    assert side["loadgen_bound"]


def test_colyseus_side_without_tcp_figures() -> None:
    doc = _coly(496)
    doc["tcp"] = None
    side = bc.colyseus_side(doc)
    assert side["tcp_bytes_down_pps"] is None and side["wire_bytes_down_pps"] is None


def test_our_side_counts_cpu_per_player_who_got_in() -> None:
    rec = _ours(1000, 80.0, connected=800, failed=200)
    side = bc.our_side(rec)
    assert side["players"] == 800
    assert side["us_per_player_tick"] == 50.0  # 0.8 core / 800 / 20 Hz
    assert "200 bots failed" in side["reasons"]


# ------------------------------------------------------------------ the ratio table
def _levels() -> list[dict[str, Any]]:
    return [
        {
            "players": 496,
            "colyseus": bc.colyseus_side(_coly(496, server__cpuPct=36.0)),
            "ours": bc.our_side(_ours(496, 49.6)),
        },
        {
            "players": 1000,
            "colyseus": bc.colyseus_side(COLY_1000),
            "ours": bc.our_side(_ours(1000, 93.7, p99=85.0)),
        },
        {
            "players": 1496,
            "colyseus": bc.colyseus_side(_coly(1496, server__cpuPct=77.9)),
            "ours": bc.our_side(_ours(1496, 99.0, p99=300.0, updates_p5=12.5)),
        },
    ]


def test_compare_ratios_at_equal_load() -> None:
    cmp = bc.compare(_levels())
    at = {row["players"]: row for row in cmp["rows"]}
    assert at[496]["cpu_pct"] == {"colyseus": 36.0, "ours": 49.6, "ratio": 1.38}
    assert at[1000]["us_per_player_tick"]["ratio"] == round(46.85 / 33.3, 2)
    assert at[1000]["bytes_down_pps"]["ratio"] == round(1267 / 3260, 2)
    assert at[1000]["wire_bytes_down_pps"]["ratio"] == round(2970 / 5700, 2)
    assert at[1000]["latency_p99_ms"] == {"colyseus": 56.0, "ours": 85.0, "ratio": 1.52}


def test_compare_capacity_is_the_highest_level_sustained() -> None:
    caps = bc.compare(_levels())["capacity"]
    assert caps["colyseus"] == {"players": 1496, "first_failed": None, "reached_top": True}
    assert caps["ours"] == {"players": 1000, "first_failed": 1496, "reached_top": False}
    assert caps["ratio"] == round(1000 / 1496, 2)


def test_compare_when_a_side_did_not_run() -> None:
    levels = _levels()
    levels[0]["colyseus"] = None
    cmp = bc.compare(levels)
    assert cmp["rows"][0]["cpu_pct"] == {"colyseus": None, "ours": 49.6, "ratio": None}
    assert cmp["capacity"]["colyseus"]["players"] == 1496


def test_capacity_when_nothing_held() -> None:
    assert bc.capacity([(496, False), (1000, False)]) == {
        "players": None,
        "first_failed": 496,
        "reached_top": False,
    }


def _result(no_admission: bool = False) -> dict[str, Any]:
    levels = _levels()
    return {
        "meta": {
            "command": "python tools/bench.py --compare-colyseus /x --levels 496,1000,1496",
            "levels": [496, 1000, 1496],
            "duration": 20.0,
            "warmup": 5.0,
            "no_admission": no_admission,
            "date_utc": "2026-12-02 12:00 UTC",
            "git_commit": "abc1234",
        },
        "levels": levels,
        "compare": bc.compare(levels),
    }


def test_plain_ws_side_gets_its_own_column_and_ratio() -> None:
    levels = _levels()
    levels[1]["ours_ws"] = bc.our_side(_ours(1000, 79.0, p99=60.0))
    cmp = bc.compare(levels)
    at = {row["players"]: row for row in cmp["rows"]}
    assert at[1000]["cpu_pct"]["ours_ws"] == 79.0
    assert at[1000]["cpu_pct"]["ratio_ws"] == round(79.0 / 66.6, 2)
    assert at[496]["cpu_pct"]["ours_ws"] is None and at[496]["cpu_pct"]["ratio_ws"] is None
    assert cmp["capacity"]["ours_ws"]["players"] == 1000
    result = _result()
    result["levels"], result["compare"] = levels, cmp
    md = bc.render(result)
    assert "| this server (ws) | ws / Colyseus |" in md
    assert (
        f"| server CPU, % of a core | 1000 | 66.6 | 93.7 | 1.41x | 79.0 | {79.0 / 66.6:.2f}x |"
        in md
    )
    assert "| 1000 | this server (ws) | 1000 |" in md
    assert "(over wss, then over plain ws as Colyseus runs)" in md
    assert "ws / Colyseus" not in bc.render(_result())  # no ws side, no ws columns


def test_render_has_the_ratio_rows_the_capacity_and_the_command() -> None:
    md = bc.render(_result())
    assert "    python tools/bench.py --compare-colyseus /x --levels 496,1000,1496" in md
    assert "| server CPU, % of a core | 496 | 36.0 | 49.6 | 1.38x |" in md
    assert "| p99 input-to-state latency, ms | 1000 | 56.0 | 85.0 | 1.52x |" in md
    assert "| capacity: highest level sustained | of 3 | ≥ 1496 | 1000 | 0.67x |" in md
    assert "admission control at its default" in md
    assert "p5 updates 12.5/s" in md  # the verdict of our 1496 step
    assert "admission control off (`--cpu-budget 0`)" in bc.render(_result(no_admission=True))


def test_expand_notes_puts_the_table_at_the_marker(tmp_path: Path) -> None:
    notes = f"### Side by side with Colyseus\n\n{bc.MARKER}\n\nafter\n"
    assert "Not run yet" in bc.expand_notes(notes, tmp_path)
    (tmp_path / bc.JSON_NAME).write_text(json.dumps(_result()))
    md = bc.expand_notes(notes, tmp_path)
    assert bc.MARKER not in md
    assert "| server CPU, % of a core | 1000 | 66.6 | 93.7 | 1.41x |" in md
    assert md.endswith("\n\nafter\n")
    assert bc.expand_notes("no marker", tmp_path) == "no marker"


def test_bench_render_markdown_expands_the_repository_notes() -> None:
    notes = (bench.ROOT / "bench" / "notes.md").read_text()
    assert bc.MARKER in notes
    assert "### Side by side with Colyseus" in notes


# ------------------------------------------------------------------ TCP bytes
SS_OUT = """\
ESTAB 0 0 127.0.0.1:9443 127.0.0.1:50001
\t cubic wscale:7,7 rto:201 bytes_sent:1000 bytes_acked:1000 bytes_received:50 segs_out:10 segs_in:9
ESTAB 0 0 127.0.0.1:9443 127.0.0.1:50002
\t cubic wscale:7,7 rto:201 bytes_sent:3000 bytes_acked:3000 bytes_received:70 segs_out:30 segs_in:20
"""


def test_parse_ss_sums_the_sockets() -> None:
    assert bc.parse_ss(SS_OUT) == bc.SsTotals(sockets=2, bytes_sent=4000, segs_out=40)
    assert bc.parse_ss("") == bc.SsTotals(0, 0, 0)


def test_tcp_rates_between_the_first_and_last_sample_in_the_window() -> None:
    t = bc.SsTotals
    samples = [(0.0, t(2, 0, 0)), (1.0, t(2, 1000, 10)), (3.0, t(2, 5000, 50)), (9.0, t(1, 10, 1))]
    rates = bc.tcp_rates(samples, 0.5, 4.0, players=2)
    assert rates == {
        "tcp_bytes_down_pps": 1000.0,  # 4000 B / 2 players / 2 s
        "wire_bytes_down_pps": 1000.0 + 52 * 40 / 2 / 2,
        "tcp_window_s": 2.0,
    }
    assert bc.tcp_rates(samples, 0.5, 9.5, players=2) is None  # a socket closed: sums fell
    assert bc.tcp_rates(samples[:1], 0.0, 9.0, players=2) is None


# ------------------------------------------------------------------ the harness directory
def test_harness_problem_names_what_is_missing(tmp_path: Path) -> None:
    assert "no such directory" in bc.harness_problem(tmp_path / "nope")
    assert "no run.sh there" in bc.harness_problem(tmp_path)
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    assert "no load/loadclient.js there" in bc.harness_problem(tmp_path)
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "loadclient.js").write_text("")
    assert "not executable" in bc.harness_problem(tmp_path)
    os.chmod(tmp_path / "run.sh", 0o755)
    assert "does not read COLY_LEVELS, OUTDIR" in bc.harness_problem(tmp_path)


def test_bench_refuses_a_directory_without_the_harness(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "bench.py"), "--compare-colyseus", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"bench: --compare-colyseus {tmp_path}: no run.sh there")
    assert "Traceback" not in proc.stderr


def test_run_harness_drives_run_sh_with_the_knobs(tmp_path: Path) -> None:
    """A stand-in harness: run.sh writes the fixture where OUTDIR says, with the knobs it got."""
    harness = tmp_path / "harness"
    (harness / "load").mkdir(parents=True)
    (harness / "load" / "loadclient.js").write_text("")
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(COLY_1000))
    (harness / "run.sh").write_text(
        "#!/usr/bin/env bash\nset -eu\n: $WARMUP\n"
        f'python3 -c "import json,os,sys; d=json.load(open(sys.argv[1])); '
        "d['knobs']={k: os.environ[k] for k in ('COLY_LEVELS','PY_LEVELS','PYNC_LEVELS',"
        "'DURATION','WARMUP','PIN','PLAYERS','QUIET_WAIT','RETRIES')}; "
        "json.dump(d, open(os.environ['OUTDIR']+'/colyseus-'+os.environ['COLY_LEVELS']+'.json','w'))\" "
        f"{fixture}\n"
    )
    os.chmod(harness / "run.sh", 0o755)
    assert bc.harness_problem(harness) is None
    args = argparse.Namespace(duration=20.0, warmup=5.0, quiet_wait=7.0, retries=1)
    doc = bc.run_harness(harness, 1000, args, tmp_path / "work", bench)
    assert doc["knobs"] == {
        "COLY_LEVELS": "1000",
        "PY_LEVELS": "",
        "PYNC_LEVELS": "",
        "DURATION": "20",
        "WARMUP": "5",
        "PIN": "1",
        "PLAYERS": "8",
        "QUIET_WAIT": "7",
        "RETRIES": "1",
    }
    assert doc["run_sh_exit"] == 0
    assert bc.colyseus_side(doc)["cpu_pct"] == 66.6


def test_run_harness_reports_a_missing_result(tmp_path: Path) -> None:
    harness = tmp_path / "harness"
    (harness / "load").mkdir(parents=True)
    (harness / "load" / "loadclient.js").write_text("")
    (harness / "run.sh").write_text("#!/bin/sh\necho COLY_LEVELS OUTDIR DURATION WARMUP broke\n")
    os.chmod(harness / "run.sh", 0o755)
    args = argparse.Namespace(duration=1.0, warmup=0.0, quiet_wait=0.0, retries=0)
    doc = bc.run_harness(harness, 200, args, tmp_path / "work", bench)
    assert doc["error"].startswith("no result from the harness")
    assert "broke" in doc["tail"]
