"""tools/bench.py's pure parts on canned text, and a short real run of tools/baseline_server.py."""

from __future__ import annotations

import importlib
import json
import math
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
# by name, not an import statement: tools/ is no package, and a generated bench/ directory at
# the top of the checkout must not shadow tools/bench.py (nor change how imports sort)
bench: Any = importlib.import_module("bench")
bl: Any = importlib.import_module("benchlib")

# ------------------------------------------------------------------ /proc parsing
PROC_STAT_1 = """\
cpu  63034 0 6179 372312 480 0 1684 20 0 0
cpu0 25429 0 2560 193042 34 0 840 6 0 0
cpu1 37605 0 3619 179270 445 0 844 14 0 0
intr 603978 0 0 0
ctxt 123456
"""
PROC_STAT_2 = """\
cpu  63134 0 6229 372412 480 0 1704 20 0 0
cpu0 25509 0 2590 193052 34 0 850 6 0 0
cpu1 37625 0 3639 179360 445 0 854 14 0 0
"""


def test_parse_proc_stat_reads_every_cpu_line() -> None:
    cpus = bl.parse_proc_stat(PROC_STAT_1)
    assert set(cpus) == {"cpu", "cpu0", "cpu1"}
    c0 = cpus["cpu0"]
    assert (c0.user, c0.system, c0.idle, c0.softirq, c0.steal) == (25429, 2560, 193042, 840, 6)
    assert c0.busy == 25429 + 2560 + 840
    assert c0.total == c0.busy + 193042 + 34 + 6


def test_parse_proc_stat_pads_short_lines() -> None:
    cpus = bl.parse_proc_stat("cpu0 1 2 3 4\n")
    assert cpus["cpu0"].idle == 4 and cpus["cpu0"].softirq == 0


def test_core_usage_between_two_samples() -> None:
    a = bl.parse_proc_stat(PROC_STAT_1)["cpu0"]
    b = bl.parse_proc_stat(PROC_STAT_2)["cpu0"]
    # 80 user + 30 system + 10 softirq busy, 10 idle: 120 of 130 ticks
    assert bl.core_usage(a, b) == {"busy_pct": 92.3, "softirq_pct": 7.7, "steal_pct": 0.0}
    assert bl.core_usage(a, a)["busy_pct"] == 0.0


def test_parse_pid_stat_with_a_hostile_command_name() -> None:
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "100", "0", "0", "0"]
    fields += ["1500", "250", "0", "0", "20", "0", "3", "0", "12345", "456789", "2048"]
    text = "4242 (a) b (c) " + " ".join(fields) + " 18446744073709551615 1 1\n"
    got = bl.parse_pid_stat(text)
    assert got == bl.ProcTimes(utime=1500, stime=250, rss_pages=2048)
    assert got.cpu == 1750


def test_parse_pid_stat_of_this_process() -> None:
    got = bl.parse_pid_stat(Path("/proc/self/stat").read_text())
    assert got.rss_pages > 0


def test_process_cpu_pct() -> None:
    a = bl.ProcTimes(100, 50, 1)
    b = bl.ProcTimes(500, 150, 1)
    assert bl.process_cpu_pct(a, b, 10.0, 100) == 50.0
    assert bl.process_cpu_pct(a, b, 0.0, 100) == 0.0


# ------------------------------------------------------------------ Prometheus
METRICS_1 = """\
# HELP gameserver_ticks_total Room ticks run, all rooms.
# TYPE gameserver_ticks_total counter
gameserver_ticks_total 1000.0
gameserver_rooms 10.0
gameserver_connections_refused_total{reason="server_full"} 3.0
gameserver_connections_refused_total{reason="room_full"} 1.0
gameserver_tick_seconds_bucket{le="0.001"} 900.0
gameserver_tick_seconds_bucket{le="0.005"} 990.0
gameserver_tick_seconds_bucket{le="0.01"} 1000.0
gameserver_tick_seconds_bucket{le="+Inf"} 1000.0
gameserver_tick_seconds_count 1000.0
weird{a="x\\"y",b="2"} 7
"""


def test_parse_prometheus_samples_and_labels() -> None:
    s = bl.parse_prometheus(METRICS_1)
    assert bl.metric(s, "gameserver_ticks_total") == 1000.0
    assert bl.metric(s, "gameserver_connections_refused_total", reason="server_full") == 3.0
    assert bl.metric(s, "weird", a='x\\"y', b="2") == 7.0
    assert bl.metric(s, "absent") is None
    assert bl.labelled(s, "gameserver_connections_refused_total", "reason") == {
        "server_full": 3.0,
        "room_full": 1.0,
    }
    buckets = bl.histogram_buckets(s, "gameserver_tick_seconds")
    assert buckets == [(0.001, 900.0), (0.005, 990.0), (0.01, 1000.0), (math.inf, 1000.0)]


