"""Prometheus metrics: a custom collector over :class:`ServerStats` and a tiny trio HTTP endpoint.

Nothing here touches prometheus_client's global ``REGISTRY``; build a private registry with
:func:`make_registry` (or register a :class:`ServerCollector` into your own) and serve it::

    registry = make_registry(server.stats, server.rooms, server.load)
    port = await nursery.start(serve_metrics, "127.0.0.1", 9100, registry)

The collector reads the server's plain counters on each scrape, in the trio thread (scrapes are
synchronous and never await), so a scrape sees one consistent moment of the server. The hot
paths pay nothing beyond the ``+= 1`` they already do, plus :meth:`TickHistogram.observe` once
per tick.
"""

from __future__ import annotations

import logging
import math
import ssl
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import psutil  # type: ignore[import-untyped]
import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from gameserver.logsafe import peer_text

if TYPE_CHECKING:
    # type-only, so that gameserver.stats may import TickHistogram from here without a cycle
    from gameserver.stats import ServerStats

log = logging.getLogger("gameserver.metrics")

__all__ = [
    "MAX_REQUEST_HEAD",
    "READ_TIMEOUT",
    "TICK_BUCKETS",
    "LoadLike",
    "ProcessSampler",
    "RoomDirectoryLike",
    "RoomHostLike",
    "ServerCollector",
    "TickHistogram",
    "exported_names",
    "make_registry",
    "serve_metrics",
]

#: upper bounds (seconds) of the tick-duration histogram's finite buckets; +Inf is implicit
TICK_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
_BUCKET_LABELS = (*(repr(b) for b in TICK_BUCKETS), "+Inf")  # the "le" label values


