"""The command line of tools/faultproxy.py (``python tools/faultproxy.py --help``): flags, the
stdin console and ``--script``, and the unit parsing they share (80ms, 64KB/s, 256KiB).

Every control is a :class:`Command` (``parse_command("down 3")``), carried out on a running
proxy by :func:`apply_command`; a script is a list of (seconds, Command). See docs/faults.md.
"""

from __future__ import annotations

import argparse
import enum
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import attrs
import trio
from faultproxy import (
    DEFAULT_BUFFER,
    Direction,
    DownMode,
    FaultProxy,
    RemoteTargetError,
    open_fault_proxy,
)

T = TypeVar("T")


# ------------------------------------------------------------------ units
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0}
_SIZE_UNITS = {
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "kbit": 125,
    "mbit": 125_000,
    "gbit": 125_000_000,
}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """``"80ms"``, ``"1.5s"``, ``"2m"`` -> seconds; a bare number is in ``default_unit``."""
    m = re.fullmatch(_NUMBER + r"\s*([a-z]*)", text.strip().lower())
    if not m or (m.group(2) or default_unit) not in _DURATION_UNITS:
        raise ValueError(f"bad duration {text!r} (try 80ms, 1.5s, 2m)")
    value = float(m.group(1)) * _DURATION_UNITS[m.group(2) or default_unit]
    if not math.isfinite(value):
        raise ValueError(f"bad duration {text!r}")
    return value


def parse_size(text: str) -> int:
    """``"256KiB"``, ``"1MB"``, ``"4096"`` -> bytes (KB = 1000, KiB = 1024)."""
    m = re.fullmatch(_NUMBER + r"\s*([a-z]*)", text.strip().lower())
    if not m or (m.group(2) or "b") not in _SIZE_UNITS:
        raise ValueError(f"bad size {text!r} (try 4096, 64KB, 256KiB, 1MB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or "b"])


def parse_rate(text: str) -> float | None:
    """``"64KB/s"``, ``"1Mbit/s"``, ``"500"`` -> bytes per second; ``"off"`` -> None (no cap)."""
    t = text.strip().lower()
    if t in ("off", "none", "unlimited"):
        return None
    t = t.removesuffix("/s").removesuffix("ps")
    try:
        value = parse_size(t)
    except ValueError:
        raise ValueError(f"bad rate {text!r} (try 64KB/s, 1MiB/s, 2Mbit/s, off)") from None
    if value <= 0:
        raise ValueError(f"bad rate {text!r}: must be above 0 (use stall to stop a direction)")
    return float(value)


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9443"``, ``"[::1]:9443"`` or ``":9443"`` (127.0.0.1) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad address {text!r} (want HOST:PORT, e.g. 127.0.0.1:9443)")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


# ------------------------------------------------------------------ commands (console, script)
class Verb(enum.Enum):
    LATENCY = "latency"
    JITTER = "jitter"
    BANDWIDTH = "bandwidth"
    STALL = "stall"
    RESUME = "resume"
    CUT = "cut"
    DOWN = "down"
    UP = "up"
    STATS = "stats"
    HELP = "help"
    QUIT = "quit"


_ALIASES = {"bw": Verb.BANDWIDTH, "exit": Verb.QUIT, "?": Verb.HELP}
_DIRECTION_WORDS = {
    "upstream": Direction.UPSTREAM,
    "up": Direction.UPSTREAM,
    "downstream": Direction.DOWNSTREAM,
    "down": Direction.DOWNSTREAM,
}

HELP = """\
commands (DIR: upstream|downstream, default both; a bare number of ms / s as shown):
  latency MS [DIR]       delay bytes, e.g. latency 200, latency 80ms downstream
  jitter MS [DIR]        +- spread around the latency (order kept)
  bandwidth RATE [DIR]   cap each connection, e.g. bandwidth 64KB/s; bandwidth off
  stall [DIR]            stop forwarding, hold the bytes, keep the sockets open
  resume [DIR]           forward again
  cut                    reset every connection now (RST both sides, no close frame)
  down [SECONDS] [blackhole]  refuse (or hold) new connections, for SECONDS or until up
  up                     accept new connections again
  stats                  counters
  quit                   stop the proxy"""


@attrs.frozen
class Command:
    verb: Verb
    value: float | None = None  # seconds (latency, jitter, down) or bytes/s (bandwidth)
    direction: Direction | None = None  # None: both
    mode: DownMode = DownMode.REFUSE


