"""``gamebots``: load-test a gameserver with many lean bots, in one process or several.

::

    gamebots --url wss://127.0.0.1:8443 --rooms 75 --players 8 --duration 10 --report r.json
    gamebots --url wss://127.0.0.1:8443 --game pong --rooms 10 --players 2
    gamebots --url wss://127.0.0.1:8443 --game field --rooms 1 --players 256
    gamebots --url wss://127.0.0.1:8443 --rooms 8 --players 8 --duration 30 --drop-every 3

The bots join ``--rooms`` rooms (``PREFIX-0`` ...) with ``--players`` bots each, at ``--ramp``
bots per second; after the last join and ``--settle`` seconds, every process opens its measured
window at the same wall-clock time, for ``--duration`` seconds. ``--procs N`` spreads the rooms
over N worker processes (``python -m clients.bots.cli --worker``, configured over stdin), and
the parent merges their figures. With ``--metrics-url`` the server's Prometheus metrics are
scraped as the window opens and closes.

The bots' behaviour must fit the game (see ``clients.bots.behaviours``); without
``--behaviour`` a bundled game gets its own (``roam`` for field, which walks across its cells)
or else the first of ``wander`` and ``paddle`` that fits it (``paddle`` for pong). In a view
game (JOINED flag VIEW: field) verifying bots check view checksums. For a bundled game a behaviour that doesn't fit, or ``--players`` above
its room size, is refused before any bot connects; bots of another game check at JOINED.

With ``--drop-every S`` each bot's connection is cut at random, S seconds apart on average
(exponential intervals, independent per bot; RST, no close frame, no LEAVE), and the bot
resumes its seat (gamesync.v2 RESUME with backoff, its unacknowledged inputs sent again); see
``clients.bots.drops``.

In a cluster (``gameserver serve --workers N``, or nodes sharing a ``--directory``) any node
accepts any join: a node that does not host the bot's room answers with REDIRECT, and the bot
connects to the URL it names (the node's ``--public-url``) and joins there, at most 3 times
per join (more fails as ``redirect_loop``); a resume goes to the bot's node first and back to
``--url`` if that node is gone. A join refused with 4016 (the node cannot reach the room
directory) is tried again with backoff within ``--connect-timeout``.

The JSON report (``--report``)::

    players                       {target, connected, failed}
    duration_s, ramp_s            the measured window; the time to start every bot
    tick_rate                     the rooms' tick rate (from JOINED)
    updates_per_player_per_s      mean over connected bots; also _p5 and _p50 (per-bot rates)
    latency_ms                    {p50, p95, p99, samples}: input sent -> first state acking it
    bytes_down_per_player_per_s   WebSocket payload bytes; also bytes_up_per_player_per_s
    snapshot_resyncs              snapshots received beyond each bot's first
    desyncs                       checksum or tick mismatches seen by verifying bots
    drops, resumes                connections cut by --drop-every; seats resumed (whole run)
    resume_failures, seats_lost   bots that could not resume; resumes refused 4013/4001 (or
                                  resumed as another player): the bot joined afresh
    resume_ms                     {p50, p99, max, samples}: from the cut to the first state
                                  applied after RESUMED
    redirects, redirected_bots    REDIRECTs followed (joins and resumes sent to the room's
                                  node by another node of a cluster); bots redirected at
                                  least once
    directory_retries             joins tried again after 4016 DIRECTORY_UNAVAILABLE
    errors                        failed bots by kind ({"refused": 2, "ServerError:4005": 1};
                                  labels in clients.bots.errors.KIND_LABELS)
    errors_first                  {kind: [detail, unix time]}: the first error of each kind
    early_stop                    why the run stopped early (none of the first 16 bots could
                                  connect), or null
    hints                         likely causes of the errors and their fixes
    timeline                      {step_s, rows}: a row about once a second (bounded: 1800
                                  rows, then every other one): t, phase, connected, target,
                                  updates_mean, updates_p5, latency_p50, latency_p99,
                                  down_pp, up_pp, errors, server_tick_p99, server_cpu
    disconnects                   sessions the server ended, by close code (1006: no close)
    behaviours, verifying         bots per behaviour; bots that keep a replica and verify
    inputs_sent, room_events      {sent, received}
    loadgen                       {procs, cpu_percent, cpu_ms_per_player_per_s,
                                   input_slots_late}: what the bots themselves cost
    server                        null without --metrics-url; else {window_s, rooms, players,
                                   tick_rate_config, tick_rate_measured (per room), tick_ms_p50,
                                   tick_ms_p99, ticks_late, ticks_skipped, cpu_percent, rss_mb,
                                   bytes_out_per_s, bytes_in_per_s, deltas_skipped,
                                   snapshot_resyncs, inputs_dropped, slow_disconnects,
                                   connections_refused} or {error}
    config                        the run's settings (seed included)
    result                        {ok, failures: [reasons]}

Exit status: 0 if every bot played, no bot saw a desync and the 5th-percentile update rate is
at least 95% of the tick rate (JSON baseline: of ``--input-hz``, else 20 Hz), and with
``--drop-every`` no resume failed and no seat was lost; 1 otherwise (the reasons are printed);
2 for bad arguments (including a missing CA file).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import attrs
import trio

from clients.bots.behaviours import check_mix, default_behaviour, parse_mix
from clients.bots.chart import ChartUnavailable, require_matplotlib
from clients.bots.errors import error_lines, hints
from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from clients.bots.progress import PLAIN_INTERVAL, Progress, Series, show_progress
from clients.bots.server_metrics import ScrapeError, metrics_url, scrape, server_section

if TYPE_CHECKING:
    from gameserver.game import Game

DEV_CA = "dev-ca.pem"
SECRET_FILE = "secret.key"
SECRET_ENV = "GAMESERVER_SECRET"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: the 5th-percentile update rate must reach this share of the tick rate
MIN_UPDATE_SHARE = 0.95
JSON_DEFAULT_HZ = 20.0

EPILOG = """\
progress (stderr; live on a terminal, else a plain line every 5 s), each second:
  phase             ramp (bots joining), settle, window (measured), or several (processes)
  bots              bots connected and joined / bots of the run
  updates/player/s  state updates (deltas, snapshots) each bot received in the last second:
                    mean over the bots, and p5 (the slowest 5% of bots got at most this)
  latency ms        input latency p50/p99 over the last second: from sending an input to
                    the first state update that acknowledges it (includes a tick's wait)
  bytes/player/s    WebSocket payload bytes per bot per second, down (server -> bot) and up
  errors            bots that failed so far (their kinds are in the table at the end)
  server tick/cpu   with --metrics-url: the server's tick duration p99 and process CPU (% of
                    one core) over the last second

