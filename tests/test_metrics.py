"""The Prometheus collector, the tick histogram, and the /metrics + /healthz HTTP endpoint."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import prometheus_client
import pytest
import trio
import trio.testing
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from gameserver import metrics
from gameserver.game import Game
from gameserver.metrics import (
    MAX_REQUEST_HEAD,
    TICK_BUCKETS,
    ServerCollector,
    TickHistogram,
    make_registry,
    serve_metrics,
)
from gameserver.room import Room, RoomConfig
from gameserver.server import RoomHost, ServerConfig
from gameserver.stats import ServerStats
from shared.schema import EntityType, InputSchema, Schema, VarUInt


# ------------------------------------------------------------------ fakes
@attrs.define
class FakeRoom:
    player_count: int
    config: RoomConfig


@attrs.define
class FakeHost:
    room: FakeRoom


@attrs.define
class FakeRooms:
    rooms: dict[str, FakeHost] = attrs.Factory(dict)

    def add(self, name: str, players: int, tick_rate: int) -> None:
        self.rooms[name] = FakeHost(FakeRoom(players, RoomConfig(tick_rate=tick_rate)))


class FakeProcess:
    """A controllable process sampler for the CPU and memory figures."""

    def __init__(self) -> None:
        self.cpu = 1.0
        self.rss = 123_456_789

    def sample(self) -> tuple[float, int]:
        return self.cpu, self.rss


@attrs.define
class FakeLoad:
    load: float = 0.25
    window: float = 2.0
    lasting: float = 0.2
    setup_share: float = 0.05
    setup_cost: float = 0.0035
    late_share: float = 0.0
    admit_projection: float = 0.21
    waiting: int = 0

    def setup_rate(self) -> float:
        return 100.0


def full_stats(cls: type[ServerStats] = ServerStats) -> ServerStats:
    stats = cls(
        connections_open=3,
        connections_accepted=11,
        players=99,  # deliberately not what the rooms say: gameserver_players counts seats
        messages_in=101,
        bytes_in=2002,
        messages_out=303,
        bytes_out=40004,
        ticks=505,
        ticks_late=6,
        ticks_skipped=7,
        deltas_skipped=8,
        snapshot_resyncs=9,
        inputs_dropped=10,
        events_dropped=13,
        slow_disconnects=12,
        rooms_created=14,
        rooms_disposed=15,
        resyncs=16,
        resyncs_limited=17,
    )
    stats.refused["subprotocol"] += 4
    stats.refused["room_full"] += 1
    stats.protocol_errors["text_frame"] += 2
    stats.protocol_errors["close_1007"] += 5
    return stats


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, keyed by (sample name, sorted labels)."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def families(registry: CollectorRegistry) -> dict[str, str]:
    """Family name -> type, as a Prometheus server would parse it."""
    text = generate_latest(registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def make(
    stats: ServerStats | None = None,
    rooms: FakeRooms | None = None,
    load: FakeLoad | None = None,
) -> tuple[CollectorRegistry, ServerStats, FakeRooms, FakeProcess]:
    stats = stats if stats is not None else full_stats()
    rooms = rooms if rooms is not None else FakeRooms()
    load = load if load is not None else FakeLoad()
    proc = FakeProcess()
    registry = CollectorRegistry()
    registry.register(ServerCollector(stats, rooms, load=load, sample_process=proc.sample))
    return registry, stats, rooms, proc


# ------------------------------------------------------------------ the collector
def test_every_metric_with_its_value() -> None:
    rooms = FakeRooms()
    rooms.add("a", players=3, tick_rate=20)
    rooms.add("b", players=2, tick_rate=60)
    rooms.add("c", players=0, tick_rate=30)
    registry, _, _, proc = make(rooms=rooms)
    proc.cpu += 0.5
    s = scrape(registry)
    expected = {
        "gameserver_connections_open": 3,
        "gameserver_connections_accepted_total": 11,
        "gameserver_rooms": 3,
        "gameserver_players": 5,
        "gameserver_received_messages_total": 101,
        "gameserver_received_bytes_total": 2002,
        "gameserver_sent_messages_total": 303,
        "gameserver_sent_bytes_total": 40004,
        "gameserver_rooms_created_total": 14,
        "gameserver_rooms_disposed_total": 15,
        "gameserver_ticks_total": 505,
        "gameserver_ticks_late_total": 6,
        "gameserver_ticks_skipped_total": 7,
        "gameserver_deltas_skipped_total": 8,
        "gameserver_snapshot_resyncs_total": 9,
        "gameserver_inputs_dropped_total": 10,
        "gameserver_slow_disconnects_total": 12,
        "gameserver_room_events_dropped_total": 13,
        "gameserver_resyncs_total": 16,
        "gameserver_resyncs_limited_total": 17,
        "gameserver_desync_reports_total": 33,  # every RESYNC: served or limited
        "gameserver_tick_rate_hertz": 60,
        "process_cpu_seconds_total": 1.5,
        "process_resident_memory_bytes": 123_456_789,
        "gameserver_cpu_ratio": 0.25,  # the load monitor's figure
    }
    for name, value in expected.items():
        assert s[name, ()] == value, name
    assert s["gameserver_connections_refused_total", (("reason", "subprotocol"),)] == 4
    assert s["gameserver_connections_refused_total", (("reason", "room_full"),)] == 1
    assert s["gameserver_protocol_errors_total", (("kind", "text_frame"),)] == 2
    assert s["gameserver_protocol_errors_total", (("kind", "close_1007"),)] == 5


def test_metric_types() -> None:
    registry, *_ = make(stats=full_stats(ServerStats))
    types = families(registry)
    for gauge in (
        "gameserver_connections_open",
        "gameserver_rooms",
        "gameserver_players",
        "gameserver_tick_rate_hertz",
        "gameserver_cpu_ratio",
        "process_resident_memory_bytes",
    ):
        assert types[gauge] == "gauge", gauge
    for counter in (
        "gameserver_connections_accepted",
        "gameserver_connections_refused",
        "gameserver_protocol_errors",
        "gameserver_ticks",
        "gameserver_sent_bytes",
        "gameserver_received_bytes",
        "gameserver_room_events_dropped",
        "gameserver_desync_reports",
        "process_cpu_seconds",
    ):
        assert types[counter] == "counter", counter
    assert types["gameserver_tick_seconds"] == "histogram"


def test_resume_metrics() -> None:
    """gamesync.v2: resumes, refusals by reason, seats held (gauge), expired, resyncs."""
    stats = ServerStats(resumes=4, seats_held=2, seats_expired=3, resyncs=5, resyncs_limited=6)
    stats.resume_refusals["seat_lost"] += 1
    stats.resume_refusals["resume_replayed"] += 2
    registry, *_ = make(stats=stats)
    s = scrape(registry)
    assert s["gameserver_resumes_total", ()] == 4
    assert s["gameserver_seats_held", ()] == 2
    assert s["gameserver_seats_expired_total", ()] == 3
    assert s["gameserver_resyncs_total", ()] == 5
    assert s["gameserver_resyncs_limited_total", ()] == 6
    assert s["gameserver_resumes_refused_total", (("reason", "seat_lost"),)] == 1
    assert s["gameserver_resumes_refused_total", (("reason", "resume_replayed"),)] == 2
    types = families(registry)
    assert types["gameserver_seats_held"] == "gauge"
    assert types["gameserver_resumes"] == types["gameserver_resumes_refused"] == "counter"


def test_values_are_read_at_each_scrape() -> None:
    rooms = FakeRooms()
    registry, stats, _, _ = make(rooms=rooms)
    assert scrape(registry)["gameserver_rooms", ()] == 0
    assert scrape(registry)["gameserver_tick_rate_hertz", ()] == 0  # no rooms: 0
    stats.messages_in += 5
    stats.connections_open -= 1
    stats.protocol_errors["not_join"] += 1
    rooms.add("x", players=4, tick_rate=30)
    s = scrape(registry)
    assert s["gameserver_received_messages_total", ()] == 106
    assert s["gameserver_connections_open", ()] == 2
    assert s["gameserver_protocol_errors_total", (("kind", "not_join"),)] == 1
    assert s["gameserver_rooms", ()] == 1
    assert s["gameserver_players", ()] == 4
    assert s["gameserver_tick_rate_hertz", ()] == 30


def test_real_room_hosts() -> None:
    class Thing(Game):
        name = "thing"
        schema = Schema(EntityType("thing", n=VarUInt()))
        input_schema = InputSchema(n=VarUInt())

    stats = ServerStats()
    hosts = {}
    for name, rate in (("r1", 15), ("r2", 45)):
        room = Room(name, Thing, RoomConfig(tick_rate=rate))
        hosts[name] = RoomHost(room, ServerConfig(), stats, lambda host: None)
    hosts["r1"].room.seat("p1", "one")
    hosts["r2"].room.seat("p2", "two")
    hosts["r2"].room.seat("p3", "three")

    @attrs.define
    class Directory:
        rooms: dict[str, RoomHost]

    registry = make_registry(stats, Directory(hosts))
    s = scrape(registry)
    assert s["gameserver_rooms", ()] == 2
    assert s["gameserver_players", ()] == 3
    assert s["gameserver_tick_rate_hertz", ()] == 45
    assert ("gameserver_cpu_ratio", ()) not in s  # no load monitor given
    assert s["process_resident_memory_bytes", ()] > 1_000_000  # psutil, this process
    assert s["process_cpu_seconds_total", ()] > 0


def test_tick_histogram_exported() -> None:
    stats = ServerStats()
    registry, *_ = make(stats=stats)
    for seconds in (0.00005, 0.0003, 0.0005, 0.0007, 0.004, 0.3):
        stats.tick_histogram.observe(seconds)
    s = scrape(registry)
    bucket = "gameserver_tick_seconds_bucket"
    assert s[bucket, (("le", "0.0001"),)] == 1  # sub-millisecond ticks get buckets of their own
    assert s[bucket, (("le", "0.00025"),)] == 1
    assert s[bucket, (("le", "0.0005"),)] == 3  # 0.0005 itself is "le 0.0005"
    assert s[bucket, (("le", "0.001"),)] == 4
    assert s[bucket, (("le", "0.0025"),)] == 4
    assert s[bucket, (("le", "0.005"),)] == 5
    assert s[bucket, (("le", "0.1"),)] == 5
    assert s[bucket, (("le", "+Inf"),)] == 6
    assert s["gameserver_tick_seconds_count", ()] == 6
    assert s["gameserver_tick_seconds_sum", ()] == pytest.approx(0.30555)
    les = [labels[0][1] for name, labels in s if name == bucket]
    assert les == [*(repr(b) for b in TICK_BUCKETS), "+Inf"]


def test_no_value_depends_on_when_the_last_scrape_happened() -> None:
    """Two scrapers (or one scraping twice at once) see the same figures: the CPU ratio is
    the load monitor's, over its own window, not "since the previous scrape"."""
    load = FakeLoad(load=0.5)
    registry, _, _, proc = make(load=load)
    first = scrape(registry)
    proc.cpu += 3.0  # CPU time passes between scrapes: the ratio does not follow the scrapes
    second, third = scrape(registry), scrape(registry)
    assert first["gameserver_cpu_ratio", ()] == second["gameserver_cpu_ratio", ()] == 0.5
    assert second == third
    load.load = 1.25  # over one core is possible (kernel threads); never negative
    assert scrape(registry)["gameserver_cpu_ratio", ()] == 1.25
    load.load = -0.1
    assert scrape(registry)["gameserver_cpu_ratio", ()] == 0.0


