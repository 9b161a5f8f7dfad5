"""The ``gameserver`` command line: serve, token, games and config.

Every setting of ``serve`` comes from a flag, a ``GAMESERVER_<NAME>`` environment variable or a
TOML file (``--config``), in that order of precedence (see :mod:`gameserver.settings`). A wrong
value is refused before anything starts with one line and exit status 2; a server that cannot
start (address in use, certificate, state directory...) says why in one line and exits 1.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import importlib.metadata
import importlib.util
import logging
import os
import re
import signal
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from gameserver._tws_surface import TakeoverUnsupported
from gameserver.admin import AdminAPI, MetricsTLSError, metrics_endpoint_tls
from gameserver.auth import SecretError, TokenVerifier, load_secret, mint_token, read_secret_file
from gameserver.cluster import ClusterOptions
from gameserver.dashboard import Dashboard
from gameserver.directory.connect import (
    DirectoryURL,
    DirectoryURLError,
    open_directory_url,
    parse_directory_url,
)
from gameserver.directory.types import DirectoryLimits
from gameserver.game import GameRegistry
from gameserver.guest import GuestIssuer
from gameserver.http_static import WebRootError
from gameserver.loader import GameLoadError, GameSource, build_registry
from gameserver.logging_setup import LOG_FORMATS, configure_logging
from gameserver.metrics import make_registry, serve_metrics
from gameserver.resume import ResumeKey
from gameserver.server import ServerConfig, open_gameserver
from gameserver.settings import (
    GAMES_SETTINGS,
    LOG_LEVELS,
    SERVE_SETTINGS,
    TOKEN_SETTINGS,
    Kind,
    Setting,
    SettingError,
    Settings,
    config_path,
    describe,
    environ_snapshot,
    resolve,
    unknown_environment,
)
from gameserver.signals import run_until_stopped
from gameserver.supervisor import open_shared_listeners, watch_parent
from gameserver.tls import (
    CertificateError,
    default_state_dir,
    ensure_dev_certificate,
    server_ssl_context,
)
from gameserver.workers import PlanError, check_settings, parse_workers, user_args

log = logging.getLogger("gameserver")
_ALL_NAMES = [s.name for s in SERVE_SETTINGS]
_TOKEN_TTL_MAX = 10 * 365 * 86400.0


class StartupError(Exception):
    """The server cannot start (exit status 1). ``str()`` is the one line to print."""


def version() -> str:
    try:
        return importlib.metadata.version("gameserver")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


_DESCRIPTION = """\
Server-authoritative multiplayer game state sync over secure WebSockets.
`gameserver serve` runs it on wss://127.0.0.1:8443 with a development certificate.

