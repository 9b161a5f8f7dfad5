"""``gameserver`` command line.

``gameserver serve [options]`` runs the server; ``gameserver token --player ID ...`` prints a
signed player token. Both find the signing secret the same way: ``--secret-file``, else
``$GAMESERVER_SECRET``, else ``<state dir>/secret.key`` (created by the first ``serve``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from gameserver._tws_surface import TakeoverUnsupported
from gameserver.admin import AdminAPI
from gameserver.auth import SecretError, TokenVerifier, load_secret, mint_token, read_secret_file
from gameserver.game import MAX_TICK_RATE, default_registry
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import ServerConfig, open_gameserver
from gameserver.signals import run_until_stopped
from gameserver.tls import (
    CertificateError,
    default_state_dir,
    ensure_dev_certificate,
    server_ssl_context,
)

log = logging.getLogger("gameserver")
_DEFAULTS = ServerConfig()


def _tick_rate(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_TICK_RATE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_TICK_RATE}")
    return value


def _add_secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"dev certificate and signing secret (default {default_state_dir()})",
    )
    p.add_argument(
        "--secret-file",
        type=Path,
        help="token signing secret (default: $GAMESERVER_SECRET, else <state-dir>/secret.key)",
    )


# (flag, ServerConfig field, type, help) for the numeric limits; defaults come from ServerConfig
_LIMITS: list[tuple[str, str, type, str]] = [
    ("--max-rooms", "max_rooms", int, "rooms at once; more joins get 4006"),
    ("--max-message-size", "max_message_size", int, "bytes; a bigger message closes with 1009"),
    ("--max-connections", "max_connections", int, "open connections in total (0 = no limit)"),
    ("--max-connections-per-ip", "max_connections_per_ip", int, "from one IP (0 = no limit)"),
    ("--connect-timeout", "connect_timeout", float, "seconds for the TLS + WebSocket handshake"),
    ("--join-timeout", "join_timeout", float, "seconds from the handshake to a valid JOIN"),
    ("--input-rate", "input_rate", float, "inputs/s per player, at least 3 per tick"),
    ("--input-burst", "input_burst", float, "input burst per player"),
    ("--event-rate", "event_rate", float, "room events per second per player"),
    ("--event-burst", "event_burst", float, "room event burst per player"),
    ("--abuse-allowance", "abuse_allowance", float, "seconds of excess before a 1008 close"),
    ("--ping-interval", "ping_interval", float, "seconds of silence before a ping"),
    ("--idle-timeout", "idle_timeout", float, "seconds of silence before a close"),
    ("--outbound-limit", "outbound_limit", int, "bytes of queued reliable messages per player"),
    ("--room-grace", "room_grace", float, "seconds an empty room lives"),
    ("--room-create-rate", "room_create_rate", float, "rooms per second one player may create"),
    ("--room-create-burst", "room_create_burst", float, "room creation burst per player"),
    ("--cpu-budget", "cpu_budget", float, "refuse joins above this share of a core (0 = off)"),
    ("--drain-timeout", "drain_timeout", float, "seconds SIGTERM lets players stay before 1001"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gameserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the game server (WSS by default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8443, help="port (0 picks a free one; default 8443)"
    )
    _add_secret_args(serve)
    serve.add_argument(
        "--previous-secret-file",
        type=Path,
        action="append",
        default=[],
        help="also accept tokens signed with this old secret (key rotation; repeatable)",
    )
    serve.add_argument("--cert", type=Path, help="TLS certificate chain (PEM); with --key")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM); with --cert")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve plain ws:// (only behind a TLS-terminating proxy)",
    )
    serve.add_argument("--tick-rate", type=_tick_rate, help="override every game's tick rate (Hz)")
    serve.add_argument("--max-players", type=int, help="override every game's room size")
    for flag, field, kind, text in _LIMITS:
        default = getattr(_DEFAULTS, field)
        serve.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="a browser Origin allowed to connect (repeatable; '*' = any; default: none)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz and the admin API on this port (default: off)",
    )
    serve.add_argument(
        "--metrics-host", default="127.0.0.1", help="metrics address (default 127.0.0.1)"
    )
    serve.add_argument("--log-level", default="INFO")

    token = sub.add_parser("token", help="print a signed player token")
    token.add_argument("--player", required=True, help="player id (one seat per id)")
    token.add_argument("--name", default="", help="display name (default: the player id)")
    token.add_argument(
        "--room", action="append", default=[], help="a room it may join (repeatable; default any)"
    )
    token.add_argument(
        "--game", action="append", default=[], help="a game it may play (repeatable; default any)"
    )
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds valid (default 3600)")
    token.add_argument("--admin", action="store_true", help="allow the admin API")
    _add_secret_args(token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return token(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    return serve(args)


def token(args: argparse.Namespace) -> int:
    try:
        secret = load_secret(args.secret_file, args.state_dir or default_state_dir(), create=False)
    except SecretError as exc:
        print(f"gameserver: {exc}", file=sys.stderr)
        return 2
    try:
        token = mint_token(
            secret,
            args.player,
            name=args.name,
            rooms=args.room or ["*"],
            games=args.game or ["*"],
            ttl=args.ttl,
            admin=args.admin,
        )
    except ValueError as exc:  # e.g. a player id with a control character
        print(f"gameserver: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def serve(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"gameserver: {message}", file=sys.stderr)
        return 2

    if (args.cert is None) != (args.key is None):
        return fail("--cert and --key go together")
    state_dir = args.state_dir or default_state_dir()
    ssl_context = None
    if args.insecure:
        if args.cert:
            return fail("--insecure does not take --cert/--key")
        print(
            "WARNING: --insecure: serving plain ws:// without TLS. Use this only behind a "
            "TLS-terminating proxy.",
            file=sys.stderr,
            flush=True,
        )
    else:
        try:
            if args.cert:
                ssl_context = server_ssl_context(args.cert, args.key)
            else:
                dev = ensure_dev_certificate(state_dir)
                ssl_context = server_ssl_context(dev.cert_file, dev.key_file)
                log.info("using the development certificate; clients trust %s", dev.ca_file)
        except (CertificateError, OSError) as exc:
            return fail(str(exc))
    try:
        secrets = [load_secret(args.secret_file, state_dir, create=True)]
        secrets += [read_secret_file(p) for p in args.previous_secret_file]
    except (SecretError, OSError) as exc:
        return fail(str(exc))
    try:
        limits = {field: getattr(args, field) for _, field, _, _ in _LIMITS}
        config = attrs.evolve(
            _DEFAULTS,
            host=args.host,
            port=args.port,
            tick_rate=args.tick_rate,
            max_players=args.max_players,
            allowed_origins=tuple(args.allow_origin),
            **limits,
        )
    except (ValueError, TypeError) as exc:
        return fail(str(exc))
    try:
        trio.run(
            _serve,
            config,
            ssl_context,
            TokenVerifier(secrets),
            args.metrics_host,
            args.metrics_port,
        )
    except OSError as exc:
        print(f"gameserver: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except TakeoverUnsupported as exc:  # the installed trio / trio-websocket do not fit
        return fail(str(exc))
    return 0


async def _serve(
    config: ServerConfig,
    ssl_context: ssl.SSLContext | None,
    verifier: TokenVerifier,
    metrics_host: str,
    metrics_port: int | None,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_gameserver(config, default_registry(), ssl_context, auth=verifier) as server,
            trio.open_nursery() as nursery,
        ):
            if metrics_port is not None:
                registry = make_registry(server.stats, server.rooms)
                start = partial(
                    serve_metrics,
                    metrics_host,
                    metrics_port,
                    registry,
                    healthy=server.healthy,
                    ready=server.ready,
                    admin=AdminAPI(server, verifier),
                )
                port = await nursery.start(start)
                print(f"metrics on http://{metrics_host}:{port}/metrics", flush=True)
            print(f"listening on {server.url}", flush=True)
            await run_until_stopped(server, signals, config.drain_timeout)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