def test_exported_names_match_a_scrape() -> None:
    """metrics.exported_names(), which the docs' dashboard and alert rules are checked
    against, is exactly what a scrape holds (labelled counters once they have a label)."""
    stats = full_stats()
    stats.resume_refusals["seat_lost"] += 1
    stats.http_responses["200"] += 1
    registry, *_ = make(stats=stats)
    names = {name for name, _ in scrape(registry)}
    names -= {n for n in names if n.endswith("_created")}  # prometheus_client's extra series
    assert names == metrics.exported_names()
    for name in names:
        assert name.startswith(("gameserver_", "process_")), name
        assert "percent" not in name and not name.endswith("_hz"), name


def test_tick_buckets_fit_a_tick() -> None:
    assert TICK_BUCKETS[0] == 0.0001 and TICK_BUCKETS[-1] == 0.1
    assert list(TICK_BUCKETS) == sorted(set(TICK_BUCKETS))


def test_registries_are_private() -> None:
    a, sa, _, _ = make()
    b, sb, _, _ = make(stats=ServerStats())
    sa.ticks = 1
    sb.ticks = 2
    assert scrape(a)["gameserver_ticks_total", ()] == 1
    assert scrape(b)["gameserver_ticks_total", ()] == 2
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("gameserver_") for name in global_names)
    # describe() lets the registry refuse a second, clashing collector
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        a.register(ServerCollector(ServerStats(), FakeRooms()))