the table at the end (over the measured window; the JSON report has the same figures):
  players           bots connected at the end / bots of the run, and how many failed
  window            the measured window's length, after the ramp that started every bot
  updates/player/s  each bot's update rate over the window: mean, p5 and p50 over the bots
                    (a healthy run gets the tick rate; the run fails if p5 < 95% of it)
  input latency ms  p50/p95/p99 over every input acknowledged in the window
  bytes/player/s    WebSocket payload bytes per connected bot per second, down and up
  verification      bots that keep a full replica and check the server's checksums;
                    desyncs (a mismatch: a server or protocol bug) and snapshot resyncs
                    (full snapshots beyond the first: the server skipped deltas to a bot)
  errors            failed bots by kind, with the first error of each kind and its time
  disconnects       sessions the server ended, by WebSocket close code (1006: no close)
  redirected        in a cluster: REDIRECTs the bots followed to the node hosting their
                    room (at most 3 per join), and joins retried after 4016
  server            with --metrics-url: measured tick rate per room (and the configured
                    one), tick duration p50/p99, late and skipped ticks, CPU, RSS
  load generator    the bots' own cost: CPU of the processes (% of one core, and ms per
                    player per second) and late input slots: times the bot engine sent a
                    slot of inputs more than a slot late, because the load generator itself
                    is short of CPU (then the figures measure the bots, not the server:
                    add --procs, or give the bots a core of their own)
  hints             likely causes of the errors and what to change