Every serve setting is also a TOML key in --config FILE and an environment
variable GAMESERVER_<NAME> (for example GAMESERVER_MAX_ROOMS); a flag wins over
the environment, which wins over the file. `gameserver serve --help` lists them.
"""


def _add_setting(group: argparse._ArgumentGroup, s: Setting) -> None:
    dest = s.name.replace("-", "_")
    parts = []
    if s.lo is not None or s.hi is not None:
        parts.append(s.range_text())
    if s.note.startswith("default"):
        parts.append(s.note)
    elif s.default is not None and s.default != () and s.default is not False:
        parts.append(f"default {_default_text(s.default)}")
    text = f"{s.help} ({'; '.join(parts)})" if parts else s.help
    text = text.replace("%", "%%")
    if s.kind is Kind.BOOL:
        group.add_argument(
            s.flag,
            dest=dest,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=text,
        )
    elif s.repeatable:
        group.add_argument(
            s.flag,
            dest=dest,
            action="append",
            default=argparse.SUPPRESS,
            metavar=_metavar(s),
            help=text + " (repeatable)",
        )
    else:
        group.add_argument(
            s.flag, dest=dest, default=argparse.SUPPRESS, metavar=_metavar(s), help=text
        )


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _metavar(s: Setting) -> str:
    return {
        Kind.INT: "N",
        Kind.FLOAT: "X",
        Kind.PATH: "PATH",
        Kind.PATH_LIST: "PATH",
        Kind.LIST: "MODULE:ATTR" if s.name == "game" else "VALUE",
    }.get(s.kind, "VALUE")


_SECTIONS = {
    "network": "network and TLS",
    "auth": "authentication",
    "game": "games",
    "limits": "limits",
    "cluster": "cluster (workers and the room directory)",
    "metrics": "metrics and logging",
}


def _add_settings(p: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="read settings from this TOML file (same names as the flags; default "
        "$GAMESERVER_CONFIG)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in settings:
        group = groups.get(s.section)
        if group is None:
            group = groups[s.section] = p.add_argument_group(_SECTIONS[s.section])
        _add_setting(group, s)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gameserver",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gameserver {version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    serve_p = sub.add_parser(
        "serve",
        help="run the game server",
        description="Run the game server. Every flag is also a TOML key in --config and an "
        "environment variable GAMESERVER_<NAME>.",
    )
    _add_settings(serve_p, SERVE_SETTINGS)
    # hidden: how the supervisor of --workers N starts each worker (gameserver.supervisor)
    serve_p.add_argument("--worker-index", type=_count, help=argparse.SUPPRESS)
    serve_p.add_argument("--shared-port", type=_port, help=argparse.SUPPRESS)
    config_p = sub.add_parser(
        "config",
        help="print the effective settings and where each came from",
        description="Print the settings `serve` would run with, as TOML, each with where it "
        "came from (flag, environment, file or default). Takes the same flags as serve. "
        "Secrets are never printed.",
    )
    _add_settings(config_p, SERVE_SETTINGS)
    games_p = sub.add_parser(
        "games",
        help="list the games the server would offer",
        description="List the games `serve` would offer with the same --game and --config: "
        "name, tick rate, room size, entity types and input fields. The first is the default.",
    )
    _add_settings(games_p, GAMES_SETTINGS)

    token_p = sub.add_parser(
        "token",
        help="print a signed player token",
        description="Print a signed player token (a JWT) for the server's signing secret.",
    )
    token_p.add_argument("--player", required=True, help="player id (one seat per id)")
    token_p.add_argument("--name", default="", help="display name (default: the player id)")
    token_p.add_argument(
        "--room", action="append", default=[], help="a room it may join (repeatable; default any)"
    )
    token_p.add_argument(
        "--game", action="append", default=[], help="a game it may play (repeatable; default any)"
    )
    token_p.add_argument(
        "--ttl",
        default="3600",
        metavar="SECONDS",
        help="seconds valid, greater than 0 (default 3600)",
    )
    token_p.add_argument("--admin", action="store_true", help="allow the admin API")
    _add_settings(token_p, TOKEN_SETTINGS)
    return parser


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 0")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port from 1 to 65535")
    return int(text)


def _given(args: argparse.Namespace, settings: Sequence[Setting]) -> dict[str, Any]:
    given = vars(args)
    return {s.name: given[d] for s in settings if (d := s.name.replace("-", "_")) in given}


def _resolve(
    args: argparse.Namespace, settings: Sequence[Setting], environ: Mapping[str, str]
) -> Settings:
    path, _ = config_path(args.config, environ)
    return resolve(settings, _given(args, settings), environ, path, all_names=_ALL_NAMES)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = environ_snapshot()
    try:
        if args.command == "token":
            return token(args, environ)
        if args.command == "games":
            return games(args, environ)
        if args.command == "config":
            print(describe(_resolve(args, SERVE_SETTINGS, environ), SERVE_SETTINGS, environ))
            return 0
        return serve(args, environ)
    except (SettingError, GameLoadError) as exc:
        print(f"gameserver: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"gameserver: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------- token


def token(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        ttl = float(args.ttl)
    except ValueError:
        raise SettingError(f"--ttl {args.ttl}: not a number") from None
    if not 0 < ttl <= _TOKEN_TTL_MAX:
        raise SettingError(
            f"--ttl {args.ttl}: must be greater than 0, at most {_TOKEN_TTL_MAX:.0f}"
        )
    if not args.player.strip():
        raise SettingError("--player: must not be empty")
    s = _resolve(args, TOKEN_SETTINGS, environ)
    try:
        secret = load_secret(s["secret-file"], s["state-dir"] or default_state_dir(), create=False)
    except SecretError as exc:
        raise StartupError(str(exc)) from None
    try:
        signed = mint_token(
            secret,
            args.player,
            name=args.name,
            rooms=args.room or ["*"],
            games=args.game or ["*"],
            ttl=ttl,
            admin=args.admin,
        )
    except ValueError as exc:  # e.g. a player id with a control character
        raise SettingError(f"--player: {exc}") from None
    print(signed)
    return 0


# ---------------------------------------------------------------- games


def games(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    s = _resolve(args, GAMES_SETTINGS, environ)
    warnings: list[str] = []
    _, sources = build_registry(s["game"], warn=warnings)
    for line in warnings:
        print(f"gameserver: warning: {line}", file=sys.stderr)
    print(format_games(sources))
    return 0


def format_games(sources: Sequence[GameSource]) -> str:
    """``gameserver games``: each game with its rates, size, entity types and input fields."""
    out = []
    for i, source in enumerate(sources):
        g = source.game
        default = "  (default)" if i == 0 else ""
        out.append(f"{g.name}{default}")
        out.append(f"  from:      {source.origin} ({g.__module__}:{g.__qualname__})")
        out.append(f"  tick rate: {g.tick_rate} Hz")
        out.append(f"  room size: {g.max_players} players")
        for etype in g.schema:
            out.append(f"  entity:    {etype.name}({', '.join(etype.names)})")
        out.append(f"  input:     {', '.join(g.input_schema.names) or '(none)'}")
    return "\n".join(out)


# ---------------------------------------------------------------- serve


def _log_level(s: Settings) -> int:
    name = str(s["log-level"]).upper()
    if name not in LOG_LEVELS:
        raise StartupError(
            f"--log-level {s['log-level']}: not a log level; use one of {', '.join(LOG_LEVELS)}"
        )
    return int(getattr(logging, name))


def _log_format(s: Settings) -> str:
    fmt = str(s["log-format"]).lower()
    if fmt not in LOG_FORMATS:
        raise StartupError(
            f"--log-format {s['log-format']}: not a log format; use one of {', '.join(LOG_FORMATS)}"
        )
    return fmt


@attrs.define
class _Phase:
    """What the server was doing, to name the flag a start-up error belongs to."""

    flag: str = "--port"
    host: str = ""
    port: int = 0


def serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    s = _resolve(args, SERVE_SETTINGS, environ)
    worker: int | None = getattr(args, "worker_index", None)  # a worker of --workers N
    try:
        workers = 1 if worker is not None else parse_workers(s["workers"], os.cpu_count())
        if workers > 1:
            check_settings(workers, s["port"], s["metrics-port"], s["public-url"])
            if s["host"] in ("0.0.0.0", "::", "") and s["public-url"] is None:
                raise PlanError(
                    f"--public-url: needed with --workers when --host is {s['host'] or 'empty'} "
                    "(players are redirected to each worker by its URL)"
                )
    except PlanError as exc:
        raise SettingError(str(exc)) from None
    configure_logging(_log_level(s), _log_format(s))
    warnings: list[str] = []
    registry, _ = build_registry(s["game"], warn=warnings)
    if worker is None:  # the supervisor said it already
        for name in unknown_environment(environ):
            print(f"gameserver: warning: {name} names no setting; ignored", file=sys.stderr)
        for line in warnings:
            print(f"gameserver: warning: {line}", file=sys.stderr)
    config = s.server_config()
    node = _node_setup(s, config, supervisor=workers > 1)  # refused before anything starts
    state_dir: Path = s["state-dir"] or default_state_dir()
    ssl_context = _ssl_context(s, state_dir)
    if s["metrics-port"] is not None:
        try:  # --metrics-tls needs a certificate; plain HTTP off loopback is warned about
            metrics_endpoint_tls(s["metrics-tls"], s["metrics-host"], ssl_context)
        except MetricsTLSError as exc:
            raise StartupError(str(exc)) from None
    keys = _secrets(s, state_dir)
    if workers > 1:  # the state dir, certificate and secret are made: the workers read them
        return _supervise(args, s, workers, config, ssl_context)
    verifier = TokenVerifier(keys)
    guest = GuestIssuer(keys[0]) if s["guest-tokens"] else None
    phase = _Phase("--port", config.host, config.port)
    shared: int | None = getattr(args, "shared_port", None)
    node = attrs.evolve(node, resume_key=_resume_key(keys[0]))
    try:
        trio.run(_serve, config, registry, ssl_context, verifier, guest, s, phase, node, shared)
    except (TakeoverUnsupported, WebRootError) as exc:  # trio(-websocket) do not fit; --web-root
        raise StartupError(str(exc)) from None
    except BaseExceptionGroup as group:
        startup, _ = group.split((TakeoverUnsupported, WebRootError))
        if startup is not None:
            raise StartupError(str(_first_leaf(startup))) from None
        match, _ = group.split(OSError)
        if match is None or not phase.flag:
            raise
        leaf = _first_leaf(match)
        assert isinstance(leaf, OSError)
        raise StartupError(_listen_error(leaf, phase)) from None
    except OSError as exc:
        if not phase.flag:
            raise
        raise StartupError(_listen_error(exc, phase)) from None
    return 0


def _supervise(
    args: argparse.Namespace,
    s: Settings,
    count: int,
    config: ServerConfig,
    ssl_context: ssl.SSLContext | None,
) -> int:
    """``--workers N`` (N > 1): this process supervises N workers (gameserver.supervisor)."""
    from gameserver.supervisor import PortError, SupervisorOptions, WorkerStartupError, supervise

    try:
        opts = SupervisorOptions(
            count=count,
            args=tuple(user_args(_given(args, SERVE_SETTINGS), SERVE_SETTINGS, s.config_file)),
            host=config.host,
            port=config.port,
            secure=ssl_context is not None,
            metrics_port=s["metrics-port"],
            metrics_host=s["metrics-host"],
            metrics_tls=s["metrics-tls"],
            public_url=s["public-url"],
            node_id=s["node-id"],
            directory=s["directory"],
            drain_timeout=config.drain_timeout,
            close_timeout=config.close_timeout,
            limits=_directory_limits(s, config),
            web=config.web,
            ssl_context=ssl_context,
        )
        return supervise(opts)
    except PlanError as exc:
        raise SettingError(str(exc)) from None
    except PortError as exc:
        raise StartupError(_listen_error(exc.error, _Phase(exc.flag, exc.host, exc.port))) from None
    except WorkerStartupError as exc:
        raise StartupError(str(exc)) from None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _listen_error(exc: OSError, phase: _Phase) -> str:
    where = f"{phase.host}:{phase.port}"
    host_flag = "--metrics-host" if phase.flag == "--metrics-port" else "--host"
    if isinstance(exc, socket.gaierror):
        return (
            f"{host_flag} {phase.host}: cannot resolve this host name ({exc.strerror}); "
            "give an IP address or a name this machine can resolve"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the address is already in use; stop what uses it or "
            f"pick another {phase.flag} (0 picks a free one)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{host_flag} {phase.host}: cannot listen on {where}: no interface of this machine "
            "has that address; use 127.0.0.1, 0.0.0.0 (every interface) or one of its addresses"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
            f"pick another {phase.flag}"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _state_dir_error(state_dir: Path, exc: OSError) -> StartupError:
    return StartupError(
        f"--state-dir {state_dir}: cannot write the state directory ({exc.strerror}); "
        "choose a writable --state-dir, or give --cert/--key and --secret-file"
    )


def _ssl_context(s: Settings, state_dir: Path) -> ssl.SSLContext | None:
    if s["insecure"]:
        print(
            "WARNING: --insecure: serving plain ws:// without TLS. Use this only behind a "
            "TLS-terminating proxy.",
            file=sys.stderr,
            flush=True,
        )
        return None
    if s["cert"] is not None:
        try:
            return server_ssl_context(s["cert"], s["key"])
        except CertificateError as exc:
            raise StartupError(
                f"{exc}; give a PEM certificate chain as --cert and its private key as --key"
            ) from None
    try:
        dev = ensure_dev_certificate(state_dir)
        context = server_ssl_context(dev.cert_file, dev.key_file)
    except OSError as exc:
        raise _state_dir_error(state_dir, exc) from None
    except CertificateError as exc:
        raise StartupError(
            f"{exc}; delete the dev-*.pem files in {state_dir} to make new ones"
        ) from None
    log.info("using the development certificate; clients trust %s", dev.ca_file)
    return context


def _secrets(s: Settings, state_dir: Path) -> list[bytes]:
    try:
        found = [load_secret(s["secret-file"], state_dir, create=True)]
        found += [read_secret_file(p) for p in s["previous-secret-file"]]
    except SecretError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise _state_dir_error(state_dir, exc) from None
    return found


@attrs.frozen
class _NodeSetup:
    """How this process takes part in a cluster (``--directory``, ``--node-id``,
    ``--public-url``), and the resume key every node derives from the token secret."""

    directory: DirectoryURL | None = None
    node_id: str | None = None
    public_url: str | None = None
    resume_key: ResumeKey | None = None


def _resume_key(secret: bytes) -> ResumeKey:
    """Derived from the token secret, so a resume token minted by one node of a cluster
    verifies on every node (and across restarts)."""
    return ResumeKey(hmac.new(secret, b"gameserver resume key", hashlib.sha256).digest())


def _directory_limits(s: Settings, config: ServerConfig) -> DirectoryLimits:
    """The directory's limits: the same in every node, worker and supervisor."""
    ttl: float = s["lease-ttl"]
    return DirectoryLimits(
        lease_ttl=ttl,
        node_ttl=ttl,
        create_rate=config.room_create_rate,
        create_burst=config.room_create_burst,
    )