# ------------------------------------------------------------------ TickHistogram
def test_histogram_bucket_edges() -> None:
    h = TickHistogram()
    for bound in TICK_BUCKETS:
        h.observe(bound)  # on the bound: that bucket
        h.observe(bound * 1.0001)  # just above: the next one
    h.observe(0.0)
    h.observe(10.0)
    cumulative = h.buckets()
    assert [b for b, _ in cumulative] == [*TICK_BUCKETS, math.inf]
    # bucket i holds its bound, the previous bound's "just above", and (i == 0) the 0.0
    assert [n for _, n in cumulative] == [2 * (i + 1) for i in range(len(TICK_BUCKETS) + 1)]
    assert h.count == 2 * (len(TICK_BUCKETS) + 1)
    assert h.sum == pytest.approx(sum(TICK_BUCKETS) * 2.0001 + 10.0)


def test_histogram_quantiles() -> None:
    h = TickHistogram()
    assert math.isnan(h.quantile(0.5))
    for _ in range(90):
        h.observe(0.0007)  # le 0.001
    for _ in range(9):
        h.observe(0.003)  # le 0.005
    h.observe(1.0)  # +Inf
    assert h.quantile(0.0) == 0.001
    assert h.quantile(0.5) == 0.001
    assert h.quantile(0.9) == 0.001
    assert h.quantile(0.91) == 0.005
    assert h.quantile(0.99) == 0.005
    assert h.quantile(0.995) == math.inf
    assert h.quantile(1.0) == math.inf
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError):
            h.quantile(bad)


