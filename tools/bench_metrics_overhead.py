"""What the metrics cost the server: hot-path counter updates, TickHistogram.observe, a scrape.

    .venv/bin/python tools/bench_metrics_overhead.py [--repeat 9] [--number 1000000]

Each figure is the median over ``--repeat`` timeit runs, per call, including timeit's own loop
overhead (shown on the first line, so it can be subtracted by eye).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import timeit
from typing import Any

import attrs
import prometheus_client
from prometheus_client.exposition import generate_latest

from gameserver.metrics import TickHistogram, make_registry
from gameserver.room import RoomConfig
from gameserver.stats import ServerStats


@attrs.define
class _Room:
    player_count: int
    config: RoomConfig


@attrs.define
class _Host:
    room: _Room


@attrs.define
class _Rooms:
    rooms: dict[str, _Host]


def per_call_ns(stmt: str, ns: dict[str, Any], number: int, repeat: int) -> float:
    runs = timeit.Timer(stmt, globals=ns).repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--number", type=int, default=1_000_000)
    args = parser.parse_args()
    n, r = args.number, args.repeat

    stats = ServerStats()
    hist = TickHistogram()
    prom_hist = prometheus_client.Histogram(
        "bench_tick_seconds",
        "reference: prometheus_client's own Histogram",
        buckets=TickHistogram.bounds,
        registry=None,
    )
    ns: dict[str, Any] = {"stats": stats, "hist": hist, "prom_hist": prom_hist, "d": 0.0031}

    print(f"Python {platform.python_version()} on {platform.machine()}; median of {r} x {n}")
    rows = [
        ("empty statement (timeit loop overhead)", "pass"),
        ("stats.messages_in += 1", "stats.messages_in += 1"),
        ("stats.bytes_out += 1200", "stats.bytes_out += 1200"),
        ('stats.refused["room_full"] += 1  (Counter)', 'stats.refused["room_full"] += 1'),
        ("TickHistogram.observe(0.0031)", "hist.observe(d)"),
        ("prometheus_client Histogram.observe (reference)", "prom_hist.observe(d)"),
    ]
    for label, stmt in rows:
        print(f"  {label:<50} {per_call_ns(stmt, ns, n, r):8.1f} ns/call")

    print("scrape: generate_latest() on a private registry (psutil sample included)")
    for room_count in (0, 100, 1000):
        rooms = _Rooms(
            {f"room{i}": _Host(_Room(i % 8, RoomConfig(tick_rate=20))) for i in range(room_count)}
        )
        registry = make_registry(stats, rooms)
        scope = {"generate_latest": generate_latest, "registry": registry}
        scrape_ns = per_call_ns("generate_latest(registry)", scope, 200, r)
        print(f"  {room_count:>5} rooms {scrape_ns / 1000:38.1f} us/scrape")


if __name__ == "__main__":
    main()
