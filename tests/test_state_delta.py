"""shared.state + shared.replica: snapshots and deltas rebuild the exact server state.

The property tests run random ticks of spawns, writes and removals over a schema with every
common field kind, encode a SNAPSHOT at some tick k plus the DELTAs after it, and check that a
Replica fed those bytes holds the same entities (id -> type, codes), the same checksum and the
same acks after every tick.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.games.arena import GEM, PLAYER
from gameserver.games.arena import SCHEMA as ARENA
from shared.messages import Delta, Snapshot, parse_server_message
from shared.replica import DesyncError, Replica
from shared.schema import (
    Bool,
    EntityType,
    FieldType,
    Float,
    Int16,
    Schema,
    String,
    UInt8,
    UInt32,
    VarInt,
    VarUInt,
)
from shared.state import State, encode_patch, encode_record, records_checksum

# ---------------------------------------------------------------- exact byte counts


def arena_with_player() -> tuple[State, Any]:
    state = State(ARENA)
    for _ in range(6):
        state.spawn(GEM, x=1.0, y=2.0, value=1)
    avatar = state.spawn(PLAYER, x=100.0, y=200.0, hp=100, owner=1, name="al")
    state.encode_delta(1, (), False)  # flush the creations
    return state, avatar


def test_moving_arena_player_costs_six_bytes() -> None:
    state, avatar = arena_with_player()
    assert avatar.id == 7
    avatar.x = 110.0  # code round(110 / 0.05) = 2200 = 0x0898
    avatar.y = 195.5  # code round(195.5 / 0.05) = 3910 = 0x0f46
    patch = encode_patch(avatar)
    # 07     entity id 7 (varint, 1 byte for ids below 128)
    # 03     field mask, 1 byte (6 fields -> ceil(6/8) = 1): bits 0 (x) and 1 (y)
    # 9808   x code 2200, u16 little-endian (0..1000 by 0.05 = 20000 steps -> 2 bytes)
    # 460f   y code 3910, u16 little-endian
    assert patch.hex() == "07" + "03" + "9808" + "460f"
    assert len(patch) == 6

    # the same 6 bytes measured as the difference between two deltas
    still, _ = arena_with_player()
    without = still.encode_delta(2, (), False)
    with_move = state.encode_delta(2, (), False)
    assert len(with_move) - len(without) == 6
    assert with_move.find(patch) >= 0


def test_entity_ids_from_128_take_a_second_byte() -> None:
    state = State(ARENA)
    for _ in range(128):
        state.spawn(GEM)
    avatar = state.spawn(PLAYER)
    state.encode_delta(1, (), False)
    assert avatar.id == 129
    avatar.x = 1.0
    avatar.y = 1.0
    assert len(encode_patch(avatar)) == 7  # 2-byte id + mask + 2 + 2


def test_small_delta_full_bytes() -> None:
    state, avatar = arena_with_player()
    avatar.x = 110.0
    avatar.y = 195.5
    data = state.encode_delta(2, [(1, 1)], False)
    assert data.hex() == (
        "12"  # kind DELTA
        "00"  # flags: no checksum
        "02"  # tick 2
        "01"
        "01"
        "01"  # 1 ack: player 1, last applied seq advanced by 1
        "00"  # 0 created
        "01"
        "07"
        "03"
        "9808"
        "460f"  # 1 changed: entity 7, mask x|y, x, y
        "00"  # 0 removed
    )
    assert len(data) == 15
    # the same tick with the checksum flag carries 4 more bytes: CRC-32 LE after the tick
    state2, avatar2 = arena_with_player()
    avatar2.x = 110.0
    avatar2.y = 195.5
    data2 = state2.encode_delta(2, [(1, 1)], True)
    crc = state2.checksum()
    assert data2 == data[:1] + b"\x01" + data[2:3] + crc.to_bytes(4, "little") + data[3:]


def test_snapshot_layout_and_checksum() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM, x=10.0, y=20.0, value=3)
    data = state.encode_snapshot(9, {1: 4})
    record = encode_record(gem)
    assert record.hex() == "01" + "01" + "c800" + "9001" + "03"  # id, type, x, y, value
    crc = zlib.crc32(record)
    assert state.checksum() == crc == records_checksum([record])
    assert data.hex() == "11" + "09" + crc.to_bytes(4, "little").hex() + "010104" + "01" + (
        record.hex()
    )


def test_checksum_is_crc32_over_records_in_id_order() -> None:
    state = State(ARENA)
    a = state.spawn(GEM, value=1)
    b = state.spawn(PLAYER, name="x")
    c = state.spawn(GEM, value=2)
    state.remove(b)
    expect = zlib.crc32(encode_record(a) + encode_record(c))
    assert state.checksum() == expect
    assert State(ARENA).checksum() == 0  # CRC-32 of nothing


# ---------------------------------------------------------------- tracking details


def test_created_then_changed_in_one_tick_is_one_full_record() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM, value=1)
    gem.value = 2
    msg = parse_server_message(state.encode_delta(1, (), False), ARENA)
    assert isinstance(msg, Delta)
    assert [r.codes for r in msg.created] == [(0, 0, 2)]
    assert msg.changed == () and msg.removed == ()


def test_created_then_removed_in_one_tick_is_not_sent() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM)
    state.remove(gem)
    assert not state.has_pending_changes()
    assert state.encode_delta(1, (), False).hex() == "12000100000000"


def test_changed_then_removed_sends_only_the_removal() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM)
    state.encode_delta(1, (), False)
    gem.value = 9
    state.remove(gem)
    state.remove(gem.id)  # a second removal is a no-op
    gem.value = 10  # writes to a removed entity are not tracked
    msg = parse_server_message(state.encode_delta(2, (), False), ARENA)
    assert isinstance(msg, Delta)
    assert msg.changed == () and msg.removed == (gem.id,)
    assert not state.has_pending_changes()


def test_same_code_write_is_not_a_change() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM, x=10.0)
    state.encode_delta(1, (), False)
    gem.x = 10.01  # quantizes to the same code (200)
    assert not state.has_pending_changes()
    gem.x = 10.05
    assert state.has_pending_changes()


def test_snapshot_does_not_consume_pending_changes() -> None:
    state = State(ARENA)
    gem = state.spawn(GEM)
    state.encode_snapshot(0, {})
    assert state.has_pending_changes()
    msg = parse_server_message(state.encode_delta(1, (), False), ARENA)
    assert isinstance(msg, Delta) and [r.id for r in msg.created] == [gem.id]


def test_spawn_rejects_bad_input() -> None:
    from shared.errors import LocalProtocolError

    state = State(ARENA)
    with pytest.raises(LocalProtocolError):
        state.spawn(GEM, nope=1)
    with pytest.raises(LocalProtocolError):
        state.spawn(EntityType("stranger"))
    with pytest.raises(LocalProtocolError):
        state.spawn(GEM, value=256)
    assert len(state) == 0


# ---------------------------------------------------------------- the property tests

KITCHEN = EntityType(
    "kitchen",
    flag=Bool(),
    small=UInt8(),
    temp=Int16(),
    big=UInt32(),
    count=VarUInt(),
    offset=VarInt(),
    pos=Float(-100.0, 100.0, 0.25),
    label=String(24),
    extra=UInt8(),  # a 9th field: the field mask takes 2 bytes
)
PAIR = EntityType("pair", on=Bool(), n=VarInt())
MARKER = EntityType("marker")  # no fields: a 0-byte mask
SCHEMA = Schema(KITCHEN, PAIR, MARKER)
assert KITCHEN.mask_bytes == 2 and PAIR.mask_bytes == 1 and MARKER.mask_bytes == 0


def values_for(ftype: FieldType) -> st.SearchStrategy[Any]:
    if isinstance(ftype, Bool):
        return st.booleans()
    if isinstance(ftype, UInt8):
        return st.integers(0, 255)
    if isinstance(ftype, Int16):
        return st.integers(-(2**15), 2**15 - 1)
    if isinstance(ftype, UInt32):
        return st.integers(0, 2**32 - 1)
    if isinstance(ftype, VarUInt):
        return st.integers(0, 2**64 - 1)
    if isinstance(ftype, VarInt):
        return st.integers(-(2**63), 2**63 - 1)
    if isinstance(ftype, Float):
        # out-of-range values are clamped, so draw beyond the bounds too
        return st.floats(-150.0, 150.0, allow_nan=False)
    if isinstance(ftype, String):
        return st.text(max_size=6)  # at most 24 UTF-8 bytes
    raise AssertionError(ftype)


def view(entities: Any) -> dict[int, tuple[int, list[Any]]]:
    return {e.id: (e.etype.type_id, list(e.codes)) for e in entities}


def run_tick(data: st.DataObject, state: State, max_ops: int) -> None:
    """Random spawns, writes and removals, as game code would do them in one tick."""
    for _ in range(data.draw(st.integers(0, max_ops), label="ops")):
        live = sorted(state.entities)
        op = data.draw(st.sampled_from(["spawn", "set", "set", "remove"] if live else ["spawn"]))
        if op == "spawn":
            etype = data.draw(st.sampled_from(SCHEMA.types))
            names: list[str] = []
            if etype.names:
                names = data.draw(st.lists(st.sampled_from(etype.names), unique=True))
            values = {n: data.draw(values_for(etype.fields[n]), label=n) for n in names}
            state.spawn(etype, **values)
        elif op == "set":
            ent = state.entities[data.draw(st.sampled_from(live))]
            if not ent.etype.names:
                continue
            for name in data.draw(st.lists(st.sampled_from(ent.etype.names), min_size=1)):
                setattr(ent, name, data.draw(values_for(ent.etype.fields[name]), label=name))
        else:
            state.remove(data.draw(st.sampled_from(live)))


def draw_acks(data: st.DataObject, acks: dict[int, int]) -> list[tuple[int, int]]:
    """This tick's ack changes (player, increment; 0 = left), applied to the ``acks`` model."""
    players = data.draw(st.lists(st.integers(1, 5), unique=True, max_size=3), label="acked")
    changes = []
    for p in players:
        inc = data.draw(st.integers(0, 300), label="inc")
        changes.append((p, inc))
        if inc == 0:
            acks.pop(p, None)
        else:
            acks[p] = acks.get(p, 0) + inc
    return changes


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_snapshot_plus_deltas_rebuild_the_state(data: st.DataObject) -> None:
    n_ticks = data.draw(st.integers(1, 8), label="ticks")
    k = data.draw(st.integers(0, n_ticks), label="snapshot tick")
    state = State(SCHEMA)
    acks: dict[int, int] = {}
    run_tick(data, state, 6)  # the initial state is tick 0, as in Room
    state.encode_delta(0, (), False)
    snapshot = state.encode_snapshot(0, acks) if k == 0 else b""
    deltas: list[bytes] = []
    expected: list[tuple[dict[int, tuple[int, list[Any]]], int, dict[int, int]]] = []
    for tick in range(1, n_ticks + 1):
        run_tick(data, state, 6)
        changes = draw_acks(data, acks)
        with_checksum = data.draw(st.booleans(), label="with checksum")
        delta = state.encode_delta(tick, changes, with_checksum)
        assert not state.has_pending_changes()
        if tick > k:
            deltas.append(delta)
            expected.append((view(state), state.checksum(), dict(acks)))
        elif tick == k:
            snapshot = state.encode_snapshot(tick, acks)
            snap_view = (view(state), state.checksum(), dict(acks))

    replica = Replica(SCHEMA)
    snap = parse_server_message(snapshot, SCHEMA)
    assert isinstance(snap, Snapshot) and snap.tick == k
    replica.apply_snapshot(snap)
    if k > 0:
        assert (view(replica), replica.checksum(), replica.acks) == snap_view
    checks = 1
    for tick, (delta, (ents, checksum, ack_model)) in enumerate(
        zip(deltas, expected, strict=True), start=k + 1
    ):
        msg = parse_server_message(delta, SCHEMA, replica.type_of)
        assert isinstance(msg, Delta) and msg.tick == tick
        replica.apply_delta(msg)
        checks += msg.checksum is not None
        assert replica.tick == tick
        assert view(replica) == ents
        assert replica.checksum() == checksum
        assert replica.acks == ack_model
        assert replica.checks == checks
    assert replica.tick == n_ticks
    assert view(replica) == view(state)
    assert replica.checksum() == state.checksum()


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_snapshot_round_trip_property(data: st.DataObject) -> None:
    state = State(SCHEMA)
    for _ in range(data.draw(st.integers(1, 3))):
        run_tick(data, state, 8)
        state.encode_delta(1, (), False)
    acks = data.draw(st.dictionaries(st.integers(1, 2**20), st.integers(0, 2**64 - 1), max_size=5))
    tick = data.draw(st.integers(0, 2**40))
    snap = parse_server_message(state.encode_snapshot(tick, acks), SCHEMA)
    assert isinstance(snap, Snapshot)
    assert snap.tick == tick and dict(snap.acks) == acks
    assert snap.checksum == state.checksum()
    replica = Replica(SCHEMA)
    replica.apply_snapshot(snap)
    assert view(replica) == view(state)
    assert [r.id for r in snap.entities] == sorted(state.entities)


