"""The room's tick alone, as the server runs it at load: many arena rooms ticked in turn.

    taskset -c 0 .venv/bin/python tools/account_rooms.py [--players 560] [--ticks 100]

``--players / 8`` rooms of 8 wandering arena players (``Wandering`` in
tools/account_micro.py: they move as gamebots' players do), each with the resume history the
server keeps and the v3 coding the bench's bots speak, ticked one after the other as the
server's shared timer does, with each player's input pushed before its room's tick. No
sockets, no TLS, no server: what a room's tick (the game's update and the DELTA's encoding)
costs per player when its data has gone cold behind the other rooms' ticks, as it does at
load. tools/bench_account.py ``--part native`` runs it beside the transport alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import account_micro as am

WARM = 20  # ticks before the timed ones (the arena's gems spawn, the history fills)


def rooms_in_turn(players: int, ticks: int) -> dict[str, Any]:
    """µs per player of a room's tick, and of its encoding, over ``ticks`` rounds of all
    rooms (the median round)."""
    rooms = []
    for r in range(max(1, players // am.ROOM)):
        room, numbers = am.arena_room()
        room.codings = frozenset((3,))  # the bench's bots speak gamesync.v3
        inner = [0]
        room.ctx.state = am._TimedState(room.ctx.state, inner)  # type: ignore[assignment]
        rooms.append((room, numbers, am.Wandering(len(numbers), seed=r + 1), inner))
    pc = time.perf_counter_ns
    rounds: list[tuple[int, int]] = []
    enabled = gc.isenabled()
    gc.disable()  # as the micro-benchmarks: the collector's passes are not a room's
    try:
        for t in range(WARM + ticks):
            spent = encoded = 0
            for room, numbers, steer, inner in rooms:
                for number, codes in zip(numbers, steer.step(), strict=True):
                    room.push_input(number, t + 1, codes)
                inner[0] = 0
                t0 = pc()
                room.tick()
                spent += pc() - t0
                encoded += inner[0]
            if t >= WARM:
                rounds.append((spent, encoded))
    finally:
        if enabled:
            gc.enable()
    rounds.sort()
    spent, encoded = rounds[len(rounds) // 2]
    seated = len(rooms) * am.ROOM
    return {
        "rooms": len(rooms),
        "players": seated,
        "ticks": ticks,
        "us_per_player": round(spent / seated / 1000, 2),
        "encode_us_per_player": round(encoded / seated / 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--players", type=int, default=560, help="players, in rooms of 8")
    p.add_argument("--ticks", type=int, default=100, help="timed rounds of every room")
    args = p.parse_args(argv)
    print(json.dumps(rooms_in_turn(args.players, args.ticks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
