"""gamesync.v3 state coding (shared.delta_v3): exact bytes, round trips, and the property that
v3 replicas fed the room's one v3 DELTA per tick (after snapshots at different ticks) hold
exactly the server's state and pass every checksum."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.games.arena import GEM, PLAYER, Arena
from gameserver.games.arena import SCHEMA as ARENA
from gameserver.room import Room, RoomConfig
from shared import delta_v3, wire
from shared.errors import RemoteProtocolError
from shared.messages import Delta, EntityPatch, EntityRecord, Snapshot, parse_server_message
from shared.replica import Replica
from shared.state import State
from tests.test_state_delta import SCHEMA, draw_acks, run_tick, view


def test_coding_for() -> None:
    assert delta_v3.coding_for(3) == 3
    assert delta_v3.coding_for(3, view=True) == 2  # views keep the v2 layout
    assert delta_v3.coding_for(2) == delta_v3.coding_for(1) == 2


def test_predicted_fields_are_the_wide_fixed_width_ones() -> None:
    assert PLAYER.predicted == (0, 1)  # x, y: FLOAT of 2 bytes; not score, hp, owner, name
    assert PLAYER.predict[0] == (0, 20000)
    assert GEM.predicted == (0, 1)
    kitchen = SCHEMA.types[0]
    # temp I16, big U32, pos FLOAT(-100, 100, 0.25) = 800 steps, 2 bytes
    assert [kitchen.names[i] for i in kitchen.predicted] == ["temp", "big", "pos"]
    assert kitchen.predict[kitchen.index["temp"]] == (-(2**15), 2**15 - 1)


def test_acks_bitmask_and_pairs() -> None:
    flags, data = delta_v3.encode_acks([(i, 1) for i in range(1, 9)])
    # base 1, bits 0xff (varint ff 01), no pairs
    assert flags == delta_v3.FLAG_ACK_BITS and data.hex() == "01" + "ff01"
    flags, data = delta_v3.encode_acks([(3, 1), (5, 2), (4, 0), (6, 1)])
    assert flags == delta_v3.FLAG_ACK_BITS | delta_v3.FLAG_ACK_PAIRS
    assert data.hex() == "03" + "09" + "02" + "0502" + "0400"  # bits 0 and 3: players 3, 6
    assert delta_v3.encode_acks([]) == (0, b"")
    flags, data = delta_v3.encode_acks([(1, 1), (65, 1)])  # 65 is beyond base + 63: a pair
    assert data.hex() == "01" + "01" + "01" + "4101"


def moving_arena() -> tuple[State, Any]:
    state = State(ARENA)
    avatar = state.spawn(PLAYER, x=100.0, y=200.0, hp=100, owner=1, name="al")
    state.encode_deltas(1, (), False, v3=True)
    return state, avatar


def test_a_player_moving_as_last_tick_costs_four_bytes() -> None:
    state, avatar = moving_arena()
    avatar.x = 110.0  # +200 codes
    avatar.y = 195.0  # -100 codes
    _, d2 = state.encode_deltas(2, [(1, 1)], False, v3=True)
    assert state.motion == {1: {0: 200, 1: -100}}
    # 12 flags(ACK_BITS|CHANGED) tick 2, acks: base 1 bits 1, 1 patch: gap 1, mask 03,
    # residuals against "no velocity" (a new entity): svarint(200) = 9003, svarint(-100) = c701
    assert d2 is not None and d2.hex() == "12" + "24" + "02" + "0101" + "01" + "01039003c701"
    avatar.x = 120.0
    avatar.y = 190.0  # moved as last tick: residuals 0
    _, d3 = state.encode_deltas(3, [(1, 1)], False, v3=True)
    assert d3 is not None and d3.hex() == "12" + "24" + "03" + "0101" + "01" + "01030000"
    patch = d3[-4:]
    assert len(patch) == 4  # id gap, mask, two 1-byte residuals (v2: 6 bytes)


def test_empty_sections_cost_nothing() -> None:
    state, _ = moving_arena()
    d2, d3 = state.encode_deltas(2, (), True, v3=True)
    assert d3 is not None and d2 is not None
    assert d3 == b"\x12\x01\x02" + d2[3:7]  # flags CHECKSUM, tick, checksum; nothing else
    assert len(d2) == len(d3) + 4  # v2: ack, created, changed and removed counts


def test_patch_ids_ascend_as_gaps() -> None:
    state = State(ARENA)
    for _ in range(200):
        state.spawn(GEM, x=1.0, y=1.0, value=1)
    state.encode_deltas(0, (), False, v3=True)
    for eid in (190, 5, 130):
        state.entities[eid].value = 2  # U8: not predicted
    _, d3 = state.encode_deltas(1, (), False, v3=True)
    assert d3 is not None
    r = wire.Reader(d3, 3)
    assert r.varint() == 3
    gaps = []
    for _ in range(3):
        gaps.append(r.varint())
        r.fixed(1)
        r.u8()
    assert gaps == [5, 125, 60]


def test_snapshot_and_catch_up_carry_the_motion() -> None:
    room = Room("r", Arena, RoomConfig(seed=3, seat_hold_ticks=10, history_ticks=10))
    room.codings = frozenset((2, 3))
    p = room.seat("a", "a")
    room.tick()
    seq = 0
    for _ in range(5):
        seq += 1
        room.push_input(p.number, seq, (200, 100))  # dx 1, dy 0: +200 x codes per tick
        room.tick()
    state = room.ctx.state
    avatar = p.data["avatar"]
    assert state.motion == {avatar.id: {0: 200}}  # x: +200 codes a tick; y unchanged
    snap = parse_server_message(room.snapshot(3), ARENA, version=3)
    assert isinstance(snap, Snapshot)
    motion = {m.id: m for m in snap.motion}
    assert motion == {avatar.id: EntityPatch(avatar.id, 0b1, (200,))}
    late = Replica(ARENA, coding=3)
    late.apply_snapshot(snap)
    catch = room.catch_up(2, coding=3)
    assert catch is not None
    msg = parse_server_message(catch, ARENA, late.type_of, version=3, predict=late.predicted)
    assert isinstance(msg, Delta) and msg.base == 2 and msg.motion == snap.motion
    early = Replica(ARENA, coding=3)
    early.apply_snapshot(parse_server_message(room.snapshot(3), ARENA, version=3))  # type: ignore[arg-type]
    for _ in range(6):
        seq += 1
        room.push_input(p.number, seq, (200, 100))
        out = room.tick()
        for rep in (late, early):
            m = parse_server_message(
                out.delta_v3, ARENA, rep.type_of, version=3, predict=rep.predicted
            )
            assert isinstance(m, Delta)
            rep.apply_delta(m)
            assert rep.checksum() == state.checksum()
            assert view(rep) == view(state)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x12\x80\x01", "unknown delta flags"),
        (b"\x12\x04\x01\x01\x00", "empty ack bitmask"),
        (b"\x12\x0c\x01\x01\x01\x01\x01\x01", "twice"),
        (b"\x12\x20\x01\x01\x00\x00", "ascend"),
        (b"\x12\x03\x05\x05\x00\x00\x00\x00\x00", "base tick"),
        (b"\x12\x08\x01\x05", "exceeds"),
    ],
)
def test_bad_v3_deltas(data: bytes, match: str) -> None:
    replica = Replica(ARENA, coding=3)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        parse_server_message(data, ARENA, replica.type_of, version=3, predict=replica.predicted)
    assert info.value.close_code == 1007


def test_predicted_code_out_of_range_is_invalid() -> None:
    state, avatar = moving_arena()
    replica = Replica(ARENA, coding=3)
    replica.apply_snapshot(
        parse_server_message(state.encode_snapshot(1, {}, 3), ARENA, version=3)  # type: ignore[arg-type]
    )
    # x is code 2000; a residual of -2001 lands at -1
    data = b"\x12\x20\x02\x01" + wire.varint(avatar.id) + b"\x01" + wire.svarint(-2001)
    with pytest.raises(RemoteProtocolError, match="out of range"):
        parse_server_message(data, ARENA, replica.type_of, version=3, predict=replica.predicted)


def test_v3_snapshot_motion_must_name_held_predicted_fields() -> None:
    state, avatar = moving_arena()
    snap = state.encode_snapshot(1, {}, 3)
    assert snap.endswith(b"\x00")  # no motion yet
    bad_id = snap[:-1] + b"\x01\x09\x01\x02"  # entity 9 is not in the snapshot
    with pytest.raises(RemoteProtocolError, match="not in it"):
        parse_server_message(bad_id, ARENA, version=3)
    bad_field = snap[:-1] + b"\x01" + wire.varint(avatar.id) + b"\x04\x02"  # score
    with pytest.raises(RemoteProtocolError, match="does not predict"):
        parse_server_message(bad_field, ARENA, version=3)
    zero = snap[:-1] + b"\x01" + wire.varint(avatar.id) + b"\x01\x00"
    with pytest.raises(RemoteProtocolError, match="velocity of 0"):
        parse_server_message(zero, ARENA, version=3)


# ---------------------------------------------------------------- properties


def drift_tick(data: st.DataObject, state: State) -> None:
    """Move some entities' predicted fields by a steady stride (what prediction is for)."""
    for ent in list(state.entities.values()):
        pred = ent.etype.predicted
        if not pred or not data.draw(st.booleans(), label="drift"):
            continue
        i = data.draw(st.sampled_from(pred), label="field")
        lo, hi = ent.etype.predict[i]  # type: ignore[misc]
        stride = data.draw(st.sampled_from([1, -3, 40, 200]), label="stride")
        code = min(max(int(ent.codes[i]) + stride, lo), hi)
        name = ent.etype.names[i]
        ftype = ent.etype.fields[name]
        setattr(ent, name, ftype.to_value(code))


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_v3_replicas_hold_the_server_state(data: st.DataObject) -> None:
    """One v3 DELTA per tick for everyone; replicas that got a v3 SNAPSHOT at tick 0 and at a
    later tick k hold exactly the state and pass every checksum; the v2 bytes of the same pass
    rebuild it too."""
    n_ticks = data.draw(st.integers(1, 10), label="ticks")
    k = data.draw(st.integers(1, n_ticks), label="late snapshot tick")
    state = State(SCHEMA)
    acks: dict[int, int] = {}
    run_tick(data, state, 5)
    state.encode_deltas(0, (), False, v3=True)
    first = Replica(SCHEMA, coding=3)
    first.apply_snapshot(parse_server_message(state.encode_snapshot(0, acks, 3), SCHEMA, version=3))  # type: ignore[arg-type]
    v2 = Replica(SCHEMA)
    v2.apply_snapshot(parse_server_message(state.encode_snapshot(0, acks), SCHEMA))  # type: ignore[arg-type]
    late: Replica | None = None
    for tick in range(1, n_ticks + 1):
        if data.draw(st.booleans(), label="random ops"):
            run_tick(data, state, 4)
        drift_tick(data, state)
        changes = draw_acks(data, acks)
        d2, d3 = state.encode_deltas(tick, changes, data.draw(st.booleans()), v3=True)
        assert d2 is not None and d3 is not None
        targets = [first] + ([late] if late is not None else [])
        for rep in targets:
            msg = parse_server_message(d3, SCHEMA, rep.type_of, version=3, predict=rep.predicted)
            assert isinstance(msg, Delta) and msg.tick == tick
            rep.apply_delta(msg)
            assert view(rep) == view(state)
            assert rep.acks == acks
            assert rep.motion == state.motion
        m2 = parse_server_message(d2, SCHEMA, v2.type_of, version=2)
        assert isinstance(m2, Delta)
        v2.apply_delta(m2)
        assert view(v2) == view(state)
        if tick == k:
            late = Replica(SCHEMA, coding=3)
            snap = parse_server_message(state.encode_snapshot(tick, acks, 3), SCHEMA, version=3)
            assert isinstance(snap, Snapshot)
            late.apply_snapshot(snap)
            assert late.motion == state.motion
    assert first.checksum() == state.checksum()
    assert first.checks == v2.checks


