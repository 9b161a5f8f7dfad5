"""gamebots end to end against a real server started in this process (WSS on 127.0.0.1)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from clients.bots import cli
from clients.bots.behaviours import parse_mix
from clients.bots.errors import hints
from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from gameserver.game import GameRegistry
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import GameServer, ServerConfig, serve_gameserver


def _ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_run_load_against_the_server(
    server: GameServer, ca: trustme.CA, tmp_path: Path
) -> None:
    cfg = LoadConfig(
        url=server.url,
        rooms=2,
        players=3,
        duration=1.0,
        settle=0.3,
        linger=0.0,
        ca_file=_ca_file(ca, tmp_path),
        game="arena",
        room_prefix="e2e",
        behaviour=parse_mix("wander:0.5,chase:0.2,chatty:0.3"),
    )
    with trio.fail_after(20):
        raw = await run_load(cfg)
    report = merge_reports([raw])
    assert report["players"] == {"target": 6, "connected": 6, "failed": 0}
    assert report["errors"] == {} and report["disconnects"] == {}
    assert report["desyncs"] == 0 and report["verifying"] == 6
    assert report["tick_rate"] == 20.0
    assert 15.0 <= report["updates_per_player_per_s_p5"] <= 25.0
    assert 15.0 <= report["updates_per_player_per_s"] <= 25.0
    lat = report["latency_ms"]
    assert lat["samples"] >= 6 * 10
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 1000
    assert report["bytes_down_per_player_per_s"] > 0 and report["bytes_up_per_player_per_s"] > 0
    assert sorted(server.rooms.rooms) == ["e2e-0", "e2e-1"]
    assert report["duration_s"] == pytest.approx(1.0, abs=0.1)


async def test_cli_run_with_workers_tokens_and_metrics(
    nursery: trio.Nursery,
    auth_server: GameServer,
    secret: bytes,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """--procs 2, each bot with its own token, the server section from /metrics."""
    registry = make_registry(auth_server.stats, auth_server.rooms)
    port = await nursery.start(serve_metrics, "127.0.0.1", 0, registry)
    (tmp_path / "secret.key").write_bytes(secret)
    args = cli.build_parser().parse_args(
        [
            *("--url", auth_server.url, "--rooms", "2", "--players", "2"),
            *("--duration", "1", "--settle", "0.3", "--procs", "2"),
            *("--ca-file", _ca_file(ca, tmp_path), "--secret-file", str(tmp_path / "secret.key")),
            *("--metrics-url", f"http://127.0.0.1:{port}", "--room-prefix", "w"),
            *("--behaviour", "wander:3,idle:1", "--verify-sample", "2"),
        ]
    )
    opts = cli.options_from_args(args)
    with trio.fail_after(30):
        report = await cli.run(opts)
    assert report["players"] == {"target": 4, "connected": 4, "failed": 0}, report["errors"]
    assert report["loadgen"]["procs"] == 2
    assert report["verifying"] == 2 and report["desyncs"] == 0
    assert report["behaviours"] == {"idle": 1, "wander": 3}
    assert report["updates_per_player_per_s_p5"] >= 15.0
    server = report["server"]
    assert server["rooms"] == 2 and server["players"] == 4
    assert server["tick_rate_config"] == 20.0
    assert 15.0 <= server["tick_rate_measured"] <= 25.0
    assert server["tick_ms_p99"] is not None and server["ticks_skipped"] is not None
    assert server["cpu_percent"] >= 0 and server["rss_mb"] > 0
    assert report["result"] == {"ok": True, "failures": []}
    assert sorted(auth_server.rooms.rooms) == ["w-0", "w-1"]


async def test_bots_without_tokens_are_refused(
    auth_server: GameServer, ca: trustme.CA, tmp_path: Path
) -> None:
    cfg = LoadConfig(
        url=auth_server.url,
        rooms=1,
        players=2,
        duration=0.2,
        settle=0.0,
        linger=0.0,
        ca_file=_ca_file(ca, tmp_path),
    )
    with trio.fail_after(20):
        report = merge_reports([await run_load(cfg)])
    assert report["players"]["connected"] == 0
    [(kind, n)] = report["errors"].items()
    assert kind.endswith(":4001") and n == 2
    assert any("--secret-file" in h for h in hints(report))
    assert report["errors_first"][kind][0]  # the server's reason, e.g. bad signature
    assert report["early_stop"] is not None  # none of the (two) bots could join
    assert report["disconnects"] == {"4001": 2}


async def test_idle_bots_answer_pings(
    nursery: trio.Nursery,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """Idle bots send nothing; they stay seated by answering the server's pings."""
    config = ServerConfig(port=0, ping_interval=0.2, idle_timeout=0.6)
    server: GameServer = await nursery.start(serve_gameserver, config, registry, server_ssl)
    cfg = LoadConfig(
        url=server.url,
        rooms=1,
        players=2,
        duration=1.2,
        settle=0.0,
        linger=0.0,
        ca_file=_ca_file(ca, tmp_path),
        behaviour=parse_mix("idle"),
    )
    with trio.fail_after(20):
        report = merge_reports([await run_load(cfg)])
    assert report["players"] == {"target": 2, "connected": 2, "failed": 0}, report["errors"]
    assert report["inputs_sent"] == 0 and report["latency_ms"]["samples"] == 0
    assert report["updates_per_player_per_s_p5"] >= 15.0
    assert report["disconnects"] == {} and not server.stats.protocol_errors["idle_timeout"]


