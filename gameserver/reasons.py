"""Typed reasons: why a connection was refused, or closed for bad input. No trio.

Each value is the metrics label it is counted under (``gameserver_connections_refused{reason}``
and ``gameserver_protocol_errors{kind}``), so labels come from these enums and nothing is
matched by message text. The lifecycle core (``gameserver.lifecycle``) decides which one
applies; the server counts it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from gameserver.auth import AuthFailure
from shared.errors import RemoteProtocolError
from shared.protocol import CloseCode


class Refusal(enum.Enum):
    """Why a connection or a JOIN was refused. The value is the metrics label
    (``gameserver_connections_refused{reason=...}``)."""

    # before the WebSocket exists (no close code: a TCP close). The upgrade request's own
    # refusals (origin, subprotocol, ...) are gameserver.handshake.Refusal.
    CONNECTION_LIMIT = "connection_limit"  # over --max-connections(-per-ip)
    HANDSHAKE = "handshake"  # no upgrade request within the connect timeout, or broken TLS
    SETUP_BUSY = "setup_busy"  # waited --setup-wait for a handshake turn in vain (HTTP 503)
    # after the WebSocket handshake: ERROR and a close with the code of CLOSE_CODES
    JOIN_TIMEOUT = "join_timeout"
    AUTH_MISSING = AuthFailure.MISSING.value
    AUTH_MALFORMED = AuthFailure.MALFORMED.value
    AUTH_EXPIRED = AuthFailure.EXPIRED.value
    AUTH_BAD_SIGNATURE = AuthFailure.BAD_SIGNATURE.value
    AUTH_BAD_CLAIMS = AuthFailure.BAD_CLAIMS.value
    DRAINING = "draining"
    SERVER_FULL = "server_full"
    UNKNOWN_GAME = "unknown_game"
    FORBIDDEN_GAME = "forbidden_game"
    FORBIDDEN_ROOM = "forbidden_room"
    NO_SUCH_ROOM = "no_such_room"
    BAD_ROOM = "bad_room"
    WRONG_GAME = "wrong_game"
    ROOM_CREATE_RATE = "room_create_rate"
    ROOM_CLOSED = "room_closed"
    ROOM_FULL = "room_full"
    VERSION_REQUIRED = "version_required"  # a view game, on a gamesync.v1 connection
    # a RESUME's own refusals (it can be refused with DRAINING too)
    RESUME_BAD_TOKEN = "resume_bad_token"  # malformed, or not minted by us for this room
    RESUME_REPLAYED = "resume_replayed"  # genuine, but a newer token of the seat exists
    SEAT_LOST = "seat_lost"  # genuine, but the seat is no longer held (expired, left, closed)
    # a cluster node's: the room is not here and the directory (Redis) did not answer
    DIRECTORY_UNAVAILABLE = "directory_unavailable"

    @property
    def code(self) -> CloseCode | None:
        """The close code (and ERROR code) of this refusal; None before the WebSocket exists."""
        return CLOSE_CODES.get(self)

    @classmethod
    def of_auth(cls, failure: AuthFailure) -> Refusal:
        return cls(failure.value)


#: the close code of every refusal that happens on an open WebSocket
CLOSE_CODES: Mapping[Refusal, CloseCode] = {
    Refusal.JOIN_TIMEOUT: CloseCode.JOIN_TIMEOUT,
    Refusal.AUTH_MISSING: CloseCode.UNAUTHORIZED,
    Refusal.AUTH_MALFORMED: CloseCode.UNAUTHORIZED,
    Refusal.AUTH_EXPIRED: CloseCode.UNAUTHORIZED,
    Refusal.AUTH_BAD_SIGNATURE: CloseCode.UNAUTHORIZED,
    Refusal.AUTH_BAD_CLAIMS: CloseCode.UNAUTHORIZED,
    Refusal.DRAINING: CloseCode.DRAINING,
    Refusal.SERVER_FULL: CloseCode.SERVER_FULL,
    Refusal.UNKNOWN_GAME: CloseCode.UNKNOWN_GAME,
    Refusal.FORBIDDEN_GAME: CloseCode.FORBIDDEN,
    Refusal.FORBIDDEN_ROOM: CloseCode.FORBIDDEN,
    Refusal.NO_SUCH_ROOM: CloseCode.BAD_JOIN,
    Refusal.BAD_ROOM: CloseCode.BAD_JOIN,
    Refusal.WRONG_GAME: CloseCode.BAD_JOIN,
    Refusal.ROOM_CREATE_RATE: CloseCode.POLICY_VIOLATION,
    Refusal.ROOM_CLOSED: CloseCode.ROOM_CLOSED,
    Refusal.ROOM_FULL: CloseCode.ROOM_FULL,
    Refusal.VERSION_REQUIRED: CloseCode.VERSION_REQUIRED,
    Refusal.RESUME_BAD_TOKEN: CloseCode.UNAUTHORIZED,
    Refusal.RESUME_REPLAYED: CloseCode.UNAUTHORIZED,
    Refusal.SEAT_LOST: CloseCode.SEAT_LOST,
    Refusal.DIRECTORY_UNAVAILABLE: CloseCode.DIRECTORY_UNAVAILABLE,
}
#: the refusals a RESUME can get (``gameserver_resumes_refused{reason}`` counts these)
RESUME_REFUSALS = frozenset(
    {Refusal.DRAINING, Refusal.RESUME_BAD_TOKEN, Refusal.RESUME_REPLAYED, Refusal.SEAT_LOST}
)


class ErrorKind(enum.Enum):
    """Why a peer was closed for bad input. The value is the metrics label
    (``gameserver_protocol_errors{kind=...}``)."""

    PRE_JOIN_FLOOD = "pre_join_flood"  # more than one message's worth of bytes before JOIN
    NOT_JOIN = "not_join"  # the first message was not JOIN (or RESUME, on v2)
    TEXT_FRAME = "text_frame"
    FLOOD = "flood"  # sustained input or event rate over the limit
    JOIN_TWICE = "join_twice"
    IDLE_TIMEOUT = "idle_timeout"
    # anything else the codec or the frame reader refused, by its close code
    PROTOCOL = "close_1002"
    INVALID_PAYLOAD = "close_1007"
    TOO_BIG = "close_1009"
    OTHER = "close_other"

    @classmethod
    def of(cls, exc: RemoteProtocolError) -> ErrorKind:
        """The kind of a peer error: a :class:`Violation` knows it; else by close code."""
        if isinstance(exc, Violation):
            return exc.kind
        return _KIND_BY_CODE.get(exc.close_code, cls.OTHER)


_KIND_BY_CODE: Mapping[int, ErrorKind] = {
    CloseCode.PROTOCOL_ERROR: ErrorKind.PROTOCOL,
    CloseCode.UNSUPPORTED_DATA: ErrorKind.TEXT_FRAME,
    CloseCode.INVALID_PAYLOAD: ErrorKind.INVALID_PAYLOAD,
    CloseCode.POLICY_VIOLATION: ErrorKind.FLOOD,
    CloseCode.MESSAGE_TOO_BIG: ErrorKind.TOO_BIG,
}


class Violation(RemoteProtocolError):
    """The peer broke a rule of the server's (rather than sending bytes that do not parse).
    Blame: the peer. Carries its :class:`ErrorKind`."""

    def __init__(self, kind: ErrorKind, message: str, close_code: int) -> None:
        super().__init__(message, close_code)
        self.kind = kind


def text_frame_error() -> Violation:
    return Violation(
        ErrorKind.TEXT_FRAME,
        "text frames are not supported; send binary",
        CloseCode.UNSUPPORTED_DATA,
    )


def flood_error() -> Violation:
    return Violation(
        ErrorKind.FLOOD,
        "message flood: sustained input or event rate over the limit",
        CloseCode.POLICY_VIOLATION,
    )


def join_twice_error() -> Violation:
    return Violation(ErrorKind.JOIN_TWICE, "already joined", CloseCode.PROTOCOL_ERROR)


def not_join_error(resume: bool = False) -> Violation:
    """The first message was neither JOIN nor (``resume``: on a v2 connection) RESUME."""
    text = (
        "the first message must be JOIN or RESUME" if resume else "the first message must be JOIN"
    )
    return Violation(ErrorKind.NOT_JOIN, text, CloseCode.PROTOCOL_ERROR)


def pre_join_flood_error() -> Violation:
    return Violation(
        ErrorKind.PRE_JOIN_FLOOD, "too much data before JOIN", CloseCode.POLICY_VIOLATION
    )


#: the close codes of a peer's mistakes: a session that ends with one of these gets ERROR
#: before the close frame; a session the server ends for its own reasons (shutdown, idle,
#: game crash, replaced, kicked, room closed) gets CLOSE. A refusal always gets ERROR.
PEER_ERROR_CODES = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_PAYLOAD,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
    }
)
