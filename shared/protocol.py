"""Protocol constants: version, subprotocol name, message kinds and close codes."""

from __future__ import annotations

import enum

#: Version byte carried by Join/Joined. Bumped on any incompatible change.
PROTOCOL_VERSION = 1
#: The WebSocket subprotocol name a client must offer in ``Sec-WebSocket-Protocol``.
SUBPROTOCOL = f"gamesync.v{PROTOCOL_VERSION}"
SUPPORTED_SUBPROTOCOLS: tuple[str, ...] = (SUBPROTOCOL,)

#: Limits that the codec enforces on every decoded message.
MAX_NAME_BYTES = 64  # room, game and event names
MAX_PLAYER_NAME_BYTES = 32
MAX_TOKEN_BYTES = 2048
MAX_EVENT_DATA_BYTES = 1024
MAX_MESSAGE_TEXT_BYTES = 256  # error and close texts


class Kind(enum.IntEnum):
    """The first byte of every message."""

    # client -> server
    JOIN = 0x01
    LEAVE = 0x02
    INPUT = 0x03
    EVENT = 0x04
    # server -> client
    JOINED = 0x10
    SNAPSHOT = 0x11
    DELTA = 0x12
    ROOM_EVENT = 0x13
    ERROR = 0x14
    CLOSE = 0x15


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4) and our application codes (4000-4999)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # unknown message kind, message not allowed in this state
    UNSUPPORTED_DATA = 1003  # text frame where binary is expected
    INVALID_PAYLOAD = 1007  # truncated message, bad field value, bad UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_JOIN = 4000  # join request that names no valid room
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    UNKNOWN_GAME = 4004
    ROOM_FULL = 4005
    SERVER_FULL = 4006
    JOIN_TIMEOUT = 4007
    TOO_SLOW = 4008  # the client did not read its reliable messages in time
    REPLACED = 4009
    KICKED = 4010
    ROOM_CLOSED = 4011
    DRAINING = 4012  # the server is draining (shutting down): it admits no new joins


#: The ERROR message of a JOIN refused with 4012 because the server is draining. A client
#: should connect again later (a load balancer sends it to another instance meanwhile).
DRAINING_MESSAGE = "draining: the server is shutting down and admits no joins; come back later"
#: The reason of the CLOSE 1001 (and of the close frame) that every player still seated gets
#: when a drain ends: the server restarts or moves, so come back later. Stable: clients may
#: compare it.
RESTART_REASON = "server restarting; come back later"
