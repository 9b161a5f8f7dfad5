"""Charts of load tests, drawn with matplotlib (imported only when a chart is drawn).

:func:`draw_run` draws one ``gamebots`` run over time (``gamebots --chart FILE.png``, from
the report's ``timeline``); :func:`draw_bench` draws ``tools/bench.py``'s capacity sweep
(BENCHMARKS.md). Both share the figure set-up, the styling and the saving below.
matplotlib is in the ``bench`` extra: without it, :func:`require_matplotlib` raises
:class:`ChartUnavailable` with a one-line message for the user.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 110


class ChartUnavailable(Exception):
    """matplotlib is not installed (the message says how to install it)."""


def require_matplotlib() -> None:
    """Raise :class:`ChartUnavailable` unless matplotlib can be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ChartUnavailable(
            "drawing a chart needs matplotlib: pip install 'gameserver[bench]' "
            "(or pip install matplotlib)"
        )


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(axes: Sequence[Any]) -> None:
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")


def _save(fig: Any, plt: Any, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


# ------------------------------------------------------------------ one gamebots run
def window_span(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """(first, last) time of the rows in the measured window; None if none is."""
    ts = [r["t"] for r in rows if "window" in (r.get("phase") or "")]
    return (min(ts), max(ts)) if ts else None


def draw_run(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    title: str = "gamebots",
    tick_rate: float | None = None,
) -> None:
    """A gamebots run over time (rows of ``clients.bots.progress.Progress.sample``): connected
    bots, updates/player/s (mean, p5), input latency p50/p99, bytes/player/s and, when the
    rows have them, the server's tick p99 and CPU. The measured window is shaded."""
    plt = _pyplot()
    server = any(r.get("server_cpu") is not None for r in rows)
    fig, grid = plt.subplots(3 if server else 2, 2, figsize=(12, 9.6 if server else 6.4))
    axes = list(grid.flat)
    ts = [r["t"] for r in rows]

    def col(name: str) -> list[float]:
        return [_nan(r.get(name)) for r in rows]

    ax = axes[0]
    ax.plot(ts, col("connected"), color="tab:blue", label="connected")
    if rows and rows[-1].get("target"):
        ax.axhline(rows[-1]["target"], color="grey", linestyle="--", linewidth=1, label="target")
    if any(r.get("errors") for r in rows):
        ax.plot(ts, col("errors"), color="tab:red", label="failed (total)")
    ax.set_ylim(bottom=0)
    ax.set_title("Bots")
    ax = axes[1]
    ax.plot(ts, col("updates_mean"), color="tab:green", label="mean")
    ax.plot(ts, col("updates_p5"), color="tab:olive", linestyle="--", label="p5 (slowest 5%)")
    if tick_rate:
        ax.axhline(tick_rate, color="grey", linestyle=":", linewidth=1, label="tick rate")
    ax.set_ylim(bottom=0)
    ax.set_title("Updates per player per second")
    ax = axes[2]
    ax.plot(ts, col("latency_p50"), color="tab:purple", label="p50")
    ax.plot(ts, col("latency_p99"), color="tab:red", label="p99")
    ax.set_ylim(bottom=0)
    ax.set_title("Input latency, ms (input sent -> first state acking it)")
    ax = axes[3]
    ax.plot(ts, col("down_pp"), color="tab:blue", label="down")
    ax.plot(ts, col("up_pp"), color="tab:orange", label="up")
    ax.set_ylim(bottom=0)
    ax.set_title("Bytes per player per second (WebSocket payload)")
    if server:
        ax = axes[4]
        ax.plot(ts, col("server_tick_p99"), color="tab:brown", label="tick p99")
        ax.set_ylim(bottom=0)
        ax.set_title("Server tick duration p99, ms (each second)")
        ax = axes[5]
        ax.plot(ts, col("server_cpu"), color="tab:gray", label="process CPU")
        ax.set_ylim(0, max(105.0, max((c for c in col("server_cpu") if c == c), default=0) + 5))
        ax.set_title("Server CPU, % of one core")
    span = window_span(rows)
    for ax in axes:
        if span is not None:
            ax.axvspan(*span, color="tab:green", alpha=0.07, label=None)
        ax.set_xlabel("seconds since start (shaded: measured window)")
    _style(axes)
    _save(fig, plt, path, title)


# ------------------------------------------------------------------ the bench's sweep
def draw_bench(results: Mapping[str, Any], path: Path, labels: Mapping[str, str]) -> None:
    """tools/bench.py's chart: latency p99 and server CPU against players, per target."""
    plt = _pyplot()
    import matplotlib.ticker

    fig, (ax_lat, ax_cpu) = plt.subplots(1, 2, figsize=(12, 4.8))
    th = results["meta"]["thresholds"]
    colors = {"gameserver": "tab:blue", "baseline": "tab:orange"}
    for name, res in results["targets"].items():
        steps = sorted(
            (s for s in res["steps"] if s.get("connected")), key=lambda s: s["connected"]
        )
        xs = [s["connected"] for s in steps]
        lat = [s.get("latency_p99_ms") or math.nan for s in steps]
        cpu = [s.get("server_cpu_pct") or math.nan for s in steps]
        core = [s.get("core0_busy_pct") or math.nan for s in steps]
        color = colors.get(name)
        label = labels.get(name, name)
        ax_lat.plot(xs, lat, "o-", color=color, label=label)
        ax_cpu.plot(xs, cpu, "o-", color=color, label=f"{label}: process")
        ax_cpu.plot(xs, core, "--", color=color, alpha=0.6, label=f"{label}: core 0 busy")
        over = res.get("overload")
        if over and over.get("connected"):
            x = over["connected"]
            ax_lat.plot(
                [x],
                [over.get("latency_p99_ms") or math.nan],
                "x",
                color=color,
                markersize=10,
                label=f"{label}: overload step ({over['target']} offered)",
            )
            ax_cpu.plot([x], [over.get("server_cpu_pct") or math.nan], "x", color=color,
                        markersize=10)  # fmt: skip
        if res.get("capacity"):
            for ax in (ax_lat, ax_cpu):
                ax.axvline(res["capacity"], color=color, linestyle=":", alpha=0.7)
    ax_lat.axhline(th["max_latency_p99_ms"], color="grey", linestyle="--", linewidth=1)
    ax_lat.set_yscale("log")
    ax_lat.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax_lat.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_lat.set_yticks([10, 20, 50, 100, 200, 500, 1000, 2000])
    ax_lat.set_xlabel("players connected (8 per room)")
    ax_lat.set_ylabel("input latency p99, ms (log)")
    ax_lat.set_title("Latency p99 (dotted: capacity; dashed: 100 ms limit)")
    ax_cpu.axhline(th["cpu_pct"], color="grey", linestyle="--", linewidth=1)
    ax_cpu.set_xlabel("players connected (8 per room)")
    ax_cpu.set_ylabel("% of one core")
    ax_cpu.set_ylim(0, 105)
    ax_cpu.set_title("Server CPU (process; dashed: whole core 0)")
    _style((ax_lat, ax_cpu))
    _save(
        fig,
        plt,
        path,
        f"arena, 20 Hz, WSS on 127.0.0.1 — {results['meta']['machine']['cpu_model']}, "
        "server on core 0, bots on core 1",
    )