def test_bucket_quantile_over_the_difference_of_two_scrapes() -> None:
    b1 = bl.histogram_buckets(bl.parse_prometheus(METRICS_1), "gameserver_tick_seconds")
    b2 = [(0.001, 1000.0), (0.005, 1090.0), (0.01, 1200.0), (math.inf, 1200.0)]
    # between the scrapes, 200 ticks: 100 took at most 1 ms, the other 100 took 5-10 ms
    assert bl.bucket_quantile(b1, b2, 0.5) == 0.001
    assert bl.bucket_quantile(b1, b2, 0.99) == 0.01
    assert bl.bucket_quantile(b1, b1, 0.99) is None
    over = [(0.001, 900.0), (0.005, 990.0), (0.01, 1000.0), (math.inf, 1010.0)]
    assert bl.bucket_quantile(b1, over, 0.99) == math.inf


# ------------------------------------------------------------------ saturation
def _step(**kw: Any) -> dict[str, Any]:
    base = {
        "server_cpu_pct": 50.0,
        "core0_busy_pct": 55.0,
        "updates_p5": 20.0,
        "latency_p99_ms": 48.0,
        "failed": 0,
        "core1_busy_pct": 40.0,
    }
    base.update(kw)
    return base


def test_a_healthy_step_is_not_saturated() -> None:
    assert bl.saturation_reasons(_step()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"server_cpu_pct": 95.0}, "cpu 95%"),
        ({"core0_busy_pct": 97.0}, "cpu 97%"),  # softirq on the server's core counts too
        ({"updates_p5": 18.9}, "p5 updates 18.9/s"),
        ({"updates_p5": None}, "p5 updates -"),
        ({"latency_p99_ms": 100.5}, "p99 latency 100 ms"),
        ({"latency_p99_ms": None}, "p99 latency -"),
        ({"failed": 3}, "3 bots failed"),
    ],
)
def test_each_rule_saturates(change: dict[str, Any], reason: str) -> None:
    assert bl.saturation_reasons(_step(**change)) == [reason]


def test_the_edges_of_the_rules_are_not_saturated() -> None:
    assert bl.saturation_reasons(_step(server_cpu_pct=94.9, updates_p5=19.0)) == []
    assert bl.saturation_reasons(_step(latency_p99_ms=100.0)) == []


def test_all_reasons_are_listed() -> None:
    assert len(bl.saturation_reasons(_step(server_cpu_pct=99, updates_p5=10, failed=1))) == 3


def test_server_core_share_leaves_other_processes_out() -> None:
    # the server's own 60% plus 5% softirq on its core; the core was 90% busy (others: 25%)
    assert bl.server_core_share(60.0, 90.0, 5.0) == 65.0
    # never more than the core was busy (softirq time may also be charged to the process)
    assert bl.server_core_share(96.0, 98.0, 5.0) == 98.0
    step = _step(server_cpu_pct=60.0, core0_busy_pct=99.0, server_core_pct=65.0)
    assert bl.saturation_reasons(step) == []


def test_foreign_share_and_contamination() -> None:
    assert bl.foreign_share(90.0, 60.0, 5.0) == 25.0
    assert bl.foreign_share(50.0, 60.0, 5.0) == 0.0
    assert not bl.contaminated({"foreign_core0_pct": 10.0, "foreign_core1_pct": 0.0})
    assert bl.contaminated({"foreign_core0_pct": 0.0, "foreign_core1_pct": 10.5})
    assert not bl.contaminated({})
    assert bl.disturbance({"foreign_core0_pct": 3.0, "foreign_core1_pct": 12.5}) == 12.5


def test_loadgen_bound() -> None:
    assert not bl.loadgen_bound(_step(core1_busy_pct=90.0))
    assert bl.loadgen_bound(_step(core1_busy_pct=90.1))
    assert not bl.loadgen_bound({})


def test_peak_served_counts_only_the_players_who_got_in() -> None:
    full = _step(target=800, connected=800)
    refused = _step(target=1000, connected=972, failed=28, saturated=["28 bots failed"])
    slow = _step(target=1200, connected=1200, latency_p99_ms=150.0)
    assert bl.served_within_limits(refused)
    assert not bl.served_within_limits(slow)
    assert not bl.served_within_limits(_step(connected=0))
    assert bl.peak_served([full, refused, slow]) is refused
    assert bl.peak_served([slow]) is None


