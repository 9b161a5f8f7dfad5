"""gamebots explaining itself: error kinds, the first error of each, hints, the early stop,
per-player progress (live or plain lines), the bounded time series and the chart."""

from __future__ import annotations

import io
import itertools
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from clients.bots import chart, cli
from clients.bots.errors import EarlyStop, FirstErrors, error_lines, hints, kind_label
from clients.bots.lean import LATENCY_BUCKET_MS
from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from clients.bots.progress import (
    Progress,
    Series,
    format_line,
    rate_key,
    rate_mean,
    rate_quantile,
    show_progress,
)

# ================================================================ errors and hints


def test_kind_labels() -> None:
    assert kind_label("refused") == "connection refused"
    assert kind_label("closed:4001") == "closed 4001 UNAUTHORIZED"
    assert kind_label("ServerError:4001") == "server error 4001 UNAUTHORIZED"
    assert kind_label("closed:4999") == "closed 4999"
    assert kind_label("misfit:paddle") == "behaviour paddle does not fit the game"
    assert kind_label("something_new") == "something_new"


def test_first_error_of_each_kind_is_kept_and_merged() -> None:
    first = FirstErrors()
    first.record("refused", "[Errno 111] Connection refused", at=100.0)
    first.record("refused", "a later one", at=101.0)
    first.record("tls_closed", "x" * 500, at=102.0)
    assert first.first["refused"] == ["[Errno 111] Connection refused", 100.0]
    assert len(first.first["tls_closed"][0]) == 160  # bounded
    other = FirstErrors()
    other.merge({"refused": ["earlier, in another process", 99.0], "eof": ["e", 105.0]})
    other.merge(first.first)
    assert other.first["refused"] == ["earlier, in another process", 99.0]
    assert other.first["tls_closed"][1] == 102.0 and other.first["eof"] == ["e", 105.0]


def test_error_lines_most_frequent_first_with_the_first_detail() -> None:
    at = time.mktime((2026, 1, 2, 12, 0, 1, 0, 0, -1))
    lines = error_lines(
        {"eof": 1, "refused": 64},
        {"refused": ["[Errno 111] Connection refused", at]},
    )
    assert lines == [
        "connection refused x64 (first: [Errno 111] Connection refused at 12:00:01)",
        "server closed the connection (no close frame) x1",
    ]
    assert error_lines({}) == []


def _report(errors: dict[str, int], connected: int = 0, **over: Any) -> dict[str, Any]:
    report = {
        "errors": errors,
        "players": {"target": 64, "connected": connected, "failed": 64 - connected},
        "config": {"url": "wss://127.0.0.1:8443", "ca_file": "/x/dev-ca.pem"},
        "server": None,
    }
    report.update(over)
    return report


def test_hints_for_known_causes() -> None:
    assert hints(_report({}, connected=64)) == []
    [cap] = hints(_report({"tls_closed": 8}, connected=56))
    assert "--max-connections-per-ip 0" in cap
    # the server's own count of refusals says so too (a refusal after the TLS handshake)
    server = {"connections_refused": {"connection_limit": 3}}
    [cap2] = hints(_report({"eof": 3}, connected=61, server=server))
    assert cap2 == cap
    [ca] = hints(_report({"tls_verify": 64}))
    assert "--ca-file" in ca and "--state-dir" in ca and "/x/dev-ca.pem" in ca
    for kind in ("closed:4001", "ServerError:4001", "resume:4001"):
        [secret] = hints(_report({kind: 64}))
        assert "--secret-file" in secret and "secret.key" in secret
    [nothing] = hints(_report({"refused": 64}))
    assert "nothing accepts connections at wss://127.0.0.1:8443" in nothing
    [plain] = hints(_report({"tls_not_tls": 64}))
    assert "does not speak TLS" in plain
    assert hints(_report({"refused": 2}, connected=62)) == []  # some bots got in
    assert len(hints(_report({"tls_verify": 1, "closed:4001": 1, "connect_timeout": 1}))) == 3


