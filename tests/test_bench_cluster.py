"""tools/bench_cluster.py's pure parts (tools/clusterlib.py): what the servers print, join
statistics, CPU per join, metrics summed over workers, the capacity rule and the tables; and
its command line."""

from __future__ import annotations

import contextlib
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from trio_websocket import WebSocketRequest, serve_websocket

from shared.messages import Error, Join, Redirect, parse_client_message
from shared.protocol import Kind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_cluster as bc
import benchlib as bl
import cluster_join as cj
import clusterlib as cl

SUPERVISOR_OUT = """\
metrics on http://127.0.0.1:9100/metrics
worker 0 (pid 812) listening on wss://127.0.0.1:8444
worker 1 (pid 813) listening on wss://127.0.0.1:8445
worker 1 (pid 990) listening on wss://127.0.0.1:8445
listening on wss://127.0.0.1:8443
"""


def test_worker_lines_are_parsed_and_a_restart_replaces_its_line() -> None:
    lines = cl.parse_worker_lines(SUPERVISOR_OUT)
    assert lines == [
        cl.WorkerLine(0, 812, "wss://127.0.0.1:8444"),
        cl.WorkerLine(1, 990, "wss://127.0.0.1:8445"),
    ]
    cl.check_workers(lines, 2)
    assert cl.parse_worker_lines("listening on wss://127.0.0.1:8443\n") == []
    # workers that share the supervisor's stdout print their own line: pick the shared port's
    text = "listening on wss://127.0.0.1:8444\n" + SUPERVISOR_OUT
    assert cl.listening_url(text) == "wss://127.0.0.1:8444"
    assert cl.listening_url(text, 8443) == "wss://127.0.0.1:8443"
    assert cl.listening_url("metrics on http://x:1/metrics\n", 8443) is None


def test_a_server_without_workers_or_redirects_is_one_clear_line() -> None:
    with pytest.raises(cl.Unsupported, match="does not run workers"):
        cl.check_workers([], 2)
    with pytest.raises(cl.Unsupported, match="only 1 worker"):
        cl.check_workers([cl.WorkerLine(0, 1, "wss://h:1")], 2)
    with pytest.raises(cl.Unsupported, match="served room 'r' itself"):
        cl.check_redirected(cl.Route.NODES_REDIRECT, 0, "wss://127.0.0.3:9/", "r")
    cl.check_redirected(cl.Route.NODES_REDIRECT, 1, "wss://127.0.0.3:9/", "r")
    cl.check_redirected(cl.Route.NODES_OWNER, 0, "wss://127.0.0.2:9/", "r")  # no redirect due
    with pytest.raises(cl.Unsupported, match="gamebots does not follow REDIRECT"):
        cl.check_bots_follow({"ServerError:4015": 12, "connect": 1})
    cl.check_bots_follow({"ServerError:4006": 3})
    cl.check_bots_follow(None)


def test_urls_compare_by_host_and_port_whatever_the_spelling() -> None:
    assert cl.endpoint("wss://127.0.0.2:8443/") == cl.endpoint("wss://127.0.0.2:8443")
    assert cl.endpoint("wss://Node-A.example") == ("node-a.example", 443)
    urls = ["wss://127.0.0.2:8443", "wss://127.0.0.3:8443"]
    assert cl.other_url("wss://127.0.0.2:8443/", urls) == "wss://127.0.0.3:8443"
    assert cl.other_url("wss://127.0.0.3:8443/", urls) == "wss://127.0.0.2:8443"
    with pytest.raises(cl.Unsupported):
        cl.other_url("wss://127.0.0.2:8443", urls[:1])


def test_join_summary_percentiles_and_hops() -> None:
    samples = [cl.JoinSample(float(ms), ms % 2, "u", ms / 10) for ms in range(1, 101)]
    s = cl.summarize_joins(samples)
    assert s["joins"] == 100
    assert (s["ms_p50"], s["ms_p90"], s["ms_p99"], s["ms_max"]) == (50.0, 90.0, 99.0, 100.0)
    assert s["reach_ms_p50"] == 5.0
    assert s["hops"] == {"0": 50, "1": 50}
    assert s["ms_mean"] == 50.5
    empty = cl.summarize_joins([])
    assert empty["joins"] == 0 and empty["ms_p50"] is None and empty["hops"] == {}
    assert cl.percentile([3.0], 0.99) == 3.0


