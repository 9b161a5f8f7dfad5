"""``gameserver`` command line: ``gameserver serve [options]``."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from gameserver.game import MAX_TICK_RATE, default_registry
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import ServerConfig, open_gameserver
from gameserver.tls import (
    CertificateError,
    default_state_dir,
    ensure_dev_certificate,
    server_ssl_context,
)

log = logging.getLogger("gameserver")


def _tick_rate(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_TICK_RATE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_TICK_RATE}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gameserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the game server (WSS by default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8443, help="port (0 picks a free one; default 8443)"
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the dev certificate lives (default {default_state_dir()})",
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
    serve.add_argument("--max-rooms", type=int, default=1000)
    serve.add_argument("--max-message-size", type=int, default=4096, help="bytes (default 4096)")
    serve.add_argument("--join-timeout", type=float, default=10.0, help="seconds (default 10)")
    serve.add_argument("--room-grace", type=float, default=10.0, help="seconds an empty room lives")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics and /healthz on this port (default: off)",
    )
    serve.add_argument(
        "--metrics-host", default="127.0.0.1", help="metrics address (default 127.0.0.1)"
    )
    serve.add_argument(
        "--cpu-budget",
        type=float,
        default=0.85,
        help="refuse new joins while the server uses more than this share of a core (0 = off)",
    )
    serve.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover


def serve(args: argparse.Namespace) -> int:
    if (args.cert is None) != (args.key is None):
        print("gameserver: --cert and --key go together", file=sys.stderr)
        return 2
    ssl_context = None
    if args.insecure:
        if args.cert:
            print("gameserver: --insecure does not take --cert/--key", file=sys.stderr)
            return 2
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
                dev = ensure_dev_certificate(args.state_dir or default_state_dir())
                ssl_context = server_ssl_context(dev.cert_file, dev.key_file)
                log.info("using the development certificate; clients trust %s", dev.ca_file)
        except (CertificateError, OSError) as exc:
            print(f"gameserver: {exc}", file=sys.stderr)
            return 2
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            tick_rate=args.tick_rate,
            max_players=args.max_players,
            max_rooms=args.max_rooms,
            max_message_size=args.max_message_size,
            join_timeout=args.join_timeout,
            room_grace=args.room_grace,
            cpu_budget=args.cpu_budget,
        )
    except ValueError as exc:
        print(f"gameserver: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_serve, config, ssl_context, args.metrics_host, args.metrics_port)
    except OSError as exc:
        print(f"gameserver: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    config: ServerConfig,
    ssl_context: ssl.SSLContext | None,
    metrics_host: str,
    metrics_port: int | None,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_gameserver(config, default_registry(), ssl_context) as server,
            trio.open_nursery() as nursery,
        ):
            if metrics_port is not None:
                registry = make_registry(server.stats, server.rooms)
                port = await nursery.start(serve_metrics, metrics_host, metrics_port, registry)
                print(f"metrics on http://{metrics_host}:{port}/metrics", flush=True)
            print(f"listening on {server.url}", flush=True)
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                await server.shutdown()
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