exit status: 0 pass, 1 fail (the reasons are printed), 2 bad arguments. When none of the
first 16 bots can connect, the run stops early and explains why.
"""


# ------------------------------------------------------------------ defaults
def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/gameserver``, else ``~/.local/state/gameserver``: the server's default
    state directory (mirrors ``gameserver.tls.default_state_dir``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "gameserver"


def _is_local(url: str) -> bool:
    return (urllib.parse.urlsplit(url).hostname or "").lower() in LOCAL_HOSTS


def default_ca_file(url: str, state_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The development CA a local server made, for ``wss://`` URLs on this machine; else None
    (verify against the system's CAs)."""
    if urllib.parse.urlsplit(url).scheme.lower() != "wss" or not _is_local(url):
        return None
    return Path(state_dir if state_dir is not None else default_state_dir()) / DEV_CA


def find_secret(
    url: str,
    secret_file: Path | None,
    state_dir: Path | None,
    env: dict[str, str] | None = None,
) -> bytes | None:
    """The token signing secret: ``--secret-file``, else ``$GAMESERVER_SECRET``, else the
    local server's ``<state-dir>/secret.key`` if it exists; None: send no tokens."""
    environ = os.environ if env is None else env
    if secret_file is not None:
        try:
            return secret_file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"cannot read --secret-file {secret_file}: {exc.strerror}") from None
    if environ.get(SECRET_ENV):
        return environ[SECRET_ENV].encode().strip()
    if _is_local(url):
        path = (state_dir if state_dir is not None else default_state_dir()) / SECRET_FILE
        if path.is_file():
            return path.read_bytes().strip()
    return None


# ------------------------------------------------------------------ arguments
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a non-negative number")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def version() -> str:
    """The installed version of the gameserver package (which ships gamebots)."""
    try:
        return importlib.metadata.version("gameserver")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        from gameserver import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gamebots",
        description="Load-test a gameserver: rooms x players bots, a measured window, a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"gamebots {version()}")
    p.add_argument(
        "--url",
        required=True,
        help="server URL, wss://host:port (ws:// allowed); in a cluster any node (the bots "
        "follow its redirects, at most 3 per join)",
    )
    p.add_argument(
        "--also-url",
        action="append",
        default=[],
        metavar="URL",
        help="another node of the same cluster (repeatable): the players of each room dial "
        "--url and these in turn (player p dials the (p mod n)-th), so a room's players arrive "
        "through different nodes",
    )
    p.add_argument("--rooms", type=_positive_int, default=1, help="rooms to fill (default 1)")
    p.add_argument("--players", type=_positive_int, default=1, help="bots per room (default 1)")
    p.add_argument("--duration", type=_positive, default=10.0, help="seconds measured (default 10)")
    p.add_argument("--report", type=Path, help="write the JSON report to this file")
    p.add_argument(
        "--chart",
        type=Path,
        metavar="FILE.png",
        help="draw the run over time to this PNG (needs matplotlib: pip install "
        "'gameserver[bench]'): bots, updates/player/s, latency, bytes/player/s and, with "
        "--metrics-url, the server's tick p99 and CPU",
    )
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
        help=f"the local server's state directory (default {default_state_dir()})",
    )
    p.add_argument(
        "--secret-file",
        type=Path,
        help="token signing secret, to give each bot a token; default: $GAMESERVER_SECRET, "
        "else <state-dir>/secret.key of a server on this machine, else no tokens",
    )
    p.add_argument("--room-prefix", default="bots", help="rooms are named PREFIX-0, PREFIX-1, ...")
    p.add_argument("--seed", type=int, help="random seed (default: random, shown in the report)")
    p.add_argument(
        "--ramp",
        type=_non_negative,
        default=200.0,
        metavar="PER_SECOND",
        help="bots started per second (default 200; 0 = as fast as possible)",
    )
    p.add_argument(
        "--input-hz", type=_positive, help="inputs per second per bot (default: the tick rate)"
    )
    p.add_argument(
        "--behaviour",
        help="wander, chase, idle, chatty (arena), paddle (pong) or roam (field), or a mix such "
        "as wander:0.6,chase:0.2,idle:0.1,chatty:0.1 (default: wander for arena, paddle for "
        "pong, roam for field)",
    )
    p.add_argument(
        "--verify-sample",
        type=int,
        default=-1,
        metavar="N",
        help="bots that keep a full replica and verify checksums (default: all)",
    )
    p.add_argument("--procs", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--metrics-url",
        help="the server's Prometheus endpoint (http://host:port[/metrics]), scraped as the "
        "window opens and closes (the report's server section) and once a second (progress, "
        "--chart)",
    )
    p.add_argument(
        "--protocol",
        choices=("gamesync", "json"),
        default="gamesync",
        help="gamesync (default) or json (tools/baseline_server.py)",
    )
    p.add_argument(
        "--settle",
        type=_non_negative,
        default=1.0,
        help="seconds between the last join and the window (default 1)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        default=30.0,
        help="seconds for a bot to connect and join, redirects and 4016 retries included "
        "(default 30)",
    )
    p.add_argument(
        "--drop-every",
        type=_positive,
        metavar="SECONDS",
        help="cut each bot's connection at random, this many seconds apart on average "
        "(RST, no close frame), and resume the seat (gamesync.v2); the run fails if a resume "
        "fails or a seat is lost",
    )
    return p