# ---------------------------------------------------------------- desync detection


def two_ticks() -> tuple[bytes, list[bytes]]:
    """A snapshot at tick 1 and the deltas for ticks 2 and 3 (both with checksums)."""
    state = State(SCHEMA)
    pair = state.spawn(PAIR, n=5)
    state.encode_delta(1, (), False)
    snapshot = state.encode_snapshot(1, {1: 3})
    pair.n = -7
    k = state.spawn(KITCHEN, label="hi", extra=3)
    d2 = state.encode_delta(2, [(1, 2)], True)
    k.extra = 4
    state.remove(pair)
    d3 = state.encode_delta(3, [(1, 0)], True)
    return snapshot, [d2, d3]


def synced_replica(snapshot: bytes) -> Replica:
    replica = Replica(SCHEMA)
    msg = parse_server_message(snapshot, SCHEMA)
    assert isinstance(msg, Snapshot)
    replica.apply_snapshot(msg)
    return replica


def parse_delta(data: bytes, replica: Replica) -> Delta:
    msg = parse_server_message(data, SCHEMA, replica.type_of)
    assert isinstance(msg, Delta)
    return msg


def test_two_ticks_apply_cleanly() -> None:
    snapshot, (d2, d3) = two_ticks()
    replica = synced_replica(snapshot)
    assert replica.acks == {1: 3}
    replica.apply_delta(parse_delta(d2, replica))
    assert replica.acks == {1: 5}
    assert [e.etype.name for e in replica] == ["pair", "kitchen"]
    replica.apply_delta(parse_delta(d3, replica))
    assert replica.acks == {}  # increment 0: player 1 left
    assert [e.etype.name for e in replica] == ["kitchen"]
    assert replica.of_type("kitchen")[0].extra == 4
    assert replica.checks == 3


