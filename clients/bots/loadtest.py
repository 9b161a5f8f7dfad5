"""Run many lean bots in one process: ramp up, measure a window, report.

``run_load(config)`` returns this process's raw figures; ``merge_reports`` combines the figures
of one or more processes into the final report (see ``clients.bots.cli``).
"""

from __future__ import annotations

import math
import random
import ssl
import sys
import time
from collections import Counter
from typing import Any

import attrs
import trio

from clients.bots.lean import Bot, BotFailed, LatencyHistogram, Poller


@attrs.frozen
class LoadConfig:
    url: str
    rooms: int = 1
    players: int = 8
    duration: float = 10.0
    ramp: float = 0.0  # bots started per second; 0 = all at once (bounded concurrency)
    input_hz: float | None = None  # default: the room's tick rate
    verify_sample: int = -1  # bots with full replicas; -1 = all
    ca_file: str | None = None
    game: str = ""
    room_prefix: str = "bots"
    room_offset: int = 0
    seed: int = 1
    protocol: str = "gamesync"  # or "json" for the baseline server
    progress: bool = False
    connect_concurrency: int = 64
    settle: float = 1.0  # seconds between the last join and the measured window


def _ssl_context(cfg: LoadConfig) -> ssl.SSLContext | None:
    if not cfg.url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=cfg.ca_file)


async def run_load(cfg: LoadConfig) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    ctx = _ssl_context(cfg)
    bots: list[Bot] = []
    for r in range(cfg.rooms):
        for _ in range(cfg.players):
            i = len(bots)
            verify = cfg.verify_sample < 0 or i < cfg.verify_sample
            bots.append(
                Bot(
                    i,
                    f"{cfg.room_prefix}-{r + cfg.room_offset}",
                    verify=verify,
                    rng=random.Random(rng.random()),
                    protocol=cfg.protocol,
                )
            )
    errors: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    failed: set[int] = set()

    def on_error(bot: Bot, exc: BotFailed) -> None:
        if bot.index in failed:
            return
        failed.add(bot.index)
        errors[exc.kind] += 1
        if bot.close_code is not None:
            disconnects[str(bot.close_code)] += 1
        poller.remove(bot)

    poller = Poller(on_error)
    by_fd = poller.bots
    limiter = trio.CapacityLimiter(cfg.connect_concurrency)

    async def start(bot: Bot) -> None:
        async with limiter:
            try:
                with trio.fail_after(30):
                    await bot.start(cfg.url, ctx, cfg.game)
            except BotFailed as exc:
                on_error(bot, exc)
                return
            except (OSError, trio.TooSlowError, ssl.SSLError) as exc:
                on_error(bot, BotFailed("connect", str(exc)))
                return
        poller.add(bot)

    async def send_inputs() -> None:
        slots = 10
        next_at = trio.current_time()
        slot = 0
        while True:
            hz = cfg.input_hz or _tick_rate(bots)
            if hz <= 0:
                await trio.sleep(0.05)
                next_at = trio.current_time()
                continue
            next_at += 1.0 / hz / slots
            await trio.sleep_until(next_at)
            now = time.perf_counter()
            for bot in list(by_fd.values()):
                if bot.index % slots == slot and bot.failed is None:
                    try:
                        bot.send_input(now)
                    except BotFailed as exc:
                        on_error(bot, exc)
            slot = (slot + 1) % slots

    async def progress() -> None:
        last = 0
        while True:
            await trio.sleep(1.0)
            total = sum(b.updates for b in bots)
            p99 = LatencyHistogram()
            for b in bots:
                p99.merge(b.latency.counts)
            q = p99.quantile(0.99)
            sys.stderr.write(
                f"\rconnected {len(by_fd):5d}  updates/s {total - last:7d}  "
                f"p99 {q if q is not None else '-':>7} ms  errors {sum(errors.values()):4d}  "
            )
            sys.stderr.flush()
            last = total

    t_start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller.serve)
        nursery.start_soon(send_inputs)
        if cfg.progress:
            nursery.start_soon(progress)
        async with trio.open_nursery() as starters:
            for bot in bots:
                starters.start_soon(start, bot)
                if cfg.ramp > 0:
                    await trio.sleep(1.0 / cfg.ramp)
        ramp_s = time.perf_counter() - t_start
        await trio.sleep(cfg.settle)
        for bot in bots:
            if bot.conn is not None:
                bot.open_window()
        w0 = time.perf_counter()
        await trio.sleep(cfg.duration)
        window = time.perf_counter() - w0
        raw = _raw(bots, window, errors, disconnects, failed)
        raw["ramp_s"] = round(ramp_s, 2)
        nursery.cancel_scope.cancel()
    if cfg.progress:
        sys.stderr.write("\n")
    for bot in bots:
        if bot.conn is not None:
            bot.conn.close()
    return raw