@attrs.frozen
class Options:
    config: LoadConfig
    procs: int
    metrics_url: str | None
    report: Path | None
    behaviour_spec: str
    chart: Path | None = None


def options_from_args(args: argparse.Namespace) -> Options:
    """The run's settings; raises ValueError with a message for the user."""
    parts = urllib.parse.urlsplit(args.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"--url must be wss://host:port or ws://host:port, not {args.url!r}")
    for other in args.also_url:
        more = urllib.parse.urlsplit(other)
        if more.scheme != parts.scheme or not more.hostname:
            raise ValueError(f"--also-url must be a {parts.scheme}://host:port URL, not {other!r}")
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
    if args.verify_sample < -1:
        raise ValueError("--verify-sample must be 0 or more")
    # the JSON baseline (tools/baseline_server.py) plays arena, whatever --game says
    game = bundled_game("arena" if args.protocol == "json" else args.game)
    spec = args.behaviour
    if spec is None:
        spec = (
            "wander"
            if game is None
            else default_behaviour(game.input_schema, game.schema, game.name)
        )
        if spec is None:
            raise ValueError(f"no behaviour fits game {args.game!r}; --behaviour idle only reads")
    mix = parse_mix(spec)
    if game is not None:
        why = check_mix(mix, game.input_schema, game.schema)
        if why is not None:
            raise ValueError(f"{why}: pick another --behaviour")
        if args.players > game.max_players:
            raise ValueError(
                f"--players {args.players} is more than a {game.name} room seats "
                f"({game.max_players}); add rooms with --rooms"
            )
    secret = None
    if args.protocol == "gamesync":
        secret = find_secret(args.url, args.secret_file, args.state_dir)
    murl = metrics_url(args.metrics_url) if args.metrics_url else None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.procs > args.rooms:
        raise ValueError(f"--procs {args.procs} is more than --rooms {args.rooms}")
    if args.drop_every is not None and args.protocol == "json":
        raise ValueError("--drop-every needs --protocol gamesync (the JSON baseline has no resume)")
    config = LoadConfig(
        url=args.url,
        also_urls=tuple(args.also_url),
        rooms=args.rooms,
        players=args.players,
        duration=args.duration,
        ramp=args.ramp,
        input_hz=args.input_hz,
        verify_sample=args.verify_sample,
        ca_file=None if ca_file is None or parts.scheme == "ws" else str(ca_file),
        game=args.game,
        room_prefix=args.room_prefix,
        rooms_total=args.rooms,
        seed=seed,
        protocol=args.protocol,
        behaviour=mix,
        secret_hex=secret.hex() if secret else None,
        connect_timeout=args.connect_timeout,
        settle=args.settle,
        drop_every=args.drop_every or 0.0,
    )
    if args.chart is not None:
        if args.chart.suffix.lower() != ".png":
            raise ValueError(f"--chart {args.chart}: the chart is a PNG file (FILE.png)")
        try:
            require_matplotlib()
        except ChartUnavailable as exc:
            raise ValueError(f"--chart: {exc}") from None
    return Options(config, args.procs, murl, args.report, spec, args.chart)


def bundled_game(name: str) -> type[Game] | None:
    """The bundled game of this name (arena, pong), to check the bots against before they
    connect; None for another game (the bots check it at JOINED)."""
    from gameserver.game import default_registry

    return default_registry().get(name) if name else None