def test_skipped_tick_raises_desync() -> None:
    snapshot, (_d2, d3) = two_ticks()
    replica = synced_replica(snapshot)
    # d3 patches entity 2, which only d2 created: even parsing it fails
    with pytest.raises(DesyncError, match="lacks"):
        parse_delta(d3, replica)
    # an empty delta for tick 3 parses, but the replica is at tick 1
    empty = State(SCHEMA).encode_delta(3, (), False)
    with pytest.raises(DesyncError, match="tick 3 after tick 1"):
        replica.apply_delta(parse_delta(empty, replica))
    assert replica.tick == 1


def test_repeated_tick_raises_desync() -> None:
    snapshot, (d2, _d3) = two_ticks()
    replica = synced_replica(snapshot)
    replica.apply_delta(parse_delta(d2, replica))
    again = State(SCHEMA).encode_delta(2, (), False)
    with pytest.raises(DesyncError, match="tick 2 after tick 2"):
        replica.apply_delta(parse_delta(again, replica))


def test_delta_before_snapshot_raises_desync() -> None:
    replica = Replica(SCHEMA)
    with pytest.raises(DesyncError, match="before any snapshot"):
        replica.apply_delta(parse_delta(State(SCHEMA).encode_delta(0, (), False), replica))


@pytest.mark.parametrize("byte", [3, 4, 5, 6])
def test_corrupted_delta_checksum_raises_desync(byte: int) -> None:
    snapshot, (d2, _d3) = two_ticks()
    assert d2[1] == 1  # checksum flag; bytes 3..6 are the CRC (tick 2 is one byte at 2)
    bad = bytearray(d2)
    bad[byte] ^= 0x01
    replica = synced_replica(snapshot)
    msg = parse_delta(bytes(bad), replica)
    with pytest.raises(DesyncError, match="checksum mismatch"):
        replica.apply_delta(msg)
    # verification can be skipped (e.g. while catching up)
    replica2 = synced_replica(snapshot)
    replica2.apply_delta(parse_delta(bytes(bad), replica2), verify=False)
    assert replica2.tick == 2