class TickHistogram:
    """Cumulative histogram of tick durations with fixed buckets (:data:`TICK_BUCKETS` + +Inf).

    ``observe()`` is a bisect over 10 bounds and two additions; no locks, no allocation.
    Call it from the trio thread only (like every other ServerStats counter).
    """

    __slots__ = ("_counts", "sum")

    bounds: tuple[float, ...] = TICK_BUCKETS

    def __init__(self) -> None:
        #: per-bucket (non-cumulative) counts; the last slot is the +Inf bucket
        self._counts = [0] * (len(TICK_BUCKETS) + 1)
        #: total of the observed seconds
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one duration (a finite, non-negative number of seconds)."""
        self._counts[bisect_left(TICK_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """Observations so far (kept as the bucket total: one fewer addition per observe)."""
        return sum(self._counts)

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper_bound, count)`` pairs, Prometheus style, ending with ``(inf, count)``.

        An observation equal to a bound counts in that bound's bucket (``le`` semantics).
        """
        out = []
        total = 0
        for bound, n in zip((*TICK_BUCKETS, math.inf), self._counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the ``q``-quantile (0 <= q <= 1), e.g. 0.5 or 0.99.

        An overestimate by at most one bucket width. ``math.inf`` means "above the largest
        finite bucket"; ``math.nan`` means nothing has been observed yet.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        count = self.count
        if count == 0:
            return math.nan
        # rank of the q-quantile among the observations, 1-based; rounding absorbs float noise
        # such as 0.07 * 100 == 7.000000000000001
        rank = max(1, math.ceil(round(q * count, 9)))
        total = 0
        for bound, n in zip((*TICK_BUCKETS, math.inf), self._counts, strict=True):
            total += n
            if total >= rank:
                return bound
        raise AssertionError("unreachable: bucket counts add up to count")


# ------------------------------------------------------------------ what the collector reads
class _RoomConfigLike(Protocol):
    @property
    def tick_rate(self) -> int: ...


class _RoomLike(Protocol):
    @property
    def player_count(self) -> int: ...

    @property
    def config(self) -> _RoomConfigLike: ...


class RoomHostLike(Protocol):
    """What the collector reads from a room host (``gameserver.server.RoomHost`` fits)."""

    @property
    def room(self) -> _RoomLike: ...


class RoomDirectoryLike(Protocol):
    """Anything with ``.rooms: Mapping[str, host]`` (``gameserver.server.RoomDirectory`` fits)."""

    @property
    def rooms(self) -> Mapping[str, RoomHostLike]: ...


#: returns (CPU seconds used by this process, user + system; resident set size in bytes)
ProcessSampler = Callable[[], tuple[float, int]]


def _psutil_sampler() -> ProcessSampler:
    proc = psutil.Process()

    def sample() -> tuple[float, int]:
        with proc.oneshot():
            cpu = proc.cpu_times()
            rss = proc.memory_info().rss
        return float(cpu.user + cpu.system), int(rss)

    return sample


# (metric name, help, value) for the plain ServerStats counters. Prometheus conventions: base
# units, the unit last, counters end in ``_total`` (prometheus_client appends it on exposition,
# so the names here leave it off).
_COUNTERS: tuple[tuple[str, str, Callable[[ServerStats], int]], ...] = (
    (
        "gameserver_connections_accepted",
        "WebSocket connections accepted (subprotocol agreed).",
        lambda s: s.connections_accepted,
    ),
    (
        "gameserver_received_messages",
        "WebSocket messages received from players.",
        lambda s: s.messages_in,
    ),
    (
        "gameserver_received_bytes",
        "WebSocket payload bytes received from players.",
        lambda s: s.bytes_in,
    ),
    (
        "gameserver_sent_messages",
        "WebSocket messages sent to players.",
        lambda s: s.messages_out,
    ),
    (
        "gameserver_sent_bytes",
        "WebSocket payload bytes sent to players.",
        lambda s: s.bytes_out,
    ),
    ("gameserver_rooms_created", "Rooms created.", lambda s: s.rooms_created),
    (
        "gameserver_rooms_disposed",
        "Rooms disposed of (emptied, or closed).",
        lambda s: s.rooms_disposed,
    ),
    ("gameserver_ticks", "Room ticks run, all rooms.", lambda s: s.ticks),
    (
        "gameserver_encode_calls",
        "Entity records, patches and (view rooms) cell chunks encoded, snapshots included; "
        "per tick: its increase over gameserver_ticks_total's.",
        lambda s: s.encode_calls,
    ),
    (
        "gameserver_ticks_late",
        "Ticks that finished more than one period after their deadline.",
        lambda s: s.ticks_late,
    ),
    (
        "gameserver_ticks_skipped",
        "Tick slots dropped because a room fell more than a period behind.",
        lambda s: s.ticks_skipped,
    ),
    (
        "gameserver_deltas_skipped",
        "Deltas a player's outbound path could not take (a snapshot follows instead).",
        lambda s: s.deltas_skipped,
    ),
    (
        "gameserver_snapshot_resyncs",
        "Snapshots sent to resynchronise a player.",
        lambda s: s.snapshot_resyncs,
    ),
    (
        "gameserver_inputs_dropped",
        "Player inputs dropped (stale sequence number or queue full).",
        lambda s: s.inputs_dropped,
    ),
    (
        "gameserver_room_events_dropped",
        "Player events (EVENT messages) dropped because the room's event queue was full.",
        lambda s: s.events_dropped,
    ),
    (
        "gameserver_slow_disconnects",
        "Players disconnected because their reliable backlog grew too large.",
        lambda s: s.slow_disconnects,
    ),
    (
        "gameserver_join_redirects",
        "JOINs and RESUMEs redirected to the cluster node that owns their room (4015).",
        lambda s: s.redirects,
    ),
    (
        "gameserver_resumes",
        "RESUMEs admitted: a dropped player took its held seat back (gamesync.v2).",
        lambda s: s.resumes,
    ),
    (
        "gameserver_seats_expired",
        "Held seats whose hold ran out (the player left).",
        lambda s: s.seats_expired,
    ),
    (
        "gameserver_resyncs",
        "RESYNC requests answered with a snapshot.",
        lambda s: s.resyncs,
    ),
    (
        "gameserver_resyncs_limited",
        "RESYNC requests ignored: over the per-player rate limit (or before JOINED).",
        lambda s: s.resyncs_limited,
    ),
    (
        "gameserver_desync_reports",
        "Desyncs reported by clients: every RESYNC received, served or limited (gamesync.v2).",
        lambda s: s.resyncs + s.resyncs_limited,
    ),
)

_LABELLED_COUNTERS: tuple[tuple[str, str, str, Callable[[ServerStats], Mapping[str, int]]], ...] = (
    (
        "gameserver_connections_refused",
        "Handshakes or joins refused, by reason.",
        "reason",
        lambda s: s.refused,
    ),
    (
        "gameserver_protocol_errors",
        "Peers closed for bad input, by kind.",
        "kind",
        lambda s: s.protocol_errors,
    ),
    (
        "gameserver_resumes_refused",
        "RESUMEs refused, by reason (also counted in gameserver_connections_refused).",
        "reason",
        lambda s: s.resume_refusals,
    ),
    (
        "gameserver_http_responses",
        "Plain HTTP requests answered on the WSS port (web demo, guest tokens), by status.",
        "status",
        lambda s: s.http_responses,
    ),
)


class LoadLike(Protocol):
    """What the collector reads for ``gameserver_cpu_ratio`` and the admission gauges
    (``gameserver.load.LoadMonitor`` fits: it samples the process's CPU time every ``window``
    seconds on its own timer)."""

    @property
    def load(self) -> float: ...

    @property
    def window(self) -> float: ...

    @property
    def lasting(self) -> float: ...

    @property
    def setup_share(self) -> float: ...

    @property
    def setup_cost(self) -> float: ...

    @property
    def late_share(self) -> float: ...

    @property
    def admit_projection(self) -> float: ...

    @property
    def waiting(self) -> int: ...

    def setup_rate(self) -> float: ...


class ServerCollector:
    """A prometheus_client custom collector: reads the server's state at every scrape.

    ``rooms`` is anything with ``.rooms: Mapping[str, host]`` where ``host.room`` has
    ``player_count`` and ``config.tick_rate`` (a :class:`gameserver.server.RoomDirectory`).
    ``gameserver_tick_seconds`` is ``stats.tick_histogram``. ``load`` (the server's
    :class:`~gameserver.load.LoadMonitor`) gives ``gameserver_cpu_ratio``; without it that
    gauge is left out.

    No value depends on when, or how often, anyone scrapes: counters and gauges are read as
    they are, and the CPU ratio is the load monitor's figure over its own fixed window. Two
    Prometheus servers scraping the same process see the same numbers.

    ``sample_process`` is for tests; by default psutil.
    """

    def __init__(
        self,
        stats: ServerStats,
        rooms: RoomDirectoryLike,
        *,
        load: LoadLike | None = None,
        sample_process: ProcessSampler | None = None,
    ) -> None:
        self.stats = stats
        self.rooms = rooms
        self.load = load
        self._sample_process = sample_process if sample_process is not None else _psutil_sampler()

    def describe(self) -> Iterator[Metric]:
        """Metric names without samples, so that the registry can detect clashes cheaply."""
        for name, doc, _ in _COUNTERS:
            yield CounterMetricFamily(name, doc)
        for name, doc, label, _ in _LABELLED_COUNTERS:
            yield CounterMetricFamily(name, doc, labels=[label])
        yield from self._gauges(0, 0, 0, 0, 0, 0)
        yield from _directory_gauges(self.stats)
        if self.load is not None:
            yield GaugeMetricFamily("gameserver_cpu_ratio", self._cpu_help(self.load))
            for name, doc, _ in _ADMISSION_GAUGES:
                yield GaugeMetricFamily(name, doc)
        yield CounterMetricFamily("process_cpu_seconds", _CPU_SECONDS_HELP)
        yield HistogramMetricFamily("gameserver_tick_seconds", _TICK_SECONDS_HELP)

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        for name, doc, value in _COUNTERS:
            yield CounterMetricFamily(name, doc, value=value(stats))
        for name, doc, label, values in _LABELLED_COUNTERS:
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, n in sorted(values(stats).items()):
                family.add_metric([key], n)
            yield family

        hosts = list(self.rooms.rooms.values())
        players = sum(host.room.player_count for host in hosts)
        tick_rate = max((host.room.config.tick_rate for host in hosts), default=0)
        cpu_seconds, rss = self._sample_process()
        yield from self._gauges(
            stats.connections_open, len(hosts), players, stats.seats_held, tick_rate, rss
        )
        yield from _directory_gauges(stats)
        load = self.load
        if load is not None:
            yield GaugeMetricFamily(
                "gameserver_cpu_ratio", self._cpu_help(load), value=max(0.0, load.load)
            )
            for name, doc, gauge in _ADMISSION_GAUGES:
                yield GaugeMetricFamily(name, doc, value=gauge(load))
        yield CounterMetricFamily("process_cpu_seconds", _CPU_SECONDS_HELP, value=cpu_seconds)

        hist = stats.tick_histogram
        yield HistogramMetricFamily(
            "gameserver_tick_seconds",
            _TICK_SECONDS_HELP,
            buckets=[(le, n) for le, (_, n) in zip(_BUCKET_LABELS, hist.buckets(), strict=True)],
            sum_value=hist.sum,
        )

    @staticmethod
    def _cpu_help(load: LoadLike) -> str:
        return (
            "CPU time of this process per second of wall time (1 = one core busy), over the "
            f"last {load.window:g} s, sampled on a timer (independent of scrapes)."
        )

    @staticmethod
    def _gauges(
        connections: int, rooms: int, players: int, held: int, tick_rate: int, rss: int
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gameserver_connections_open", "WebSocket connections open now.", value=connections
        )
        yield GaugeMetricFamily("gameserver_rooms", "Rooms running now.", value=rooms)
        yield GaugeMetricFamily("gameserver_players", "Players seated now, all rooms.", players)
        yield GaugeMetricFamily("gameserver_seats_held", _SEATS_HELD_HELP, value=held)
        yield GaugeMetricFamily(
            "gameserver_tick_rate_hertz",
            "Configured tick rate: the highest of the running rooms (0 with no rooms).",
            value=tick_rate,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory size in bytes.", value=rss
        )


def _directory_gauges(stats: ServerStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "gameserver_directory_reachable",
        "1 while the cluster's room directory answers (always 1 without a cluster), else 0.",
        value=stats.directory_reachable,
    )
    yield GaugeMetricFamily(
        "gameserver_directory_leases",
        "Room leases this cluster node holds in the directory now.",
        value=stats.directory_leases,
    )


#: what admission measures (gameserver.load): name, help, value
_ADMISSION_GAUGES: tuple[tuple[str, str, Callable[[LoadLike], float]], ...] = (
    (
        "gameserver_cpu_lasting_ratio",
        "CPU share of one core over the load window that was not connection setup: the "
        "lasting load of the seated players.",
        lambda load: load.lasting,
    ),
    (
        "gameserver_cpu_setup_ratio",
        "CPU share of one core over the load window spent setting connections up (TLS, "
        "upgrade, JOIN).",
        lambda load: load.setup_share,
    ),
    (
        "gameserver_setup_cpu_seconds",
        "CPU seconds one connection setup costs, as last measured.",
        lambda load: load.setup_cost,
    ),
    (
        "gameserver_setup_rate",
        "Connection setups per second the pacer lets start now (+Inf: no pacing).",
        lambda load: load.setup_rate(),
    ),
    (
        "gameserver_setup_waiting",
        "Connections waiting now for their turn to start the TLS handshake.",
        lambda load: load.waiting,
    ),
    (
        "gameserver_ticks_late_ratio",
        "Share of the load window's ticks that ran more than a period late or were skipped.",
        lambda load: load.late_share,
    ),
    (
        "gameserver_admission_projected_ratio",
        "Lasting CPU share of one core projected with one more player: joins are refused "
        "(4006) over --cpu-budget.",
        lambda load: load.admit_projection,
    ),
)

_SEATS_HELD_HELP = "Seats held now for a resume (their connection was lost; in gameserver_players)."
_CPU_SECONDS_HELP = "Total user and system CPU time spent in seconds."
_TICK_SECONDS_HELP = "Time spent running one room tick (game update and fan-out), seconds."


def make_registry(
    stats: ServerStats, rooms: RoomDirectoryLike, load: LoadLike | None = None
) -> CollectorRegistry:
    """A new private registry holding a :class:`ServerCollector` (never the global REGISTRY).
    Pass the server's ``load`` monitor to export ``gameserver_cpu_ratio``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(stats, rooms, load=load))
    return registry


def exported_names() -> frozenset[str]:
    """The sample names a scrape of :class:`ServerCollector` (with a load monitor) contains;
    docs/grafana-dashboard.json and docs/alerts.yml may use only these (a test checks)."""
    names = {f"{name}_total" for name, _, _ in _COUNTERS}
    names |= {f"{name}_total" for name, _, _, _ in _LABELLED_COUNTERS}
    names |= {f"{m.name}" for m in ServerCollector._gauges(0, 0, 0, 0, 0, 0)}
    from gameserver.stats import ServerStats  # (a type-only import at the top)

    names |= {m.name for m in _directory_gauges(ServerStats())}
    names |= {"gameserver_cpu_ratio", "process_cpu_seconds_total"}
    names |= {name for name, _, _ in _ADMISSION_GAUGES}
    names |= {f"gameserver_tick_seconds_{suffix}" for suffix in ("bucket", "sum", "count")}
    return frozenset(names)


# ------------------------------------------------------------------ the HTTP endpoint
#: the request line and headers, terminating blank line included, must fit in this many bytes
MAX_REQUEST_HEAD = 8192
#: seconds a client has to send its whole request head
READ_TIMEOUT = 5.0
#: seconds to write the response (a scraper that stops reading is cut off)
WRITE_TIMEOUT = 10.0
#: seconds, and bytes, to keep draining a client's input after responding (see _respond)
LINGER_TIMEOUT = 1.0
LINGER_BYTES = 64 * 1024
#: connections served at once; more are closed straight away
MAX_CONNECTIONS = 64

_REASONS = {
    200: "OK",
    202: "Accepted",
    401: "Unauthorized",
    403: "Forbidden",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_TEXT = "text/plain; charset=utf-8"


#: ``admin(method, path, query, headers) -> (status, content type, body)`` for /admin/ paths
AdminHandler = Callable[[str, str, str, dict[str, str]], tuple[int, str, bytes]]
#: a request body (POST) may hold at most this many bytes
MAX_REQUEST_BODY = 16384
#: (status, content type, body, extra headers)
Response = tuple[int, str, bytes, Sequence[tuple[str, str]]]
#: a long-lived answer (the dashboard's event stream): writes its own response, then returns
Streamer = Callable[[trio.abc.Stream], Awaitable[None]]
#: ``dashboard(method, path, query, headers, body)`` for ``/dashboard`` and ``/dashboard/...``
DashboardHandler = Callable[[str, str, str, dict[str, str], bytes], "Response | Streamer"]


class DashboardLike(Protocol):
    """What :func:`serve_metrics` needs of ``gameserver.dashboard.Dashboard``."""

    def __call__(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response | Streamer: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Build the live feed's snapshot once a second until cancelled."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def serve_metrics(
    host: str,
    port: int,
    collector_registry: CollectorRegistry,
    *,
    healthy: Callable[[], bool] = lambda: True,
    ready: Callable[[], bool] | None = None,
    admin: AdminHandler | None = None,
    dashboard: DashboardLike | None = None,
    ssl_context: ssl.SSLContext | None = None,
    scrape: Callable[[], Awaitable[bytes]] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics``, ``/healthz`` and ``/readyz`` over HTTP/1.1 on ``host:port``
    until cancelled.

    ``port = await nursery.start(serve_metrics, host, port, registry)`` returns the bound port
    (useful with ``port=0``). One request per connection; the response closes it. ``/healthz``
    answers 200 ``ok`` while ``healthy()`` is true, else 503; ``/readyz`` the same with
    ``ready()`` (default: ``healthy``), which a load balancer polls to know whether to send
    new players (a draining server answers 503 to both). Other paths get 404, other
    methods 405, malformed requests 400, request heads over 8 KiB 431, and clients that take
    more than 5 s to send their request 408. Bad requests are logged at DEBUG, never with a
    traceback.

    If ``host`` resolves to several addresses and ``port`` is 0, only the first address is
    bound (each would otherwise get a different port).

    ``admin`` answers ``/admin/...``; ``dashboard`` answers ``/dashboard`` and
    ``/dashboard/...`` (its ``run`` task starts here). With ``ssl_context`` every connection
    is HTTPS (the server's certificate); a failed TLS handshake just closes the connection.
    ``scrape``, if given, makes ``GET /metrics`` answer what it returns instead of
    ``collector_registry`` (the supervisor of ``--workers`` serves its workers' metrics so).
    """
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            await extra.aclose()
        del listeners[1:]
    bound_port: int = listeners[0].socket.getsockname()[1]
    serving: list[trio.abc.Listener[trio.abc.Stream]] = list(listeners)
    if ssl_context is not None:
        serving = [trio.SSLListener(ln, ssl_context, https_compatible=True) for ln in listeners]
    limit = trio.Semaphore(MAX_CONNECTIONS)
    checks = {"/healthz": healthy, "/readyz": ready if ready is not None else healthy}
    handler = partial(
        _handle_connection, collector_registry, checks, admin, limit, dashboard, scrape
    )
    async with trio.open_nursery() as nursery:
        if dashboard is not None:
            await nursery.start(dashboard.run)
        await nursery.start(trio.serve_listeners, handler, serving)
        log.info("metrics endpoint listening on port %d", bound_port)
        task_status.started(bound_port)


#: the probe endpoints: path -> a check that is true when the answer is 200
Checks = Mapping[str, Callable[[], bool]]


async def _handle_connection(
    registry: CollectorRegistry,
    checks: Checks,
    admin: AdminHandler | None,
    limit: trio.Semaphore,
    dashboard: DashboardLike | None,
    scrape: Callable[[], Awaitable[bytes]] | None,
    stream: trio.abc.Stream,
) -> None:
    try:
        limit.acquire_nowait()
    except trio.WouldBlock:
        log.debug("metrics endpoint: too many connections; closing one")
        await trio.aclose_forcefully(stream)
        return
    try:
        answer = await _read_and_route(stream, registry, checks, admin, dashboard, scrape)
        if not isinstance(answer, tuple):
            await answer(stream)  # the event stream: it writes its own response
        elif answer[0]:
            await _respond(stream, *answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away
    except Exception:
        log.exception("metrics endpoint: internal error")
    finally:
        limit.release()
        await trio.aclose_forcefully(stream)


async def _read_and_route(
    stream: trio.abc.Stream,
    registry: CollectorRegistry,
    checks: Checks,
    admin: AdminHandler | None = None,
    dashboard: DashboardLike | None = None,
    scrape: Callable[[], Awaitable[bytes]] | None = None,
) -> Response | Streamer:
    """The response for the request on ``stream``, or status 0 for "just close"."""
    buf = bytearray()
    try:
        with trio.fail_after(READ_TIMEOUT):
            head = await _read_head(stream, buf)
            if head is None:
                return 0, "", b"", ()  # connected and closed without a word: nothing to answer
            method, path, query, headers = _parse_head(head)
            body = await _read_body(stream, buf[len(head) :], headers)
    except trio.TooSlowError:
        if not buf:
            return 0, "", b"", ()
        return 408, _TEXT, b"request timeout\n", ()
    except _BadRequest as exc:
        log.debug("metrics endpoint: bad request: %s", peer_text(exc))
        return exc.status, _TEXT, f"{exc}\n".encode(), ()

    if admin is not None and path.startswith("/admin/"):
        return (*admin(method, path, query, headers), ())
    if dashboard is not None and (path == "/dashboard" or path.startswith("/dashboard/")):
        return dashboard(method, path, query, headers, body)
    if scrape is not None and method == "GET" and path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, await scrape(), ()
    return (*_route(registry, checks, method, path), ())


def _route(
    registry: CollectorRegistry, checks: Checks, method: str, path: str
) -> tuple[int, str, bytes]:
    if method != "GET":
        return 405, _TEXT, b"method not allowed\n"
    if path == "/metrics":
        try:
            return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
        except Exception:
            log.exception("metrics endpoint: collecting the metrics failed")
            return 500, _TEXT, b"collecting the metrics failed\n"
    check = checks.get(path)
    if check is not None:
        try:
            ok = check()
        except Exception as exc:
            log.warning("metrics endpoint: the %s check raised %r", path, exc)
            ok = False
        if ok:
            return 200, _TEXT, b"ok\n"
        return 503, _TEXT, b"unhealthy\n" if path == "/healthz" else b"not ready\n"
    return 404, _TEXT, b"not found\n"


async def _read_body(stream: trio.abc.Stream, rest: bytearray, headers: dict[str, str]) -> bytes:
    """The request body (Content-Length bytes, at most :data:`MAX_REQUEST_BODY`)."""
    if "transfer-encoding" in headers:
        raise _BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0").strip() or "0"
    if not length_text.isdigit() or len(length_text) > 9:
        raise _BadRequest(400, "malformed Content-Length")
    length = int(length_text)
    if length > MAX_REQUEST_BODY:
        raise _BadRequest(413, f"request body larger than {MAX_REQUEST_BODY} bytes")
    body = bytearray(rest[:length])
    while len(body) < length:
        data = await stream.receive_some(length - len(body))
        if not data:
            raise _BadRequest(400, "incomplete request body")
        body += data
    return bytes(body)


async def _read_head(stream: trio.abc.Stream, buf: bytearray) -> bytes | None:
    """Read up to the blank line ending the headers; None on a silent EOF."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            end += 4
        else:
            end = buf.find(b"\n\n")  # bare-LF line endings, tolerated as RFC 9112 allows
            if end >= 0:
                end += 2
        if end >= 0:
            if end > MAX_REQUEST_HEAD:
                break
            return bytes(buf[:end])
        if len(buf) > MAX_REQUEST_HEAD:
            break
        data = await stream.receive_some(4096)
        if not data:
            if buf:
                raise _BadRequest(400, "incomplete request")
            return None
        buf += data
    raise _BadRequest(431, f"request head larger than {MAX_REQUEST_HEAD} bytes")


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """(method, path, query, headers with lower-case names) of a request head;
    _BadRequest if it is not HTTP/1.x."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    request_line, headers = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if not method or not set(method) <= _TOKEN_CHARS:
        raise _BadRequest(400, "malformed method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadRequest(400, "only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not target.startswith(b"/") or any(c <= 0x20 or c >= 0x7F for c in target):
        raise _BadRequest(400, "malformed request target")
    fields: dict[str, str] = {}
    for line in headers:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN_CHARS:
            raise _BadRequest(400, "malformed header line")
        fields[name.decode("ascii").lower()] = value.strip().decode("latin-1")
    path, _, query = target.decode("ascii").partition("?")
    return method.decode("ascii"), path, query, fields


async def _respond(
    stream: trio.abc.Stream,
    status: int,
    content_type: str,
    body: bytes,
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if status == 405 and not any(k.lower() == "allow" for k, _ in extra):
        head.append("Allow: GET")
    head += [f"{k}: {v}" for k, v in extra]
    with trio.move_on_after(WRITE_TIMEOUT):
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return  # TLS: closing sends close_notify after the response
        # Half-close, then drain what the client may still be sending (an oversized or
        # unread request) for a moment: closing with unread input makes the kernel send a
        # reset, which can destroy the response before the client has read it.
        await stream.send_eof()
    with trio.move_on_after(LINGER_TIMEOUT):
        drained = 0
        while drained < LINGER_BYTES:
            data = await stream.receive_some(4096)
            if not data:
                break
            drained += len(data)
