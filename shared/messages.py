"""Message value types and the binary codec (see docs/protocol.md for the byte layout).

Each message is one binary WebSocket message whose first byte is its :class:`Kind`.
``to_bytes()`` encodes; ``parse_client_message`` / ``parse_server_message`` decode, raising
:class:`RemoteProtocolError` (with a fitting close code) for anything malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import unpack_from

import attrs

from shared import wire
from shared.delta_v3 import read_delta as read_delta_v3
from shared.delta_v3 import read_motion
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.protocol import (
    MAX_EVENT_DATA_BYTES,
    MAX_MESSAGE_TEXT_BYTES,
    MAX_NAME_BYTES,
    MAX_PLAYER_NAME_BYTES,
    MAX_RESUME_TOKEN_BYTES,
    MAX_TOKEN_BYTES,
    MAX_URL_BYTES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    CloseCode,
    Kind,
)
from shared.schema import Code, EntityType, InputSchema, Schema

# the state messages' types live in shared.statemsg; re-exported here
from shared.statemsg import Delta as Delta
from shared.statemsg import EntityPatch as EntityPatch
from shared.statemsg import EntityRecord as EntityRecord
from shared.statemsg import Snapshot as Snapshot
from shared.statemsg import item_count as item_count
from shared.statemsg import read_patch as read_patch
from shared.statemsg import read_record as read_record

# ---------------------------------------------------------------- client -> server


JOIN_PRIVATE = 0x01  # JOIN flag: create a new private room (its id comes back in JOINED)


@attrs.frozen
class Join:
    """Ask to join ``room`` (created on first join) running ``game`` ('' = server default).

    With ``private=True`` the server creates a new private room instead, whose unguessable id
    (``~`` and 22 characters) comes back in JOINED; others join it by that id."""

    room: str
    game: str = ""
    name: str = ""
    token: str = ""
    version: int = PROTOCOL_VERSION
    private: bool = False

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                bytes((Kind.JOIN, self.version, JOIN_PRIVATE if self.private else 0)),
                wire.string(self.room, MAX_NAME_BYTES),
                wire.string(self.game, MAX_NAME_BYTES),
                wire.string(self.name, MAX_PLAYER_NAME_BYTES),
                wire.string(self.token, MAX_TOKEN_BYTES),
            ]
        )


@attrs.frozen
class Resume:
    """v2: take back the seat held for ``token`` (the resume token of the last JOINED) in
    ``room``. ``have_tick`` is the tick of the state the client holds (0: none; it then gets a
    SNAPSHOT, else a catch-up DELTA from that tick when the server still can)."""

    room: str
    token: str
    have_tick: int = 0
    version: int = PROTOCOL_VERSION

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                bytes((Kind.RESUME, self.version)),
                wire.string(self.room, MAX_NAME_BYTES),
                wire.string(self.token, MAX_RESUME_TOKEN_BYTES),
                wire.varint(self.have_tick),
            ]
        )


@attrs.frozen
class Resync:
    """v2: ask for a fresh SNAPSHOT without leaving (after a desync). Rate-limited."""

    def to_bytes(self) -> bytes:
        return bytes((Kind.RESYNC,))


@attrs.frozen
class Leave:
    def to_bytes(self) -> bytes:
        return bytes((Kind.LEAVE,))


@attrs.frozen
class Input:
    """One input: a sequence number (increasing per player) and one code per input field."""

    seq: int
    codes: tuple[Code, ...]

    def to_bytes(self, schema: InputSchema) -> bytes:
        return bytes((Kind.INPUT,)) + wire.varint(self.seq) + schema.encode_all(self.codes)


@attrs.frozen
class Event:
    """A reliable room event from a player (a chat line, a game action)."""

    name: str
    data: bytes = b""

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                bytes((Kind.EVENT,)),
                wire.string(self.name, MAX_NAME_BYTES),
                wire.blob(self.data, MAX_EVENT_DATA_BYTES),
            ]
        )


ClientMessage = Join | Resume | Resync | Leave | Input | Event


def _version(r: wire.Reader, version: int | None) -> int:
    """The version byte of JOIN, RESUME or JOINED: the connection's (``version``), or any
    version we speak when ``version`` is None (the caller checks it against the connection)."""
    got = r.u8()
    if got != version if version is not None else got not in SUPPORTED_VERSIONS:
        speaks = version if version is not None else PROTOCOL_VERSION
        raise RemoteProtocolError(
            f"protocol version {got} not supported (this connection speaks {speaks})",
            CloseCode.PROTOCOL_ERROR,
        )
    return got


def decode_input(data: bytes, schema: InputSchema) -> tuple[int, tuple[Code, ...]] | None:
    """``(seq, codes)`` of an INPUT in the common form, or None for anything else.

    The tick's fast path: a fixed-width input schema (``InputSchema.fixed``), a seq of at
    most 3 bytes, the exact length and every FLOAT code in range. None means "not sure",
    never "bad": the caller hands such a message to :func:`parse_client_message`, which
    decodes it or raises the error for it. Both agree wherever this returns a value."""
    fixed = schema.fixed
    if fixed is None or len(data) < 2 or data[0] != Kind.INPUT:
        return None
    fmt, size, checks = fixed
    b = data[1]
    if b < 0x80:
        seq = b
        pos = 2
    elif len(data) > 2 and data[2] < 0x80:
        seq = (b & 0x7F) | (data[2] << 7)
        pos = 3
    elif len(data) > 3 and data[2] >= 0x80 and data[3] < 0x80:
        seq = (b & 0x7F) | ((data[2] & 0x7F) << 7) | (data[3] << 14)
        pos = 4
    else:
        return None
    if len(data) != pos + size:
        return None
    codes = unpack_from(fmt, data, pos)  # struct caches the compiled format
    for index, steps in checks:
        if codes[index] > steps:
            return None
    return seq, codes


def parse_client_message(
    data: bytes, input_schema: InputSchema | None = None, *, version: int | None = None
) -> ClientMessage:
    """Decode one client message. INPUT needs the room's input schema.

    ``version`` is the connection's protocol version: RESUME and RESYNC exist from v2 on, and
    JOIN/RESUME must carry it. None accepts any version we speak (the caller checks)."""
    if not data:
        raise RemoteProtocolError("empty message", CloseCode.PROTOCOL_ERROR)
    r = wire.Reader(data, 1)
    kind = data[0]
    msg: ClientMessage
    if kind == Kind.INPUT:
        if input_schema is None:
            raise RemoteProtocolError("input before joining a room", CloseCode.PROTOCOL_ERROR)
        seq = r.varint()
        msg = Input(seq, tuple(input_schema.decode_all(r)))
    elif kind == Kind.EVENT:
        msg = Event(r.string(MAX_NAME_BYTES), r.blob(MAX_EVENT_DATA_BYTES))
    elif kind == Kind.JOIN:
        join_version = _version(r, version)
        flags = r.u8()
        if flags & ~JOIN_PRIVATE:
            raise RemoteProtocolError(f"unknown JOIN flags 0x{flags:02x}", CloseCode.PROTOCOL_ERROR)
        msg = Join(
            r.string(MAX_NAME_BYTES),
            r.string(MAX_NAME_BYTES),
            r.string(MAX_PLAYER_NAME_BYTES),
            r.string(MAX_TOKEN_BYTES),
            join_version,
            bool(flags & JOIN_PRIVATE),
        )
    elif kind == Kind.LEAVE:
        msg = Leave()
    elif kind == Kind.RESUME and version != 1:
        resume_version = _version(r, version)
        if resume_version < 2:
            raise RemoteProtocolError("RESUME needs protocol version 2", CloseCode.PROTOCOL_ERROR)
        msg = Resume(
            r.string(MAX_NAME_BYTES), r.string(MAX_RESUME_TOKEN_BYTES), r.varint(), resume_version
        )
    elif kind == Kind.RESYNC and version != 1:
        msg = Resync()
    else:
        raise RemoteProtocolError(
            f"unknown client message kind 0x{kind:02x}", CloseCode.PROTOCOL_ERROR
        )
    r.expect_end()
    return msg


# ---------------------------------------------------------------- server -> client


JOINED_RESUMED = 0x01  # JOINED (v2) flag: this answers a RESUME; same seat, same player
#: JOINED (v2) flag: this room sends the client its *view* (the entities near it), not the
#: whole room; SNAPSHOT/DELTA checksums are then view checksums (shared.state.view_checksum)
JOINED_VIEW = 0x02
_JOINED_FLAGS = JOINED_RESUMED | JOINED_VIEW


@attrs.frozen
class Joined:
    """The join succeeded: who you are, and the schemas to decode the room's state with.

    From v2 on it also carries the seat's resume token (single-use: the next RESUME needs the
    token of the latest JOINED; '' = no resume for this seat), how long the server holds the
    seat after a lost connection, the last input seq the game applied for this player, and
    whether it answers a RESUME, and whether the room sends this client its view (``view``:
    SNAPSHOT and DELTA then hold only the entities the server decided it sees, and their
    checksums are view checksums). With ``version == 1`` those are not on the wire (a view
    game refuses v1 connections)."""

    player: int
    room: str
    game: str
    tick_rate: int
    schema: Schema = attrs.field(eq=False)
    input_schema: InputSchema = attrs.field(eq=False)
    version: int = PROTOCOL_VERSION
    resumed: bool = False
    resume_token: str = ""
    seat_hold_ms: int = 0
    input_seq: int = 0
    view: bool = False

    def to_bytes(self) -> bytes:
        head = [bytes((Kind.JOINED, self.version))]
        if self.version >= 2:
            flags = (JOINED_RESUMED if self.resumed else 0) | (JOINED_VIEW if self.view else 0)
            head.append(bytes((flags,)))
        elif self.view:
            raise LocalProtocolError("a view JOINED needs protocol version 2")
        body = [
            wire.varint(self.player),
            wire.string(self.room, MAX_NAME_BYTES),
            wire.string(self.game, MAX_NAME_BYTES),
            bytes((self.tick_rate,)),
            self.schema.to_bytes(),
            self.input_schema.to_bytes(),
        ]
        if self.version >= 2:
            body += [
                wire.string(self.resume_token, MAX_RESUME_TOKEN_BYTES),
                wire.varint(self.seat_hold_ms),
                wire.varint(self.input_seq),
            ]
        return b"".join(head + body)


@attrs.frozen
class RoomEvent:
    """A reliable event: ``sender`` is a player number, or 0 for the room/game itself."""

    sender: int
    name: str
    data: bytes = b""

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                bytes((Kind.ROOM_EVENT,)),
                wire.varint(self.sender),
                wire.string(self.name, MAX_NAME_BYTES),
                wire.blob(self.data, MAX_EVENT_DATA_BYTES),
            ]
        )


@attrs.frozen
class Error:
    """Something the client asked for failed. ``code`` uses the close code numbering."""

    code: int
    message: str

    def to_bytes(self) -> bytes:
        return bytes((Kind.ERROR,)) + self.code.to_bytes(2, "little") + _text(self.message)


@attrs.frozen
class Close:
    """The server is about to close this connection, and why."""

    code: int
    reason: str

    def to_bytes(self) -> bytes:
        return bytes((Kind.CLOSE,)) + self.code.to_bytes(2, "little") + _text(self.reason)


@attrs.frozen
class Redirect:
    """v2: the room lives on another node of the cluster. Connect to ``url`` and send the
    same JOIN (or RESUME) for ``room`` there; the server closes this connection with 4015."""

    url: str
    room: str

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                bytes((Kind.REDIRECT,)),
                wire.string(self.url, MAX_URL_BYTES),
                wire.string(self.room, MAX_NAME_BYTES),
            ]
        )


def _text(text: str) -> bytes:
    raw = text.encode("utf-8")[:MAX_MESSAGE_TEXT_BYTES].decode("utf-8", "ignore").encode()
    return wire.varint(len(raw)) + raw


ServerMessage = Joined | Snapshot | Delta | RoomEvent | Error | Close | Redirect


def read_acks(r: wire.Reader) -> tuple[tuple[int, int], ...]:
    n = r.varint()
    if n > len(r.data):
        raise RemoteProtocolError("ack count exceeds message size")
    return tuple((r.varint(), r.varint()) for _ in range(n))


DELTA_CHECKSUM = 0x01  # DELTA flag: a state checksum follows the tick
DELTA_BASE = 0x02  # DELTA flag (v2): a base tick follows the tick (a catch-up delta)


def parse_server_message(
    data: bytes,
    schema: Schema | None = None,
    type_of: Callable[[int], EntityType] | None = None,
    *,
    version: int | None = None,
    coding: int | None = None,
    predict: Callable[[int, int], int] | None = None,
) -> ServerMessage:
    """Decode one server message. SNAPSHOT needs the schema; DELTA needs the schema and
    ``type_of(entity_id)``, the type of an entity the receiver already holds.

    ``version`` is the connection's protocol version (None: any we speak): JOINED must carry
    it, and a v1 DELTA has no BASE flag. ``coding`` is the layout of SNAPSHOT and DELTA (3:
    gamesync.v3's, see :mod:`shared.delta_v3`; 2: v1/v2's); None: 3 on a v3 connection, else
    2 (a v3 connection in a view room passes 2). A v3 per-tick DELTA also needs
    ``predict(entity_id, field_index)`` (``Replica.predicted``)."""
    if coding is None:
        coding = 3 if version is not None and version >= 3 else 2
    if not data:
        raise RemoteProtocolError("empty message", CloseCode.PROTOCOL_ERROR)
    r = wire.Reader(data, 1)
    kind = data[0]
    msg: ServerMessage
    if kind == Kind.DELTA or kind == Kind.SNAPSHOT:
        if schema is None:
            raise RemoteProtocolError("state before JOINED", CloseCode.PROTOCOL_ERROR)
        if kind == Kind.SNAPSHOT:
            tick = r.varint()
            checksum = r.fixed(4)
            acks = read_acks(r)
            ents = tuple(read_record(r, schema) for _ in range(item_count(r)))
            motion: tuple[EntityPatch, ...] = ()
            if coding == 3:
                held = {rec.id: schema.types[rec.type_id] for rec in ents}

                def holds(eid: int) -> EntityType:
                    etype = held.get(eid)
                    if etype is None:
                        raise RemoteProtocolError(f"snapshot motion of entity {eid}, not in it")
                    return etype

                motion = read_motion(r, holds)
            msg = Snapshot(tick, checksum, acks, ents, motion)
        elif coding == 3:
            msg = read_delta_v3(r, schema, type_of, predict)
        else:
            flags = r.u8()
            known_flags = DELTA_CHECKSUM if version == 1 else DELTA_CHECKSUM | DELTA_BASE
            if flags & ~known_flags:
                raise RemoteProtocolError(f"unknown delta flags 0x{flags:02x}")
            tick = r.varint()
            base = r.varint() if flags & DELTA_BASE else None
            if base is not None and base >= tick:
                raise RemoteProtocolError(f"delta base tick {base} not before its tick {tick}")
            csum = r.fixed(4) if flags & DELTA_CHECKSUM else None
            acks = read_acks(r)
            created = tuple(read_record(r, schema) for _ in range(item_count(r)))
            known = {rec.id: schema.types[rec.type_id] for rec in created}

            def lookup(eid: int) -> EntityType:
                if eid in known:
                    raise RemoteProtocolError(f"entity {eid} both created and patched")
                if type_of is None:
                    raise RemoteProtocolError("delta patches need the receiver's entity types")
                return type_of(eid)

            changed = tuple(read_patch(r, lookup) for _ in range(item_count(r)))
            removed = tuple(r.varint() for _ in range(item_count(r)))
            msg = Delta(tick, csum, acks, created, changed, removed, base)
    elif kind == Kind.ROOM_EVENT:
        msg = RoomEvent(r.varint(), r.string(MAX_NAME_BYTES), r.blob(MAX_EVENT_DATA_BYTES))
    elif kind == Kind.ERROR:
        msg = Error(r.fixed(2), r.string(MAX_MESSAGE_TEXT_BYTES))
    elif kind == Kind.CLOSE:
        msg = Close(r.fixed(2), r.string(MAX_MESSAGE_TEXT_BYTES))
    elif kind == Kind.REDIRECT and version != 1:
        msg = Redirect(r.string(MAX_URL_BYTES), r.string(MAX_NAME_BYTES))
    elif kind == Kind.JOINED:
        joined_version = _version(r, version)
        flags = r.u8() if joined_version >= 2 else 0
        if flags & ~_JOINED_FLAGS:
            raise RemoteProtocolError(
                f"unknown JOINED flags 0x{flags:02x}", CloseCode.PROTOCOL_ERROR
            )
        player = r.varint()
        room = r.string(MAX_NAME_BYTES)
        game = r.string(MAX_NAME_BYTES)
        tick_rate = r.u8()
        schema_ = Schema.read(r)
        input_schema = InputSchema.read(r)
        if joined_version >= 2:
            msg = Joined(
                player,
                room,
                game,
                tick_rate,
                schema_,
                input_schema,
                joined_version,
                bool(flags & JOINED_RESUMED),
                r.string(MAX_RESUME_TOKEN_BYTES),
                r.varint(),
                r.varint(),
                bool(flags & JOINED_VIEW),
            )
        else:
            msg = Joined(player, room, game, tick_rate, schema_, input_schema, joined_version)
    else:
        raise RemoteProtocolError(
            f"unknown server message kind 0x{kind:02x}", CloseCode.PROTOCOL_ERROR
        )
    r.expect_end()
    return msg
