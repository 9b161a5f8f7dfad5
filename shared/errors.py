"""Errors split by blame, as in h11: the peer's bad input versus our own misuse."""

from __future__ import annotations

from shared.protocol import CloseCode


class GameProtocolError(Exception):
    """Base class for every error the protocol code raises on purpose."""


class RemoteProtocolError(GameProtocolError):
    """The peer sent bytes that are not a valid message. Blame: the peer.

    ``close_code`` is the WebSocket close code the receiver should close with.
    """

    def __init__(self, message: str, close_code: int = CloseCode.INVALID_PAYLOAD) -> None:
        super().__init__(message)
        self.close_code = close_code


class LocalProtocolError(GameProtocolError):
    """Our own code asked for something the protocol cannot express. Blame: us."""
