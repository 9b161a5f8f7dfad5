"""Run many lean bots in one process: ramp up, settle, measure a window, report.

``raw = await run_load(config)`` runs this process's share of the rooms and returns its raw
figures (JSON-ready; latency as a sparse histogram); :func:`merge_reports` combines the raw
figures of one or more processes into the report (see ``clients.bots.cli``).
"""

from __future__ import annotations

import math
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from clients.bots.behaviours import Mix, assign
from clients.bots.drops import ResumingBot, drop_figures, recover
from clients.bots.errors import EARLY_STOP_ATTEMPTS, EarlyStop, FirstErrors
from clients.bots.lean import Bot, BotFailed, Engine, LatencyHistogram
from clients.bots.progress import rate_key
from shared.protocol import CloseCode

#: a JOIN refused with 4016 (the node cannot reach the room directory) is tried again after
#: random(0, min(CAP, BASE * 2**n)) seconds, within --connect-timeout
DIRECTORY_RETRY_BASE = 0.1
DIRECTORY_RETRY_CAP = 0.75


def _mix(value: Any) -> Mix:
    return tuple((str(n), float(w)) for n, w in value)


@attrs.frozen
class LoadConfig:
    url: str
    #: more entry URLs (other nodes of a cluster): player ``p`` of each room dials entry
    #: ``p % (1 + len(also_urls))`` of ``(url, *also_urls)``
    also_urls: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: rooms this process fills: ``{room_prefix}-{room_offset}`` ... (``rooms`` of them)
    rooms: int = 1
    players: int = 8
    duration: float = 10.0
    #: bots started per second; 0 = as fast as ``connect_concurrency`` allows
    ramp: float = 0.0
    #: inputs per second per bot; None: the room's tick rate
    input_hz: float | None = None
    #: how many bots of the whole run keep a replica and verify checksums; -1 = all
    verify_sample: int = -1
    ca_file: str | None = None
    game: str = ""
    room_prefix: str = "bots"
    room_offset: int = 0
    #: rooms of the whole run (over every process); 0 = ``rooms``
    rooms_total: int = 0
    seed: int = 1
    protocol: str = "gamesync"  # or "json" for tools/baseline_server.py
    behaviour: Mix = attrs.field(default=(("wander", 1.0),), converter=_mix)
    #: hex of the token signing secret; each bot gets its own token (None: no tokens)
    secret_hex: str | None = None
    connect_concurrency: int = 64
    connect_timeout: float = 30.0
    #: seconds between the last join and the measured window
    settle: float = 1.0
    #: seconds the bots keep playing after the window closed (so that a scrape of the server
    #: at the window's end still sees every bot connected)
    linger: float = 0.5
    #: cut each bot's connection this many seconds apart on average, and resume (0 = never)
    drop_every: float = 0.0
    #: stop the run when none of the first this many bots could connect (0 = never)
    early_stop: int = EARLY_STOP_ATTEMPTS

    @property
    def run_rooms(self) -> int:
        return self.rooms_total or self.rooms

    def entry_for(self, player: int) -> str:
        """The URL player ``player`` of a room dials first."""
        entries = (self.url, *self.also_urls)
        return entries[player % len(entries)]


def ssl_context_for(cfg: LoadConfig) -> ssl.SSLContext | None:
    if not cfg.url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=cfg.ca_file)


def make_bots(cfg: LoadConfig, latency: LatencyHistogram | None = None) -> list[Bot]:
    """This process's bots. Room ``g`` (global index) holds players ``p = 0..players-1``; a
    bot verifies if ``p * rooms_total + g < verify_sample``, so the verifying sample covers as
    many rooms as it can, and no bot's role depends on how rooms are split over processes."""
    mint = _token_minter(cfg)
    bots: list[Bot] = []
    for r in range(cfg.rooms):
        g = cfg.room_offset + r
        room = f"{cfg.room_prefix}-{g}"
        for p in range(cfg.players):
            gi = g * cfg.players + p
            rank = p * cfg.run_rooms + g
            player_id = f"{room}-{p}"
            kw: dict[str, Any] = {
                "verify": (cfg.verify_sample < 0 or rank < cfg.verify_sample)
                and cfg.protocol != "json",
                "rng": random.Random(f"{cfg.seed}:{room}:{p}"),
                "behaviour": assign(cfg.behaviour, gi),
                "protocol": cfg.protocol,
                "name": player_id[-32:],
                "player_id": player_id,
                "token": mint(player_id) if mint else "",
                "latency": latency,
            }
            if cfg.drop_every > 0:
                drop_rng = random.Random(f"{cfg.seed}:drop:{room}:{p}")
                bots.append(ResumingBot(len(bots), room, drop_rng=drop_rng, **kw))
            else:
                bots.append(Bot(len(bots), room, **kw))
            bots[-1].entry = cfg.entry_for(p)
    return bots


