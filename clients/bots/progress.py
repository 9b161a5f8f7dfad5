"""gamebots' progress: the statuses of every process merged into per-player figures, shown
live on a terminal (rich) or as a plain line every few seconds otherwise, and kept as a
bounded 1 Hz time series for ``--chart`` and the report's ``timeline``.

Every figure is per player (per connected bot), as in the final table: ``updates/player/s``
(mean and 5th percentile over the bots, over the last second), input latency p50/p99 over the
last second, ``bytes/player/s`` down and up. The statuses come from the bots' trio thread
once a second (``clients.bots.loadtest``), never from the engine's hot path.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import trio

from clients.bots.lean import LatencyHistogram

#: a plain progress line this often (seconds) when stderr is not a terminal
PLAIN_INTERVAL = 5.0
#: the time series keeps at most this many samples (then every other one, at twice the step)
MAX_POINTS = 1800


def rate_key(rate: float) -> str:
    """The sparse per-bot rate histogram's key: the rate in tenths of an update per second."""
    return str(max(0, round(rate * 10)))


def rate_quantile(hist: Mapping[str, int], q: float) -> float | None:
    """Nearest-rank ``q``-quantile of a sparse rate histogram; None if it is empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(hist, key=int):
        seen += hist[key]
        if seen >= rank:
            return int(key) / 10
    return None  # pragma: no cover - unreachable


def rate_mean(hist: Mapping[str, int]) -> float | None:
    total = sum(hist.values())
    return sum(int(k) * n for k, n in hist.items()) / 10 / total if total else None


class Progress:
    """The latest status of each process; :meth:`sample` sums them into per-player figures."""

    def __init__(self, target: int = 0) -> None:
        self.target = target
        self.statuses: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()
        #: the latest server figures (``tick_ms_p99``, ``cpu_percent``) from the 1 Hz scraper
        self.server: dict[str, Any] = {}
        self.early_stop: str | None = None
        #: statuses received so far (a sample is taken only when a new one came)
        self.updates = 0
        #: set by :meth:`update` (the sampler waits for it, then replaces it)
        self.changed = trio.Event()

    def update(self, worker: int, status: dict[str, Any]) -> None:
        self.statuses[worker] = status
        self.updates += 1
        self.changed.set()
        if status.get("early_stop") and self.early_stop is None:
            self.early_stop = status["early_stop"]

    def sample(self, now: float | None = None) -> dict[str, Any]:
        """One row of the time series: the last second, per player."""
        hist = LatencyHistogram()
        rates: Counter[str] = Counter()
        connected = errors = 0
        down = up = 0.0
        phases = set()
        for s in self.statuses.values():
            connected += s.get("connected", 0)
            errors += s.get("errors", 0)
            down += s.get("bytes_down_s", 0.0)
            up += s.get("bytes_up_s", 0.0)
            rates.update(s.get("rates", {}))
            hist.merge(s.get("latency", {}))
            phases.add(s.get("phase", ""))
        t = (time.monotonic() if now is None else now) - self.started
        mean = rate_mean(rates)
        return {
            "t": round(t, 1),
            "phase": "/".join(sorted(p for p in phases if p)),
            "connected": connected,
            "target": self.target,
            "updates_mean": None if mean is None else round(mean, 2),
            "updates_p5": rate_quantile(rates, 0.05),
            "latency_p50": hist.quantile(0.50),
            "latency_p99": hist.quantile(0.99),
            "down_pp": round(down / connected, 1) if connected else None,
            "up_pp": round(up / connected, 1) if connected else None,
            "errors": errors,
            "server_tick_p99": self.server.get("tick_ms_p99"),
            "server_cpu": self.server.get("cpu_percent"),
        }


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_line(row: Mapping[str, Any]) -> str:
    """A plain progress line (the same figures as the live display)."""
    line = (
        f"{row['t']:6.1f}s {row['phase'] or 'start':>6}  bots {row['connected']}/{row['target']}"
        f"  updates/player/s mean {_f(row['updates_mean'], '.1f')} "
        f"p5 {_f(row['updates_p5'], '.1f')}"
        f"  latency ms p50 {_f(row['latency_p50'], '.1f')} p99 {_f(row['latency_p99'], '.1f')}"
        f"  bytes/player/s down {_f(row['down_pp'], '.0f')} up {_f(row['up_pp'], '.0f')}"
        f"  errors {row['errors']}"
    )
    if row.get("server_tick_p99") is not None or row.get("server_cpu") is not None:
        line += (
            f"  server tick p99 {_f(row.get('server_tick_p99'), '.2f')} ms"
            f" cpu {_f(row.get('server_cpu'), '.0f')}%"
        )
    return line


class Series:
    """A bounded time series: at most ``max_points`` rows; when full, every other row is
    dropped and from then on only every other sample is kept (the step doubles), so a run of
    any length keeps its whole span at a coarser step."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.max_points = max_points
        self.rows: list[dict[str, Any]] = []
        self.step = 1
        self.offered = 0

    def add(self, row: dict[str, Any]) -> None:
        self.offered += 1
        if (self.offered - 1) % self.step:
            return
        if len(self.rows) >= self.max_points:
            self.rows = self.rows[::2]
            self.step *= 2
            if (self.offered - 1) % self.step:
                return
        self.rows.append(row)


class _Live:
    """The live display on a terminal (rich), refreshed by :func:`show_progress`."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def update(self, row: Mapping[str, Any]) -> None:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        errors = row["errors"]
        grid.add_row(
            "phase",
            f"[bold]{row['phase'] or 'start'}[/]  {row['t']:.0f} s   "
            f"bots {row['connected']}/{row['target']}   "
            + (f"[red]errors {errors}[/]" if errors else "errors 0"),
        )
        grid.add_row(
            "updates/player/s",
            f"mean {_f(row['updates_mean'], '.1f')}   p5 {_f(row['updates_p5'], '.1f')}",
        )
        grid.add_row(
            "latency ms",
            f"p50 {_f(row['latency_p50'], '.1f')}   p99 {_f(row['latency_p99'], '.1f')}",
        )
        grid.add_row(
            "bytes/player/s",
            f"down {_f(row['down_pp'], '.0f')}   up {_f(row['up_pp'], '.0f')}",
        )
        if row.get("server_cpu") is not None or row.get("server_tick_p99") is not None:
            grid.add_row(
                "server",
                f"tick p99 {_f(row.get('server_tick_p99'), '.2f')} ms   "
                f"cpu {_f(row.get('server_cpu'), '.0f')}%",
            )
        self.live.update(grid, refresh=True)

    def close(self) -> None:
        self.live.stop()


async def show_progress(
    progress: Progress,
    series: Series,
    *,
    tty: bool,
    stream: TextIO | None = None,
    interval: float = PLAIN_INTERVAL,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """About once a second, when a status has come: sample ``progress`` into ``series``; show
    it live on a terminal, or write a plain line every ``interval`` seconds. Runs until
    cancelled."""
    out = stream if stream is not None else sys.stderr
    live = _Live(out) if tty else None
    next_line = trio.current_time() + interval
    last = -math.inf
    try:
        while True:
            # a sample about once a second, each as a status comes (so none is missed twice)
            await trio.sleep_until(last + 0.95)
            await progress.changed.wait()
            progress.changed = trio.Event()
            last = trio.current_time()
            row = progress.sample()
            series.add(row)
            if on_sample is not None:
                on_sample(row)
            if live is not None:
                live.update(row)
            elif trio.current_time() >= next_line - 0.05:
                next_line += interval
                out.write("gamebots " + format_line(row) + "\n")
                out.flush()
    finally:
        if live is not None:
            live.close()