def _node_setup(s: Settings, config: ServerConfig, *, supervisor: bool = False) -> _NodeSetup:
    """Check the cluster settings (one line each if wrong). ``supervisor``: this process runs
    --workers (they are its workers' settings: no warnings here)."""
    url, node_id, public = s["directory"], s["node-id"], s["public-url"]
    if url is None and supervisor:
        return _NodeSetup()
    if url is None:
        for name, value in (("--node-id", node_id), ("--public-url", public)):
            if value is not None:
                print(
                    f"gameserver: warning: {name} has no effect without --directory",
                    file=sys.stderr,
                )
        return _NodeSetup()
    try:
        directory = parse_directory_url(url)
    except DirectoryURLError as exc:
        raise SettingError(f"--directory {exc}") from None
    if (
        directory.scheme == "unix"
        and importlib.util.find_spec("gameserver.directory.remote") is None
    ):
        raise StartupError(
            f"--directory {directory}: this installation has no Unix-socket directory client; "
            "use redis://HOST:PORT/DB"
        )
    if node_id is not None and not _NODE_ID.fullmatch(node_id):
        raise SettingError(f"--node-id {node_id!r}: 1-128 printable characters without spaces")
    if public is not None:
        try:
            parts = urllib.parse.urlsplit(public)
            good = parts.scheme in ("ws", "wss") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            good = False
        if not good or len(public.encode()) > 256:
            raise SettingError(
                f"--public-url {public!r}: give the ws:// or wss:// URL clients dial to reach "
                "this node (at most 256 bytes), e.g. wss://node-b.example:8443/"
            )
    elif config.host in ("0.0.0.0", "::", ""):
        raise SettingError(
            f"--public-url: needed with --directory when --host is {config.host or 'empty'} "
            "(clients are redirected to this node by its URL)"
        )
    return _NodeSetup(directory, node_id, public)