def test_histogram_quantile_rank_is_not_thrown_by_float_noise() -> None:
    h = TickHistogram()
    for _ in range(7):
        h.observe(0.00005)
    for _ in range(93):
        h.observe(0.0015)
    # 0.07 * 100 == 7.000000000000001: the 7th smallest is still in the first bucket
    assert h.quantile(0.07) == 0.0001
    assert h.quantile(0.08) == 0.0025


# ------------------------------------------------------------------ the HTTP endpoint
@asynccontextmanager
async def running(
    registry: CollectorRegistry | None = None, healthy: Callable[[], bool] = lambda: True
) -> AsyncIterator[int]:
    if registry is None:
        registry, *_ = make()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(serve_metrics, "127.0.0.1", 0, registry, healthy=healthy)
        )
        yield port
        nursery.cancel_scope.cancel()


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(raw: bytes) -> Response:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw
    lines = head.decode("ascii").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return Response(int(status), headers, body)


async def request(port: int, raw: bytes) -> Response:
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(raw)
            return parse_response(await read_to_eof(stream))


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n".encode()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="gameserver.metrics")
    yield
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.WARNING, record.getMessage()


async def test_metrics_endpoint(no_tracebacks: None) -> None:
    registry, stats, rooms, _ = make()
    rooms.add("lobby", players=2, tick_rate=20)
    async with running(registry) as port:
        assert port > 0
        r = await request(port, get("/metrics"))
        assert r.status == 200
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        parsed = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        assert parsed["gameserver_players"].samples[0].value == 2
        assert parsed["gameserver_received_messages"].samples[0].value == 101
        stats.messages_in = 777
        r = await request(port, get("/metrics?debug=1"))  # the query is ignored
        assert r.status == 200
        assert b"\ngameserver_received_messages_total 777.0\n" in r.body