async def test_drop_every_cuts_and_every_bot_resumes_its_seat(
    server: GameServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """gamebots --drop-every 1: 8 bots cut (RST) about once a second for 6 s, each resumes
    the same seat (RESUME, catch-up delta, re-sent inputs) with no desync."""
    args = cli.build_parser().parse_args(
        [
            *("--url", server.url, "--rooms", "2", "--players", "4"),
            *("--duration", "6", "--settle", "0.3", "--drop-every", "1"),
            *("--ca-file", _ca_file(ca, tmp_path), "--room-prefix", "drop", "--seed", "3"),
        ]
    )
    opts = cli.options_from_args(args)
    with trio.fail_after(60):
        report = await cli.run(opts)
    assert report["players"] == {"target": 8, "connected": 8, "failed": 0}, report["errors"]
    assert report["errors"] == {} and report["disconnects"] == {}
    assert report["drops"] >= 20  # about 8 bots x 6.5 s
    # every cut resumed, but those still resuming when the window closed (one per bot at most)
    assert report["drops"] - 8 <= report["resumes"] <= report["drops"]
    assert report["resume_failures"] == 0 and report["seats_lost"] == 0
    assert report["desyncs"] == 0 and report["verifying"] == 8
    assert report["resume_ms"]["samples"] == report["resumes"]
    assert (
        0 < report["resume_ms"]["p50"] <= report["resume_ms"]["p99"] <= report["resume_ms"]["max"]
    )
    assert server.stats.resumes >= report["resumes"]
    assert not server.stats.resume_refusals
    # a catch-up delta covers the ticks missed: the bots keep up with the room
    assert report["updates_per_player_per_s_p5"] >= 15.0
    assert report["config"]["drop_every"] == 1.0
    assert report["result"] == {"ok": True, "failures": []}
    assert "resume ms" in cli.format_table(report)


async def test_drop_every_without_seat_holds_loses_seats_and_fails(
    nursery: trio.Nursery,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """With holds off (--seat-hold 0) there is no resume token: each cut loses the seat; the
    bot joins afresh and plays on, and the run fails on the lost seats."""
    config = ServerConfig(port=0, room_grace=1.0, cpu_budget=0, seat_hold=0)
    server: GameServer = await nursery.start(serve_gameserver, config, registry, server_ssl)
    cfg = LoadConfig(
        url=server.url,
        rooms=1,
        players=3,
        duration=2.0,
        settle=0.2,
        linger=0.0,
        ca_file=_ca_file(ca, tmp_path),
        room_prefix="nohold",
        drop_every=0.5,
    )
    with trio.fail_after(60):
        report = merge_reports([await run_load(cfg)])
    assert report["players"] == {"target": 3, "connected": 3, "failed": 0}, report["errors"]
    assert report["drops"] >= 3 and report["resumes"] == 0
    assert report["drops"] - 3 <= report["seats_lost"] <= report["drops"]
    assert report["desyncs"] == 0 and report["resume_failures"] == 0
    reasons = cli.verdict(report, protocol="gamesync", input_hz=None, drops=True)
    assert f"{report['seats_lost']} seat(s) lost (refused 4013/4001 or renumbered)" in reasons
