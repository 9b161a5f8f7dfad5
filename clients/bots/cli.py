"""``gamebots``: load-test a gameserver with many bots from one process.

::

    gamebots --url wss://127.0.0.1:8443 --rooms 2 --players 4 --duration 10 --report bots.json

Exit status: 0 if every bot connected, played and left without error or desync; 1 otherwise;
2 for bad arguments (including a missing CA file).
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from clients.bots.behaviours import BEHAVIOURS
from clients.bots.runner import (
    BotConfig,
    default_ca_file,
    default_state_dir,
    format_summary,
    run_bots,
)
from clients.client import make_ssl_context


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gamebots",
        description="Run rooms x players bots against a gameserver and report what they saw.",
    )
    p.add_argument("--url", required=True, help="server URL, wss://host:port (ws:// allowed)")
    p.add_argument("--rooms", type=int, default=1, help="rooms to fill (default 1)")
    p.add_argument("--players", type=int, default=1, help="bots per room (default 1)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to play (default 10)")
    p.add_argument("--report", type=Path, help="write the JSON report to this file")
    p.add_argument("--game", default="arena", help="game to ask for (default arena)")
    p.add_argument(
        "--ca-file",
        type=Path,
        help="CA certificate (PEM) to verify the server with; default for a server on this "
        "machine: <state-dir>/dev-ca.pem, else the system's CAs",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"the server's state directory (default {default_state_dir()})",
    )
    p.add_argument("--room-prefix", default="bots", help="rooms are named PREFIX-0, PREFIX-1, ...")
    p.add_argument("--seed", type=int, help="random seed (default: random, shown in the report)")
    p.add_argument(
        "--behaviour", choices=BEHAVIOURS, default="wander", help="what bots do (default wander)"
    )
    p.add_argument(
        "--input-rate", type=float, help="inputs per second per bot (default: the tick rate)"
    )
    p.add_argument(
        "--ramp-up", type=float, default=0.0, help="seconds to spread the connections over"
    )
    p.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to connect and join"
    )
    return p


def config_from_args(args: argparse.Namespace) -> BotConfig:
    """The run's config; raises ValueError with a message for the user."""
    ca_file: Path | None = args.ca_file
    if ca_file is None:
        ca_file = default_ca_file(args.url, args.state_dir)
        if ca_file is not None and not ca_file.is_file():
            raise ValueError(
                f"no development CA at {ca_file}: start the server on this machine once "
                "(it creates one), or pass --ca-file / --state-dir"
            )
    elif not ca_file.is_file():
        raise ValueError(f"--ca-file {ca_file} is not a file")
    return BotConfig(
        url=args.url,
        rooms=args.rooms,
        players=args.players,
        duration=args.duration,
        game=args.game,
        ca_file=None if ca_file is None else str(ca_file),
        room_prefix=args.room_prefix,
        seed=args.seed,
        behaviour=args.behaviour,
        input_rate=args.input_rate,
        ramp_up=args.ramp_up,
        connect_timeout=args.connect_timeout,
    )


async def _run(config: BotConfig) -> dict[str, Any]:
    """Run the bots; the first SIGINT/SIGTERM ends them early (they leave, and are reported)."""
    stop = trio.Event()
    report: dict[str, Any] = {}

    async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                if stop.is_set():
                    raise KeyboardInterrupt
                print("gamebots: stopping (again to abort)", file=sys.stderr)
                stop.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals)
        report = await run_bots(config, stop=stop)
        nursery.cancel_scope.cancel()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        # made once here, shared by every bot (and a bad URL or CA file fails before the run)
        context = make_ssl_context(config.url, ca_file=config.ca_file)
    except (ValueError, OSError, ssl.SSLError) as exc:
        parser.error(str(exc))
    report = trio.run(_run, attrs.evolve(config, ssl_context=context))
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report))
    players = report["players"]
    failed = players["failed"] or report["desyncs"] or players["connected"] < players["target"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
