"""A real server for tests: WSS on 127.0.0.1, port 0, a throwaway CA and signing secret.

::

    async with open_live_server(Pong) as srv:
        async with srv.client("room1", player="alice") as alice:
            seq = await alice.send_input(dy=1.0)
            await alice.wait_for_ack(seq)

The server is the real one (:func:`gameserver.server.open_gameserver`) with token auth on
(:class:`gameserver.auth.TokenVerifier`); the clients are the SDK's
(:func:`clients.client.open_game_client`), trusting the throwaway CA and carrying tokens minted
with the throwaway secret. The ``game_server`` pytest fixture
(:mod:`gameserver.testing.pytest_plugin`) wraps this.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from clients.client import GameClient, open_game_client
from gameserver.auth import TokenVerifier, mint_token
from gameserver.game import Game, GameRegistry
from gameserver.room import Room
from gameserver.server import GameServer, ServerConfig, open_gameserver
from gameserver.tls import ensure_dev_certificate, server_ssl_context

#: the settings a live test server starts from; ``open_live_server(**overrides)`` changes them.
#: cpu_budget=0: the test process runs clients and server, so its CPU share says nothing.
TEST_CONFIG = ServerConfig(host="127.0.0.1", port=0, cpu_budget=0, room_grace=1.0)


@attrs.frozen(eq=False)
class ThrowawayTLS:
    """A certificate authority made for one test run, and a certificate for 127.0.0.1."""

    ca_file: Path
    #: the server's context (certificate and key)
    server_context: ssl.SSLContext
    #: a client context that trusts only this CA
    client_context: ssl.SSLContext

    @classmethod
    def create(cls, directory: Path) -> ThrowawayTLS:
        """Make the CA, certificate and key in ``directory`` (keys owner-only)."""
        dev = ensure_dev_certificate(Path(directory))
        client = ssl.create_default_context(cafile=str(dev.ca_file))
        return cls(dev.ca_file, server_ssl_context(dev.cert_file, dev.key_file), client)


def as_registry(games: type[Game] | GameRegistry) -> GameRegistry:
    """A registry for a game class (its default game), or the registry itself."""
    if isinstance(games, GameRegistry):
        return games
    if isinstance(games, type) and issubclass(games, Game):
        registry = GameRegistry()
        registry.register(games)
        return registry
    raise TypeError(f"expected a Game subclass or a GameRegistry, got {games!r}")


@attrs.frozen(eq=False)
class LiveServer:
    """A running test server and what a test needs to talk to it."""

    server: GameServer
    tls: ThrowawayTLS
    #: the token signing secret (throwaway)
    secret: bytes

    @property
    def url(self) -> str:
        """``wss://127.0.0.1:<port>``."""
        return self.server.url

    @property
    def registry(self) -> GameRegistry:
        return self.server.registry

    def token(self, player_id: str, **claims: Any) -> str:
        """A token this server accepts: ``mint_token(secret, player_id, **claims)`` (``name``,
        ``rooms``, ``games``, ``ttl``, ``admin``)."""
        return mint_token(self.secret, player_id, **claims)

    @asynccontextmanager
    async def client(
        self,
        room: str,
        *,
        player: str,
        name: str = "",
        game: str = "",
        token: str | None = None,
        private: bool = False,
        **options: Any,
    ) -> AsyncIterator[GameClient]:
        """An SDK client joined to ``room`` as ``player`` (the player id), holding its first
        snapshot; it leaves at the end of the block.

        ``token`` defaults to one minted for ``player`` (and ``name``) that may join any room
        and play any game; pass your own to test refusals. ``options`` go to
        :func:`clients.client.open_game_client` (``connect_timeout``, ``raise_on_desync``, ...).
        """
        if token is None:
            token = self.token(player, name=name)
        async with open_game_client(
            self.url,
            room,
            game=game,
            name=name,
            token=token,
            private=private,
            ssl_context=self.tls.client_context,
            **options,
        ) as client:
            yield client

    @asynccontextmanager
    async def clients(
        self, room: str, players: Sequence[str], **options: Any
    ) -> AsyncIterator[list[GameClient]]:
        """Several clients in ``room``, one per player id, joined in order."""
        async with AsyncExitStack() as stack:
            out = [
                await stack.enter_async_context(self.client(room, player=p, **options))
                for p in players
            ]
            yield out

    @property
    def rooms(self) -> dict[str, Room]:
        """The server's live rooms by name (the pure :class:`~gameserver.room.Room` of each)."""
        return {name: host.room for name, host in self.server.rooms.rooms.items()}

    def room(self, name: str) -> Room:
        """The server's room ``name`` (for a private room: the client's ``joined.room``)."""
        try:
            return self.server.rooms.rooms[name].room
        except KeyError:
            raise KeyError(f"no room {name!r}; the server has {sorted(self.rooms)}") from None


@asynccontextmanager
async def open_live_server(
    games: type[Game] | GameRegistry,
    *,
    tls: ThrowawayTLS | None = None,
    **config: Any,
) -> AsyncIterator[LiveServer]:
    """Serve ``games`` (a Game subclass or a GameRegistry) over WSS on 127.0.0.1, port 0, with
    token auth, for the duration of the block.

    ``config`` keywords override :data:`TEST_CONFIG` (any :class:`~gameserver.server.ServerConfig`
    field, e.g. ``tick_rate=60``, ``max_players=2``). ``tls`` reuses certificates across servers;
    by default each server makes its own in a temporary directory.
    """
    cfg = attrs.evolve(TEST_CONFIG, **config)
    registry = as_registry(games)
    secret = secrets.token_hex(32).encode()
    with contextlib.ExitStack() as stack:
        if tls is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="gameserver-"))
            tls = ThrowawayTLS.create(Path(directory))
        async with open_gameserver(
            cfg, registry, tls.server_context, auth=TokenVerifier([secret])
        ) as server:
            yield LiveServer(server, tls, secret)


async def serve_live_server(
    games: type[Game] | GameRegistry,
    *,
    tls: ThrowawayTLS | None = None,
    task_status: trio.TaskStatus[LiveServer] = trio.TASK_STATUS_IGNORED,
    **config: Any,
) -> NoReturn:
    """``srv = await nursery.start(partial(serve_live_server, Pong, tick_rate=60))``: the
    :func:`open_live_server` server, run until cancelled."""
    async with open_live_server(games, tls=tls, **config) as server:
        task_status.started(server)
        await trio.sleep_forever()
    raise AssertionError("unreachable")