# ------------------------------------------------------------------ the step search
def _search(limit: int, *, coarse: int = 200, fine: int = 64, top: int = 4000) -> list[int]:
    """The steps the auto search runs against a server that saturates above ``limit``."""
    history: list[tuple[int, bool]] = []
    while (
        nxt := bl.next_auto_step(history, coarse=coarse, fine=fine, max_players=top)
    ) is not None:
        history.append((nxt, nxt > limit))
        assert len(history) < 50
    return [p for p, _ in history]


def test_round_to_rooms() -> None:
    assert bl.round_to_rooms(900) == 896  # 112.5 rooms -> 112 (round half to even)
    assert bl.round_to_rooms(3) == 8
    assert bl.round_to_rooms(948) == 944


def test_auto_search_steps_up_then_bisects_in_whole_rooms() -> None:
    steps = _search(930)
    assert steps == [200, 400, 600, 800, 1000, 896, 944]
    assert all(p % 8 == 0 for p in steps)
    history = [(p, p > 930) for p in steps]
    assert bl.capacity(history) == 896
    assert bl.search_bounds(history) == (896, 944)


def test_auto_search_when_the_first_step_saturates() -> None:
    steps = _search(50)
    assert steps == [200, 96, 48]
    assert bl.capacity([(p, p > 50) for p in steps]) == 48


def test_auto_search_stops_at_max_players() -> None:
    assert _search(10_000, top=1000) == [200, 400, 600, 800, 1000]


def test_auto_search_never_repeats_a_step() -> None:
    for limit in range(0, 1300, 37):
        steps = _search(limit)
        assert len(steps) == len(set(steps))


def test_capacity_when_everything_saturated() -> None:
    assert bl.capacity([(200, True), (96, True)]) is None


# ------------------------------------------------------------------ the measured window
def test_window_ends_where_the_bots_leave() -> None:
    times = [0.5 * i for i in range(40)]  # 0 .. 19.5
    fds = [10 * i for i in range(10)] + [100] * 25 + [60, 20, 10, 10, 10]
    start, end = bl.measured_window(times, fds, t_exit=20.0, duration=10.0)
    assert end == times[34]  # the last sample with >= 90% of the peak
    assert start == pytest.approx(end - 9.5)
    assert bl.window_indices(times, start, end) == (15, 34)


def test_window_without_a_drop_ends_before_the_exit() -> None:
    times = [0.25 * i for i in range(60)]
    start, end = bl.measured_window(times, [50] * 60, t_exit=15.0, duration=10.0, tail=0.5)
    assert (start, end) == (5.0, 14.5)
    assert bl.window_indices(times, 14.6, 14.7) is None


# ------------------------------------------------------------------ markdown
def test_render_table_rows_and_flags() -> None:
    ok = _step(target=400, connected=400, rooms=50, saturated=[], latency_p50_ms=21.0)
    bad = _step(
        target=800,
        connected=790,
        failed=10,
        rooms=100,
        saturated=["10 bots failed"],
        loadgen_bound=True,
        core1_busy_pct=95.5,
        errors={"ServerError:4006": 10},
    )
    over = dict(bad, overload=True, target=1600)
    table = bl.render_table([ok, bad, over])
    lines = table.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("| players (conn./target) | rooms |")
    assert lines[1].startswith("|---|---:|")
    assert all(line.count(" | ") == len(bl.STEP_COLUMNS) - 1 for line in lines if "---" not in line)
    assert "| 400/400 | 50 |" in lines[2] and lines[2].endswith("| 40.0 | ok |")
    assert "95.5 **bots-bound**" in lines[3]
    assert "saturated: 10 bots failed (load generator saturated" in lines[3]
    assert "overload step: saturated" in lines[4]
    assert "- / - / -" not in lines[2]


def test_render_table_escapes_pipes_and_shows_missing_values() -> None:
    table = bl.render_table([{"target": 8, "saturated": ["a|b"]}])
    row = table.splitlines()[2]
    assert "a\\|b" in row
    assert row.startswith("| -/8 |")  # connected missing: shown as '-'