def _token_minter(cfg: LoadConfig) -> Callable[[str], str] | None:
    if not cfg.secret_hex or cfg.protocol == "json":
        return None
    # the server's own token format (bots are a dev tool shipped with the server)
    from gameserver.auth import mint_token

    secret = bytes.fromhex(cfg.secret_hex)
    ttl = max(3600.0, cfg.duration * 2 + 600.0)
    return lambda player_id: mint_token(secret, player_id, name=player_id[-32:], ttl=ttl)


#: called once a second with a progress status (see :func:`run_load`)
StatusCallback = Callable[[dict[str, Any]], None]


async def run_load(
    cfg: LoadConfig,
    *,
    ready: Callable[[], Awaitable[float]] | None = None,
    on_status: StatusCallback | None = None,
    stop: trio.Event | None = None,
) -> dict[str, Any]:
    """Run ``cfg.rooms * cfg.players`` bots; return this process's raw figures.

    ``ready()`` is awaited once every bot has joined (or failed) and returns the wall-clock
    (``time.time()``) start of the measured window; by default ``cfg.settle`` seconds later.
    Processes that are given the same start open their windows together. ``on_status`` gets
    ``{"phase", "connected", "updates_s", "rates", "bytes_down_s", "bytes_up_s", "errors",
    "latency", "early_stop"}`` once a second, over the last second: ``updates_s`` the total,
    ``rates`` a sparse histogram of each connected bot's rate (:func:`rate_key`), ``latency``
    a sparse histogram. Setting ``stop`` ends the ramp and the window early; so does the
    early stop (none of the first ``cfg.early_stop`` bots could connect).
    """
    stop = stop if stop is not None else trio.Event()
    lock = threading.Lock()
    errors: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    failed: set[int] = set()
    directory_retries = [0]  # joins tried again after 4016
    first = FirstErrors()
    early = EarlyStop(min(cfg.early_stop, cfg.rooms * cfg.players)) if cfg.early_stop else None
    raw: dict[str, Any] = {}

    def on_error(bot: Bot, exc: BotFailed) -> None:  # from either thread
        with lock:
            if bot.index in failed:
                return
            failed.add(bot.index)
            errors[exc.kind] += 1
            first.record(exc.kind, exc.detail)
            code = exc.close_code if exc.close_code is not None else bot.close_code
            if code is not None:
                disconnects[str(code)] += 1

    def on_window_close(window: float) -> None:  # in the engine thread
        with lock:
            raw.update(_raw(cfg, bots, engine, window, errors, disconnects, failed))
            raw["directory_retries"] = directory_retries[0]
            raw["errors_first"] = dict(first.first)

    trio_token = trio.lowlevel.current_trio_token()
    resumers: list[trio.Nursery] = []  # the nursery the resumes run in, once it is open

    def on_cut(bot: Bot, now: float) -> None:  # in the engine thread
        assert isinstance(bot, ResumingBot)
        bot.cut_at = now
        try:
            trio_token.run_sync_soon(start_resume, bot)
        except trio.RunFinishedError:
            pass

    def start_resume(bot: ResumingBot) -> None:  # in the trio thread
        if resumers and not stop.is_set():
            resumers[0].start_soon(resume, bot)

    async def resume(bot: ResumingBot) -> None:
        try:
            await recover(bot, bot.entry, ctx, cfg.game, connect_timeout=cfg.connect_timeout)
        except BotFailed as exc:
            on_error(bot, exc)
            _close(bot)
            return
        engine.add(bot)

    engine = Engine(
        on_error,
        input_hz=cfg.input_hz,
        on_window_close=on_window_close,
        drop_every=cfg.drop_every,
        on_cut=on_cut if cfg.drop_every > 0 else None,
    )
    bots = make_bots(cfg, engine.latency)
    ctx = ssl_context_for(cfg)
    limiter = trio.CapacityLimiter(cfg.connect_concurrency)
    phase = "ramp"

    def attempted(kind: str | None) -> None:
        if early is None:
            return
        reason = early.record(kind)
        if reason is not None:
            raw["early_stop"] = reason
            stop.set()

    async def join(bot: Bot) -> None:
        """``bot.start``; a refusal with 4016 (directory unavailable) is tried again."""
        n = 0
        while True:
            try:
                await bot.start(bot.entry, ctx, cfg.game)
                return
            except BotFailed as exc:
                if exc.close_code != CloseCode.DIRECTORY_UNAVAILABLE:
                    raise
            _close(bot)
            n += 1
            with lock:
                directory_retries[0] += 1
            cap = min(DIRECTORY_RETRY_CAP, DIRECTORY_RETRY_BASE * 2**n)
            await trio.sleep(random.uniform(0.0, cap))

    async def start(bot: Bot) -> None:
        async with limiter:
            if stop.is_set():
                on_error(bot, BotFailed("stopped", "the run was stopped before this bot joined"))
                return
            try:
                with trio.fail_after(cfg.connect_timeout):
                    await join(bot)
            except BotFailed as exc:
                bot.close_code = exc.close_code
                failure = exc
            except (OSError, ssl.SSLError) as exc:
                failure = BotFailed("connect", str(exc))
            except trio.TooSlowError:
                failure = BotFailed("connect_timeout", f"{cfg.connect_timeout}s")
            else:
                attempted(None)
                engine.add(bot)
                return
            on_error(bot, failure)
            _close(bot)
            attempted(failure.kind)

    async def status() -> None:
        assert on_status is not None
        n = len(bots)
        last_updates, last_down, last_up = [0] * n, [0] * n, [0] * n
        last_counts = [0] * len(engine.latency.counts)
        epoch = engine.epoch
        t_last = time.perf_counter()
        while True:
            await trio.sleep(1.0)
            now = time.perf_counter()
            dt = max(now - t_last, 1e-3)
            rates: Counter[str] = Counter()
            connected = updates_total = down_total = up_total = 0
            for i, b in enumerate(bots):
                u = b.updates
                conn = b.conn
                d, up = (conn.bytes_down, conn.bytes_up) if conn is not None else (0, 0)
                if (b.joined or b.player) and i not in failed:
                    connected += 1
                    du = max(0, u - last_updates[i])
                    updates_total += du
                    rates[rate_key(du / dt)] += 1
                    # a resumed bot has a new connection: its byte counters started over
                    down_total += d - last_down[i] if d >= last_down[i] else d
                    up_total += up - last_up[i] if up >= last_up[i] else up
                last_updates[i], last_down[i], last_up[i] = u, d, up
            counts = list(engine.latency.counts)
            if engine.epoch != epoch:  # the window opened: the histogram started over
                epoch = engine.epoch
                last_counts = [0] * len(counts)
            recent = {
                str(i): c - p
                for i, (c, p) in enumerate(zip(counts, last_counts, strict=True))
                if c > p
            }
            with lock:
                n_errors = sum(errors.values())
            on_status(
                {
                    "phase": phase,
                    "connected": connected,
                    "updates_s": round(updates_total / dt, 1),
                    "rates": dict(rates),
                    "bytes_down_s": round(down_total / dt, 1),
                    "bytes_up_s": round(up_total / dt, 1),
                    "errors": n_errors,
                    "latency": recent,
                    "early_stop": raw.get("early_stop"),
                }
            )
            last_counts, t_last = counts, now

    t0 = time.perf_counter()
    engine.start()
    try:
        async with trio.open_nursery() as nursery:
            resumers.append(nursery)
            if on_status is not None:
                nursery.start_soon(status)
            async with trio.open_nursery() as starters:
                ramp_t0 = trio.current_time()
                for i, bot in enumerate(bots):
                    if cfg.ramp > 0:
                        with trio.move_on_at(ramp_t0 + i / cfg.ramp):
                            await stop.wait()
                    starters.start_soon(start, bot)
            ramp_s = time.perf_counter() - t0
            phase = "settle"
            start_at = await ready() if ready is not None else time.time() + cfg.settle
            open_at = time.perf_counter() + max(0.0, start_at - time.time())
            engine.schedule_window(open_at, open_at + cfg.duration)
            if stop.is_set():
                engine.close_window_now()

            async def stopper() -> None:
                await stop.wait()
                engine.close_window_now()

            async def window_phase() -> None:
                nonlocal phase
                await trio.sleep(max(0.0, open_at - time.perf_counter()))
                phase = "window"

            nursery.start_soon(stopper)
            nursery.start_soon(window_phase)
            await trio.to_thread.run_sync(engine.window_closed.wait, abandon_on_cancel=True)
            if cfg.linger > 0 and not stop.is_set():
                await trio.sleep(cfg.linger)
            nursery.cancel_scope.cancel()
    finally:
        engine.close()
        for bot in bots:
            _close(bot)
    if engine.crashed is not None:
        raise RuntimeError("the bot engine crashed") from engine.crashed
    raw["ramp_s"] = round(ramp_s, 2)
    raw["errors_first"] = dict(first.first)
    raw["redirects"] = sum(bot.redirects for bot in bots)
    raw["redirected_bots"] = sum(1 for bot in bots if bot.redirects)
    raw["directory_retries"] = directory_retries[0]
    return raw