_NODE_ID = re.compile(r"[!-~]{1,128}")


async def _serve(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    verifier: TokenVerifier,
    guest: GuestIssuer | None,
    s: Settings,
    phase: _Phase,
    node: _NodeSetup,
    shared_port: int | None = None,
) -> None:
    metrics_port: int | None = s["metrics-port"]
    metrics_host: str = s["metrics-host"]
    metrics_tls: bool = s["metrics-tls"]  # checked in serve()
    limits = _directory_limits(s, config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with AsyncExitStack() as stack:
            cluster = None
            if node.directory is not None:
                directory = await stack.enter_async_context(
                    open_directory_url(node.directory, limits)
                )
                cluster = ClusterOptions(directory, node.node_id, node.public_url)
            # a worker of --workers N also listens on the shared port (SO_REUSEPORT)
            extra = (
                [] if shared_port is None else await open_shared_listeners(config.host, shared_port)
            )
            start_server = open_gameserver(
                config,
                registry,
                ssl_context,
                auth=verifier,
                guest=guest,
                resume_key=node.resume_key,
                cluster=cluster,
                extra_listeners=extra,
            )
            server = await stack.enter_async_context(start_server)
            nursery = await stack.enter_async_context(trio.open_nursery())
            if shared_port is not None:
                nursery.start_soon(watch_parent, os.getppid())  # drain if the supervisor dies
            if metrics_port is not None:
                phase.flag, phase.host, phase.port = "--metrics-port", metrics_host, metrics_port
                start = partial(
                    serve_metrics,
                    metrics_host,
                    metrics_port,
                    make_registry(server.stats, server.rooms, server.load),
                    healthy=server.healthy,
                    ready=server.ready,
                    admin=(admin := AdminAPI(server, verifier)),
                    dashboard=Dashboard(server, verifier, admin, secure=metrics_tls),
                    ssl_context=ssl_context if metrics_tls else None,
                )
                port = await nursery.start(start)
                scheme = "https" if metrics_tls else "http"
                print(f"metrics on {scheme}://{metrics_host}:{port}/metrics", flush=True)
                print(f"dashboard on {scheme}://{metrics_host}:{port}/dashboard", flush=True)
            phase.flag = ""
            if server.web.site is not None:
                page = server.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
                print(f"web demo on {page}/", flush=True)
            if server.cluster is not None:
                c = server.cluster
                print(
                    f"cluster node {c.node_id} at {c.url}, directory {node.directory}", flush=True
                )
            print(f"listening on {server.url}", flush=True)  # the last line: ready
            if guest is not None:
                print(
                    "WARNING: --guest-tokens: this server's own pages get guest tokens from "
                    "POST /guest; for development only",
                    file=sys.stderr,
                    flush=True,
                )
            await run_until_stopped(server, signals, config.drain_timeout)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
