"""Real WSS on 127.0.0.1, port 0, with trustme certificates."""

from __future__ import annotations

import functools
import secrets
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trustme

from gameserver.auth import TokenVerifier, mint_token
from gameserver.game import GameRegistry, default_registry
from gameserver.server import GameServer, ServerConfig, serve_gameserver


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def server_config() -> ServerConfig:
    # cpu_budget=0: the test process runs clients and server, so its CPU share says nothing
    return ServerConfig(port=0, room_grace=1.0, join_timeout=5.0, cpu_budget=0)


@pytest.fixture
def registry() -> GameRegistry:
    return default_registry()


@pytest.fixture
async def server(
    nursery: trio.Nursery,
    server_config: ServerConfig,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
) -> AsyncIterator[GameServer]:
    srv: GameServer = await nursery.start(serve_gameserver, server_config, registry, server_ssl)
    yield srv


# ---------------------------------------------------------------- an authenticating server


@pytest.fixture(scope="session")
def secret() -> bytes:
    """The token signing secret of `auth_server` (64 hex characters, as the CLI makes)."""
    return secrets.token_hex(32).encode()


@pytest.fixture
def verifier(secret: bytes) -> TokenVerifier:
    return TokenVerifier([secret])


@pytest.fixture
def mint(secret: bytes) -> Callable[..., str]:
    """``mint("player-id", name=..., rooms=[...], games=[...], ttl=..., admin=...)``: a token
    that `auth_server` accepts."""
    return functools.partial(mint_token, secret)


@pytest.fixture
async def auth_server(
    nursery: trio.Nursery,
    server_config: ServerConfig,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    verifier: TokenVerifier,
) -> AsyncIterator[GameServer]:
    """Like `server`, but every JOIN needs a token signed with `secret`."""
    start = functools.partial(serve_gameserver, auth=verifier)
    srv: GameServer = await nursery.start(start, server_config, registry, server_ssl)
    yield srv