def test_early_stop_when_none_of_the_first_attempts_connects() -> None:
    early = EarlyStop(attempts=4)
    assert [early.record("refused") for _ in range(3)] == [None] * 3
    assert early.record("tls_closed") == (
        "none of the first 4 bots could connect (connection refused x3, "
        "server closed the connection before/during the TLS handshake x1)"
    )
    assert early.record("refused") is None  # said once
    lucky = EarlyStop(attempts=4)
    results = [lucky.record(k) for k in ("refused", None, "refused", "refused", "refused")]
    assert results == [None] * 5 and lucky.reason is None  # one bot connected: keep going


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_run_load_stops_early_when_no_bot_can_connect() -> None:
    cfg = LoadConfig(
        url=f"ws://127.0.0.1:{_closed_port()}",
        rooms=8,
        players=8,
        duration=30.0,
        ramp=100.0,  # 64 bots would take 0.64 s to start; 16 take 0.16 s
        settle=0.0,
        linger=0.0,
        early_stop=16,
    )
    t0 = trio.current_time()
    with trio.fail_after(10):
        report = merge_reports([await run_load(cfg)])
    assert trio.current_time() - t0 < 5  # not the 30 s window
    assert report["early_stop"].startswith("none of the first 16 bots could connect")
    assert report["errors"]["refused"] >= 16
    assert report["errors"]["refused"] + report["errors"]["stopped"] == 64
    assert report["errors_first"]["refused"][0] == "[Errno 111] Connection refused"
    verdict = cli.verdict(report, protocol="gamesync", input_hz=None)
    assert verdict[0].startswith("stopped early: none of the first 16")


# ================================================================ progress


def _sparse(ms: float, n: int) -> dict[str, int]:
    return {str(int(ms / LATENCY_BUCKET_MS)): n}


def _status(connected: int, rate: float, down: float, **over: Any) -> dict[str, Any]:
    status = {
        "phase": "window",
        "connected": connected,
        "updates_s": rate * connected,
        "rates": {rate_key(rate): connected},
        "bytes_down_s": down * connected,
        "bytes_up_s": 10.0 * connected,
        "errors": 0,
        "latency": _sparse(5.0, 99),
    }
    status.update(over)
    return status


def test_rate_histogram() -> None:
    hist = {rate_key(20.0): 95, rate_key(10.04): 5}
    assert hist == {"200": 95, "100": 5}
    assert rate_quantile(hist, 0.05) == 10.0 and rate_quantile(hist, 0.06) == 20.0
    assert rate_mean(hist) == pytest.approx(19.5)
    assert rate_quantile({}, 0.5) is None and rate_mean({}) is None


def test_progress_sample_is_per_player_over_every_process() -> None:
    progress = Progress(target=20)
    progress.update(0, _status(10, 20.0, 1000.0, errors=1))
    progress.update(1, _status(5, 10.0, 400.0, latency=_sparse(80.0, 1), phase="settle"))
    row = progress.sample()
    # per player, not the total of 250 updates/s the old line showed
    assert row["connected"] == 15 and row["target"] == 20
    assert row["updates_mean"] == pytest.approx(16.67, abs=0.01)
    assert row["updates_p5"] == 10.0
    assert row["down_pp"] == pytest.approx(800.0) and row["up_pp"] == 10.0
    assert row["latency_p50"] == pytest.approx(5.2, abs=0.3) and row["errors"] == 1
    assert row["phase"] == "settle/window" and row["server_cpu"] is None
    line = format_line(row)
    assert "bots 15/20  updates/player/s mean 16.7 p5 10.0" in line
    assert "bytes/player/s down 800 up 10  errors 1" in line and "server" not in line
    progress.server = {"tick_ms_p99": 1.5, "cpu_percent": 42.0}
    assert "server tick p99 1.50 ms cpu 42%" in format_line(progress.sample())
    assert progress.early_stop is None
    progress.update(1, _status(0, 0.0, 0.0, early_stop="why"))
    assert progress.early_stop == "why"


