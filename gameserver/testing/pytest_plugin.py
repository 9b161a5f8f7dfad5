"""pytest fixtures for game authors: a real server over WSS, and SDK clients for it.

Enable it in your top-level ``conftest.py``::

    pytest_plugins = ["gameserver.testing.pytest_plugin"]

(or run ``pytest -p gameserver.testing.pytest_plugin``). The fixtures are async, so tests run
under pytest-trio: set ``trio_mode = true`` in your pytest configuration, or mark each test
``@pytest.mark.trio``. Then::

    async def test_two_players(game_server):
        srv = await game_server(Pong)          # a Game subclass or a GameRegistry
        async with srv.client("room1", player="alice") as alice:
            seq = await alice.send_input(dy=1.0)
            await alice.wait_for_ack(seq)

Fixtures:

``game_server``
    An async factory: ``await game_server(games, **config)`` starts a server for ``games`` on
    127.0.0.1, port 0, with token auth, and returns a :class:`~gameserver.testing.LiveServer`.
    ``config`` keywords override :data:`~gameserver.testing.live.TEST_CONFIG`
    (``ServerConfig`` fields). Servers stop when the test ends.
``gameserver_tls``
    The throwaway CA and certificate the servers use (one per test session).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from gameserver.game import Game, GameRegistry
from gameserver.testing.live import LiveServer, ThrowawayTLS, serve_live_server


class GameServerFactory:
    """The ``game_server`` fixture: ``srv = await game_server(Pong, tick_rate=60)``."""

    def __init__(self, nursery: trio.Nursery, tls: ThrowawayTLS) -> None:
        self._nursery = nursery
        self._tls = tls
        #: the servers started in this test, oldest first
        self.servers: list[LiveServer] = []

    async def __call__(self, games: type[Game] | GameRegistry, **config: Any) -> LiveServer:
        """Start a server for ``games``; it runs until the end of the test."""
        server: LiveServer = await self._nursery.start(
            partial(serve_live_server, games, tls=self._tls, **config)
        )
        self.servers.append(server)
        return server


@pytest.fixture(scope="session")
def gameserver_tls(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayTLS:
    """A throwaway CA and a certificate for 127.0.0.1, made once per test session."""
    directory: Path = tmp_path_factory.mktemp("gameserver-tls")
    return ThrowawayTLS.create(directory)


@pytest.fixture
async def game_server(nursery: trio.Nursery, gameserver_tls: ThrowawayTLS) -> GameServerFactory:
    """Start real servers over WSS: ``srv = await game_server(Pong, **config)``."""
    return GameServerFactory(nursery, gameserver_tls)