def _close(bot: Bot) -> None:
    if bot.conn is not None:
        bot.conn.close()


def _raw(
    cfg: LoadConfig,
    bots: list[Bot],
    engine: Engine,
    window: float,
    errors: Counter[str],
    disconnects: Counter[str],
    failed: set[int],
) -> dict[str, Any]:
    """This process's figures for the window that just closed (run in the engine thread)."""
    rates: list[float] = []
    down = up = resyncs = desyncs = connected = 0
    inputs = events_sent = events_received = 0
    behaviours: Counter[str] = Counter()
    tick_rate = None
    for bot in bots:
        desyncs += bot.desyncs
        behaviours[bot.behaviour.name] += 1
        inputs += bot.inputs_sent
        events_sent += bot.events_sent
        events_received += bot.events_received
        if bot.conn is None or bot.index in failed or not (bot.joined or bot.player):
            continue
        connected += 1
        tick_rate = bot.tick_rate
        rate, d, u, rs = bot.window_figures(window)
        rates.append(round(rate, 3))
        down += d
        up += u
        resyncs += rs
    cpu = engine.cpu_closed - engine.cpu_opened if engine.opened_at is not None else 0.0
    return {
        "target": len(bots),
        "connected": connected,
        "failed": len(bots) - connected,
        "window_s": window,
        "tick_rate": tick_rate,
        "latency": engine.latency.sparse(),
        "rates": rates,
        "bytes_down": down,
        "bytes_up": up,
        "snapshot_resyncs": resyncs,
        "desyncs": desyncs,
        "errors": dict(errors),
        "disconnects": dict(disconnects),
        "behaviours": dict(behaviours),
        "verifying": sum(1 for b in bots if b.verify),
        "inputs_sent": inputs,
        "events_sent": events_sent,
        "events_received": events_received,
        "cpu_s": round(cpu, 4),
        "input_slots_late": engine.late_slots,
        "redirects": sum(bot.redirects for bot in bots),
        "redirected_bots": sum(1 for bot in bots if bot.redirects),
        **drop_figures(bots),
    }


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 1); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))], 2)


