"""Paired A/B of two checkouts of this server: both on core 0 at once, each with its own bots.

This machine's speed moves by up to 2x between runs minutes apart (BENCHMARKS.md), so two
sequential runs of the same code can differ more than a change does. Here both servers run at
the same time, pinned to core 0, each with its own ``gamebots`` (pinned to core 1), and each
server's CPU (utime + stime from /proc) is read over the same window: whatever the machine
does, both see it. The figure is the ratio of the second tree's CPU to the first's, per round
and its median. Rounds alternate which server starts first.

    .venv/bin/python tools/bench_pair.py OLD_TREE NEW_TREE [--rounds 7] [--players 160]

A tree is a checkout with its compiled modules built in place (``git worktree add /tmp/old
COMMIT && (cd /tmp/old && ../main/.venv/bin/python setup.py -q build_ext --inplace)``); each
side runs with ``PYTHONPATH`` set to its tree and this checkout's virtualenv. Keep both
servers together well below one core (``--players`` is per server): past it the scheduler
splits the core evenly and the ratio tends to 1 whatever the code. Each server runs with
``--cpu-budget 0 --max-connections-per-ip 0 --no-web``; the bots join at ``--ramp`` per
second, settle ``--settle`` seconds, and the window is ``--window`` seconds. A round in which
a side's bots did not all get in is reported and left out of the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


class PairError(Exception):
    """A user's mistake or a side that would not start: one line, no traceback."""


def check_tree(tree: Path) -> Path:
    if not (tree / "gameserver" / "cli.py").is_file():
        raise PairError(f"{tree} is not a checkout of this server (no gameserver/cli.py)")
    return tree.resolve()


def ratio_summary(ratios: list[float]) -> tuple[float, float, float]:
    """Median, lowest and highest of the per-round ratios."""
    if not ratios:
        raise PairError("no round had every bot seated on both sides: nothing to compare")
    return statistics.median(ratios), min(ratios), max(ratios)


def seated_bots(report: dict[str, Any]) -> int | None:
    """How many bots got in and none failed, from a ``gamebots --report`` (None if unknown)."""
    players = report.get("players")
    if not isinstance(players, dict):
        return None
    connected, failed = players.get("connected"), players.get("failed")
    if not isinstance(connected, int) or not isinstance(failed, int):
        return None
    return connected - failed


class Side:
    """One server of a round, and its bots."""

    def __init__(self, tree: Path, players: int, ramp: int, seconds: float) -> None:
        self.tree = tree
        self.state = Path(tempfile.mkdtemp(prefix="bench-pair-"))
        self.env = dict(os.environ, PYTHONPATH=str(tree))
        self.server = subprocess.Popen(
            ["taskset", "-c", "0", str(VENV_BIN / "python"), "-m", "gameserver.cli", "serve",
             "--port", "0", "--state-dir", str(self.state), "--log-level", "WARNING",
             "--max-connections-per-ip", "0", "--cpu-budget", "0", "--no-web"],
            env=self.env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.url = self._url()
        self.players = players
        self.report = self.state / "bots.json"
        self.bots = subprocess.Popen(
            ["taskset", "-c", "1", str(VENV_BIN / "gamebots"), "--url", self.url,
             "--rooms", str(players // 8), "--players", "8", "--duration", str(int(seconds) + 1),
             "--ramp", str(ramp), "--input-hz", "20", "--verify-sample", "8",
             "--ca-file", str(self.state / "dev-ca.pem"),
             "--secret-file", str(self.state / "secret.key"), "--report", str(self.report)],
            env=self.env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _url(self) -> str:
        assert self.server.stdout is not None
        for line in self.server.stdout:
            if line.startswith("listening on "):
                return line.split()[-1]
        raise PairError(f"the server of {self.tree} exited before listening")

    def cpu_ticks(self) -> int:
        fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def finish(self) -> int | None:
        """Stop both processes; the number of bots that played (None if unknown)."""
        try:
            self.bots.wait(timeout=120)
        finally:
            self.server.terminate()
            self.server.wait(timeout=20)
        try:
            report: dict[str, Any] = json.loads(self.report.read_text())
        except (OSError, ValueError):
            return None
        finally:
            shutil.rmtree(self.state, ignore_errors=True)
        return seated_bots(report)


def one_round(trees: list[Path], args: argparse.Namespace) -> tuple[list[float], list[int | None]]:
    join = args.players / args.ramp
    seconds = join + args.settle + args.window + 2
    sides = [Side(tree, args.players, args.ramp, seconds) for tree in trees]
    hz = os.sysconf("SC_CLK_TCK")
    try:
        time.sleep(join + args.settle)
        before = [side.cpu_ticks() for side in sides]
        t0 = time.monotonic()
        time.sleep(args.window)
        after = [side.cpu_ticks() for side in sides]
        wall = time.monotonic() - t0
    finally:
        played = [side.finish() for side in sides]
    return [(a - b) / hz / wall for a, b in zip(after, before, strict=True)], played


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first", type=Path, help="the tree the ratio divides by (e.g. the old code)")
    p.add_argument("second", type=Path, help="the tree compared with it (e.g. the new code)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--players", type=int, default=160, help="per server (rooms of 8)")
    p.add_argument("--ramp", type=int, default=100, help="bots joining per second, per server")
    p.add_argument("--settle", type=float, default=6.0)
    p.add_argument("--window", type=float, default=15.0)
    args = p.parse_args(argv)
    try:
        trees = [check_tree(args.first), check_tree(args.second)]
        if args.players < 8 or args.rounds < 1:
            raise PairError("--players needs at least 8 and --rounds at least 1")
        ratios = []
        for r in range(args.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            shares, played = one_round(order, args)
            share = dict(zip(order, shares, strict=True))
            seated = dict(zip(order, played, strict=True))
            ratio = share[trees[1]] / share[trees[0]]
            full = all(seated[t] in (None, args.players) for t in trees)
            if full:
                ratios.append(ratio)
            print(
                f"round {r + 1}: {trees[0]} {100 * share[trees[0]]:.1f}%, "
                f"{trees[1]} {100 * share[trees[1]]:.1f}% of core 0: "
                f"ratio {ratio:.3f}" + ("" if full else f" (left out: seated {seated})"),
                flush=True,
            )
        median, lo, hi = ratio_summary(ratios)
        print(
            f"second / first server CPU: median {median:.3f} over {len(ratios)} rounds "
            f"(range {lo:.3f}-{hi:.3f})"
        )
    except PairError as exc:
        print(f"bench_pair: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
