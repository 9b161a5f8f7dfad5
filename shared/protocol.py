"""Protocol constants: version, subprotocol name, message kinds and close codes."""

from __future__ import annotations

import enum

#: The newest protocol version: the version byte of JOIN, RESUME and JOINED. Each version is
#: its own WebSocket subprotocol, negotiated in the handshake; the server speaks every version
#: in :data:`SUPPORTED_VERSIONS`, and a connection speaks the one negotiated for it.
PROTOCOL_VERSION = 3
SUPPORTED_VERSIONS: tuple[int, ...] = (3, 2, 1)  # newest first
SUBPROTOCOL_V1 = "gamesync.v1"
SUBPROTOCOL_V2 = "gamesync.v2"
SUBPROTOCOL_V3 = "gamesync.v3"  # v2 with the compact state coding of shared.delta_v3
#: The subprotocol of the newest version (what a client offers first).
SUBPROTOCOL = SUBPROTOCOL_V3
#: Every subprotocol the server speaks, in order of preference: it selects the first one the
#: client offers.
SUPPORTED_SUBPROTOCOLS: tuple[str, ...] = (SUBPROTOCOL_V3, SUBPROTOCOL_V2, SUBPROTOCOL_V1)


def subprotocol_for(version: int) -> str:
    """The subprotocol name of a protocol version (``gamesync.v<version>``)."""
    return f"gamesync.v{version}"


def version_of_subprotocol(name: str | None) -> int | None:
    """The protocol version a subprotocol name stands for, or None if not one we speak."""
    for version in SUPPORTED_VERSIONS:
        if name == subprotocol_for(version):
            return version
    return None


def select_subprotocol(offered: tuple[str, ...] | list[str]) -> str | None:
    """The subprotocol the server selects from a client's offer: the newest it speaks."""
    for name in SUPPORTED_SUBPROTOCOLS:
        if name in offered:
            return name
    return None


#: Limits that the codec enforces on every decoded message.
MAX_NAME_BYTES = 64  # room, game and event names
MAX_PLAYER_NAME_BYTES = 32
MAX_TOKEN_BYTES = 2048
MAX_RESUME_TOKEN_BYTES = 128
MAX_EVENT_DATA_BYTES = 1024
MAX_MESSAGE_TEXT_BYTES = 256  # error and close texts
MAX_URL_BYTES = 256  # v2 REDIRECT: the owner node's URL


class Kind(enum.IntEnum):
    """The first byte of every message."""

    # client -> server
    JOIN = 0x01
    LEAVE = 0x02
    INPUT = 0x03
    EVENT = 0x04
    RESUME = 0x05  # v2: instead of JOIN, take a held seat back
    RESYNC = 0x06  # v2: ask for a fresh SNAPSHOT while seated
    # server -> client
    JOINED = 0x10
    SNAPSHOT = 0x11
    DELTA = 0x12
    ROOM_EVENT = 0x13
    ERROR = 0x14
    CLOSE = 0x15
    REDIRECT = 0x16  # v2: the room lives on another node; join there


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
    SEAT_LOST = 4013  # v2: RESUME for a seat no longer held (expired, left, room gone)
    VERSION_REQUIRED = 4014  # the game needs a newer protocol version (a view game on v1)
    REDIRECT = 4015  # the room lives on another node (v2: after REDIRECT {url, room})
    DIRECTORY_UNAVAILABLE = 4016  # the room directory is unreachable: try again shortly


#: The ERROR message of a JOIN refused with 4012 because the server is draining. A client
#: should connect again later (a load balancer sends it to another instance meanwhile).
DRAINING_MESSAGE = "draining: the server is shutting down and admits no joins; come back later"
#: The reason of the CLOSE 1001 (and of the close frame) that every player still seated gets
#: when a drain ends: the server restarts or moves, so come back later. Stable: clients may
#: compare it.
RESTART_REASON = "server restarting; come back later"
#: The reason of the CLOSE 1001 the players of a room get when, in a cluster, another node now
#: holds their room (this node lost its lease). Reconnect: the room lives elsewhere now.
ROOM_MOVED_REASON = "room moved; join again"
