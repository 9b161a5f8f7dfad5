"""Micro-benchmarks of the hot pure functions, pure Python against mypyc-compiled.

Runs itself twice in subprocesses, once with ``GAMESERVER_PURE=1`` (the ``.py`` source of the
modules in ``shared/_compiled.py``, see there) and once as installed (compiled, if the build
compiled them), ``--rounds`` times alternately, and prints each row's median per call (the
median over the rounds) and the ratio pure / compiled. The
inputs are an arena room of 8 players as in tools/account_micro.py: a tick's DELTA in which
all 8 moved, their 5-byte INPUTs, masked as a client sends them.

    taskset -c 1 .venv/bin/python tools/bench_mypyc.py [--n 10000] [--repeats 9] [--rounds 3]

Each row is ``n`` calls per batch, ``repeats`` batches, the garbage collector off (as in
account_micro.run_batches); the figure is the median batch. Rows: wire.varint / svarint over
a tick's mix of values, FrameReader.feed + next of one masked INPUT frame, unmask of its
payload, binary_frame of the DELTA, State.encode_deltas of the 8 moves (v2 and v3; set-up
untimed), encode_patch / encode_record of a player, records_checksum of the room, encode_acks
of 8 players, decode_input of an INPUT, MessageLimiter.take_input, and Room.tick of the room
(the game's update is plain Python in both runs: it shows what the whole tick gains).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import account_micro as am

from gameserver.games.arena import INPUT
from gameserver.limits import MessageLimiter
from shared import _compiled, state, wire, wsframe
from shared.messages import decode_input

Batch = Callable[[int], int]  # n calls -> ns they took


def _rows() -> dict[str, tuple[Batch, int]]:
    """name -> (batch, calls per operation): each batch times ``k`` operations."""
    room, numbers = am.arena_room()
    codes = INPUT.codes_for({"dx": 0.5, "dy": -0.25})
    st = room.ctx.state
    player = next(iter(st))
    values = [1000, 1001, 3, 7, 12, 0, 1, 200, 5, 8]  # ticks, counts, ids, acks
    signed = [0, 1, -1, 3, -2, 0, 0, 5, -7, 2]  # v3 residuals
    msg = am.masked_input_frame()
    raw = am.input_message()
    payload, key = msg[6:], msg[2:6]
    delta = am.delta_frame()[2:]
    acks = [(n, 1) for n in numbers]
    limiter = MessageLimiter(60.0, 30.0, 5.0, 10.0, 3.0, 0.0)
    clock = [0.0]
    pc = time.perf_counter_ns

    def varint(k: int) -> int:
        f = wire.varint
        t0 = pc()
        for _ in range(k):
            for v in values:
                f(v)
        return pc() - t0

    def svarint(k: int) -> int:
        f = wire.svarint
        t0 = pc()
        for _ in range(k):
            for v in signed:
                f(v)
        return pc() - t0

    reader = wsframe.FrameReader(max_message_size=4096, require_mask=True)

    def frames(k: int) -> int:
        feed, nxt = reader.feed, reader.next
        t0 = pc()
        for _ in range(k):
            feed(msg)
            nxt()
            nxt()
        return pc() - t0

    def unmask(k: int) -> int:
        f = wsframe.unmask
        t0 = pc()
        for _ in range(k):
            f(payload, key)
        return pc() - t0

    def binary_frame(k: int) -> int:
        f = wsframe.binary_frame
        t0 = pc()
        for _ in range(k):
            f(delta)
        return pc() - t0

    seq = [0]

    def encode_deltas(k: int) -> int:
        total = 0
        ents = list(st)
        for i in range(k):
            seq[0] += 1
            for e in ents[:8]:  # the 8 players move (the room's ticks do the same)
                e.x = (e.x + 7.5) % 900
                e.y = (e.y + 3.25) % 900
            t0 = pc()
            st.encode_deltas(seq[0], acks, i % 5 == 0, True, True)
            total += pc() - t0
        return total

    def encode_patch(k: int) -> int:
        f = state.encode_patch
        player.mask = 3
        t0 = pc()
        for _ in range(k):
            f(player)
        elapsed = pc() - t0
        player.mask = 0
        return elapsed

    def encode_record(k: int) -> int:
        f = state.encode_record
        t0 = pc()
        for _ in range(k):
            f(player)
        return pc() - t0

    records = [state.encode_record(e) for e in st]

    def records_checksum(k: int) -> int:
        f = state.records_checksum
        t0 = pc()
        for _ in range(k):
            f(records)
        return pc() - t0

    def encode_acks(k: int) -> int:
        f = state.encode_acks
        t0 = pc()
        for _ in range(k):
            f(acks)
        return pc() - t0

    def decode(k: int) -> int:
        t0 = pc()
        for _ in range(k):
            decode_input(raw, INPUT)
        return pc() - t0

    def take_input(k: int) -> int:
        take = limiter.take_input
        now = clock[0]
        t0 = pc()
        for _ in range(k):
            now += 0.05
            take(now)
        elapsed = pc() - t0
        clock[0] = now
        return elapsed

    def tick(k: int) -> int:
        total = 0
        for _ in range(k):
            seq[0] += 1
            for number in numbers:
                room.push_input(number, seq[0], codes)
            t0 = pc()
            room.tick()
            total += pc() - t0
        return total

    return {
        "wire.varint": (varint, len(values)),
        "wire.svarint": (svarint, len(signed)),
        "FrameReader.feed+next": (frames, 1),
        "wsframe.unmask (5 B)": (unmask, 1),
        "wsframe.binary_frame": (binary_frame, 1),
        "State.encode_deltas (8 moved)": (encode_deltas, 1),
        "state.encode_patch": (encode_patch, 1),
        "state.encode_record": (encode_record, 1),
        "state.records_checksum": (records_checksum, 1),
        "state.encode_acks (8)": (encode_acks, 1),
        "messages.decode_input": (decode, 1),
        "MessageLimiter.take_input": (take_input, 1),
        "Room.tick (arena, 8)": (tick, 1),
    }


#: rows whose operation is heavy: fewer per batch
_SLOW = {"State.encode_deltas (8 moved)": 20, "Room.tick (arena, 8)": 20}


def run_side(n: int, repeats: int) -> dict[str, Any]:
    """This process's medians (ns per call) and whether the modules are compiled."""
    out: dict[str, Any] = {}
    for name, (batch, calls) in _rows().items():
        k = max(1, n // _SLOW.get(name, 1))
        batch(k)  # warm-up
        fig = am.run_batches(batch, k, repeats)
        out[name] = round(fig.us * 1000 / calls, 1)
    out["_compiled"] = {m: _compiled.is_compiled(sys.modules[m]) for m in _compiled.MODULES}
    return out


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each row's median over the runs of one side."""
    rows = [k for k in runs[0] if not k.startswith("_")]
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="calls per batch")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument(
        "--rounds", type=int, default=3, help="pure and compiled runs, alternated (median)"
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args.n, args.repeats)))
        return
    runs: dict[str, list[dict[str, Any]]] = {"pure": [], "compiled": []}
    for _ in range(args.rounds):
        for label, pure_env in (("pure", "1"), ("compiled", "")):
            env = {**os.environ, "GAMESERVER_PURE": pure_env}
            cmd = [sys.executable, __file__, "--side", "--n", str(args.n)]
            cmd += ["--repeats", str(args.repeats)]
            done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            runs[label].append(json.loads(done.stdout))
    pure, comp = ({**r[0], **_medians(r)} for r in (runs["pure"], runs["compiled"]))
    if not all(comp["_compiled"].values()):
        print(f"warning: not every module is compiled: {comp['_compiled']}", file=sys.stderr)
    rows = [k for k in pure if not k.startswith("_")]
    ratios = {k: round(pure[k] / comp[k], 2) for k in rows}
    if args.json:
        print(json.dumps({"pure_ns": pure, "compiled_ns": comp, "ratio": ratios}, indent=1))
        return
    print(f"{'row':32} {'pure ns':>9} {'compiled ns':>12} {'pure/compiled':>14}")
    for k in rows:
        print(f"{k:32} {pure[k]:9.1f} {comp[k]:12.1f} {ratios[k]:13.2f}x")
    print(f"(median of {args.rounds} runs of median of {args.repeats} batches; geometric mean "
          f"{statistics.geometric_mean(ratios.values()):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
