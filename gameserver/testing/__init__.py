"""Testing tools for game authors.

- :class:`RoomHarness`: a pure harness (no trio, no sockets). Build a room for a game, seat
  players, queue inputs and events, advance ticks, and compare the server's state with each
  player's replica, built from the real bytes the server would send it.
- :func:`open_live_server` / :func:`serve_live_server`: the real server over WSS on 127.0.0.1,
  port 0, with a throwaway CA and signing secret, handing out connected SDK clients.
- :mod:`gameserver.testing.pytest_plugin`: the ``game_server`` pytest-trio fixture on top of
  it (``pytest_plugins = ["gameserver.testing.pytest_plugin"]`` in a conftest).

See "Testing a game" in the README.
"""

from gameserver.room import RoomFull
from gameserver.testing.harness import HarnessClient, RoomHarness
from gameserver.testing.live import (
    TEST_CONFIG,
    LiveServer,
    ThrowawayTLS,
    open_live_server,
    serve_live_server,
)
from gameserver.testing.sync import Difference, DiffKind, OutOfSync, compare

__all__ = [
    "TEST_CONFIG",
    "DiffKind",
    "Difference",
    "HarnessClient",
    "LiveServer",
    "OutOfSync",
    "RoomFull",
    "RoomHarness",
    "ThrowawayTLS",
    "compare",
    "open_live_server",
    "serve_live_server",
]