def _tick_rate(bots: list[Bot]) -> float:
    for bot in bots:
        if bot.joined is not None:
            return float(bot.joined.tick_rate)
    return 20.0 if any(b.protocol == "json" and b.conn for b in bots) else 0.0


def _raw(
    bots: list[Bot],
    window: float,
    errors: Counter[str],
    disconnects: Counter[str],
    failed: set[int],
) -> dict[str, Any]:
    hist = LatencyHistogram()
    rates: list[float] = []
    down = up = resyncs = desyncs = connected = 0
    for bot in bots:
        desyncs += bot.desyncs
        if bot.conn is None or bot.index in failed:
            continue
        connected += 1
        hist.merge(bot.latency.counts)
        rates.append(bot.updates / window)
        down += bot.conn.bytes_down - bot.bytes_down0
        up += bot.conn.bytes_up - bot.bytes_up0
        resyncs += max(0, bot.snapshots)
    return {
        "target": len(bots),
        "connected": connected,
        "failed": len(bots) - connected,
        "window_s": window,
        "latency_counts": hist.counts,
        "rates": rates,
        "bytes_down": down,
        "bytes_up": up,
        "snapshot_resyncs": resyncs,
        "desyncs": desyncs,
        "errors": dict(errors),
        "disconnects": dict(disconnects),
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))], 2)


def merge_reports(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-process raw figures into the report (keys documented in the README)."""
    hist = LatencyHistogram()
    rates: list[float] = []
    errors: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    down = up = 0
    target = connected = failed = resyncs = desyncs = 0
    window = 0.0
    for raw in raws:
        hist.merge(raw["latency_counts"])
        rates += raw["rates"]
        errors.update(raw["errors"])
        disconnects.update(raw["disconnects"])
        down += raw["bytes_down"]
        up += raw["bytes_up"]
        target += raw["target"]
        connected += raw["connected"]
        failed += raw["failed"]
        resyncs += raw["snapshot_resyncs"]
        desyncs += raw["desyncs"]
        window = max(window, raw["window_s"])
    n = max(connected, 1)
    return {
        "players": {"target": target, "connected": connected, "failed": failed},
        "duration_s": round(window, 2),
        "updates_per_player_per_s": round(sum(rates) / len(rates), 2) if rates else 0.0,
        "updates_per_player_per_s_p5": _pct(rates, 0.05),
        "updates_per_player_per_s_p50": _pct(rates, 0.50),
        "latency_ms": {
            "p50": hist.quantile(0.50),
            "p95": hist.quantile(0.95),
            "p99": hist.quantile(0.99),
            "samples": hist.total,
        },
        "bytes_down_per_player_per_s": round(down / n / window, 1) if window else 0.0,
        "bytes_up_per_player_per_s": round(up / n / window, 1) if window else 0.0,
        "snapshot_resyncs": resyncs,
        "desyncs": desyncs,
        "errors": dict(errors),
        "disconnects": dict(disconnects),
    }


if (
    __name__ == "__main__"
):  # quick manual runs: python -m clients.bots.loadtest URL ROOMS PLAYERS SECS
    import json

    url, rooms, players, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ca = sys.argv[5] if len(sys.argv) > 5 else None
    cfg = LoadConfig(
        url=url,
        rooms=rooms,
        players=players,
        duration=secs,
        ca_file=ca,
        verify_sample=int(sys.argv[6]) if len(sys.argv) > 6 else -1,
        progress=True,
    )
    print(json.dumps(merge_reports([trio.run(run_load, cfg)]), indent=1))