records = st.builds(
    lambda eid, x, y: EntityRecord(eid, 1, (x, y, 1)),
    st.integers(1, 300),
    st.integers(0, 20000),
    st.integers(0, 20000),
)


@given(
    st.integers(1, 2**20),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.lists(
        st.tuples(st.integers(1, 200), st.integers(0, 300)), max_size=12, unique_by=lambda a: a[0]
    ),
    st.lists(st.integers(0, 20000), max_size=6),
    st.lists(st.integers(301, 400), max_size=4, unique=True),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_delta_values_round_trip(
    tick: int,
    checksum: int | None,
    acks: list[tuple[int, int]],
    xs: list[int],
    removed: list[int],
    catch_up: bool,
) -> None:
    """encode_delta then parse gives the same Delta (acks as a set: bitmask players first)."""
    held = {1000 + i: (x, (x * 7) % 20001) for i, x in enumerate(xs)}  # gems the receiver holds
    vel = {eid: {0: 5} for eid in held if eid % 2}

    def predict(eid: int, i: int) -> int:
        return held[eid][i] + vel.get(eid, {}).get(i, 0)

    changed = tuple(
        EntityPatch(eid, 0b101, ((c[0] * 3) % 20001, 2)) for eid, c in sorted(held.items())
    )
    base = tick - 1 if catch_up and tick > 1 else None
    motion = tuple(EntityPatch(eid, 1, (5,)) for eid in sorted(vel)) if base is not None else ()
    delta = Delta(tick, checksum, tuple(acks), (), changed, tuple(removed), base, motion)
    data = delta_v3.encode_delta(
        delta, ARENA, lambda eid: GEM, predict, {eid: {0: 5} for eid in vel}
    )
    got = parse_server_message(data, ARENA, lambda eid: GEM, version=3, predict=predict)
    assert isinstance(got, Delta)
    assert sorted(got.acks) == sorted(acks)
    assert attrs_evolve_acks(got) == attrs_evolve_acks(delta)


def attrs_evolve_acks(d: Delta) -> Delta:
    import attrs

    return attrs.evolve(d, acks=tuple(sorted(d.acks)))
