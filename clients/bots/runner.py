"""Run many bots in one trio process and report what they saw.

``report = await run_bots(BotConfig(url=..., rooms=2, players=4, duration=10))`` runs
``rooms * players`` bots (``players`` in each room ``f"{room_prefix}-{i}"``). Each bot joins,
sends an input at the room's tick rate (from its behaviour), verifies its replica against the
server's checksums, measures input latency (sending input N until the first state message whose
ack for its player is >= N) and leaves when the duration is up. The report is a JSON-ready dict.
"""

from __future__ import annotations

import math
import os
import random
import ssl
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import trio

from clients.bots.behaviours import make_behaviour
from clients.client import (
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    GameClient,
    ServerError,
    make_ssl_context,
    open_game_client,
)
from shared.errors import RemoteProtocolError
from shared.replica import DesyncError

DEV_CA = "dev-ca.pem"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/gameserver``, else ``~/.local/state/gameserver``: the server's default
    state directory (mirrors ``gameserver.tls.default_state_dir``; clients don't import it)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "gameserver"


def default_ca_file(url: str, state_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The development CA a local server made, for ``wss://`` URLs on this machine; else None
    (verify against the system's CAs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "wss" or (parts.hostname or "").lower() not in LOCAL_HOSTS:
        return None
    return Path(state_dir if state_dir is not None else default_state_dir()) / DEV_CA


@attrs.frozen
class BotConfig:
    url: str
    rooms: int = 1
    players: int = 1
    #: seconds each bot plays after it has joined
    duration: float = 10.0
    game: str = "arena"
    #: CA to verify the server against; None: the system's CAs (see ``default_ca_file``)
    ca_file: str | None = None
    #: overrides ``ca_file`` (tests)
    ssl_context: ssl.SSLContext | None = None
    room_prefix: str = "bots"
    #: None: a random seed, recorded in the report
    seed: int | None = None
    behaviour: str = "wander"
    #: inputs per second per bot; None: the room's tick rate
    input_rate: float | None = None
    #: seconds over which the bots' connections are spread (bot i waits ramp_up * i / n)
    ramp_up: float = 0.0
    connect_timeout: float = 10.0
    #: seconds a bot waits at the end for its last input to be acked
    drain_timeout: float = 1.0
    name_prefix: str = "bot"
    token: str = ""

    def __attrs_post_init__(self) -> None:
        if self.rooms < 1 or self.players < 1:
            raise ValueError("rooms and players must be at least 1")
        if not self.duration > 0:
            raise ValueError("duration must be positive")
        if self.input_rate is not None and not self.input_rate > 0:
            raise ValueError("input_rate must be positive")

    @property
    def room_names(self) -> list[str]:
        return [f"{self.room_prefix}-{i}" for i in range(self.rooms)]


class LatencyHistogram:
    """Latency samples in seconds: exact up to ``exact_limit`` samples, then log buckets
    (2% wide), so percentiles stay cheap for long runs with many bots."""

    RATIO = 1.02
    FLOOR = 1e-6

    def __init__(self, exact_limit: int = 200_000) -> None:
        self.exact_limit = exact_limit
        self.exact: list[float] | None = []
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def _bucket(self, seconds: float) -> int:
        if seconds <= self.FLOOR:
            return 0
        return 1 + int(math.log(seconds / self.FLOOR) / math.log(self.RATIO))

    def _bucket_value(self, index: int) -> float:
        if index == 0:
            return self.FLOOR
        # the geometric middle of [FLOOR * RATIO**(i-1), FLOOR * RATIO**i)
        return float(self.FLOOR * self.RATIO ** (index - 0.5))

    def add(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.count += 1
        self.total += seconds
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)
        i = self._bucket(seconds)
        self.buckets[i] = self.buckets.get(i, 0) + 1
        if self.exact is not None:
            if len(self.exact) < self.exact_limit:
                self.exact.append(seconds)
            else:
                self.exact = None

    def extend(self, samples: Iterable[float]) -> None:
        for s in samples:
            self.add(s)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (0 < q <= 100) in seconds; None without samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        if self.exact is not None:
            return sorted(self.exact)[rank - 1]
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(max(self._bucket_value(index), self.min), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        return {
            "count": self.count,
            "mean": ms(self.total / self.count) if self.count else None,
            "min": ms(self.min) if self.count else None,
            "p50": ms(self.percentile(50)),
            "p95": ms(self.percentile(95)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max) if self.count else None,
        }


@attrs.define
class BotResult:
    room: str
    index: int
    name: str
    connected: bool = False
    ok: bool = False
    error_kind: str | None = None
    error: str | None = None
    #: seconds between holding the first snapshot and leaving (or failing)
    active_s: float = 0.0
    updates: int = 0
    snapshots: int = 0
    deltas: int = 0
    deltas_skipped: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    inputs_sent: int = 0
    inputs_acked: int = 0
    checksums_verified: int = 0
    room_events: int = 0
    desyncs: int = 0
    #: send slots skipped because the bot fell behind (the bot process is overloaded)
    slots_skipped: int = 0

    @property
    def failed(self) -> bool:
        return self.error_kind is not None

    def take_stats(self, client: GameClient) -> None:
        s = client.stats
        self.updates = s.updates
        self.snapshots = s.snapshots
        self.deltas = s.deltas
        self.deltas_skipped = s.deltas_skipped
        self.bytes_down = s.bytes_down
        self.bytes_up = s.bytes_up
        self.inputs_sent = s.inputs_sent
        self.inputs_acked = s.inputs_acked
        self.checksums_verified = s.checksums_verified
        self.room_events = s.room_events
        self.desyncs = len(client.desyncs)


def classify_error(exc: BaseException) -> str:
    """The kind an error is counted under in the report."""
    if isinstance(exc, ServerError):
        return f"ServerError:{exc.code}"
    if isinstance(exc, ConnectionClosed):
        return f"ConnectionClosed:{exc.code}"
    if isinstance(exc, ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, DesyncError):
        return "desync"
    if isinstance(exc, RemoteProtocolError):
        return f"protocol:{exc.close_code}"
    return type(exc).__name__


async def _run_bot(
    config: BotConfig,
    context: ssl.SSLContext | None,
    result: BotResult,
    latencies: LatencyHistogram,
    seed: int,
    delay: float,
    stop: trio.Event,
) -> None:
    """One bot, start to end. Never raises (but Cancelled): errors go into ``result``."""
    if delay > 0:
        with trio.move_on_after(delay):
            await stop.wait()
    if stop.is_set():
        return
    rng = random.Random(f"{seed}:{result.room}:{result.index}")
    client: GameClient | None = None
    ready_at = 0.0
    try:
        async with open_game_client(
            config.url,
            result.room,
            game=config.game,
            name=result.name,
            token=config.token,
            ssl_context=context,
            connect_timeout=config.connect_timeout,
            latency_history=None,
        ) as client:
            ready_at = time.perf_counter()
            result.connected = True
            behaviour = make_behaviour(config.behaviour, rng)
            period = 1.0 / (config.input_rate or client.joined.tick_rate)
            end = trio.current_time() + config.duration
            # a random phase, so that the bots' inputs don't all arrive just after a tick
            next_send = trio.current_time() + rng.uniform(0, period)
            with trio.move_on_at(next_send):
                await stop.wait()
            last_seq = 0
            while not stop.is_set():
                last_seq = await client.send_input(**behaviour.next_input(client))
                latencies.extend(client.pop_latencies())
                next_send += period
                now = trio.current_time()
                if next_send < now:  # behind schedule: skip the missed slots, don't burst
                    missed = math.ceil((now - next_send) / period)
                    result.slots_skipped += missed
                    next_send += missed * period
                if next_send >= end:
                    break
                # sleeping is never cut short mid-send: a cancelled send would break the stream
                with trio.move_on_at(next_send):
                    await stop.wait()
            with trio.move_on_after(config.drain_timeout):
                await client.wait_for_ack(last_seq)
            latencies.extend(client.pop_latencies())
            result.active_s = time.perf_counter() - ready_at
        result.ok = True
    except Exception as exc:
        result.error_kind = classify_error(exc)
        result.error = str(exc) or repr(exc)
        if client is not None and ready_at and not result.active_s:
            result.active_s = time.perf_counter() - ready_at
    finally:
        if client is not None:
            latencies.extend(client.pop_latencies())
            result.take_stats(client)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_report(
    config: BotConfig,
    results: list[BotResult],
    latencies: LatencyHistogram,
    wall_s: float,
    seed: int,
) -> dict[str, Any]:
    """The JSON report of a run."""
    connected = [r for r in results if r.connected]
    active = [r for r in connected if r.active_s > 0]
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for r in results:
        if r.error_kind is not None:
            errors[r.error_kind] = errors.get(r.error_kind, 0) + 1
            samples.setdefault(r.error_kind, r.error or "")

    def rate(attr: str) -> float | None:
        mean = _mean([getattr(r, attr) / r.active_s for r in active])
        return None if mean is None else round(mean, 3)

    return {
        "url": config.url,
        "game": config.game,
        "behaviour": config.behaviour,
        "seed": seed,
        "rooms": config.rooms,
        "room_prefix": config.room_prefix,
        "duration_s": round(wall_s, 3),
        "target_duration_s": config.duration,
        "players": {
            "target": len(results),
            "connected": len(connected),
            "failed": sum(1 for r in results if r.failed),
            "ok": sum(1 for r in results if r.ok),
        },
        "updates_per_player_per_s": rate("updates"),
        "bytes_down_per_player_per_s": rate("bytes_down"),
        "bytes_up_per_player_per_s": rate("bytes_up"),
        "latency_ms": latencies.summary_ms(),
        "inputs": {
            "sent": sum(r.inputs_sent for r in results),
            "acked": sum(r.inputs_acked for r in results),
        },
        "snapshots": sum(r.snapshots for r in results),
        "deltas": sum(r.deltas for r in results),
        "deltas_skipped": sum(r.deltas_skipped for r in results),
        "room_events": sum(r.room_events for r in results),
        "checksums_verified": sum(r.checksums_verified for r in results),
        "bot_slots_skipped": sum(r.slots_skipped for r in results),
        "desyncs": sum(r.desyncs for r in results),
        "errors": dict(sorted(errors.items())),
        "error_samples": dict(sorted(samples.items())),
    }


async def run_bots(config: BotConfig, *, stop: trio.Event | None = None) -> dict[str, Any]:
    """Run ``config.rooms * config.players`` bots; returns the report (see :func:`build_report`).

    Setting ``stop`` ends every bot early (they still leave cleanly and are reported).
    Raises ``ValueError`` / ``OSError`` for a bad URL or an unreadable CA file, before any bot
    starts; errors of individual bots are counted in the report instead.
    """
    context = make_ssl_context(config.url, ca_file=config.ca_file, ssl_context=config.ssl_context)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    stop = stop if stop is not None else trio.Event()
    results = [
        BotResult(room, p, f"{config.name_prefix}-{r}-{p}")
        for r, room in enumerate(config.room_names)
        for p in range(config.players)
    ]
    latencies = LatencyHistogram()
    total = len(results)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i, result in enumerate(results):
            delay = config.ramp_up * i / total
            nursery.start_soon(_run_bot, config, context, result, latencies, seed, delay, stop)
    wall = time.perf_counter() - started
    return build_report(config, results, latencies, wall, seed)


def format_summary(report: dict[str, Any]) -> str:
    """A few human lines about a report."""
    players = report["players"]
    lat = report["latency_ms"]

    def num(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None else f"{v:,.1f}{unit}"

    lines = [
        f"gamebots: {players['connected']}/{players['target']} bots connected in "
        f"{report['rooms']} room(s) for {report['duration_s']:.1f}s; {players['failed']} failed, "
        f"{report['desyncs']} desync(s)",
        f"  updates/player/s {num(report['updates_per_player_per_s'])}   "
        f"down {num(report['bytes_down_per_player_per_s'], ' B/s')}   "
        f"up {num(report['bytes_up_per_player_per_s'], ' B/s')} per player",
        f"  input latency ms: p50 {num(lat['p50'])}  p95 {num(lat['p95'])}  "
        f"p99 {num(lat['p99'])}  max {num(lat['max'])}  ({lat['count']} inputs)",
        f"  checksums verified {report['checksums_verified']}, snapshots {report['snapshots']}, "
        f"deltas {report['deltas']}",
    ]
    if report["bot_slots_skipped"]:
        lines.append(
            f"  warning: bots fell behind their send schedule {report['bot_slots_skipped']} "
            "time(s); this process may be overloaded"
        )
    for kind, count in report["errors"].items():
        lines.append(f"  error {kind}: {count} (e.g. {report['error_samples'][kind]})")
    return "\n".join(lines)
