"""The supervisor's decisions (gameserver.workers) and its metrics merge, without processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from gameserver.cli import _given, build_parser
from gameserver.settings import SERVE_SETTINGS
from gameserver.supervisor_metrics import merge_worker_metrics, parse_response
from gameserver.workers import (
    Backoff,
    Finished,
    GiveUp,
    PlanError,
    Restart,
    State,
    Supervision,
    WorkerOutput,
    WorkerReady,
    check_disjoint,
    check_public_url,
    describe_exit,
    parse_workers,
    plan_workers,
    user_args,
    wanted_ports,
    worker_url,
)


def test_parse_workers() -> None:
    assert parse_workers("3", 8) == 3
    assert parse_workers(" AUTO ", 8) == 8
    assert parse_workers("auto", None) == 1
    assert parse_workers("auto", 1000) == 256
    for bad in ("0", "-1", "two", "", "1.5", "257", "1e3"):
        with pytest.raises(PlanError, match="--workers"):
            parse_workers(bad, 4)


def test_ports() -> None:
    assert wanted_ports(8443, 3) == [8444, 8445, 8446]
    assert wanted_ports(0, 2) == [0, 0]
    with pytest.raises(PlanError, match="past 65535"):
        wanted_ports(65534, 2)
    check_disjoint([8443, 8444, 8445], [9100, 9101, 9102])
    check_disjoint([0, 0, 0], [0, 0, 0])
    with pytest.raises(PlanError, match="port 8445"):
        check_disjoint([8443, 8444, 8445], [8445, 8446, 8447])


def test_worker_urls() -> None:
    assert worker_url(None, "wss", "127.0.0.1", 9001) == "wss://127.0.0.1:9001"
    assert worker_url(None, "ws", "::1", 9001) == "ws://[::1]:9001"
    assert worker_url("wss://node-b.example:8443", "wss", "0.0.0.0", 8444) == (
        "wss://node-b.example:8444"
    )
    assert worker_url("wss://node-b.example/game", "wss", "0.0.0.0", 8444) == (
        "wss://node-b.example:8444/game"
    )
    assert worker_url("wss://[2001:db8::1]:8443", "wss", "::", 8445) == "wss://[2001:db8::1]:8445"
    check_public_url("wss://node-b.example:8443")
    for bad in ("https://node-b.example", "node-b:8443", "wss://"):
        with pytest.raises(PlanError, match="--public-url"):
            check_public_url(bad)


def test_user_args_round_trip_through_the_parser() -> None:
    argv = [
        "serve", "--workers", "4", "--port=8443", "--host", "0.0.0.0", "--insecure",
        "--no-web", "--game", "pong", "--game=arena", "--max-rooms", "7",
        "--metrics-port", "9100", "--node-id", "x", "--directory", "redis://r:6379/0",
    ]  # fmt: skip
    args = build_parser().parse_args(argv)
    rebuilt = user_args(_given(args, SERVE_SETTINGS), SERVE_SETTINGS, Path("/etc/gs.toml"))
    assert rebuilt[0] == "--config=/etc/gs.toml"
    assert not any(
        a.startswith(("--workers", "--port", "--metrics-port", "--node-id")) for a in rebuilt
    )
    again = build_parser().parse_args(["serve", *rebuilt])
    given = _given(again, SERVE_SETTINGS)
    assert given == {
        "directory": "redis://r:6379/0",  # the user's own: passed on as given
        "host": "0.0.0.0",
        "insecure": True,
        "web": False,
        "game": ["pong", "arena"],
        "max-rooms": "7",
    }


def test_plan_gives_each_worker_its_ports_id_and_url() -> None:
    specs = plan_workers(
        executable="/py",
        args=["--insecure"],
        host="0.0.0.0",
        scheme="ws",
        shared_port=8443,
        ports=[8444, 8445],
        metrics_ports=[9101, 9102],
        directory="unix:/tmp/d/directory.sock",
        node_id="box",
        public_url="ws://box.example:8443",
    )
    assert [(s.index, s.port, s.metrics_port, s.node_id, s.public_url) for s in specs] == [
        (0, 8444, 9101, "box/w0", "ws://box.example:8444"),
        (1, 8445, 9102, "box/w1", "ws://box.example:8445"),
    ]
    assert specs[1].argv == (
        "/py", "-m", "gameserver", "serve", "--insecure",
        "--port=8445", "--shared-port=8443", "--worker-index=1",
        "--node-id=box/w1", "--public-url=ws://box.example:8445",
        "--directory=unix:/tmp/d/directory.sock", "--metrics-port=9102",
    )  # fmt: skip
    # and the CLI takes that command line (the hidden flags included)
    parsed = build_parser().parse_args(list(specs[1].argv[3:]))
    assert (parsed.worker_index, parsed.shared_port, parsed.port) == (1, 8443, "8445")


def test_backoff_doubles_to_its_cap_and_resets_after_a_long_run() -> None:
    b = Backoff()
    assert [b.after_exit(1.0) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.after_exit(31.0) == 0.5
    assert b.after_exit(2.0) == 1.0


def _two() -> Supervision:
    specs = plan_workers(
        executable="/py",
        args=[],
        host="127.0.0.1",
        scheme="wss",
        shared_port=8443,
        ports=[8444, 8445],
        metrics_ports=None,
        directory="unix:/d",
        node_id="h",
        public_url=None,
    )
    return Supervision(specs)


def test_a_worker_that_fails_to_start_stops_everything() -> None:
    sup = _two()
    sup.started(0, 100, 0.0)
    sup.started(1, 101, 0.0)
    assert sup.output(1, "metrics on http://x") == WorkerOutput(1, "metrics on http://x")
    assert sup.output(1, "listening on wss://127.0.0.1:8445") == WorkerReady(
        1, 101, "wss://127.0.0.1:8445", True
    )
    assert not sup.all_ready()
    decision = sup.exited(0, 1, 0.3)
    assert isinstance(decision, GiveUp) and "worker 0" in decision.message
    assert "exit status 1" in decision.message
    assert sup.give_up() == [101] and sup.stopping
    assert sup.exited(1, -signal.SIGTERM, 0.5) == Finished()
    assert sup.all_done()


def test_a_worker_that_dies_after_start_up_is_restarted_with_backoff() -> None:
    sup = _two()
    for i in (0, 1):
        sup.started(i, 100 + i, 0.0)
        sup.output(i, f"listening on wss://127.0.0.1:{8444 + i}")
    assert sup.all_ready() and sup.ready() and sup.healthy()
    sup.announced = True
    assert sup.exited(0, -signal.SIGKILL, 5.0) == Restart(0, 0.5)
    assert not sup.ready() and sup.healthy()  # worker 1 still serves
    assert sup.slots[0].state is State.BACKOFF and sup.slots[0].restarts == 1
    sup.started(0, 200, 5.5)
    assert sup.exited(0, 1, 5.6) == Restart(0, 1.0)  # died again at once: longer
    sup.started(0, 201, 6.6)
    ready = sup.output(0, "listening on wss://127.0.0.1:8444")
    assert ready == WorkerReady(0, 201, "wss://127.0.0.1:8444", True)
    assert sup.ready()
    sup.slots[1].probe_ready = False  # its own /readyz said no (e.g. over its CPU budget)
    assert not sup.ready() and sup.healthy()


def test_a_signal_stops_restarts_and_goes_to_every_running_worker() -> None:
    sup = _two()
    for i in (0, 1):
        sup.started(i, 100 + i, 0.0)
        sup.output(i, "listening on wss://x")
    sup.announced = True
    assert isinstance(sup.exited(1, 1, 40.0), Restart)  # in its backoff when the signal comes
    assert sup.signal(signal.SIGTERM) == [100]
    assert sup.slots[1].state is State.DONE  # never restarted
    assert not sup.healthy() and not sup.ready()
    assert sup.signal(signal.SIGTERM) == [100]  # a second one: forwarded too (stop now)
    assert not sup.all_done()
    assert sup.exited(0, 0, 41.0) == Finished()
    assert sup.all_done()


def test_describe_exit() -> None:
    assert describe_exit(2) == "exit status 2"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_merge_labels_every_sample_with_its_worker() -> None:
    text = (
        "# HELP gameserver_joins_total Joins.\n# TYPE gameserver_joins_total counter\n"
        "gameserver_joins_total 3.0\n"
        "# HELP gameserver_refused_total R.\n# TYPE gameserver_refused_total counter\n"
        'gameserver_refused_total{reason="full"} 1.0\n'
        "# HELP gameserver_tick_seconds T.\n# TYPE gameserver_tick_seconds histogram\n"
        'gameserver_tick_seconds_bucket{le="0.001"} 1.0\n'
        'gameserver_tick_seconds_bucket{le="+Inf"} 2.0\n'
        "gameserver_tick_seconds_count 2.0\ngameserver_tick_seconds_sum 0.5\n"
    )
    up = GaugeMetricFamily("gameserver_worker_up", "Up.", labels=["worker"])
    up.add_metric(["0"], 1.0)
    merged = merge_worker_metrics({1: text, 0: text, 2: "garbage {{{"}, [up]).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    joins = families["gameserver_joins"]
    assert joins.type == "counter"
    assert [(s.labels, s.value) for s in joins.samples] == [
        ({"worker": "0"}, 3.0),
        ({"worker": "1"}, 3.0),
    ]
    assert {s.labels["reason"] for s in families["gameserver_refused"].samples} == {"full"}
    buckets = [s for s in families["gameserver_tick_seconds"].samples if s.name.endswith("bucket")]
    assert {(s.labels["le"], s.labels["worker"]) for s in buckets} == {
        ("0.001", "0"), ("+Inf", "0"), ("0.001", "1"), ("+Inf", "1"),
    }  # fmt: skip
    assert families["gameserver_worker_up"].samples[0].value == 1.0
    assert 'worker="2"' not in merged  # the one that did not parse is left out


def test_parse_response() -> None:
    assert parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody") == (200, b"body")
    assert parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n") == (503, b"")
    for bad in (b"", b"HTTP/1.1 200 OK\r\n", b"SSH-2.0\r\n\r\n", b"HTTP/1.1 2000 X\r\n\r\n"):
        assert parse_response(bad) is None