def test_cpu_per_join_takes_the_idle_rate_off() -> None:
    # 100 ticks/s: idle 10 ticks over 2 s (5/s); 200 joins over 4 s took 70 ticks,
    # of which 20 were idle work: 50 ticks = 0.5 s over 200 joins = 2.5 ms each
    assert cl.cpu_ms_per_join(70, 4.0, 10, 2.0, 200, 100) == 2.5
    assert cl.cpu_ms_per_join(70, 4.0, 0, 0.0, 200, 100) == 3.5  # no idle sample
    assert cl.cpu_ms_per_join(5, 4.0, 10, 2.0, 200, 100) == 0.0  # never negative
    assert cl.cpu_ms_per_join(70, 4.0, 10, 2.0, 0, 100) is None


SCRAPE_A = {
    ("gameserver_ticks_total", (("worker", "0"),)): 100.0,
    ("gameserver_ticks_total", (("worker", "1"),)): 200.0,
    ("gameserver_rooms", (("worker", "0"),)): 2.0,
    ("gameserver_rooms", (("worker", "1"),)): 3.0,
    ("gameserver_tick_seconds_bucket", (("le", "0.001"), ("worker", "0"))): 100.0,
    ("gameserver_tick_seconds_bucket", (("le", "0.002"), ("worker", "0"))): 100.0,
    ("gameserver_tick_seconds_bucket", (("le", "+Inf"), ("worker", "0"))): 100.0,
    ("gameserver_tick_seconds_bucket", (("le", "0.001"), ("worker", "1"))): 200.0,
    ("gameserver_tick_seconds_bucket", (("le", "0.002"), ("worker", "1"))): 200.0,
    ("gameserver_tick_seconds_bucket", (("le", "+Inf"), ("worker", "1"))): 200.0,
}


def test_metrics_are_summed_over_workers() -> None:
    later = dict(SCRAPE_A)
    later[("gameserver_ticks_total", (("worker", "0"),))] += 200.0  # 2 rooms x 20 Hz x 5 s
    later[("gameserver_ticks_total", (("worker", "1"),))] += 300.0  # 3 rooms x 20 Hz x 5 s
    for le, add in (("0.001", 100.0), ("0.002", 200.0), ("+Inf", 200.0)):
        later[("gameserver_tick_seconds_bucket", (("le", le), ("worker", "0")))] += add
    for le in ("0.001", "0.002", "+Inf"):
        later[("gameserver_tick_seconds_bucket", (("le", le), ("worker", "1")))] += 300.0
    assert cl.summed(SCRAPE_A, "gameserver_ticks_total") == 300.0
    assert cl.summed(SCRAPE_A, "gameserver_nothing") is None
    assert cl.merged_buckets(SCRAPE_A, "gameserver_tick_seconds")[0] == (0.001, 300.0)
    fig = cl.window_figures(SCRAPE_A, later, 5.0)
    assert fig["rooms_measured"] == 5.0 and fig["tick_rate_measured"] == 20.0
    # 500 ticks in the window, 400 under 1 ms, all under 2 ms: p99 in the 2 ms bucket
    assert fig["tick_p99_ms"] == 2.0
    # a single server's unlabelled samples work the same
    one = {("gameserver_ticks_total", ()): 7.0}
    assert cl.summed(one, "gameserver_ticks_total") == 7.0


def test_capacity_rule_counts_the_machine_not_one_core() -> None:
    ok = {
        "connected": 400,
        "target": 400,
        "failed": 0,
        "updates_p5": 20.0,
        "latency_p99_ms": 60.0,
        "server_cpu_pct": 150.0,  # two workers: more than one core, not saturated by itself
        "core0_busy_pct": 90.0,
        "machine_busy_pct": 88.0,
    }
    assert cl.capacity_reasons(ok) == []
    busy = dict(ok, machine_busy_pct=96.0)
    assert cl.capacity_reasons(busy) == ["machine 96% busy"]
    slow = dict(ok, updates_p5=18.0, latency_p99_ms=140.0, failed=3)
    reasons = cl.capacity_reasons(slow)
    assert "p5 updates 18.0/s" in reasons and "p99 latency 140 ms" in reasons
    assert "3 bots failed" in reasons
    assert cl.machine_busy(90.0, 100.0) == 95.0 and cl.machine_busy(None, 1.0) is None
    assert cl.capacity_verdict(300, 480) == "--workers 2 / --workers 1: 480 / 300 players = 1.60x"
    assert "not found" in cl.capacity_verdict(300, None)