def parse_command(line: str) -> Command:
    """One console or script command (see HELP); raises ValueError with a message."""
    words = line.split()
    if not words:
        raise ValueError("empty command")
    name, args = words[0].lower(), words[1:]
    verb = _ALIASES.get(name) or next((v for v in Verb if v.value == name), None)
    if verb is None:
        raise ValueError(f"unknown command {words[0]!r} (try help)")

    def direction(rest: list[str]) -> Direction | None:
        if not rest:
            return None
        if len(rest) == 1 and rest[0].lower() in _DIRECTION_WORDS:
            return _DIRECTION_WORDS[rest[0].lower()]
        if len(rest) == 1 and rest[0].lower() == "both":
            return None
        raise ValueError(f"{verb.value}: unexpected {' '.join(rest)!r} (want upstream|downstream)")

    if verb in (Verb.LATENCY, Verb.JITTER):
        if not args:
            raise ValueError(f"{verb.value} needs a value in ms, e.g. {verb.value} 200")
        return Command(verb, parse_duration(args[0], "ms"), direction(args[1:]))
    if verb is Verb.BANDWIDTH:
        if not args:
            raise ValueError("bandwidth needs a rate, e.g. bandwidth 64KB/s (or off)")
        return Command(verb, parse_rate(args[0]), direction(args[1:]))
    if verb in (Verb.STALL, Verb.RESUME):
        return Command(verb, None, direction(args))
    if verb is Verb.DOWN:
        mode = DownMode.REFUSE
        if args and args[-1].lower() in ("blackhole", "refuse"):
            mode = DownMode(args.pop().lower())
        if len(args) > 1:
            raise ValueError("down takes [SECONDS] [blackhole]")
        seconds = parse_duration(args[0], "s") if args else None
        return Command(verb, seconds, None, mode)
    if args:
        raise ValueError(f"{verb.value} takes no arguments")
    return Command(verb)


def apply_command(proxy: FaultProxy, cmd: Command) -> str:
    """Carry out ``cmd`` (all but quit); the line to show."""
    where = "both directions" if cmd.direction is None else cmd.direction.value
    ms = None if cmd.value is None else cmd.value * 1000
    if cmd.verb is Verb.LATENCY:
        assert ms is not None
        proxy.set_latency(ms, direction=cmd.direction)
        return f"latency {ms:g} ms, {where}"
    if cmd.verb is Verb.JITTER:
        assert ms is not None
        proxy.set_jitter(ms, direction=cmd.direction)
        return f"jitter {ms:g} ms, {where}"
    if cmd.verb is Verb.BANDWIDTH:
        proxy.set_bandwidth(cmd.value, direction=cmd.direction)
        cap = "off" if cmd.value is None else f"{cmd.value:g} bytes/s per connection"
        return f"bandwidth {cap}, {where}"
    if cmd.verb is Verb.STALL:
        proxy.stall(cmd.direction)
        return f"stalled, {where}"
    if cmd.verb is Verb.RESUME:
        proxy.resume(cmd.direction)
        return f"resumed, {where}"
    if cmd.verb is Verb.CUT:
        return f"cut {proxy.cut()} connection(s)"
    if cmd.verb is Verb.DOWN:
        proxy.down(cmd.value, cmd.mode)
        span = "until up" if cmd.value is None else f"for {cmd.value:g} s"
        return f"down ({cmd.mode.value} new connections) {span}"
    if cmd.verb is Verb.UP:
        proxy.up()
        return "up"
    if cmd.verb is Verb.STATS:
        return proxy.stats().line()
    if cmd.verb is Verb.HELP:
        return HELP
    raise ValueError(f"{cmd.verb.value} is not a proxy control")


def parse_script(text: str) -> list[tuple[float, Command]]:
    """``"at 5s cut; at 5s down 3; at 10s latency 200"`` (``;`` or newlines; ``#`` comments)
    -> [(seconds from the start, command)], in time order (ties keep their order)."""
    steps = []
    for raw in re.split(r"[;\n]", text):
        part = raw.split("#", 1)[0].strip()
        if not part:
            continue
        words = part.split(None, 2)
        if len(words) < 3 or words[0].lower() != "at":
            raise ValueError(f"bad script step {part!r} (want: at TIME COMMAND, e.g. at 5s cut)")
        cmd = parse_command(words[2])
        if cmd.verb is Verb.HELP:
            raise ValueError(f"bad script step {part!r}: help is for the console")
        steps.append((parse_duration(words[1], "s"), cmd))
    steps.sort(key=lambda step: step[0])
    return steps


