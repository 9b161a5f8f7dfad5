"""shared.messages: every message kind round-trips; malformed input raises RemoteProtocolError
with the close code the receiver should use. Includes a fuzz test of both parsers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gameserver.games.arena import GEM, INPUT, PLAYER, SCHEMA
from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    EntityPatch,
    EntityRecord,
    Error,
    Event,
    Input,
    Join,
    Joined,
    Leave,
    Redirect,
    Resume,
    Resync,
    RoomEvent,
    Snapshot,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import (
    MAX_EVENT_DATA_BYTES,
    MAX_MESSAGE_TEXT_BYTES,
    MAX_NAME_BYTES,
    MAX_PLAYER_NAME_BYTES,
    MAX_RESUME_TOKEN_BYTES,
    MAX_TOKEN_BYTES,
    MAX_URL_BYTES,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    SUPPORTED_SUBPROTOCOLS,
    CloseCode,
    Kind,
    select_subprotocol,
    version_of_subprotocol,
)
from shared.schema import EntityType, InputSchema
from shared.state import State

PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR  # 1002
INVALID = CloseCode.INVALID_PAYLOAD  # 1007

# entity types of a delta's patched entities, as the receiver's replica would know them
KNOWN = {1: GEM, 2: GEM, 7: PLAYER, 300: PLAYER}


def type_of(entity_id: int) -> EntityType:
    try:
        return KNOWN[entity_id]
    except KeyError:
        raise RemoteProtocolError(f"unknown entity {entity_id}") from None


def client_round_trip(msg: Join | Leave | Input | Event) -> bytes:
    data = msg.to_bytes(INPUT) if isinstance(msg, Input) else msg.to_bytes()
    assert parse_client_message(data, INPUT) == msg
    return data


def server_round_trip(data: bytes) -> Joined | Snapshot | Delta | RoomEvent | Error | Close:
    msg = parse_server_message(data, SCHEMA, type_of)
    if isinstance(msg, Joined | RoomEvent | Error | Close):
        assert msg.to_bytes() == data
    return msg


def test_constants() -> None:
    assert PROTOCOL_VERSION == 3
    assert SUBPROTOCOL == "gamesync.v3"
    assert SUPPORTED_SUBPROTOCOLS == ("gamesync.v3", "gamesync.v2", "gamesync.v1")
    assert select_subprotocol(["gamesync.v1", "gamesync.v2"]) == "gamesync.v2"
    assert select_subprotocol(["gamesync.v1", "gamesync.v2", "gamesync.v3"]) == "gamesync.v3"
    assert select_subprotocol(["x", "gamesync.v1"]) == "gamesync.v1"
    assert select_subprotocol(["gamesync.v4"]) is None
    assert version_of_subprotocol("gamesync.v1") == 1
    assert version_of_subprotocol("gamesync.v2") == 2
    assert version_of_subprotocol("gamesync.v3") == 3
    assert version_of_subprotocol(None) is None
    assert CloseCode.SEAT_LOST == 4013
    assert {k.name: int(k) for k in Kind} == {
        "JOIN": 1,
        "LEAVE": 2,
        "INPUT": 3,
        "EVENT": 4,
        "RESUME": 5,
        "RESYNC": 6,
        "JOINED": 0x10,
        "SNAPSHOT": 0x11,
        "DELTA": 0x12,
        "ROOM_EVENT": 0x13,
        "ERROR": 0x14,
        "CLOSE": 0x15,
        "REDIRECT": 0x16,
    }
    assert (CloseCode.REDIRECT, CloseCode.DIRECTORY_UNAVAILABLE) == (4015, 4016)


# ---------------------------------------------------------------- client messages: round trips


@pytest.mark.parametrize(
    "msg",
    [
        Join("lobby"),
        Join("lobby", "arena", "alice", "tok"),
        Join("r" * MAX_NAME_BYTES, "g" * MAX_NAME_BYTES, "n" * MAX_PLAYER_NAME_BYTES),
        Join("ü", token="t" * MAX_TOKEN_BYTES),
        Leave(),
        Input(1, (150, 100)),
        Input(2**64 - 1, (0, 200)),
        Event("chat"),
        Event("chat", b"hello"),
        Event("e" * MAX_NAME_BYTES, b"\xff" * MAX_EVENT_DATA_BYTES),
    ],
)
def test_client_message_round_trip(msg: Join | Leave | Input | Event) -> None:
    data = client_round_trip(msg)
    assert data[0] == {Join: 1, Leave: 2, Input: 3, Event: 4}[type(msg)]


def test_client_message_exact_bytes() -> None:
    assert Join("lobby", "arena", "al", "", version=1).to_bytes().hex() == (
        "01" + "01" + "00" + "056c6f626279" + "056172656e61" + "02616c" + "00"
    )
    assert Join("lobby", "arena", "al", "", version=2).to_bytes().hex() == (
        "01" + "02" + "00" + "056c6f626279" + "056172656e61" + "02616c" + "00"
    )
    assert Resume("lobby", "tok", 300, version=2).to_bytes().hex() == (
        "05" + "02" + "056c6f626279" + "03746f6b" + "ac02"
    )
    assert Resync().to_bytes() == b"\x06"
    assert Leave().to_bytes() == b"\x02"
    assert Input(300, (150, 100)).to_bytes(INPUT).hex() == "03" + "ac02" + "96" + "64"
    assert Event("hi", b"\x00\x01").to_bytes().hex() == "04" + "026869" + "020001"


@given(
    room=st.text(max_size=16),
    game=st.text(max_size=16),
    name=st.text(max_size=8),
    token=st.text(max_size=100),
    seq=st.integers(0, 2**64 - 1),
    dx=st.integers(0, 200),
    dy=st.integers(0, 200),
    ev=st.binary(max_size=MAX_EVENT_DATA_BYTES),
)
@settings(max_examples=100, deadline=None)
def test_client_messages_round_trip_property(
    room: str, game: str, name: str, token: str, seq: int, dx: int, dy: int, ev: bytes
) -> None:
    client_round_trip(Join(room, game, name, token))
    client_round_trip(Input(seq, (dx, dy)))
    client_round_trip(Event(game, ev))


# ---------------------------------------------------------------- client messages: errors


@pytest.mark.parametrize(
    ("data", "code", "match"),
    [
        (b"", PROTOCOL_ERROR, "empty"),
        (b"\x00", PROTOCOL_ERROR, "unknown client message kind 0x00"),
        (b"\x05", PROTOCOL_ERROR, "unknown"),
        (b"\x10\x01", PROTOCOL_ERROR, "unknown"),  # a server kind sent by a client
        (b"\xff", PROTOCOL_ERROR, "unknown"),
        # JOIN
        (b"\x01", INVALID, "truncated"),  # no version byte
        (b"\x01\x02\x00\x00\x00\x00\x00", PROTOCOL_ERROR, "version 2"),
        (b"\x01\x00\x00\x00\x00\x00\x00", PROTOCOL_ERROR, "version 0"),
        (b"\x01\x01\x00\x00\x00\x00", INVALID, "truncated"),  # token missing
        (b"\x01\x01\x00\x00\x00\x00\x00\x00", INVALID, "trailing"),
        (b"\x01\x01\x00\x01\xff\x00\x00\x00", INVALID, "UTF-8"),
        (b"\x01\x01\x00\x02\xc3", INVALID, "truncated"),
        (b"\x01\x01\x02\x00\x00\x00\x00", PROTOCOL_ERROR, "flags"),
        (
            b"\x01\x01\x00" + wire.varint(MAX_NAME_BYTES + 1) + b"r" * 65 + b"\x00\x00\x00",
            INVALID,
            "exceeds",
        ),
        (
            b"\x01\x01\x00\x00\x00" + wire.varint(MAX_PLAYER_NAME_BYTES + 1) + b"n" * 33 + b"\x00",
            INVALID,
            "exceeds",
        ),
        (b"\x01\x01\x00\x00\x00\x00" + wire.varint(MAX_TOKEN_BYTES + 1), INVALID, "exceeds"),
        # LEAVE
        (b"\x02\x00", INVALID, "trailing"),
        # INPUT
        (b"\x03", INVALID, "truncated"),
        (b"\x03\x01", INVALID, "truncated"),
        (b"\x03\x01\x64", INVALID, "truncated"),
        (b"\x03\x01\x64\x64\x00", INVALID, "trailing"),
        (b"\x03\x01\xc9\x64", INVALID, "above"),  # dx code 201 > 200 steps
        (b"\x03\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00\x64\x64", INVALID, "10 bytes"),
        (b"\x03\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02\x64\x64", INVALID, "64 bits"),
        # EVENT
        (b"\x04", INVALID, "truncated"),
        (b"\x04\x01a", INVALID, "truncated"),
        (b"\x04\x01a\x02x", INVALID, "truncated"),
        (b"\x04\x01a\x00\x00", INVALID, "trailing"),
        (b"\x04\x01\x80\x00", INVALID, "UTF-8"),
        (b"\x04\x00" + wire.varint(MAX_EVENT_DATA_BYTES + 1), INVALID, "exceeds"),
    ],
)
def test_bad_client_messages(data: bytes, code: int, match: str) -> None:
    # these are v1 messages (on a v2 connection 0x05 is RESUME; see test_v2_* below)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        parse_client_message(data, INPUT, version=1)
    assert info.value.close_code == code


def test_input_needs_an_input_schema() -> None:
    data = Input(1, (100, 100)).to_bytes(INPUT)
    with pytest.raises(RemoteProtocolError, match="before joining") as info:
        parse_client_message(data)
    assert info.value.close_code == PROTOCOL_ERROR
    # other kinds parse without one
    assert parse_client_message(Leave().to_bytes()) == Leave()
    assert parse_client_message(Join("r").to_bytes()) == Join("r")


def test_input_with_other_schema_kinds() -> None:
    from shared.schema import Bool, Int16, String, VarInt

    schema = InputSchema(fire=Bool(), turn=Int16(), n=VarInt(), say=String(4))
    msg = Input(9, (True, -2, -300, "yo"))
    data = msg.to_bytes(schema)
    assert data.hex() == "03" + "09" + "01" + "feff" + "d704" + "02796f"
    assert parse_client_message(data, schema) == msg
    with pytest.raises(RemoteProtocolError, match="bool"):
        parse_client_message(b"\x03\x09\x02\xfe\xff\x01\x00", schema)


@pytest.mark.parametrize(
    "msg", [Join("room", "arena", "alice", "token"), Input(77, (1, 199)), Event("ev", b"xyz")]
)
def test_every_truncation_of_a_client_message_is_rejected(msg: Join | Input | Event) -> None:
    data = msg.to_bytes(INPUT) if isinstance(msg, Input) else msg.to_bytes()
    for cut in range(1, len(data)):
        with pytest.raises(RemoteProtocolError) as info:
            parse_client_message(data[:cut], INPUT)
        assert info.value.close_code == INVALID
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_message(data + b"\x00", INPUT)
    assert info.value.close_code == INVALID


# ---------------------------------------------------------------- server messages


def sample_snapshot() -> bytes:
    state = State(SCHEMA)
    state.spawn(GEM, x=10.0, y=20.0, value=3)
    state.spawn(PLAYER, x=500.0, y=250.0, hp=100, owner=1, name="al")
    return state.encode_snapshot(42, {1: 5, 2: 0})


def sample_delta(with_checksum: bool) -> bytes:
    state = State(SCHEMA)
    gem1 = state.spawn(GEM, value=1)
    state.spawn(GEM, value=2)
    for _ in range(4):
        state.spawn(GEM)
    avatar = state.spawn(PLAYER, owner=1)
    state.encode_delta(1, (), False)
    avatar.x = 100.0
    avatar.y = 5.0
    state.remove(gem1)
    state.spawn(GEM, x=1.0, y=2.0, value=3)
    return state.encode_delta(2, [(1, 3), (2, 0)], with_checksum)


def test_joined_round_trip() -> None:
    msg = Joined(3, "lobby", "arena", 20, SCHEMA, INPUT)
    data = server_round_trip(msg.to_bytes())
    assert isinstance(data, Joined)
    assert data == msg  # eq covers everything but the schemas
    assert data.schema.to_bytes() == SCHEMA.to_bytes()
    assert data.input_schema.fields == INPUT.fields
    assert [t.name for t in data.schema] == ["player", "gem"]
    assert msg.to_bytes()[:2] == bytes((Kind.JOINED, PROTOCOL_VERSION))


def test_snapshot_round_trip() -> None:
    data = sample_snapshot()
    msg = parse_server_message(data, SCHEMA)
    assert isinstance(msg, Snapshot)
    assert msg.tick == 42
    assert msg.acks == ((1, 5), (2, 0))
    assert msg.entities == (
        EntityRecord(1, 1, (200, 400, 3)),
        EntityRecord(2, 0, (10000, 5000, 0, 100, 1, "al")),
    )
    state = State(SCHEMA)
    state.spawn(GEM, x=10.0, y=20.0, value=3)
    state.spawn(PLAYER, x=500.0, y=250.0, hp=100, owner=1, name="al")
    assert msg.checksum == state.checksum()
    assert data[0] == Kind.SNAPSHOT


@pytest.mark.parametrize("with_checksum", [False, True])
def test_delta_round_trip(with_checksum: bool) -> None:
    data = sample_delta(with_checksum)
    msg = parse_server_message(data, SCHEMA, type_of)
    assert isinstance(msg, Delta)
    assert msg.tick == 2
    assert (msg.checksum is not None) == with_checksum
    assert data[1] == (1 if with_checksum else 0)
    assert msg.acks == ((1, 3), (2, 0))
    assert msg.created == (EntityRecord(8, 1, (20, 40, 3)),)
    assert msg.changed == (EntityPatch(7, 0b11, (2000, 100)),)
    assert msg.removed == (1,)


def test_empty_delta_exact_bytes() -> None:
    state = State(SCHEMA)
    data = state.encode_delta(5, (), False)
    assert data.hex() == "12" + "00" + "05" + "00" + "00" + "00" + "00"
    msg = parse_server_message(data, SCHEMA, type_of)
    assert msg == Delta(5, None, (), (), (), ())


@pytest.mark.parametrize(
    "msg",
    [
        RoomEvent(0, "joined", b"alice"),
        RoomEvent(300, "chat", b""),
        RoomEvent(1, "x" * MAX_NAME_BYTES, b"\x00" * MAX_EVENT_DATA_BYTES),
        Error(int(CloseCode.ROOM_FULL), "room is full"),
        Error(0, ""),
        Close(int(CloseCode.TOO_SLOW), "too slow"),
        Close(65535, "é" * 100),
    ],
)
def test_event_error_close_round_trip(msg: RoomEvent | Error | Close) -> None:
    assert server_round_trip(msg.to_bytes()) == msg


def test_error_and_close_exact_bytes() -> None:
    assert Error(4005, "full").to_bytes().hex() == "14" + "a50f" + "04" + "66756c6c"
    assert Close(1000, "").to_bytes().hex() == "15" + "e803" + "00"
    assert RoomEvent(2, "a", b"b").to_bytes().hex() == "13" + "02" + "0161" + "0162"


def test_long_error_text_is_truncated_on_a_character_boundary() -> None:
    msg = Error(1011, "é" * 200)  # 400 bytes
    data = msg.to_bytes()
    back = parse_server_message(data)
    assert isinstance(back, Error)
    assert back.message == "é" * (MAX_MESSAGE_TEXT_BYTES // 2)
    odd = Close(1000, "a" + "é" * 200)  # the 256-byte cut falls inside a character
    back2 = parse_server_message(odd.to_bytes())
    assert isinstance(back2, Close)
    assert back2.reason == "a" + "é" * 127
    assert len(back2.reason.encode()) == 255


@pytest.mark.parametrize(
    ("data", "code", "match"),
    [
        (b"", PROTOCOL_ERROR, "empty"),
        (b"\x00", PROTOCOL_ERROR, "unknown server message kind 0x00"),
        (b"\x01\x01\x00\x00\x00\x00", PROTOCOL_ERROR, "unknown"),  # a client kind
        (b"\x16", PROTOCOL_ERROR, "unknown"),
        (b"\x10\x02", PROTOCOL_ERROR, "version 2"),
        (b"\x10", INVALID, "truncated"),
        (b"\x10\x01\x01\x00\x00\x14", INVALID, "truncated"),  # no schema
        (b"\x10\x01\x01\x00\x00\x14\x00\x00", INVALID, "0 entity types"),
        (b"\x13", INVALID, "truncated"),
        (b"\x13\x00\x01\xff\x00", INVALID, "UTF-8"),
        (b"\x13\x00\x00\x00\x00", INVALID, "trailing"),
        (b"\x14\x01", INVALID, "truncated"),
        (b"\x14\x01\x00\x01", INVALID, "truncated"),
        (b"\x14\x01\x00" + wire.varint(MAX_MESSAGE_TEXT_BYTES + 1), INVALID, "exceeds"),
        (b"\x15\xe8\x03\x00\x00", INVALID, "trailing"),
        (b"\x15\xe8\x03\x01\xc0", INVALID, "UTF-8"),
        # SNAPSHOT: tick, checksum(4), acks, entities
        (b"\x11", INVALID, "truncated"),
        (b"\x11\x01\x00\x00\x00", INVALID, "truncated"),
        (b"\x11\x01\x00\x00\x00\x00\x00", INVALID, "truncated"),
        (b"\x11\x01\x00\x00\x00\x00\x00\x00\x00", INVALID, "trailing"),
        (b"\x11\x01\x00\x00\x00\x00\x00\x01\x01\x05", INVALID, "unknown entity type"),
        (b"\x11\x01\x00\x00\x00\x00\x00\x01\x01\x01\x00\x00\x00\x00", INVALID, "truncated"),
        (b"\x11\x01\x00\x00\x00\x00\x00\x01\x01\x01\x00\x00\x00\x00\x04\x00", INVALID, "trailing"),
        (b"\x11\x01\x00\x00\x00\x00\x00\x01\x01\x01\x21\x4e\x00\x00\x01", INVALID, "above"),
        (b"\x11\x01\x00\x00\x00\x00\xff\xff\x03", INVALID, "ack count"),
        (b"\x11\x01\x00\x00\x00\x00\x00\xff\xff\x03", INVALID, "item count"),
        # DELTA: flags, tick, [checksum], acks, created, changed, removed
        (b"\x12", INVALID, "truncated"),
        (b"\x12\x02\x01\x00\x00\x00\x00", INVALID, "unknown delta flags"),
        (b"\x12\x80\x01\x00\x00\x00\x00", INVALID, "unknown delta flags"),
        (b"\x12\x01\x01\x00\x00\x00\x00\x00\x00", INVALID, "truncated"),  # checksum eats counts
        (b"\x12\x00\x01\x00\x00\x00", INVALID, "truncated"),
        (b"\x12\x00\x01\x00\x00\x00\x00\x00", INVALID, "trailing"),
        (b"\x12\x00\x01\x00\x00\x01\x63\x00\x00", INVALID, "unknown entity 99"),
        (b"\x12\x00\x01\x00\x00\x01\x01\x08\x00\x00\x00", INVALID, "field mask 0x8"),
        (b"\x12\x00\x01\x00\x00\x01\x07\x40\x00", INVALID, "field mask 0x40"),
        (b"\x12\x00\x01\x00\x00\x01\x07\x01\x00", INVALID, "truncated"),
        (b"\x12\x00\x01\x00\x00\x00\x01", INVALID, "truncated"),
        (b"\x12\x00\x01\x00\x00\x00\xff\xff\x03", INVALID, "item count"),
        # an entity created in a delta cannot also be patched in it
        (
            b"\x12\x00\x01\x00\x01\x09\x01\x00\x00\x00\x00\x00\x01\x09\x00\x00",
            INVALID,
            "both created and patched",
        ),
    ],
)
def test_bad_server_messages(data: bytes, code: int, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        parse_server_message(data, SCHEMA, type_of, version=1)
    assert info.value.close_code == code


def test_state_messages_need_a_schema() -> None:
    for data in (sample_snapshot(), sample_delta(True)):
        with pytest.raises(RemoteProtocolError, match="before JOINED") as info:
            parse_server_message(data)
        assert info.value.close_code == PROTOCOL_ERROR
    with pytest.raises(RemoteProtocolError, match="need the receiver"):
        parse_server_message(sample_delta(False), SCHEMA)
    # a delta without patches needs no type_of
    state = State(SCHEMA)
    state.spawn(GEM)
    assert isinstance(parse_server_message(state.encode_delta(1, (), True), SCHEMA), Delta)


@pytest.mark.parametrize(
    "data",
    [
        Joined(1, "r", "arena", 20, SCHEMA, INPUT).to_bytes(),
        sample_snapshot(),
        sample_delta(True),
        sample_delta(False),
        RoomEvent(1, "chat", b"hello").to_bytes(),
        Error(4005, "full").to_bytes(),
        Close(1000, "bye").to_bytes(),
    ],
)
def test_every_truncation_of_a_server_message_is_rejected(data: bytes) -> None:
    for cut in range(1, len(data)):
        with pytest.raises(RemoteProtocolError) as info:
            parse_server_message(data[:cut], SCHEMA, type_of)
        assert info.value.close_code == INVALID
    with pytest.raises(RemoteProtocolError, match="trailing") as info:
        parse_server_message(data + b"\x00", SCHEMA, type_of)
    assert info.value.close_code == INVALID


def _joined_with(schema_bytes: bytes, input_bytes: bytes = b"\x00") -> bytes:
    return b"\x10\x01\x01\x01r\x01g\x14" + schema_bytes + input_bytes


@pytest.mark.parametrize(
    ("schema_bytes", "input_bytes", "error"),
    [
        # regressions: each of these once escaped as a non-protocol exception
        (b"\x01\x03a\x00b\x01\x01x\x00", b"\x00", None),  # NUL in a type name: was ValueError
        (b"\x01\x01t\x01\x02id\x00", b"\x00", "clashes"),  # was a LocalProtocolError
        (
            b"\x01\x01t\x01\x01f\x09" + wire.f64(-1e308) + wire.f64(1e308) + wire.f64(1),
            b"\x00",
            "parameters",
        ),  # hi - lo overflows: was OverflowError
        (b"\x01\x01t\x00", b"\x01\x04self\x00", None),  # was TypeError from InputSchema(self=)
    ],
)
def test_odd_joined_schemas_parse_or_raise_protocol_errors(
    schema_bytes: bytes, input_bytes: bytes, error: str | None
) -> None:
    data = _joined_with(schema_bytes, input_bytes)
    if error is not None:
        with pytest.raises(RemoteProtocolError, match=error) as info:
            parse_server_message(data)
        assert info.value.close_code == INVALID
    else:
        msg = parse_server_message(data)
        assert isinstance(msg, Joined)
        assert msg.to_bytes() == data


def test_joined_schema_with_etype_field_is_rejected() -> None:
    # a field named "etype" would shadow the entity's type and break every record encoder
    with pytest.raises(RemoteProtocolError, match="clashes"):
        parse_server_message(_joined_with(b"\x01\x01t\x01\x05etype\x00"))


# ---------------------------------------------------------------- fuzz

_VALID_CLIENT = [
    Join("room", "arena", "alice", "token").to_bytes(),
    Leave().to_bytes(),
    Input(5, (150, 50)).to_bytes(INPUT),
    Event("chat", b"hi").to_bytes(),
]
_VALID_SERVER = [
    Joined(1, "r", "arena", 20, SCHEMA, INPUT).to_bytes(),
    sample_snapshot(),
    sample_delta(True),
    sample_delta(False),
    RoomEvent(0, "joined", b"al").to_bytes(),
    Error(4005, "full").to_bytes(),
    Close(1000, "bye").to_bytes(),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid message with a few bytes overwritten, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and pos < len(data):
            del data[pos]
    return bytes(data)


def _any_bytes(seeds: list[bytes], kinds: list[int]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.builds(lambda k, rest: bytes((k,)) + rest, st.sampled_from(kinds), st.binary()),
        mutated(seeds),
    )


@given(_any_bytes(_VALID_CLIENT, [1, 2, 3, 4]), st.booleans())
@example(b"\x03\x01\x64\x64", False)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_parse_client_message(data: bytes, with_schema: bool) -> None:
    try:
        msg = parse_client_message(data, INPUT if with_schema else None)
    except RemoteProtocolError as exc:
        assert exc.close_code in (PROTOCOL_ERROR, INVALID)
        return
    assert isinstance(msg, Join | Leave | Input | Event)
    # whatever parses re-encodes to the same bytes (the codec is canonical for these kinds)
    if not isinstance(msg, Input):
        assert parse_client_message(msg.to_bytes(), INPUT) == msg
    else:
        assert parse_client_message(msg.to_bytes(INPUT), INPUT) == msg


@given(_any_bytes(_VALID_SERVER, [0x10, 0x11, 0x12, 0x13, 0x14, 0x15]), st.booleans())
@example(_joined_with(b"\x01\x03a\x00b\x00"), True)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_parse_server_message(data: bytes, with_schema: bool) -> None:
    try:
        msg = parse_server_message(data, SCHEMA if with_schema else None, type_of)
    except RemoteProtocolError as exc:
        assert exc.close_code in (PROTOCOL_ERROR, INVALID)
        return
    assert isinstance(msg, Joined | Snapshot | Delta | RoomEvent | Error | Close)


# ---------------------------------------------------------------- v2: RESUME, RESYNC, JOINED, BASE


@pytest.mark.parametrize(
    "msg",
    [
        Resume("lobby", "t" * MAX_RESUME_TOKEN_BYTES, 2**64 - 1, version=2),
        Resume("r" * MAX_NAME_BYTES, "", 0, version=2),
        Resync(),
        Join("lobby", version=1),
        Join("lobby", version=2),
    ],
)
def test_v2_client_messages_round_trip(msg: Resume | Resync | Join) -> None:
    data = msg.to_bytes()
    assert parse_client_message(data, INPUT) == msg
    if not isinstance(msg, Join):
        assert parse_client_message(data, INPUT, version=2) == msg


@pytest.mark.parametrize(
    ("data", "version", "code", "match"),
    [
        (Resume("lobby", "tok").to_bytes(), 1, PROTOCOL_ERROR, "unknown client message kind 0x05"),
        (Resync().to_bytes(), 1, PROTOCOL_ERROR, "unknown client message kind 0x06"),
        (Join("lobby", version=1).to_bytes(), 2, PROTOCOL_ERROR, "version 1"),
        (Join("lobby", version=2).to_bytes(), 1, PROTOCOL_ERROR, "version 2"),
        (Join("lobby", version=4).to_bytes(), None, PROTOCOL_ERROR, "version 4"),
        (Resume("lobby", "tok", version=1).to_bytes(), None, PROTOCOL_ERROR, "needs protocol"),
        (Resume("lobby", "tok", version=3).to_bytes(), 2, PROTOCOL_ERROR, "version 3"),
        (b"\x05", 2, INVALID, "truncated"),
        (b"\x05\x02\x05lobby\x03tok", 2, INVALID, "truncated"),  # no have_tick
        (b"\x05\x02\x05lobby\x03tok\x00\x00", 2, INVALID, "trailing"),
        (b"\x05\x02\x00\x81\x01" + b"a" * 129 + b"\x00", 2, INVALID, "exceeds"),
        (b"\x05\x02\x00\x01\xff\x00", 2, INVALID, "UTF-8"),
        (b"\x06\x00", 2, INVALID, "trailing"),
    ],
)
def test_v2_bad_client_messages(data: bytes, version: int | None, code: int, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        parse_client_message(data, INPUT, version=version)
    assert info.value.close_code == code


def test_v2_joined_round_trip_and_v1_layout() -> None:
    v2 = Joined(7, "lobby", "arena", 20, SCHEMA, INPUT, 2, True, "tok", 20000, 41)
    data = v2.to_bytes()
    assert data[:3] == b"\x10\x02\x01"
    back = parse_server_message(data, version=2)
    assert isinstance(back, Joined)
    assert (back.resumed, back.resume_token, back.seat_hold_ms, back.input_seq) == (
        True,
        "tok",
        20000,
        41,
    )
    assert back.to_bytes() == data
    v1 = Joined(7, "lobby", "arena", 20, SCHEMA, INPUT, 1, True, "tok", 20000, 41)
    # the v2 fields are not on a v1 wire
    plain = Joined(7, "lobby", "arena", 20, SCHEMA, INPUT, 1).to_bytes()
    assert v1.to_bytes() == plain
    assert parse_server_message(plain, version=1) == Joined(
        7, "lobby", "arena", 20, SCHEMA, INPUT, 1
    )
    with pytest.raises(RemoteProtocolError, match="version 1"):
        parse_server_message(plain, version=2)
    with pytest.raises(RemoteProtocolError, match="JOINED flags"):
        parse_server_message(b"\x10\x02\x80" + data[3:], version=2)


def test_v2_delta_base_flag() -> None:
    data = b"\x12\x02\x0a\x07\x00\x00\x00\x00"  # tick 10 from base 7, nothing changed
    delta = parse_server_message(data, SCHEMA, type_of)
    assert isinstance(delta, Delta)
    assert (delta.tick, delta.base, delta.base_tick, delta.checksum) == (10, 7, 7, None)
    with pytest.raises(RemoteProtocolError, match="unknown delta flags"):
        parse_server_message(data, SCHEMA, type_of, version=1)
    with pytest.raises(RemoteProtocolError, match="not before"):
        parse_server_message(b"\x12\x02\x0a\x0a\x00\x00\x00\x00", SCHEMA, type_of)
    plain = parse_server_message(b"\x12\x00\x0a\x00\x00\x00\x00", SCHEMA, type_of)
    assert isinstance(plain, Delta) and plain.base is None and plain.base_tick == 9


def test_redirect_round_trips_in_v2_and_is_unknown_in_v1() -> None:
    msg = Redirect("wss://127.0.0.3:8443/", "lobby")
    assert parse_server_message(msg.to_bytes(), version=2) == msg
    assert parse_server_message(msg.to_bytes()) == msg
    with pytest.raises(RemoteProtocolError) as err:
        parse_server_message(msg.to_bytes(), version=1)
    assert err.value.close_code == CloseCode.PROTOCOL_ERROR
    too_long = b"\x16" + bytes((0x81, 0x02)) + b"u" * (MAX_URL_BYTES + 1) + b"\x00"
    with pytest.raises(RemoteProtocolError):
        parse_server_message(too_long, version=2)
    with pytest.raises(LocalProtocolError):
        Redirect("wss://" + "x" * MAX_URL_BYTES, "r").to_bytes()