# ------------------------------------------------------------------ one run
class Window:
    """When the measured window opens (wall clock), once the processes are ready."""

    def __init__(self) -> None:
        self.start_at = 0.0
        self.set_event = trio.Event()

    def set(self, start_at: float) -> None:
        self.start_at = start_at
        self.set_event.set()


def _trio_time(wall: float) -> float:
    return trio.current_time() + (wall - time.time())


async def _scrape_window(
    url: str, window: Window, duration: float, stop: trio.Event, out: dict[str, Any]
) -> None:
    await window.set_event.wait()
    await trio.sleep_until(_trio_time(window.start_at))
    try:
        before = await scrape(url)
        with trio.move_on_at(_trio_time(window.start_at + duration)):
            await stop.wait()
        after = await scrape(url)
    except ScrapeError as exc:
        out["error"] = str(exc)
        return
    out.update(server_section(before, after))


async def _sample_server(url: str, progress: Progress, interval: float = 1.0) -> None:
    """Scrape the server every ``interval`` s; keep the last interval's tick p99 and CPU."""
    before = None
    while True:
        try:
            after = await scrape(url, timeout=min(5.0, 2 * interval))
        except ScrapeError:
            progress.server = {}
            before = None
        else:
            if before is not None:
                sec = server_section(before, after)
                cpu = sec.get("cpu_percent")
                if cpu is None and sec.get("cpu_ratio") is not None:
                    cpu = sec["cpu_ratio"] * 100
                progress.server = {"tick_ms_p99": sec.get("tick_ms_p99"), "cpu_percent": cpu}
            before = after
        await trio.sleep(interval)


async def run(
    opts: Options,
    *,
    progress: bool = False,
    stop: trio.Event | None = None,
    stream: TextIO | None = None,
    plain_interval: float = PLAIN_INTERVAL,
) -> dict[str, Any]:
    """Run the load test of ``opts`` (in this process or its workers); returns the report.
    ``progress``: a live display on ``stream`` (default stderr), else a plain line every
    ``plain_interval`` seconds."""
    cfg = opts.config
    stop = stop if stop is not None else trio.Event()
    window = Window()
    server: dict[str, Any] = {}
    status = Progress(cfg.rooms * cfg.players)
    series = Series()

    def on_sample(row: dict[str, Any]) -> None:
        if status.early_stop is not None:
            stop.set()  # one process could not connect any bot: stop the others too

    async with trio.open_nursery() as nursery:
        scraper_done = trio.Event()

        async def scraper() -> None:
            try:
                assert opts.metrics_url is not None
                await _scrape_window(opts.metrics_url, window, cfg.duration, stop, server)
            finally:
                scraper_done.set()

        if opts.metrics_url:
            nursery.start_soon(scraper)
            nursery.start_soon(_sample_server, opts.metrics_url, status)
        else:
            scraper_done.set()
        nursery.start_soon(
            functools.partial(
                show_progress,
                status,
                series,
                tty=progress,
                stream=stream,
                interval=plain_interval,
                on_sample=on_sample,
            )
        )
        if opts.procs == 1:

            async def ready() -> float:
                start_at = time.time() + cfg.settle
                window.set(start_at)
                return start_at

            raws = [
                await run_load(cfg, ready=ready, on_status=lambda s: status.update(0, s), stop=stop)
            ]
        else:
            raws = await run_workers(cfg, opts.procs, window, status, stop)
        with trio.move_on_after(0 if raws and raws[0].get("early_stop") else 10):
            await scraper_done.wait()
        nursery.cancel_scope.cancel()
    report = merge_reports(raws)
    report["server"] = (server or {"error": "no scrape"}) if opts.metrics_url else None
    report["timeline"] = {"step_s": series.step, "rows": series.rows}
    report["config"] = {
        "url": cfg.url,
        "ca_file": cfg.ca_file,
        "game": cfg.game,
        "protocol": cfg.protocol,
        "rooms": cfg.rooms,
        "players": cfg.players,
        "duration": cfg.duration,
        "ramp": cfg.ramp,
        "settle": cfg.settle,
        "input_hz": cfg.input_hz,
        "behaviour": opts.behaviour_spec,
        "verify_sample": cfg.verify_sample,
        "procs": opts.procs,
        "room_prefix": cfg.room_prefix,
        "seed": cfg.seed,
        "tokens": cfg.secret_hex is not None,
        "drop_every": cfg.drop_every or None,
    }
    failures = verdict(
        report, protocol=cfg.protocol, input_hz=cfg.input_hz, drops=cfg.drop_every > 0
    )
    report["result"] = {"ok": not failures, "failures": failures}
    report["hints"] = hints(report)
    return report