def _fake_results() -> dict[str, Any]:
    def step(target: int, p99: float, sat: list[str], **kw: Any) -> dict[str, Any]:
        return _step(
            server="x",
            target=target,
            connected=target,
            rooms=target // 8,
            latency_p99_ms=p99,
            saturated=sat,
            loadgen_bound=False,
            tag=f"s{target}",
            bytes_down_pps=1400.0,
            bytes_up_pps=80.0,
            updates_mean=20.0,
            server_cmd="server",
            bots_cmd="bots",
            background={"core0_busy_pct": 0.0, "core1_busy_pct": 0.0},
            **kw,
        )

    ours = {
        "steps": [step(200, 40.0, []), step(400, 150.0, ["p99 latency 150 ms"])],
        "capacity": 200,
        "first_saturated": 400,
        "first_saturated_reasons": ["p99 latency 150 ms"],
        "first_saturated_loadgen_bound": False,
        "capacity_step": "s200",
        "notes": [],
        "overload": step(
            800,
            900.0,
            ["2 bots failed"],
            overload=True,
            failed=2,
            errors={"ServerError:4006": 2},
            refused={"server_full": 2.0},
            tick_rate_measured=19.5,
        ),
    }
    base = dict(ours, overload=None, capacity=None, capacity_step=None, first_saturated=200)
    base["steps"] = [step(200, 300.0, ["p99 latency 300 ms"])]
    return {
        "meta": {
            "command": "python tools/bench.py --duration 10",
            "machine": {
                "cpu_model": "Test CPU",
                "cores": 2,
                "machine": "x86_64",
                "kernel": "6.0",
                "python": "CPython 3.11.7",
                "openssl": "OpenSSL 3.0",
                "packages": {"trio": "0.35.0", "trio-websocket": "0.12.2", "websockets": "17.4"},
                "git_commit": "abc1234",
                "git_dirty_files": 0,
                "date_utc": "2026-01-01 00:00 UTC",
            },
            "thresholds": vars(bl.Thresholds()),
            "settings": {"ramp": 100, "duration": 10, "auto": True, "coarse": 200, "fine": 64},
        },
        "targets": {"gameserver": ours, "baseline": base},
    }


def test_render_markdown_has_the_summary_and_tables() -> None:
    md = bench.render_markdown(_fake_results())
    assert "**200 players** (25 rooms of 8); 400 players saturated it (p99 latency 150 ms)" in md
    assert "every step saturated (first: 200 players)" in md
    assert "**1,400 B/s down** per player at 200 players (70 B per update" in md
    assert "ServerError:4006 x2" in md and "server_full x2" in md
    assert "19.50 Hz per room" in md
    assert "Test CPU, 2 cores" in md and "websockets 17.4" in md
    assert md.count("| players (conn./target) |") == 2
    assert "- this server (trio, binary deltas): **200 players**, at 50.0% CPU, p99 40.0 ms" in md
    assert "    python tools/bench.py --duration 10" in md


def test_draw_chart_writes_a_png(tmp_path: Path) -> None:
    # the test command installs the bench extras (make test): a missing one fails, never skips
    import matplotlib  # noqa: F401

    out = tmp_path / "chart.png"
    bench.draw_chart(_fake_results(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the baseline server, for real
def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            return proc.stdout.readline()
    raise TimeoutError("no line from the baseline server")


def test_baseline_server_joins_applies_input_and_acks_it(tmp_path: Path) -> None:
    import trustme
    from websockets.sync.client import connect

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    cmd = [sys.executable, str(TOOLS / "baseline_server.py"), "--port", "0"]
    cmd += ["--cert", str(cert_file), "--key", str(key_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        line = _read_line(proc, deadline)
        assert line.startswith("listening on wss://127.0.0.1:"), line
        url = line.split()[-1]
        with connect(url, ssl=client_ctx, open_timeout=10, close_timeout=2) as ws:
            ws.send(json.dumps({"type": "join", "room": "t1"}))
            joined = json.loads(ws.recv(timeout=10))
            assert joined["type"] == "joined"
            player = joined["player"]
            ws.send(json.dumps({"type": "input", "seq": 1, "dx": 1.0, "dy": 0.0}))
            state: dict[str, Any] = {}
            while state.get("acks", {}).get(str(player), 0) < 1:
                assert time.monotonic() < deadline, "no state acknowledging input 1"
                state = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                assert "tick" in state
        mine = [e for e in state["entities"] if e["type"] == "player" and e["owner"] == player]
        assert len(mine) == 1
        assert set(mine[0]) == {"id", "type", "x", "y", "score", "hp", "owner", "name"}
        assert sum(e["type"] == "gem" for e in state["entities"]) == 6
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "stats {" in err
