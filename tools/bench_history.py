"""What resume's delta history costs: recording per tick, and building a catch-up delta.

    .venv/bin/python tools/bench_history.py [--players 8] [--repeat 7]

An arena room (the bundled game) with ``--players`` players who all move every tick, so every
avatar changes every tick and gems are picked up (creates and removes). Figures:

* ``tick``: one whole ``Room.tick()`` without and with a 10 s history (the difference is what
  recording costs: keeping the tick's already encoded DELTA in a bounded deque);
* ``record``: ``DeltaHistory.record`` alone, per call;
* ``catch-up``: ``Room.catch_up`` from 1 s and from 10 s back (parse and merge that many
  deltas), its size, and the SNAPSHOT's size and encode time for comparison.

Each figure is the median over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

from gameserver.games.arena import INPUT, Arena
from gameserver.history import DeltaHistory
from gameserver.room import Room, RoomConfig
from shared.state import State

TICK_RATE = 20


def make_room(players: int, history_s: float) -> Room:
    cfg = RoomConfig(max_players=max(8, players), seed=1, history_ticks=int(history_s * TICK_RATE))
    room = Room("bench", Arena, cfg)
    for i in range(players):
        room.seat(f"id{i}", f"p{i}")
    return room


class Driver:
    """Feeds every player a new input each tick (direction changes every few ticks)."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.seq = 0
        self.codes = [
            INPUT.codes_for({"dx": dx / 4, "dy": dy / 4})
            for dx in range(-4, 5, 2)
            for dy in range(-4, 5, 2)
        ]

    def tick(self) -> None:
        self.seq += 1
        room = self.room
        for p in room.players():
            room.push_input(
                p.number, self.seq, self.codes[(self.seq // 7 + p.number) % len(self.codes)]
            )
        room.tick()


def median_s(fn: Callable[[], object], number: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def tick_costs(players: int, ticks: int, repeat: int) -> tuple[float, float]:
    """Median seconds per tick without and with a 10 s history, runs interleaved (A B A B)
    so that the machine's drift hits both alike."""
    runs: dict[float, list[float]] = {0: [], 10: []}
    for _ in range(repeat):
        for history_s in (0, 10):
            driver = Driver(make_room(players, history_s))
            for _ in range(250):  # warm up past the history's length
                driver.tick()
            t0 = time.perf_counter()
            for _ in range(ticks):
                driver.tick()
            runs[history_s].append((time.perf_counter() - t0) / ticks)
    return statistics.median(runs[0]), statistics.median(runs[10])


def catch_up_cost(log: DeltaHistory, have: int, now: int, state: State, repeat: int) -> float:
    return median_s(lambda: log.catch_up(have, now, state), 50, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ticks", type=int, default=2000)
    args = parser.parse_args()
    players, repeat = args.players, args.repeat
    print(f"python {platform.python_version()} on {platform.machine()}; arena, {players} players")

    plain, logged = tick_costs(players, args.ticks, repeat)
    print(f"tick without history      {plain * 1e6:8.1f} us")
    print(
        f"tick with 10 s history    {logged * 1e6:8.1f} us"
        f"   ({(logged / plain - 1) * 100:+.1f}%, noise included)"
    )

    history = DeltaHistory(200, 1 << 20)
    delta = b"\x12\x00" + bytes(60)
    counter = iter(range(1, 1 << 62))
    rec = median_s(lambda: history.record(next(counter), delta, None), 200_000, repeat)
    print(f"DeltaHistory.record       {rec * 1e9:8.0f} ns per tick")

    driver = Driver(make_room(players, 10))
    for _ in range(250):
        driver.tick()
    room = driver.room
    log = room.history
    assert log is not None
    snap = len(room.snapshot())
    state = room.ctx.state
    snap_s = median_s(lambda: state.encode_snapshot(room.state_tick, room.acks), 2000, repeat)
    print(
        f"history: {len(log)} ticks, {log.nbytes} bytes;"
        f" snapshot {snap} bytes, encoded in {snap_s * 1e6:.1f} us"
    )
    for back_s in (1, 10):
        have = room.state_tick - back_s * TICK_RATE
        data = room.catch_up(have)
        size = "snapshot instead" if data is None else f"{len(data)} bytes"
        built = catch_up_cost(log, have, room.state_tick, state, repeat)
        print(f"catch-up from {back_s:2d} s back    {built * 1e6:8.1f} us   ({size})")


if __name__ == "__main__":
    main()
