"""gamebots' reporting and command line: merging, the server section, the verdict, arguments."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clients.bots import cli
from clients.bots.behaviours import BEHAVIOURS, assign, parse_mix
from clients.bots.lean import LATENCY_BUCKET_MS, LatencyHistogram
from clients.bots.loadtest import LoadConfig, make_bots, merge_reports
from clients.bots.server_metrics import (
    Scrape,
    _http_body,
    histogram_quantile,
    metrics_url,
    parse_metrics,
    server_section,
)
from gameserver.auth import TokenVerifier

# ================================================================ merge_reports


def _raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "target": 4,
        "connected": 4,
        "failed": 0,
        "window_s": 10.0,
        "tick_rate": 20.0,
        "latency": {},
        "rates": [20.0, 20.0, 19.9, 20.0],
        "bytes_down": 40_000,
        "bytes_up": 4_000,
        "snapshot_resyncs": 0,
        "desyncs": 0,
        "errors": {},
        "disconnects": {},
        "behaviours": {"wander": 4},
        "verifying": 4,
        "inputs_sent": 800,
        "events_sent": 0,
        "events_received": 0,
        "cpu_s": 1.0,
        "input_slots_late": 0,
        "ramp_s": 0.5,
    }
    raw.update(over)
    return raw


def _sparse(ms_counts: dict[float, int]) -> dict[str, int]:
    return {str(int(ms / LATENCY_BUCKET_MS)): n for ms, n in ms_counts.items()}


def test_merge_reports_combines_processes() -> None:
    a = _raw(
        latency=_sparse({10.0: 90, 50.0: 10}),
        rates=[float(r) for r in range(1, 101)],
        target=100,
        connected=100,
        bytes_down=100 * 10 * 1000,
        errors={"connect": 1},
        disconnects={"4008": 1},
        behaviours={"wander": 60, "chase": 40},
        cpu_s=2.0,
        input_slots_late=3,
        snapshot_resyncs=2,
    )
    b = _raw(
        latency=_sparse({10.0: 80, 100.0: 20}),
        rates=[float(r) for r in range(101, 201)],
        target=101,
        connected=100,
        failed=1,
        bytes_down=100 * 10 * 3000,
        errors={"connect": 2, "desync": 1},
        disconnects={"4008": 2, "1006": 1},
        behaviours={"wander": 101},
        desyncs=1,
        window_s=10.2,
        ramp_s=1.5,
    )
    report = merge_reports([a, b])
    assert report["players"] == {"target": 201, "connected": 200, "failed": 1}
    assert report["duration_s"] == 10.2 and report["ramp_s"] == 1.5
    assert report["tick_rate"] == 20.0
    # per-bot rates 1..200: the mean and nearest-rank percentiles over all of them
    assert report["updates_per_player_per_s"] == 100.5
    assert report["updates_per_player_per_s_p5"] == 10.0
    assert report["updates_per_player_per_s_p50"] == 100.0
    lat = report["latency_ms"]
    assert lat["samples"] == 200
    assert lat["p50"] == pytest.approx(10.0, abs=LATENCY_BUCKET_MS)
    assert lat["p95"] == pytest.approx(100.0, abs=LATENCY_BUCKET_MS)
    assert lat["p99"] == pytest.approx(100.0, abs=LATENCY_BUCKET_MS)
    assert report["bytes_down_per_player_per_s"] == round(4_000_000 / 200 / 10.2, 1)
    assert report["errors"] == {"connect": 3, "desync": 1}
    assert report["disconnects"] == {"1006": 1, "4008": 3}
    assert report["behaviours"] == {"chase": 40, "wander": 161}
    assert report["desyncs"] == 1 and report["snapshot_resyncs"] == 2
    assert report["loadgen"] == {
        "procs": 2,
        "cpu_percent": round(3.0 / 10.2 * 100, 1),
        "cpu_ms_per_player_per_s": round(3000 / 200 / 10.2, 3),
        "input_slots_late": 3,
    }
    json.dumps(report)


def test_merge_reports_sums_drops_and_takes_resume_percentiles_over_every_resume() -> None:
    a = _raw(drops=5, resumes=4, resume_failures=1, seats_lost=0, resume_ms=[50.0, 60.0, 70.0])
    b = _raw(drops=101, resumes=101, seats_lost=2, resume_ms=[float(ms) for ms in range(100, 201)])
    report = merge_reports([a, b, _raw()])  # the last process ran without --drop-every
    assert (report["drops"], report["resumes"]) == (106, 105)
    assert (report["resume_failures"], report["seats_lost"]) == (1, 2)
    assert report["resume_ms"] == {"p50": 148.0, "p99": 199.0, "max": 200.0, "samples": 104}
    assert merge_reports([_raw()])["resume_ms"] == {
        "p50": None,
        "p99": None,
        "max": None,
        "samples": 0,
    }
    assert merge_reports([_raw()])["drops"] == 0


def test_merge_reports_without_players() -> None:
    report = merge_reports(
        [_raw(connected=0, failed=4, rates=[], window_s=0.0, errors={"connect": 4})]
    )
    assert report["players"] == {"target": 4, "connected": 0, "failed": 4}
    assert report["updates_per_player_per_s"] is None
    assert report["updates_per_player_per_s_p5"] is None
    assert report["latency_ms"] == {"p50": None, "p95": None, "p99": None, "samples": 0}
    assert report["bytes_down_per_player_per_s"] is None
    assert report["loadgen"]["cpu_percent"] is None


def test_latency_quantiles_from_merged_histograms() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for ms in range(100):
        (a if ms % 2 else b).add(ms + 0.1)
    merged = LatencyHistogram()
    merged.merge(a.sparse())
    merged.merge(b.sparse())
    assert merged.total == 100
    assert merged.quantile(0.5) == pytest.approx(49.25)
    assert merged.quantile(0.99) == pytest.approx(98.25)


# ================================================================ the server section

METRICS_BEFORE = """\
# HELP gameserver_ticks_total Room ticks run, all rooms.
# TYPE gameserver_ticks_total counter
gameserver_ticks_total 1000.0
# TYPE gameserver_ticks_late_total counter
gameserver_ticks_late_total 5.0
# TYPE gameserver_ticks_skipped_total counter
gameserver_ticks_skipped_total 1.0
# TYPE gameserver_sent_bytes_total counter
gameserver_sent_bytes_total 1000000.0
# TYPE gameserver_connections_refused_total counter
gameserver_connections_refused_total{reason="room_full"} 2.0
# TYPE gameserver_rooms gauge
gameserver_rooms 10.0
# TYPE gameserver_players gauge
gameserver_players 80.0
# TYPE gameserver_tick_rate_hertz gauge
gameserver_tick_rate_hertz 20.0
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.0e+07
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 100.0
# TYPE gameserver_tick_seconds histogram
gameserver_tick_seconds_bucket{le="0.0005"} 100.0
gameserver_tick_seconds_bucket{le="0.001"} 500.0
gameserver_tick_seconds_bucket{le="0.002"} 900.0
gameserver_tick_seconds_bucket{le="+Inf"} 1000.0
gameserver_tick_seconds_count 1000.0
gameserver_tick_seconds_sum 1.0
"""


def _after(text: str) -> str:
    for old, new in [
        ("gameserver_ticks_total 1000.0", "gameserver_ticks_total 3000.0"),  # +2000
        ("gameserver_ticks_late_total 5.0", "gameserver_ticks_late_total 8.0"),
        ("gameserver_sent_bytes_total 1000000.0", "gameserver_sent_bytes_total 3000000.0"),
        ('{reason="room_full"} 2.0', '{reason="room_full"} 5.0'),
        ("process_resident_memory_bytes 5.0e+07", "process_resident_memory_bytes 104857600"),
        ("process_cpu_seconds_total 100.0", "process_cpu_seconds_total 105.0"),
        # window: 2000 ticks: 1000 in (0, 0.5 ms], 900 in (0.5, 1], 80 in (1, 2], 20 above
        ('le="0.0005"} 100.0', 'le="0.0005"} 1100.0'),
        ('le="0.001"} 500.0', 'le="0.001"} 2400.0'),
        ('le="0.002"} 900.0', 'le="0.002"} 2880.0'),
        ('le="+Inf"} 1000.0', 'le="+Inf"} 3000.0'),
    ]:
        assert old in text
        text = text.replace(old, new)
    return text


def test_server_section_from_two_scrapes() -> None:
    before = Scrape(100.0, parse_metrics(METRICS_BEFORE))
    after = Scrape(110.0, parse_metrics(_after(METRICS_BEFORE)))
    s = server_section(before, after)
    assert s["window_s"] == 10.0
    assert s["rooms"] == 10 and s["players"] == 80
    assert s["tick_rate_config"] == 20.0
    assert s["tick_rate_measured"] == 20.0  # 2000 ticks / 10 s / 10 rooms
    assert s["tick_ms_p50"] == pytest.approx(0.5)  # rank 1000 of 2000: top of the first bucket
    # rank 1980: 1900 below 1 ms, 80 in (1, 2] -> the top of that bucket
    assert s["tick_ms_p99"] == pytest.approx(2.0)
    assert s["ticks_late"] == 3 and s["ticks_skipped"] == 0
    assert s["cpu_percent"] == 50.0
    assert s["rss_mb"] == 100.0
    assert s["bytes_out_per_s"] == 200_000
    assert s["connections_refused"] == {"room_full": 3}
    assert s["deltas_skipped"] is None  # not in the canned text


def test_histogram_quantile_interpolates() -> None:
    buckets = {0.001: 50.0, 0.002: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.0005)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.0015)
    assert histogram_quantile(0.99, {0.001: 0.0, math.inf: 10.0}) == 0.001
    assert histogram_quantile(0.5, {0.001: 0.0, math.inf: 0.0}) is None


def test_http_body_and_metrics_url() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    assert _http_body(ok) == b"hello"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert _http_body(chunked) == b"abcde"
    with pytest.raises(Exception, match="404"):
        _http_body(b"HTTP/1.1 404 Not Found\r\n\r\n")
    assert metrics_url("http://127.0.0.1:9100") == "http://127.0.0.1:9100/metrics"
    assert metrics_url("http://h:1/other") == "http://h:1/other"
    with pytest.raises(ValueError):
        metrics_url("https://h:1")


# ================================================================ verdict and summary


def _report(**over: Any) -> dict[str, Any]:
    report = merge_reports([_raw()])
    report.update(over)
    return report


def test_verdict() -> None:
    assert cli.verdict(_report(), protocol="gamesync", input_hz=None) == []
    failed = _report(players={"target": 4, "connected": 3, "failed": 1}, errors={"eof": 1})
    assert cli.verdict(failed, protocol="gamesync", input_hz=None) == [
        "1 of 4 bots failed (eof x1)"
    ]
    [why] = cli.verdict(_report(desyncs=2), protocol="gamesync", input_hz=None)
    assert "2 desync" in why
    slow = _report(updates_per_player_per_s_p5=18.9)
    [why] = cli.verdict(slow, protocol="gamesync", input_hz=None)
    assert "18.90/s is below 95% of 20 Hz" in why
    assert (
        cli.verdict(_report(updates_per_player_per_s_p5=19.0), protocol="gamesync", input_hz=None)
        == []
    )
    # the JSON baseline: 20 Hz, or --input-hz
    assert cli.verdict(_report(tick_rate=None), protocol="json", input_hz=None) == []
    assert cli.verdict(_report(tick_rate=None), protocol="json", input_hz=30.0) != []
    nobody = _report(
        players={"target": 4, "connected": 0, "failed": 4}, errors={"ServerError:4001": 4}
    )
    [reason] = cli.verdict(nobody, protocol="gamesync", input_hz=None)
    assert reason.startswith("no bot is connected")
    early = _report(players={"target": 4, "connected": 0, "failed": 4}, early_stop="why")
    assert cli.verdict(early, protocol="gamesync", input_hz=None)[0] == "stopped early: why"


def test_verdict_of_a_drop_run() -> None:
    ok = _report(drops=10, resumes=10, resume_failures=0, seats_lost=0)
    assert cli.verdict(ok, protocol="gamesync", input_hz=None, drops=True) == []
    bad = _report(drops=10, resumes=7, resume_failures=1, seats_lost=2, desyncs=1)
    assert cli.verdict(bad, protocol="gamesync", input_hz=None, drops=True) == [
        "1 desync(s)",
        "1 resume(s) failed",
        "2 seat(s) lost (refused 4013/4001 or renumbered)",
    ]
    never = _report(drops=3, resumes=0)
    [why] = cli.verdict(never, protocol="gamesync", input_hz=None, drops=True)
    assert why == "3 connection(s) cut, none resumed"
    # without --drop-every the resume figures do not count (there are none)
    assert cli.verdict(_report(seats_lost=2), protocol="gamesync", input_hz=None) == []


def test_format_table_shows_drops_only_for_a_drop_run() -> None:
    assert "drops" not in cli.format_table(_report())
    report = _report(drops=12, resumes=11, resume_failures=1, seats_lost=0)
    report["resume_ms"] = {"p50": 80.5, "p99": 150.25, "max": 301.0, "samples": 11}
    report["config"] = {"drop_every": 3.0}
    text = cli.format_table(report)
    assert "12 cut (every 3 s), 11 resumed, 1 resume failures, 0 seats lost" in text
    assert "p50 80.5  p99 150.2  max 301.0  (11 resumes)" in text


def test_format_table() -> None:
    report = _report(errors={"eof": 1}, disconnects={"1006": 1})
    report["server"] = {"error": "refused"}
    report["result"] = {"ok": False, "failures": ["something"]}
    text = cli.format_table(report)
    assert "4/4 connected" in text and "scrape failed: refused" in text
    assert "errors            server closed the connection (no close frame) x1" in text
    assert text.endswith("result: FAIL\n  - something")
    report["server"] = server_section(
        Scrape(0.0, parse_metrics(METRICS_BEFORE)),
        Scrape(10.0, parse_metrics(_after(METRICS_BEFORE))),
    )
    assert "tick 20.00 Hz/room (config 20)" in cli.format_table(report)


# ================================================================ arguments


def test_parse_args_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAMESERVER_SECRET", raising=False)
    parser = cli.build_parser()
    argv = [
        *("--url", "wss://127.0.0.1:9443", "--rooms", "6", "--players", "8"),
        *("--duration", "2.5", "--state-dir", str(tmp_path), "--seed", "5"),
        *("--ramp", "50", "--input-hz", "30", "--verify-sample", "16", "--procs", "3"),
        *("--behaviour", "wander:3,idle:1", "--metrics-url", "http://127.0.0.1:9100"),
        *("--settle", "0.5", "--room-prefix", "load", "--report", str(tmp_path / "r.json")),
    ]
    with pytest.raises(ValueError, match="no development CA"):
        cli.options_from_args(parser.parse_args(argv))
    (tmp_path / "dev-ca.pem").write_text("x")
    opts = cli.options_from_args(parser.parse_args(argv))
    cfg = opts.config
    assert cfg.ca_file == str(tmp_path / "dev-ca.pem")
    assert (cfg.rooms, cfg.players, cfg.duration, cfg.seed, cfg.ramp) == (6, 8, 2.5, 5, 50.0)
    assert (cfg.input_hz, cfg.verify_sample, cfg.settle, cfg.room_prefix) == (30.0, 16, 0.5, "load")
    assert cfg.behaviour == (("wander", 0.75), ("idle", 0.25))
    assert cfg.secret_hex is None  # no secret.key in the state dir
    assert opts.procs == 3 and opts.metrics_url == "http://127.0.0.1:9100/metrics"
    assert opts.report == tmp_path / "r.json"
    (tmp_path / "secret.key").write_text("ab" * 32 + "\n")
    assert (
        cli.options_from_args(parser.parse_args(argv)).config.secret_hex
        == ("ab" * 32).encode().hex()
    )
    # defaults
    opts = cli.options_from_args(parser.parse_args(["--url", "ws://10.0.0.1:80"]))
    cfg = opts.config
    assert cfg.ca_file is None and cfg.secret_hex is None and cfg.verify_sample == -1
    assert (cfg.rooms, cfg.players, cfg.duration, cfg.ramp, cfg.input_hz) == (
        1,
        1,
        10.0,
        200.0,
        None,
    )
    assert cfg.protocol == "gamesync" and cfg.behaviour == (("wander", 1.0),) and opts.procs == 1
    assert opts.metrics_url is None and isinstance(cfg.seed, int) and cfg.drop_every == 0.0
    drop = parser.parse_args(["--url", "ws://10.0.0.1:80", "--drop-every", "2.5"])
    assert cli.options_from_args(drop).config.drop_every == 2.5
    assert (
        cli.options_from_args(parser.parse_args(["--url", "wss://example.com"])).config.ca_file
        is None
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--rooms", "0"],
        ["--players", "-1"],
        ["--duration", "0"],
        ["--ramp", "-1"],
        ["--procs", "0"],
        ["--protocol", "udp"],
        ["--behaviour", "dance"],
        ["--behaviour", "wander:x"],
        ["--verify-sample", "-2"],
        ["--metrics-url", "ftp://h"],
        ["--rooms", "2", "--procs", "3"],
        ["--ca-file", "/nonexistent.pem"],
        ["--drop-every", "0"],
        ["--drop-every", "soon"],
        ["--drop-every", "3", "--protocol", "json"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", "wss://example.com:9", *argv])
    assert info.value.code == 2


def test_secret_lookup(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    key.write_text("s" * 40 + "\n")
    assert cli.find_secret("wss://h:1", key, None, env={}) == b"s" * 40
    assert (
        cli.find_secret("wss://h:1", None, None, env={"GAMESERVER_SECRET": "e" * 40}) == b"e" * 40
    )
    assert cli.find_secret("wss://127.0.0.1:1", None, tmp_path, env={}) == b"s" * 40
    assert cli.find_secret("wss://example.com:1", None, tmp_path, env={}) is None  # not local
    with pytest.raises(ValueError):
        cli.find_secret("wss://h:1", tmp_path / "missing", None, env={})


def test_state_dir_and_default_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.default_state_dir() == tmp_path / "gameserver"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.default_state_dir() == tmp_path / ".local" / "state" / "gameserver"
    for host in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST"):
        assert cli.default_ca_file(f"wss://{host}:8443", tmp_path) == tmp_path / "dev-ca.pem"
    assert cli.default_ca_file("wss://127.0.0.1:8443") == cli.default_state_dir() / "dev-ca.pem"
    assert cli.default_ca_file("ws://127.0.0.1:8443", tmp_path) is None
    assert cli.default_ca_file("wss://example.com", tmp_path) is None


def test_unreachable_server_fails_with_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_file = tmp_path / "out" / "report.json"
    code = cli.main(
        [
            *("--url", "ws://127.0.0.1:1", "--rooms", "1", "--players", "2"),
            *("--duration", "0.1", "--settle", "0", "--report", str(report_file)),
        ],
        isatty=lambda: False,
    )
    assert code == 1
    report = json.loads(report_file.read_text())
    assert report["errors"] == {"refused": 2}
    assert report["errors_first"]["refused"][0] == "[Errno 111] Connection refused"
    assert report["early_stop"] == "none of the first 2 bots could connect (connection refused x2)"
    assert report["players"] == {"target": 2, "connected": 0, "failed": 2}
    assert report["server"] is None and report["result"]["ok"] is False
    out = capsys.readouterr()
    assert "result: FAIL" in out.out and "no bot is connected" in out.out
    assert "  - stopped early: none of the first 2 bots could connect" in out.out
    assert "connection refused x2 (first: [Errno 111] Connection refused at " in out.out
    assert "hints:\n  - nothing accepts connections at ws://127.0.0.1:1" in out.out
    assert out.err == ""  # stopped before the first plain progress line (5 s)


# ================================================================ bots of a run


def test_split_rooms() -> None:
    assert cli.split_rooms(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert cli.split_rooms(2, 1) == [(0, 2)]
    assert cli.split_rooms(2, 5) == [(0, 1), (1, 1)]


def test_behaviour_mix() -> None:
    assert parse_mix("chase") == (("chase", 1.0),)
    mix = parse_mix("wander:0.6, chase:0.2,idle:0.1,chatty:0.1")
    assert dict(mix) == pytest.approx({"wander": 0.6, "chase": 0.2, "idle": 0.1, "chatty": 0.1})
    assert parse_mix("wander:0,idle:2") == (("idle", 1.0),)
    for bad in ("", "dance", "wander:-1", "wander:nan", "wander,wander", "wander:0"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    counts = Counter(assign(mix, i).name for i in range(1000))
    for name, share in mix:
        assert abs(counts[name] - 1000 * share) <= 5
    # any window of consecutive bots is close to the mix too
    window = Counter(assign(mix, i).name for i in range(500, 600))
    assert abs(window["chase"] - 20) <= 3
    assert set(BEHAVIOURS) == {"wander", "roam", "chase", "idle", "chatty", "paddle"}


def test_bots_of_a_share_do_not_depend_on_the_split() -> None:
    secret = b"k" * 32
    whole = LoadConfig(
        url="ws://h:1",
        rooms=4,
        players=3,
        verify_sample=5,
        secret_hex=secret.hex(),
        behaviour=parse_mix("wander:0.5,chase:0.5"),
    )
    parts = [
        LoadConfig(
            url="ws://h:1",
            rooms=n,
            room_offset=off,
            rooms_total=4,
            players=3,
            verify_sample=5,
            secret_hex=secret.hex(),
            behaviour=parse_mix("wander:0.5,chase:0.5"),
        )
        for off, n in cli.split_rooms(4, 3)
    ]

    def describe(cfg: LoadConfig) -> list[tuple[str, str, bool, str, float]]:
        return [
            (b.room, b.player_id, b.verify, b.behaviour.name, b.rng.random())
            for b in make_bots(cfg)
        ]

    one = describe(whole)
    assert one == [x for cfg in parts for x in describe(cfg)]
    # the verifying sample covers the rooms first: player 0 of each room, then player 1 of room 0
    assert [(room, pid) for room, pid, v, _, _ in one if v] == [
        ("bots-0", "bots-0-0"),
        ("bots-0", "bots-0-1"),
        ("bots-1", "bots-1-0"),
        ("bots-2", "bots-2-0"),
        ("bots-3", "bots-3-0"),
    ]
    assert len({pid for _, pid, _, _, _ in one}) == 12
    # each bot has its own token for its player id
    verifier = TokenVerifier([secret])
    bot = make_bots(whole)[7]
    assert verifier.verify(bot.token).player_id == bot.player_id == "bots-2-1"
    everyone = LoadConfig(url="ws://h:1", rooms=2, players=2)
    assert all(b.verify and not b.token for b in make_bots(everyone))
    json_bots = make_bots(LoadConfig(url="ws://h:1", protocol="json", secret_hex=secret.hex()))
    assert not json_bots[0].verify and not json_bots[0].token
