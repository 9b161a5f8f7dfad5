"""Catch-up deltas from a room's bounded delta history (gameserver/history.py). Pure.

The core claim, as a property: for random spawns, changes, removals, joins, leaves and inputs
over random ticks, for every tick still in the history, ``catch_up(have_tick)`` applied to a
replica at ``have_tick`` gives exactly the server's current state, checksum and acks."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gameserver.game import Game, RoomContext
from gameserver.games.arena import INPUT as ARENA_INPUT
from gameserver.games.arena import Arena
from gameserver.history import DeltaHistory
from gameserver.room import Room, RoomConfig
from shared.messages import Delta, Snapshot, parse_server_message
from shared.protocol import Kind
from shared.replica import Replica
from shared.schema import (
    Bool,
    EntityType,
    Float,
    InputSchema,
    InputValues,
    Int16,
    Schema,
    String,
    UInt8,
    UInt32,
    VarInt,
    VarUInt,
)
from shared.state import FLAG_BASE, FLAG_CHECKSUM

# every field kind; a Float of 3 bytes, a String long enough for a 2-byte length
SMALL = EntityType(
    "small",
    x=UInt8(),
    n=VarUInt(),
    tag=String(200),
    f=Float(0.0, 1000.0, 0.001),
    b=Bool(),
    i=Int16(),
    v=VarInt(),
    u=UInt32(),
)
WIDE = EntityType("wide", **{f"f{i}": UInt8() for i in range(10)})  # a 2-byte mask
EMPTY = EntityType("empty")  # no fields at all
SCHEMA = Schema(SMALL, WIDE, EMPTY)
INPUT = InputSchema(v=UInt8())
TYPES = (SMALL, WIDE, EMPTY)


def field_value(etype: EntityType, field: int, value: int) -> Any:
    ftype = etype.types[field]
    if isinstance(ftype, String):
        return "t" * (value % 180)
    if isinstance(ftype, UInt8):
        return value % 256
    if isinstance(ftype, Float):
        return value * 3.7 % 1000
    if isinstance(ftype, Bool):
        return value % 2 == 1
    if isinstance(ftype, Int16):
        return value * 211 % 60000 - 30000
    if isinstance(ftype, VarInt):
        return (value - 150) * 1_000_003
    if isinstance(ftype, UInt32):
        return value * 12_345_679 % 2**32
    return value * 1_000_003


class Scripted(Game):
    """Runs, in each update, the entity operations the test planned for that tick."""

    name = "scripted"
    schema = SCHEMA
    input_schema = INPUT
    #: entities made at tick 0 (past 127: ids and counts of 2-byte varints)
    initial: ClassVar[int] = 2

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.plan: list[tuple[Any, ...]] = []
        for i in range(self.initial):
            self.state.spawn(WIDE, f3=i % 256) if i % 2 else self.state.spawn(SMALL, x=i % 256)

    def on_input(self, player: Any, inp: InputValues) -> None:
        pass

    def update(self, dt: float) -> None:
        state = self.state
        for op in self.plan:
            alive = sorted(state.entities)
            if op[0] == "spawn":
                etype = TYPES[op[1]]
                values = {n: field_value(etype, i, op[2] + i) for i, n in enumerate(etype.names)}
                state.spawn(etype, **values)
            elif not alive:
                continue
            elif op[0] == "set":
                ent = state.entities[alive[op[1] % len(alive)]]
                etype = ent.etype
                if len(etype):
                    field = op[2] % len(etype)
                    setattr(ent, etype.names[field], field_value(etype, field, op[3]))
            elif op[0] == "remove":
                state.remove(alive[op[1] % len(alive)])
        self.plan = []


entity_ops = st.one_of(
    st.tuples(st.just("spawn"), st.integers(0, 2), st.integers(0, 300)),
    st.tuples(st.just("set"), st.integers(0, 999), st.integers(0, 9), st.integers(0, 300)),
    st.tuples(st.just("remove"), st.integers(0, 999)),
)
player_ops = st.one_of(
    st.tuples(st.just("join")),
    st.tuples(st.just("leave"), st.integers(0, 9)),
    st.tuples(st.just("input"), st.integers(0, 9), st.integers(1, 3)),
)
ticks_strategy = st.lists(
    st.tuples(st.lists(player_ops, max_size=3), st.lists(entity_ops, max_size=6)),
    min_size=1,
    max_size=30,
)


@attrs.frozen
class Seen:
    """What a client holds at one tick."""

    tick: int
    entities: dict[int, tuple[int, list[Any]]]
    acks: dict[int, int]


def seen(replica: Replica) -> Seen:
    ents = {e.id: (e.etype.type_id, list(e.codes)) for e in replica.entities.values()}
    return Seen(replica.tick, ents, dict(replica.acks))


def replica_at(schema: Schema, at: Seen) -> Replica:
    replica = Replica(schema)
    replica.entities = {
        eid: schema.types[tid].cls(eid, list(codes), None)
        for eid, (tid, codes) in at.entities.items()
    }
    replica.tick = at.tick
    replica.acks = dict(at.acks)
    return replica


def apply_catch_up(replica: Replica, data: bytes) -> Delta:
    """Parse a catch-up DELTA for ``replica`` and apply it (shared.replica checks the base)."""
    assert data[0] == Kind.DELTA and data[1] == FLAG_CHECKSUM | FLAG_BASE
    msg = parse_server_message(data, replica.schema, replica.type_of, version=2)
    assert isinstance(msg, Delta) and msg.base == replica.tick
    replica.apply_delta(msg)
    assert replica.tick == msg.tick
    return msg


def run_script(
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]],
    history_ticks: int,
    history_bytes: int,
    initial: int = 2,
    seq_step: int = 1,
    codings: frozenset[int] = frozenset((2,)),
) -> tuple[Room, Replica, list[Seen]]:
    """Play ``script``; the room's sessions want ``codings`` (its history records the v3
    deltas where it makes them, and makes them when no session wants any)."""
    game_cls = type("ScriptedN", (Scripted,), {"initial": initial})
    room = Room(
        "h",
        game_cls,
        RoomConfig(
            max_players=6,
            checksum_interval=3,
            history_ticks=history_ticks,
            history_bytes=history_bytes,
        ),
    )
    room.codings = codings
    v3 = 2 not in codings
    truth = Replica(SCHEMA, coding=3 if v3 else 2)
    snap = parse_server_message(room.snapshot(3 if v3 else 2), SCHEMA, version=3 if v3 else 2)
    assert isinstance(snap, Snapshot)
    truth.apply_snapshot(snap)
    seqs: dict[int, int] = {}
    joins = 0
    history = [seen(truth)]
    for pops, eops in script:
        for op in pops:
            numbers = sorted(p.number for p in room.players())
            if op[0] == "join" and room.player_count < room.max_players:
                joins += 1
                room.seat(f"id{joins}", f"p{joins}")
            elif op[0] == "leave" and numbers:
                room.unseat(numbers[op[1] % len(numbers)])
            elif op[0] == "input" and numbers:
                number = numbers[op[1] % len(numbers)]
                for _ in range(op[2]):
                    seqs[number] = seqs.get(number, 0) + seq_step
                    room.push_input(number, seqs[number], (0,))
        game = room.game
        assert isinstance(game, Scripted)
        game.plan = list(eops)
        out = room.tick()
        if not v3:
            msg = parse_server_message(out.delta, SCHEMA, truth.type_of)
        else:
            assert not out.delta and room.history is not None
            data = out.delta_v3  # with no session wanting it: made for the history alone
            assert data == room.history._entries[-1][1]
            msg = parse_server_message(
                data, SCHEMA, truth.type_of, version=3, predict=truth.predicted
            )
        assert isinstance(msg, Delta)
        truth.apply_delta(msg)
        history.append(seen(truth))
    return room, truth, history


def check_catch_ups(room: Room, truth: Replica, history: list[Seen]) -> int:
    """Every have_tick either gets a catch-up that lands exactly on the server's state, or
    (out of the history) None. Returns how many catch-ups were checked."""
    state = room.ctx.state
    log = room.history
    assert log is not None
    oldest = log.oldest_base
    now = room.state_tick
    server_view = {e.id: (e.etype.type_id, list(e.codes)) for e in state.entities.values()}
    checked = 0
    for at in history:
        have = at.tick
        data = log.catch_up(have, now, state)
        in_history = oldest is not None and oldest <= have < now
        if not in_history:
            assert data is None, have
            assert room.catch_up(have) is None
            continue
        assert data is not None, (have, oldest, now)
        replica = replica_at(SCHEMA, at)
        msg = apply_catch_up(replica, data)
        checked += 1
        assert msg.tick == now and msg.checksum == state.checksum()
        assert seen(replica).entities == server_view
        assert replica.checksum() == state.checksum()
        assert replica.acks == truth.acks
        # sorted, and only what it must carry
        assert [r.id for r in msg.created] == sorted(r.id for r in msg.created)
        assert [p.id for p in msg.changed] == sorted(p.id for p in msg.changed)
        assert list(msg.removed) == sorted(msg.removed)
        assert [p for p, _ in msg.acks] == sorted(p for p, _ in msg.acks)
        assert {r.id for r in msg.created} == set(server_view) - set(at.entities)
        assert set(msg.removed) == set(at.entities) - set(server_view)
        for patch in msg.changed:
            assert patch.mask and patch.id in at.entities
        # Room.catch_up: the same bytes unless a snapshot is no bigger
        got = room.catch_up(have)
        if have == 0:
            assert got is None
        elif got is None:
            assert len(data) >= len(room.snapshot())
        else:
            assert got == data and len(got) < len(room.snapshot())
    return checked


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ticks_strategy,
    st.integers(1, 40),
    st.sampled_from([2, 2, 150]),  # 150: 2-byte ids and counts
    st.sampled_from([1, 1, 200]),  # 200: 2-byte ack increments
    st.sampled_from([(2,), (3,), (2, 3), ()]),  # what the sessions want; () = no session
)
def test_catch_up_lands_on_the_current_state(
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]],
    history_ticks: int,
    initial: int,
    seq_step: int,
    codings: tuple[int, ...],
) -> None:
    room, truth, history = run_script(
        script, history_ticks, 1 << 20, initial, seq_step, frozenset(codings)
    )
    checked = check_catch_ups(room, truth, history)
    assert checked == min(history_ticks, len(script))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks_strategy, st.integers(20, 400))
def test_catch_up_with_a_byte_bound(
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]], history_bytes: int
) -> None:
    room, truth, history = run_script(script, 100, history_bytes)
    log = room.history
    assert log is not None and log.nbytes <= history_bytes
    check_catch_ups(room, truth, history)


def test_a_patched_then_removed_entity_and_acks_of_a_player_who_left() -> None:
    # tick 1: 2 join; tick 2: inputs, entity 1 changes; tick 3: entity 1 goes, player 1 leaves
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = [
        ([("join",), ("join",)], []),
        ([("input", 0, 2), ("input", 1, 1)], [("set", 0, 0, 7)]),
        ([("leave", 0), ("input", 1, 3)], [("remove", 0), ("spawn", 1, 5)]),
    ]
    room, truth, history = run_script(script, 10, 1 << 20)
    replica = replica_at(SCHEMA, history[1])
    data = room.history.catch_up(1, 3, room.ctx.state)  # type: ignore[union-attr]
    assert data is not None
    msg = apply_catch_up(replica, data)
    assert msg.acks == ((1, 0), (2, 4))
    assert msg.removed == (1,) and [r.id for r in msg.created] == [3]
    assert msg.changed == ()  # entity 2 never changed
    assert replica.acks == truth.acks == {2: 4}
    assert check_catch_ups(room, truth, history) == 3


def test_changes_to_different_fields_in_different_ticks_are_merged() -> None:
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = [
        ([], []),
        ([], [("set", 1, 0, 10)]),  # entity 2 (wide): f0
        ([], [("set", 1, 9, 20)]),  # then f9 (the mask's second byte)
        ([], [("set", 0, 2, 30), ("set", 1, 0, 11)]),  # entity 1: tag; entity 2: f0 again
    ]
    room, truth, history = run_script(script, 10, 1 << 20)
    assert room.history is not None
    replica = replica_at(SCHEMA, history[1])
    data = room.history.catch_up(1, 4, room.ctx.state)
    assert data is not None
    msg = apply_catch_up(replica, data)
    assert [(p.id, p.mask) for p in msg.changed] == [(1, 0b100), (2, 0b10_0000_0001)]
    assert check_catch_ups(room, truth, history) == 4


# ---------------------------------------------------------------- Room.catch_up's rules


def arena_room(**config: Any) -> Room:
    config.setdefault("history_ticks", 200)
    return Room("a", Arena, RoomConfig(seed=3, **config))


def arena_play(room: Room, ticks: int, players: int = 4) -> None:
    for i in range(players):
        room.seat(f"id{i}", f"p{i}")
    seq = 0
    for t in range(ticks):
        seq += 1
        for p in list(room.players()):
            room.push_input(p.number, seq, ARENA_INPUT.codes_for({"dx": (t % 7) / 7, "dy": -0.5}))
        room.tick()


def test_room_catch_up_refuses_what_it_cannot_answer() -> None:
    room = arena_room(history_ticks=20)
    arena_play(room, 50)
    now = room.state_tick
    assert room.catch_up(0) is None
    assert room.catch_up(now + 1) is None  # the future
    assert room.catch_up(now - 21) is None  # older than the history
    assert room.catch_up(now - 20) is not None
    assert room.catch_up(now - 1) is not None
    assert room.catch_up(now) is None  # a delta's base is below its tick
    no_history = Room("a", Arena, RoomConfig(seed=3))
    arena_play(no_history, 5)
    assert no_history.history is None and no_history.catch_up(4) is None


def test_a_catch_up_is_smaller_than_a_snapshot_for_a_short_outage() -> None:
    room = arena_room()
    arena_play(room, 60)
    for back in (1, 20, 59):
        data = room.catch_up(room.state_tick - back)
        assert data is not None
        assert len(data) < len(room.snapshot())


def test_no_catch_up_when_a_snapshot_is_no_bigger() -> None:
    # everything the client had is gone and everything now is new: the catch-up carries the
    # same records as a snapshot, and the removals on top
    script: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = [
        ([], []),
        ([], [("remove", 0), ("remove", 0), ("spawn", 0, 1), ("spawn", 1, 2), ("spawn", 0, 3)]),
    ]
    room, _, _ = run_script(script, 10, 1 << 20)
    assert room.history is not None
    data = room.history.catch_up(1, 2, room.ctx.state)
    assert data is not None and len(data) >= len(room.snapshot())
    assert room.catch_up(1) is None


def test_history_bounds() -> None:
    room = arena_room(history_ticks=10)
    arena_play(room, 40)
    log = room.history
    assert log is not None and len(log) == 10 and log.oldest_base == room.state_tick - 10
    room = arena_room(history_ticks=1000, history_bytes=300)
    arena_play(room, 40)
    log = room.history
    assert log is not None and 0 < log.nbytes <= 300 and len(log) < 40
    assert len(log._removed_types) <= sum(len(ids) for *_, ids in log._entries)
    with pytest.raises(ValueError):
        DeltaHistory(0, 10)


@pytest.mark.parametrize("codings", [(2,), (3,), (2, 3)])
def test_recording_history_changes_no_delta_byte(codings: tuple[int, ...]) -> None:
    plain = arena_room(history_ticks=0)
    logged = arena_room(history_ticks=50)
    for room in (plain, logged):
        room.codings = frozenset(codings)
        for i in range(3):
            room.seat(f"id{i}", f"p{i}")
    for t in range(80):
        outs = []
        for room in (plain, logged):
            for p in list(room.players()):
                room.push_input(p.number, t + 1, ARENA_INPUT.codes_for({"dx": 1, "dy": 1}))
            outs.append(room.tick())
        assert outs[0].delta == outs[1].delta
        assert outs[0].delta_v3 == outs[1].delta_v3
        # one coding per tick, never one made only for the history
        assert bool(outs[1].delta) == (2 in codings)
        assert bool(outs[1].delta_v3) == (3 in codings)
    assert plain.ctx.state.removal_log is None
    assert logged.ctx.state.removal_log == []