# ------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError: one line for a bad value."""

    def conv(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return conv


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="faultproxy",
        description="A TCP proxy that injects latency, jitter, bandwidth caps, stalls, cuts "
        "and outages. Type commands on stdin (help lists them).",
    )
    p.add_argument(
        "--listen",
        required=True,
        type=_arg(parse_hostport),
        metavar="HOST:PORT",
        help="where clients connect (port 0: any free port, shown at start)",
    )
    p.add_argument(
        "--target",
        required=True,
        type=_arg(parse_hostport),
        metavar="HOST:PORT",
        help="the server to forward to (127.x unless --allow-remote)",
    )
    p.add_argument(
        "--latency",
        metavar="TIME",
        type=_arg(lambda t: parse_duration(t, "ms")),
        default=0.0,
        help="delay each direction, e.g. 80ms (bare number: ms)",
    )
    p.add_argument(
        "--jitter",
        metavar="TIME",
        type=_arg(lambda t: parse_duration(t, "ms")),
        default=0.0,
        help="+- spread around the latency, e.g. 20ms (order is kept)",
    )
    p.add_argument(
        "--bandwidth",
        metavar="RATE",
        type=_arg(parse_rate),
        default=None,
        help="cap each connection each way, e.g. 64KB/s, 1Mbit/s",
    )
    p.add_argument(
        "--buffer",
        metavar="SIZE",
        type=_arg(parse_size),
        default=DEFAULT_BUFFER,
        help="bytes held per connection per direction (default 256KiB)",
    )
    p.add_argument(
        "--script",
        metavar="STEPS",
        type=_arg(_load_script),
        default=[],
        help='timed commands, e.g. "at 5s cut; at 5s down 3" (or @FILE)',
    )
    p.add_argument(
        "--duration",
        metavar="TIME",
        type=_arg(lambda t: parse_duration(t, "s")),
        default=None,
        help="stop after this long, e.g. 30s (default: run until quit / Ctrl-C)",
    )
    p.add_argument("--no-stdin", action="store_true", help="do not read commands from stdin")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a listen or target address outside 127.x"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed for the jitter")
    return p


def _load_script(text: str) -> list[tuple[float, Command]]:
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read script {text[1:]}: {exc.strerror}") from None
    return parse_script(text)


def _say(start: float, text: str) -> None:
    for line in text.splitlines():
        print(f"[{trio.current_time() - start:8.3f}s] {line}", flush=True)


def _stdin_usable() -> bool:
    """False when reading stdin would stop us (a background job on a terminal)."""
    try:
        return not os.isatty(0) or os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


async def run_cli(args: argparse.Namespace) -> None:
    (lhost, lport), (thost, tport) = args.listen, args.target
    async with open_fault_proxy(
        thost,
        tport,
        lhost,
        lport,
        allow_remote=args.allow_remote,
        buffer_size=args.buffer,
        seed=args.seed,
    ) as proxy:
        start = trio.current_time()
        proxy.set_latency(args.latency * 1000, jitter=args.jitter * 1000)
        proxy.set_bandwidth(args.bandwidth)
        cap = "no cap" if args.bandwidth is None else f"{args.bandwidth:g} bytes/s"
        _say(
            start,
            f"listening on {proxy.address} -> {thost}:{tport}  (latency {args.latency * 1000:g} "
            f"ms, jitter {args.jitter * 1000:g} ms, {cap}; type help)",
        )
        async with trio.open_nursery() as nursery:

            async def script() -> None:
                for at, cmd in args.script:
                    await trio.sleep_until(start + at)
                    if cmd.verb is Verb.QUIT:
                        nursery.cancel_scope.cancel()
                        return
                    _say(start, apply_command(proxy, cmd))

            async def console() -> None:
                while True:
                    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                    if not line:
                        return  # stdin closed: keep running (script, --duration, Ctrl-C)
                    if not line.strip():
                        continue
                    try:
                        cmd = parse_command(line)
                        if cmd.verb is Verb.QUIT:
                            nursery.cancel_scope.cancel()
                            return
                        _say(start, apply_command(proxy, cmd))
                    except ValueError as exc:
                        _say(start, f"error: {exc}")

            async def signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for _ in received:
                        nursery.cancel_scope.cancel()  # stop cleanly, with the counters

            nursery.start_soon(signals)
            nursery.start_soon(script)
            if not args.no_stdin and _stdin_usable():
                nursery.start_soon(console)
            if args.duration is not None:
                await trio.sleep(args.duration)
                nursery.cancel_scope.cancel()
        _say(start, "stopped: " + proxy.stats().line())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        trio.run(run_cli, args)
    except KeyboardInterrupt:
        return 0
    except RemoteTargetError as exc:
        parser.error(str(exc))
    except OSError as exc:  # the listen address is taken, and the like
        print(f"faultproxy: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
