"""Python clients for gameserver: the client SDK (:func:`open_game_client`) and load bots."""

from clients.client import (
    ClientStats,
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    GameClient,
    GameClientError,
    ServerError,
    make_ssl_context,
    open_game_client,
)
from shared.replica import DesyncError

__all__ = [
    "ClientStats",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "DesyncError",
    "GameClient",
    "GameClientError",
    "ServerError",
    "make_ssl_context",
    "open_game_client",
]