def merge_reports(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-process raw figures into the report (the schema is in ``clients.bots.cli``)."""
    hist = LatencyHistogram()
    rates: list[float] = []
    errors: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    behaviours: Counter[str] = Counter()
    down = up = 0
    target = connected = failed = resyncs = desyncs = verifying = 0
    inputs = events_sent = events_received = late = 0
    window = cpu = ramp = 0.0
    tick_rates = []
    drops = resumes = resume_failures = seats_lost = 0
    redirects = redirected_bots = directory_retries = 0
    resume_ms: list[float] = []
    first = FirstErrors()
    early_stop = None
    for raw in raws:
        first.merge(raw.get("errors_first", {}))
        early_stop = early_stop or raw.get("early_stop")
        drops += raw.get("drops", 0)
        redirects += raw.get("redirects", 0)
        redirected_bots += raw.get("redirected_bots", 0)
        directory_retries += raw.get("directory_retries", 0)
        resumes += raw.get("resumes", 0)
        resume_failures += raw.get("resume_failures", 0)
        seats_lost += raw.get("seats_lost", 0)
        resume_ms += raw.get("resume_ms", [])
        hist.merge(raw.get("latency", {}))
        rates += raw.get("rates", [])
        errors.update(raw.get("errors", {}))
        disconnects.update(raw.get("disconnects", {}))
        behaviours.update(raw.get("behaviours", {}))
        down += raw.get("bytes_down", 0)
        up += raw.get("bytes_up", 0)
        target += raw.get("target", 0)
        connected += raw.get("connected", 0)
        failed += raw.get("failed", 0)
        resyncs += raw.get("snapshot_resyncs", 0)
        desyncs += raw.get("desyncs", 0)
        verifying += raw.get("verifying", 0)
        inputs += raw.get("inputs_sent", 0)
        events_sent += raw.get("events_sent", 0)
        events_received += raw.get("events_received", 0)
        late += raw.get("input_slots_late", 0)
        cpu += raw.get("cpu_s", 0.0)
        window = max(window, raw.get("window_s", 0.0))
        ramp = max(ramp, raw.get("ramp_s", 0.0))
        if raw.get("tick_rate"):
            tick_rates.append(raw["tick_rate"])
    n = max(connected, 1)

    def per_player_s(total: float) -> float | None:
        return round(total / n / window, 1) if window > 0 and connected else None

    return {
        "players": {"target": target, "connected": connected, "failed": failed},
        "duration_s": round(window, 3),
        "ramp_s": ramp,
        "tick_rate": max(tick_rates) if tick_rates else None,
        "updates_per_player_per_s": round(sum(rates) / len(rates), 2) if rates else None,
        "updates_per_player_per_s_p5": _pct(rates, 0.05),
        "updates_per_player_per_s_p50": _pct(rates, 0.50),
        "latency_ms": {
            "p50": hist.quantile(0.50),
            "p95": hist.quantile(0.95),
            "p99": hist.quantile(0.99),
            "samples": hist.total,
        },
        "bytes_down_per_player_per_s": per_player_s(down),
        "bytes_up_per_player_per_s": per_player_s(up),
        "snapshot_resyncs": resyncs,
        "desyncs": desyncs,
        "drops": drops,
        "resumes": resumes,
        "resume_failures": resume_failures,
        "seats_lost": seats_lost,
        "resume_ms": {
            "p50": _pct(resume_ms, 0.50),
            "p99": _pct(resume_ms, 0.99),
            "max": round(max(resume_ms), 2) if resume_ms else None,
            "samples": len(resume_ms),
        },
        "redirects": redirects,
        "redirected_bots": redirected_bots,
        "directory_retries": directory_retries,
        "errors": dict(sorted(errors.items())),
        "errors_first": dict(sorted(first.first.items())),
        "early_stop": early_stop,
        "disconnects": dict(sorted(disconnects.items())),
        "behaviours": dict(sorted(behaviours.items())),
        "verifying": verifying,
        "inputs_sent": inputs,
        "room_events": {"sent": events_sent, "received": events_received},
        "loadgen": {
            "procs": len(raws),
            "cpu_percent": round(cpu / window * 100, 1) if window > 0 else None,
            "cpu_ms_per_player_per_s": round(cpu * 1000 / n / window, 3)
            if window > 0 and connected
            else None,
            "input_slots_late": late,
        },
    }