def test_corrupted_snapshot_checksum_raises_desync() -> None:
    snapshot, _ = two_ticks()
    bad = bytearray(snapshot)
    bad[2] ^= 0x80  # tick 1 is one byte; the CRC starts at offset 2
    msg = parse_server_message(bytes(bad), SCHEMA)
    assert isinstance(msg, Snapshot)
    with pytest.raises(DesyncError, match="checksum mismatch"):
        Replica(SCHEMA).apply_snapshot(msg)


def test_corrupted_field_value_raises_desync() -> None:
    snapshot, (d2, _d3) = two_ticks()
    replica = synced_replica(snapshot)
    msg = parse_delta(d2, replica)
    # tamper with the patched value of entity 1 (pair.n), keep the server's checksum
    patch = msg.changed[0]
    assert patch.id == 1 and patch.codes == (-7,)
    tampered = Delta(
        msg.tick, msg.checksum, msg.acks, msg.created, (type(patch)(1, patch.mask, (8,)),), ()
    )
    with pytest.raises(DesyncError, match="checksum"):
        replica.apply_delta(tampered)


def test_structural_desyncs() -> None:
    snapshot, (d2, _d3) = two_ticks()
    replica = synced_replica(snapshot)
    msg = parse_delta(d2, replica)
    with pytest.raises(DesyncError, match="exists"):
        replica.apply_delta(Delta(2, None, (), (msg.created[0], msg.created[0]), (), ()))
    replica = synced_replica(snapshot)
    with pytest.raises(DesyncError, match="removes entity 99"):
        replica.apply_delta(Delta(2, None, (), (), (), (99,)))
    with pytest.raises(DesyncError, match="patches entity 99"):
        replica.type_of(99)


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_records_checksum_is_the_chained_crc(records: list[bytes]) -> None:
    """One CRC over the records joined is the CRC chained record by record (the definition in
    docs/protocol.md), for any records, none included."""
    crc = 0
    for rec in records:
        crc = zlib.crc32(rec, crc)
    assert records_checksum(records) == crc
    assert records_checksum(iter(records)) == crc
