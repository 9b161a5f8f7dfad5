"""The errors of the client SDK (besides the shared protocol errors it raises too)."""

from __future__ import annotations

from shared.protocol import CloseCode


class GameClientError(Exception):
    """Base class of the errors this client raises (besides the shared protocol errors)."""


class ServerError(GameClientError):
    """The server sent ERROR: something we asked for failed (e.g. 4005, the room is full)."""

    def __init__(self, code: int, message: str) -> None:
        text = f"server error {code}: {message}"
        if code == CloseCode.REDIRECT:
            # only a gamesync.v1 connection gets ERROR 4015 (v2 gets REDIRECT, followed)
            text += (
                " (the room lives on another node of the cluster, and this gamesync.v1 "
                "connection cannot follow a redirect: connect to that node's URL)"
            )
        super().__init__(text)
        self.code = code
        self.message = message


class ConnectionClosed(GameClientError):
    """The server sent CLOSE, or the WebSocket closed, while we still wanted it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(
            f"connection closed ({code}): {reason}" if reason else f"connection closed ({code})"
        )
        self.code = code
        self.reason = reason


class ConnectError(GameClientError):
    """The TCP, TLS or WebSocket handshake failed (the cause is chained)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting and joining took longer than ``connect_timeout``."""


class NotConnected(GameClientError):
    """``send_event`` while the client is reconnecting: the event was not sent.

    Room events are not buffered across an outage (unlike inputs): whether a late chat line or
    game action still makes sense is the caller's call. ``await client.wait_connected()``
    waits for the resume (or rejoin)."""