# ------------------------------------------------------------------ worker processes
def split_rooms(rooms: int, procs: int) -> list[tuple[int, int]]:
    """(room offset, room count) for each process: as even as possible, none empty."""
    procs = max(1, min(procs, rooms))
    base, extra = divmod(rooms, procs)
    out = []
    offset = 0
    for k in range(procs):
        n = base + (1 if k < extra else 0)
        out.append((offset, n))
        offset += n
    return out


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at EOF."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buf += data


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the directory holding ``clients``
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _lost_worker(cfg: LoadConfig, why: str) -> dict[str, Any]:
    n = cfg.rooms * cfg.players
    return {"target": n, "connected": 0, "failed": n, "errors": {why: n}, "window_s": 0.0}


async def run_workers(
    cfg: LoadConfig,
    procs: int,
    window: Window,
    status: Progress | None,
    stop: trio.Event,
) -> list[dict[str, Any]]:
    """Run ``cfg`` over ``procs`` worker processes; their raw figures (one per process)."""
    shares = split_rooms(cfg.rooms, procs)
    configs = [
        attrs.evolve(
            cfg,
            rooms=n,
            room_offset=cfg.room_offset + offset,
            rooms_total=cfg.run_rooms,
            ramp=cfg.ramp / len(shares),
        )
        for offset, n in shares
    ]
    results: list[dict[str, Any] | None] = [None] * len(configs)
    ready = [False] * len(configs)
    all_ready = trio.Event()
    procs_: list[trio.Process] = []
    env = _worker_env()

    def check_ready() -> None:
        if all(ready) and not all_ready.is_set():
            all_ready.set()

    async def send(proc: trio.Process, msg: dict[str, Any]) -> None:
        assert proc.stdin is not None
        try:
            await proc.stdin.send_all(json.dumps(msg).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def worker(k: int, proc: trio.Process) -> None:
        assert proc.stdout is not None
        lines = LineReader(proc.stdout)
        try:
            while True:
                line = await lines.readline()
                if line is None:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    sys.stderr.write(f"gamebots: worker {k}: {line[:200]!r}\n")
                    continue
                if "ready" in msg:
                    ready[k] = True
                    check_ready()
                elif "status" in msg and status is not None:
                    status.update(k, msg["status"])
                elif "result" in msg:
                    results[k] = msg["result"]
        finally:
            code = await proc.wait()
            if results[k] is None:
                results[k] = _lost_worker(configs[k], f"worker_exit:{code}")
            ready[k] = True  # a dead worker must not hold the others back
            check_ready()

    async def stopper() -> None:
        await stop.wait()
        for proc in procs_:
            await send(proc, {"stop": True})

    try:
        async with trio.open_nursery() as outer:
            outer.start_soon(stopper)
            async with trio.open_nursery() as nursery:
                for k, wcfg in enumerate(configs):
                    proc = await trio.lowlevel.open_process(
                        [sys.executable, "-m", "clients.bots.cli", "--worker"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                    )
                    procs_.append(proc)
                    await send(proc, {"config": attrs.asdict(wcfg), "progress": True})
                    nursery.start_soon(worker, k, proc)
                await all_ready.wait()
                start_at = time.time() + (0.0 if stop.is_set() else cfg.settle)
                window.set(start_at)
                for proc in procs_:
                    await send(proc, {"start_at": start_at})
            outer.cancel_scope.cancel()  # every worker has finished
    finally:
        for proc in procs_:
            if proc.returncode is None:
                proc.kill()
    return [r for r in results if r is not None]


async def _worker(lines: LineReader, cfg: LoadConfig, progress: bool) -> None:
    start = trio.Event()
    stop = trio.Event()
    start_at = [0.0]

    def emit(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def ready() -> float:
        emit({"ready": True})
        await start.wait()
        return start_at[0]

    async with trio.open_nursery() as nursery:

        async def commands() -> None:
            while True:
                line = await lines.readline()
                if line is None:  # the parent is gone: give up
                    nursery.cancel_scope.cancel()
                    return
                msg = json.loads(line)
                if "start_at" in msg:
                    start_at[0] = float(msg["start_at"])
                    start.set()
                if msg.get("stop"):
                    stop.set()

        nursery.start_soon(commands)
        on_status = (lambda s: emit({"status": s})) if progress else None
        raw = await run_load(cfg, ready=ready, on_status=on_status, stop=stop)
        emit({"result": raw})
        nursery.cancel_scope.cancel()


def worker_main() -> int:
    """``python -m clients.bots.cli --worker``: one share of a run, driven over stdin/stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop

    async def main() -> None:
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        lines = LineReader(stdin)
        first = await lines.readline()
        if first is None:
            return
        msg = json.loads(first)
        cfg = LoadConfig(**msg["config"])
        await _worker(lines, cfg, bool(msg.get("progress")))

    trio.run(main)
    return 0


# ------------------------------------------------------------------ verdict and summary
def verdict(
    report: dict[str, Any], *, protocol: str, input_hz: float | None, drops: bool = False
) -> list[str]:
    """Why the run failed; empty if it passed. ``drops``: a ``--drop-every`` run, which
    also fails if a resume failed or a seat was lost (or no cut ever resumed)."""
    out = []
    players = report["players"]
    errors = ", ".join(f"{k} x{v}" for k, v in report.get("errors", {}).items())
    if report.get("early_stop"):
        out.append(f"stopped early: {report['early_stop']}")
    if not players["connected"]:
        out.append(f"no bot is connected at the end ({errors or 'no errors recorded'})")
    elif players["failed"]:
        out.append(f"{players['failed']} of {players['target']} bots failed ({errors})")
    misfits = sorted(k.partition(":")[2] for k in report.get("errors", {}) if k[:7] == "misfit:")
    if misfits:
        out.append(
            f"behaviour {', '.join(misfits)} does not fit the game's inputs or entities: "
            "pick another with --behaviour"
        )
    if report["desyncs"]:
        out.append(f"{report['desyncs']} desync(s)")
    if drops:
        if report.get("resume_failures"):
            out.append(f"{report['resume_failures']} resume(s) failed")
        if report.get("seats_lost"):
            out.append(f"{report['seats_lost']} seat(s) lost (refused 4013/4001 or renumbered)")
        if report.get("drops") and not report.get("resumes"):
            out.append(f"{report['drops']} connection(s) cut, none resumed")
    expected = report.get("tick_rate") if protocol == "gamesync" else input_hz or JSON_DEFAULT_HZ
    p5 = report.get("updates_per_player_per_s_p5")
    if expected and p5 is not None and p5 < MIN_UPDATE_SHARE * expected:
        out.append(
            f"5th-percentile update rate {p5:.2f}/s is below {MIN_UPDATE_SHARE:.0%} of "
            f"{expected:g} Hz"
        )
    return out


def _num(v: Any, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def format_table(report: dict[str, Any]) -> str:
    """The short human summary printed at the end."""
    players = report["players"]
    cfg = report.get("config", {})
    lat = report["latency_ms"]
    lg = report["loadgen"]
    rows = [
        (
            "players",
            f"{players['connected']}/{players['target']} connected, {players['failed']} failed"
            f"  ({cfg.get('rooms', '?')} rooms x {cfg.get('players', '?')})",
        ),
        ("window", f"{report['duration_s']:.1f} s after a {report['ramp_s']:.1f} s ramp"),
        (
            "updates/player/s",
            f"mean {_num(report['updates_per_player_per_s'], '.2f')}  "
            f"p5 {_num(report['updates_per_player_per_s_p5'], '.2f')}  "
            f"p50 {_num(report['updates_per_player_per_s_p50'], '.2f')}  "
            f"(tick rate {_num(report['tick_rate'], 'g')} Hz)",
        ),
        (
            "input latency ms",
            f"p50 {_num(lat['p50'])}  p95 {_num(lat['p95'])}  p99 {_num(lat['p99'])}"
            f"  ({lat['samples']} samples)",
        ),
        (
            "bytes/player/s",
            f"down {_num(report['bytes_down_per_player_per_s'])}  "
            f"up {_num(report['bytes_up_per_player_per_s'])}",
        ),
        ("behaviours", _counts(report.get("behaviours", {}))),
        (
            "verification",
            f"{report.get('verifying', 0)} verifying bots, {report['desyncs']} desyncs, "
            f"{report['snapshot_resyncs']} snapshot resyncs",
        ),
    ]
    lines_ = error_lines(report["errors"], report.get("errors_first"))
    rows += [("errors" if i == 0 else "", line) for i, line in enumerate(lines_ or ["none"])]
    rows.append(("disconnects", _counts(report["disconnects"])))
    if report.get("redirects") or report.get("directory_retries"):
        rows.append(
            (
                "redirected",
                f"{report.get('redirects', 0)} redirects followed by "
                f"{report.get('redirected_bots', 0)} bots, "
                f"{report.get('directory_retries', 0)} joins retried after 4016",
            )
        )
    if cfg.get("drop_every") or report.get("drops"):
        rms = report.get("resume_ms") or {}
        rows.append(
            (
                "drops",
                f"{report.get('drops', 0)} cut (every {_num(cfg.get('drop_every'), 'g')} s), "
                f"{report.get('resumes', 0)} resumed, "
                f"{report.get('resume_failures', 0)} resume failures, "
                f"{report.get('seats_lost', 0)} seats lost",
            )
        )
        rows.append(
            (
                "resume ms",
                f"p50 {_num(rms.get('p50'))}  p99 {_num(rms.get('p99'))}  "
                f"max {_num(rms.get('max'))}  ({rms.get('samples', 0)} resumes)",
            )
        )
    server = report.get("server")
    if server is not None:
        if "error" in server:
            rows.append(("server", f"scrape failed: {server['error']}"))
        else:
            rows.append(
                (
                    "server",
                    f"tick {_num(server['tick_rate_measured'], '.2f')} Hz/room "
                    f"(config {_num(server['tick_rate_config'], 'g')})  "
                    f"tick ms p50 {_num(server['tick_ms_p50'], '.2f')} "
                    f"p99 {_num(server['tick_ms_p99'], '.2f')}  "
                    f"late {_num(server['ticks_late'], 'd')} "
                    f"skipped {_num(server['ticks_skipped'], 'd')}  "
                    f"cpu {_num(server['cpu_percent'])}%  rss {_num(server['rss_mb'])} MB",
                )
            )
    rows.append(
        (
            "load generator",
            f"{lg['procs']} proc(s), cpu {_num(lg['cpu_percent'])}% "
            f"({_num(lg['cpu_ms_per_player_per_s'], '.3f')} ms per player per s), "
            f"late input slots {lg['input_slots_late']}",
        )
    )
    width = max(len(k) for k, _ in rows)
    lines = ["gamebots"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    result = report.get("result")
    if result is not None:
        lines.append("result: PASS" if result["ok"] else "result: FAIL")
        lines += [f"  - {why}" for why in result["failures"]]
    if report.get("hints"):
        lines.append("hints:")
        lines += [f"  - {hint}" for hint in report["hints"]]
    return "\n".join(lines)


# ------------------------------------------------------------------ main
async def _main_async(opts: Options, progress: bool) -> dict[str, Any]:
    """Run; the first SIGINT/SIGTERM closes the window early (the run is still reported)."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch_signals(
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    if stop.is_set():
                        raise KeyboardInterrupt
                    print("\ngamebots: stopping early (again to abort)", file=sys.stderr)
                    stop.set()

        await nursery.start(watch_signals)
        report = await run(opts, progress=progress, stop=stop)
        nursery.cancel_scope.cancel()
    return report


def main(argv: Sequence[str] | None = None, *, isatty: Callable[[], bool] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    progress = (isatty or sys.stderr.isatty)()
    report = trio.run(_main_async, opts, progress)
    if opts.report is not None:
        opts.report.parent.mkdir(parents=True, exist_ok=True)
        opts.report.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    if opts.chart is not None:
        from clients.bots.chart import draw_run

        cfg = opts.config
        draw_run(
            report["timeline"]["rows"],
            opts.chart,
            title=f"gamebots: {cfg.rooms} rooms x {cfg.players} players of {cfg.game or 'arena'}"
            f" at {cfg.url}, {cfg.duration:g} s window",
            tick_rate=report.get("tick_rate"),
        )
        print(f"chart: {opts.chart}")
    return 0 if report["result"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