def test_foreign_work_is_what_nobody_of_ours_explains() -> None:
    step = {
        "core0_busy_pct": 80.0,
        "core1_busy_pct": 70.0,
        "server_cpu_pct": 100.0,
        "bots_cpu_pct": 30.0,
        "core0_softirq_pct": 5.0,
    }
    assert cl.foreign_machine_pct(step) == 13.0  # 150 - 100 - 30 - 5 - 2
    assert cl.foreign_machine_pct({"core0_busy_pct": 1.0}) is None


def test_tables_render_every_route_and_step() -> None:
    row = {"route": "nodes-redirect", "label": cl.Route.NODES_REDIRECT.label, "dialled": "u"}
    row.update(cl.summarize_joins([cl.JoinSample(30.0, 1, "u", 9.5)]))
    row.update(server_cpu_ms=4.25, redis_cpu_ms=0.31, client_cpu_ms=5.0)
    table = cl.render_routes([row])
    assert "| two nodes + Redis, redirected to the other node | 1 | 9.50 / 9.50 / 9.50 |" in table
    assert "| 1: 1 | 4.25 | 0.31 | 5.00 |" in table
    step = {"target": 96, "connected": 96, "saturated": ["machine 97% busy"]}
    cap = cl.render_capacity({"--workers 2": {"steps": [step]}})
    assert "| --workers 2 | 96/96 |" in cap and "saturated: machine 97% busy" in cap
    assert cl.Route.WORKERS_REDIRECT.redirected and not cl.Route.LOCAL.redirected
    assert {r for group in cl.ROUTE_GROUPS.values() for r in group} == set(cl.Route)


def test_command_line() -> None:
    args = bc.parse_args(["--part", "routing", "--routes", "local,nodes", "--joins", "50"])
    assert args.route_groups == ["local", "nodes"] and args.joins == 50
    quick = bc.parse_args(["--quick"])
    assert quick.joins == 20 and quick.step_list == [48, 96]
    assert quick.json != bc.bm.ROOT / "bench" / "cluster.json"  # a smoke run writes elsewhere
    with pytest.raises(SystemExit):
        bc.parse_args(["--routes", "moon"])
    assert bl.ROOM_SIZE == 8  # the capacity steps are whole arena rooms


# ------------------------------------------------------------------ the join client, over WSS
async def _fake_node(nursery: trio.Nursery, ssl_ctx: ssl.SSLContext, answer: Any) -> str:
    """A WSS endpoint that answers the first message with ``answer(join_bytes)``."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=request.proposed_subprotocols[0])
        join = await ws.get_message()
        reply, code = answer(join)
        await ws.send_message(reply)
        with contextlib.suppress(Exception):
            if code:
                await ws.aclose(code)
            else:
                await ws.get_message()  # the LEAVE

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, ssl_ctx)
    return f"wss://127.0.0.1:{server.port}/"


async def test_the_join_client_follows_a_redirect_and_stops_after_three() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    joins: list[Join] = []

    def joined(data: bytes | str) -> tuple[bytes, int]:
        assert isinstance(data, bytes)
        msg = parse_client_message(data, version=2)
        assert isinstance(msg, Join)
        joins.append(msg)
        return bytes((Kind.JOINED,)), 0

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            owner = await _fake_node(nursery, server_ctx, joined)
            entry = await _fake_node(
                nursery, server_ctx, lambda _: (Redirect(owner, "r").to_bytes(), 4015)
            )
            sample = await cj.one_join(entry, "r", "tok", client_ctx)
            assert (sample.hops, sample.url) == (1, owner)
            assert sample.reach_ms <= sample.ms
            assert [(j.room, j.token) for j in joins] == [("r", "tok")]  # the same JOIN again

            loop_url: list[str] = []
            looping = await _fake_node(
                nursery, server_ctx, lambda _: (Redirect(loop_url[0], "r").to_bytes(), 4015)
            )
            loop_url.append(looping)
            with pytest.raises(BaseException) as info:
                await cj.one_join(looping, "r", "tok", client_ctx)
            assert info.group_contains(cj.JoinRefused, match="more than 3 redirects")

            refusing = await _fake_node(
                nursery,
                server_ctx,
                lambda _: (Error(4016, "directory unavailable").to_bytes(), 4016),
            )
            with pytest.raises(BaseException) as info:
                await cj.one_join(refusing, "r", "tok", client_ctx)
            assert info.group_contains(cj.JoinRefused, match="ERROR 4016")
            nursery.cancel_scope.cancel()