async def test_healthz() -> None:
    state = {"ok": True}
    async with running(healthy=lambda: state["ok"]) as port:
        r = await request(port, get("/healthz"))
        assert (r.status, r.body) == (200, b"ok\n")
        state["ok"] = False
        r = await request(port, get("/healthz"))
        assert r.status == 503


async def test_healthz_that_raises_is_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise RuntimeError("db gone")

    async with running(healthy=broken) as port:
        r = await request(port, get("/healthz"))
    assert r.status == 503
    assert "db gone" in caplog.text


async def test_not_found_and_method_not_allowed(no_tracebacks: None) -> None:
    async with running() as port:
        assert (await request(port, get("/nope"))).status == 404
        assert (await request(port, get("/"))).status == 404
        assert (await request(port, get("/metrics/extra"))).status == 404
        r = await request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        assert r.status == 405
        assert r.headers["allow"] == "GET"
        assert (await request(port, b"DELETE /healthz HTTP/1.0\r\n\r\n")).status == 405


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello-ish
        b"hello\r\n\r\n",
        b"GET /metrics\r\n\r\n",  # HTTP/0.9
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /met rics HTTP/1.1\r\n\r\n",
        b"G(T /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",  # then EOF before the blank line
    ],
)
async def test_garbage_is_400(raw: bytes, no_tracebacks: None) -> None:
    async with running() as port:
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(raw)
                await stream.send_eof()
                r = parse_response(await read_to_eof(stream))
        assert r.status == 400
        # and the server carries on
        assert (await request(port, get("/healthz"))).status == 200


async def test_bare_lf_request_is_accepted() -> None:
    async with running() as port:
        assert (await request(port, b"GET /healthz HTTP/1.0\nHost: x\n\n")).status == 200


async def test_request_head_limit(no_tracebacks: None) -> None:
    assert MAX_REQUEST_HEAD == 8 * 1024
    async with running() as port:
        base = get("/healthz")
        padding = MAX_REQUEST_HEAD - len(base) - len("X-Pad: \r\n")
        exactly = base[:-2] + b"X-Pad: " + b"a" * padding + b"\r\n\r\n"
        assert len(exactly) == MAX_REQUEST_HEAD
        assert (await request(port, exactly)).status == 200
        one_more = base[:-2] + b"X-Pad: " + b"a" * (padding + 1) + b"\r\n\r\n"
        assert (await request(port, one_more)).status == 431
        # an endless header: answered and closed without waiting for the blank line
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(base[:-2] + b"X-Pad: " + b"a" * 20_000)
                r = parse_response(await read_to_eof(stream))
        assert r.status == 431


async def test_slow_request_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async with running() as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            start = trio.current_time()
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line
            with trio.fail_after(30):
                r = parse_response(await read_to_eof(stream))
            assert r.status == 408
            assert 5.0 <= trio.current_time() - start < 5.5
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            start = trio.current_time()
            with trio.fail_after(30):
                assert await read_to_eof(stream) == b""  # silent client: closed, no answer
            assert 5.0 <= trio.current_time() - start < 5.5


async def test_connection_limit(autojump_clock: trio.testing.MockClock) -> None:
    closed_at: list[float] = []

    async def idle_client(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            assert await read_to_eof(stream) == b""
            closed_at.append(trio.current_time() - start)

    async with running() as port:
        start = trio.current_time()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(metrics.MAX_CONNECTIONS + 1):
                    nursery.start_soon(idle_client, port)
        # one over the limit was closed at once; the others waited out the read deadline
        assert sum(t < 1.0 for t in closed_at) == 1
        assert sum(5.0 <= t < 5.5 for t in closed_at) == metrics.MAX_CONNECTIONS
        assert (await request(port, get("/healthz"))).status == 200


async def test_collector_failure_is_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def collect(self) -> Iterator[prometheus_client.Metric]:
            raise RuntimeError("collector bug")

    registry = CollectorRegistry()
    registry.register(Broken())
    async with running(registry) as port:
        assert (await request(port, get("/metrics"))).status == 500
        assert (await request(port, get("/healthz"))).status == 200
    assert "collector bug" in caplog.text