async def test_plain_progress_lines_every_interval_without_a_tty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    progress = Progress(target=8)
    series = Series()
    out = io.StringIO()

    async def worker() -> None:
        await trio.sleep(0.5)  # between two samples
        while True:
            progress.update(0, _status(8, 20.0, 1200.0))
            await trio.sleep(1.0)

    with trio.move_on_after(12.5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            nursery.start_soon(
                lambda: show_progress(progress, series, tty=False, stream=out, interval=5.0)
            )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 5 s and 10 s
    assert all(line.startswith("gamebots ") and "bots 8/8" in line for line in lines)
    assert "updates/player/s mean 20.0 p5 20.0" in lines[0]
    assert 10 <= len(series.rows) <= 12  # a sample a second, whatever is printed


async def test_no_sample_without_a_new_status(autojump_clock: trio.testing.MockClock) -> None:
    progress = Progress(target=8)
    series = Series()
    progress.update(0, _status(8, 20.0, 1200.0))
    with trio.move_on_after(10.5):
        await show_progress(progress, series, tty=False, stream=io.StringIO())
    assert len(series.rows) == 1


def test_series_is_bounded_and_keeps_the_whole_span() -> None:
    series = Series(max_points=100)
    for t in range(10_000):
        series.add({"t": float(t)})
        assert len(series.rows) <= 100
    ts = [r["t"] for r in series.rows]
    assert ts[0] == 0.0 and ts[-1] > 9_800  # from the start to (nearly) the end
    steps = {b - a for a, b in itertools.pairwise(ts)}
    assert steps == {float(series.step)} and series.step == 128  # evenly spaced
    with pytest.raises(ValueError):
        Series(max_points=1)


def test_live_display_renders() -> None:
    from clients.bots.progress import _Live

    out = io.StringIO()
    live = _Live(out)
    progress = Progress(target=8)
    progress.update(0, _status(8, 20.0, 1200.0, errors=2))
    progress.server = {"tick_ms_p99": 1.5, "cpu_percent": 42.0}
    live.update(progress.sample())
    live.close()
    text = out.getvalue()
    assert "updates/player/s  mean 20.0   p5 20.0" in text and "bots 8/8" in text
    assert "bytes/player/s    down 1200   up 10" in text and "cpu 42%" in text
    assert max(len(line) for line in text.splitlines()) <= 80  # fits a small terminal


# ================================================================ --help, --chart


def test_help_explains_every_label(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for label in (
        "updates/player/s",
        "latency ms",
        "bytes/player/s",
        "late input slots",
        "snapshot resyncs",
        "disconnects",
        "load generator",
        "hints",
        "--chart",
    ):
        assert label in text, label


def test_chart_argument_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", "ws://127.0.0.1:1"]
    with pytest.raises(SystemExit) as exc:
        cli.main([*url, "--chart", str(tmp_path / "c.txt")])
    assert exc.value.code == 2 and "is a PNG file" in capsys.readouterr().err
    real = chart.importlib.util.find_spec
    monkeypatch.setattr(
        chart.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    with pytest.raises(SystemExit) as exc:
        cli.main([*url, "--chart", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "needs matplotlib" in err and len(err.splitlines()) == 1


def _rows(server: bool) -> list[dict[str, Any]]:
    progress = Progress(target=8)
    rows = []
    for t in range(20):
        progress.update(0, _status(8, 20.0 - (t % 3), 1200.0, phase="ramp" if t < 3 else "window"))
        if server:
            progress.server = {"tick_ms_p99": 1.0 + t / 10, "cpu_percent": 30.0}
        row = progress.sample(now=progress.started + t)
        rows.append(row)
    return rows


@pytest.mark.parametrize("server", [True, False])
def test_draw_run_writes_a_png(tmp_path: Path, server: bool) -> None:
    # the test command installs the bench extras (make test): a missing one fails, never skips
    import matplotlib  # noqa: F401

    rows = _rows(server)
    assert chart.window_span(rows) == (3.0, 19.0)
    out = tmp_path / "sub" / "run.png"
    chart.draw_run(rows, out, title="test", tick_rate=20.0)
    assert out.read_bytes()[:8] == chart.PNG_MAGIC
    chart.draw_run([], tmp_path / "empty.png")  # a run that never sampled still draws
    assert (tmp_path / "empty.png").read_bytes()[:8] == chart.PNG_MAGIC
