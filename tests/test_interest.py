"""Views (issue 12): Interest, Grid and ViewEncoder unit tests, and the property that every
client's replica, fed the bytes, equals the server's view of that client."""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from gameserver.interest import Grid, Interest, ViewEncoder
from gameserver.room import Room, RoomConfig
from shared.errors import LocalProtocolError
from shared.messages import Delta, Joined, Snapshot, parse_server_message
from shared.replica import Replica
from shared.schema import EntityType, Float, Schema, String, VarInt
from shared.state import State, encode_record, view_checksum
from tests.views_game import AVATAR, CLOCK, INPUT, MOB, SCHEMA, ViewsGame

# ---------------------------------------------------------------- Interest


def test_interest_checks_its_settings() -> None:
    with pytest.raises(LocalProtocolError, match="cell_size"):
        Interest(cell_size=0.0, positions={MOB: ("x", "y")})
    with pytest.raises(LocalProtocolError, match="cell_size"):
        Interest(cell_size=math.inf)
    with pytest.raises(LocalProtocolError, match="view_cells"):
        Interest(cell_size=1.0, view_cells=-1)
    with pytest.raises(LocalProtocolError, match="no position field"):
        Interest(cell_size=1.0, positions={MOB: ("x", "z")})
    named = EntityType("named", x=Float(0, 1, 0.1), label=String(8))
    with pytest.raises(LocalProtocolError, match="not a numeric"):
        Interest(cell_size=1.0, positions={named: ("x", "label")})
    other = EntityType("other", x=VarInt(), y=VarInt())
    interest = Interest(cell_size=1.0, positions={other: ("x", "y")})
    with pytest.raises(LocalProtocolError, match="not in the schema"):
        interest.check(SCHEMA)
    interest.check(Schema(other))


def test_cells_around_and_cell_of() -> None:
    interest = Interest(cell_size=250.0, view_cells=1, positions={MOB: ("x", "y")})
    assert interest.cell_of(0.0, 0.0) == (0, 0)
    assert interest.cell_of(249.9, 250.0) == (0, 1)
    assert interest.cell_of(-0.1, -250.0) == (-1, -1)
    around = interest.cells_around((260.0, 10.0))
    assert len(around) == 9 and len(set(around)) == 9
    assert set(around) == {(x, y) for x in (0, 1, 2) for y in (-1, 0, 1)}
    assert interest.cells_around(None) == []
    assert Interest(cell_size=10.0, view_cells=0).cells_around((5.0, 5.0)) == [(0, 0)]


def test_grid_moves_entities_incrementally() -> None:
    state = State(SCHEMA)
    a = state.spawn(MOB, x=1.0, y=1.0)
    b = state.spawn(MOB, x=2.0, y=2.0)
    clock = state.spawn(CLOCK)
    grid = Grid()
    grid.add(a, (0, 0))
    grid.add(b, (0, 0))
    grid.add(clock, None)
    assert list(grid.members((0, 0))) == [a.id, b.id]
    grid.move(a, (0, 0), (3, 4))
    assert grid.where[a.id] == (3, 4) and list(grid.members((0, 0))) == [b.id]
    assert grid.remove(b.id) == (0, 0)
    assert (0, 0) not in grid.cells, "an emptied cell is dropped"
    assert grid.remove(clock.id) is None and not grid.globals
    assert grid.remove(999) is None


# ---------------------------------------------------------------- ViewEncoder by hand


def _parse(data: bytes, replica: Replica) -> Any:
    return parse_server_message(data, replica.schema, replica.type_of, version=2)


def test_encoder_enter_leave_reenter_and_globals() -> None:
    interest = Interest(cell_size=100.0, view_cells=0, positions={MOB: ("x", "y")})
    enc = ViewEncoder(interest, SCHEMA)
    state = State(SCHEMA)
    clock = state.spawn(CLOCK)
    here = state.spawn(MOB, x=50.0, y=50.0, hp=1)  # cell (0, 0)
    there = state.spawn(MOB, x=250.0, y=50.0, hp=2)  # cell (2, 0)
    enc.start(state)
    enc.set_view(1, [(0, 0)])
    replica = Replica(SCHEMA, view=True)
    replica.apply_snapshot(_parse(enc.snapshot(1, 0, 0), replica))
    assert set(replica.entities) == {clock.id, here.id}
    # tick 1: `there` walks into (0, 0) and is created; the clock ticks (a global patch)
    there.x = 60.0
    clock.t = 1
    d1 = enc.tick(state, 1, {1: [(0, 0)]}, {1: 3}, True, [1])[1]
    msg = _parse(d1, replica)
    assert isinstance(msg, Delta)
    assert [r.id for r in msg.created] == [there.id] and [p.id for p in msg.changed] == [clock.id]
    assert msg.acks == ((1, 3),)
    replica.apply_delta(msg)
    assert set(replica.entities) == {clock.id, here.id, there.id} and replica.checks == 2
    # tick 2: the client looks at (2, 0) instead: both mobs go, nothing comes (empty cell)
    d2 = enc.tick(state, 2, {1: [(2, 0)]}, {}, True, [1])[1]
    msg = _parse(d2, replica)
    assert sorted(msg.removed) == sorted([here.id, there.id]) and not msg.acks
    replica.apply_delta(msg)
    assert set(replica.entities) == {clock.id}
    # tick 3: `here` changes while unseen; tick 4: the client looks back: it comes back
    # with its current value
    here.hp = 9
    replica.apply_delta(_parse(enc.tick(state, 3, {1: [(2, 0)]}, {}, False, [1])[1], replica))
    msg = _parse(enc.tick(state, 4, {1: [(0, 0)]}, {}, True, [1])[1], replica)
    assert {r.id for r in msg.created} == {here.id, there.id}
    replica.apply_delta(msg)
    assert replica.entities[here.id].codes == here.codes
    # a removal in view, and one out of view
    far = state.spawn(MOB, x=950.0, y=950.0)
    replica.apply_delta(_parse(enc.tick(state, 5, {1: [(0, 0)]}, {}, True, [1])[1], replica))
    assert far.id not in replica.entities
    state.remove(there)
    state.remove(far)
    msg = _parse(enc.tick(state, 6, {1: [(0, 0)]}, {}, True, [1])[1], replica)
    assert list(msg.removed) == [there.id]
    replica.apply_delta(msg)
    enc.check(state)
    assert replica.checksum() == enc.checksum_of([(0, 0)])


def test_a_view_checksum_equals_the_sum_over_the_view() -> None:
    interest = Interest(cell_size=10.0, view_cells=1, positions={MOB: ("x", "y")})
    enc = ViewEncoder(interest, SCHEMA)
    state = State(SCHEMA)
    mobs = [state.spawn(MOB, x=float(i * 7 % 100), y=float(i * 13 % 100), hp=i) for i in range(60)]
    state.spawn(CLOCK)
    enc.start(state)
    cells = interest.cells_around((40.0, 40.0))
    enc.set_view(5, cells)
    want = view_checksum(encode_record(e) for e in enc.visible(5).values())
    assert enc.checksum_of(cells) == want
    for m in mobs[:30]:
        m.x = (m.x + 33.0) % 100
    enc.tick(state, 1, {5: cells}, {}, True, [5])
    assert enc.checksum_of(cells) == view_checksum(
        encode_record(e) for e in enc.visible(5).values()
    )


# ---------------------------------------------------------------- the property


class _Client:
    """A client fed the room's bytes: JOINED, its snapshot, then its deltas."""

    def __init__(self, room: Room, number: int) -> None:
        self.number = number
        self.room = room
        self.replica: Replica | None = None
        self.stalled = False  # a slow reader: its deltas are skipped
        self.owed = False  # a delta was skipped: a snapshot must come before any delta

    def receive(self, data: bytes) -> None:
        if self.replica is None:
            msg = parse_server_message(data, version=2)
            assert isinstance(msg, Joined) and msg.view and msg.player == self.number
            self.replica = Replica(msg.schema, view=msg.view)
            return
        msg = _parse(data, self.replica)
        if isinstance(msg, Snapshot):
            ids = [r.id for r in msg.entities]
            assert len(ids) == len(set(ids))
            assert [p for p, _ in msg.acks] == [self.number], "a view snapshot acks only me"
            self.replica.apply_snapshot(msg)
            self.owed = False
        else:
            assert not self.owed
            assert all(p == self.number and inc > 0 for p, inc in msg.acks)
            self.replica.apply_delta(msg)

    def check(self) -> None:
        replica = self.replica
        room = self.room
        assert replica is not None and room.views is not None
        assert replica.tick == room.state_tick
        view = room.view_of(self.number)
        assert {i: (e.etype.name, list(e.codes)) for i, e in view.items()} == {
            i: (e.etype.name, list(e.codes)) for i, e in replica.entities.items()
        }
        assert replica.checksum() == room.views.checksum_of(room.views.cells_of(self.number))
        mine = room.acks.get(self.number, 0)
        assert {p: s for p, s in replica.acks.items() if s} == ({self.number: mine} if mine else {})


_coord = st.floats(min_value=-50.0, max_value=1050.0, allow_nan=False)
_cell = st.tuples(st.integers(-1, 10), st.integers(-1, 10))
_op = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(st.just("move"), st.integers(0, 200), _coord, _coord),
    st.tuples(st.just("nudge"), st.integers(0, 200)),
    st.tuples(st.just("hp"), st.integers(0, 200), st.integers(0, 255)),
    st.tuples(st.just("spawn"), _coord, _coord),
    st.tuples(st.just("remove"), st.integers(0, 200)),
    st.tuples(st.just("join")),
    st.tuples(st.just("leave"), st.integers(0, 20)),
    st.tuples(st.just("input"), st.integers(0, 20), st.floats(-1, 1), st.floats(-1, 1)),
    st.tuples(st.just("focus"), st.integers(0, 20), st.none() | st.tuples(_coord, _coord)),
    st.tuples(st.just("cells"), st.integers(0, 20), st.none() | st.frozensets(_cell, max_size=6)),
    st.tuples(st.just("stall"), st.integers(0, 20)),
    st.tuples(st.just("catch"), st.integers(0, 20)),
    st.tuples(st.just("resync"), st.integers(0, 20)),
)


def _world_op(op: tuple[Any, ...]) -> Any:
    kind = op[0]

    def step(game: ViewsGame) -> None:
        mobs = list(game.state.of_type(MOB))
        if kind == "spawn":
            game.state.spawn(MOB, x=op[1], y=op[2], hp=1)
            return
        if not mobs:
            return
        mob = mobs[op[1] % len(mobs)]
        if kind == "move":
            mob.x, mob.y = op[2], op[3]
        elif kind == "nudge":  # a small step: mostly stays in its cell
            mob.x = mob.x + 3.0
        elif kind == "hp":
            mob.hp = op[2]
        else:
            game.state.remove(mob)

    return step


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=80), interval=st.sampled_from([1, 3]))
def test_every_replica_equals_the_servers_view_of_its_client(
    ops: list[tuple[Any, ...]], interval: int
) -> None:
    room = Room("r", ViewsGame, RoomConfig(max_players=64, checksum_interval=interval))
    game = room.game
    assert isinstance(game, ViewsGame)
    clients: dict[int, _Client] = {}
    pending: dict[int, _Client] = {}  # seated, join tick not run yet
    seq: dict[int, int] = {}

    def pick(i: int) -> _Client | None:
        return list(clients.values())[i % len(clients)] if clients else None

    def tick() -> None:
        out = room.tick()
        assert out.deltas is not None and out.delta == b""
        for player in out.joined:
            c = pending.pop(player.number)
            clients[c.number] = c
            c.receive(room.joined_message(player))
            c.receive(room.snapshot_for(c.number))
        joined = {p.number for p in out.joined}
        assert set(out.deltas) == set(clients) - joined
        for number, c in clients.items():
            if number in joined:
                continue
            if c.stalled:
                c.owed = True  # skipped: the outbound owes it a snapshot
            else:
                c.receive(out.deltas[number])
        room.views.check(room.ctx.state)  # type: ignore[union-attr]
        for c in clients.values():
            if not c.stalled and not c.owed:
                c.check()

    for i in range(3):
        first = room.seat(f"p{i}", "")
        pending[first.number] = _Client(room, first.number)
    tick()
    for op in ops:
        kind = op[0]
        if kind == "tick":
            tick()
        elif kind in ("move", "nudge", "hp", "spawn", "remove"):
            game.script.append(_world_op(op))
        elif kind == "join":
            if room.player_count < room.max_players:
                p = room.seat(f"j{op!r}{room.player_count}", "")
                pending[p.number] = _Client(room, p.number)
        elif (c := pick(op[1])) is None:
            continue
        elif kind == "leave":
            room.unseat(c.number)
            del clients[c.number]
        elif kind == "input":
            seq[c.number] = seq.get(c.number, 0) + 1
            room.push_input(c.number, seq[c.number], INPUT.codes_for({"dx": op[2], "dy": op[3]}))
        elif kind == "focus":
            player = room.player(c.number)
            assert player is not None
            player.data["focus"] = op[2]
        elif kind == "cells":
            player = room.player(c.number)
            assert player is not None
            player.data["cells"] = op[2]
        elif kind == "stall":
            c.stalled = True
        elif kind in ("catch", "resync"):
            # the backlog cleared (or a RESYNC): the snapshot is built now, between ticks
            c.stalled = False
            c.receive(room.snapshot_for(c.number))
            c.check()
    tick()
    for c in clients.values():
        if c.stalled:
            c.stalled = False
            c.receive(room.snapshot_for(c.number))
        c.check()
        assert c.replica is not None and c.replica.checks >= 1


# ---------------------------------------------------------------- encode once


class Watchers(ViewsGame):
    """Spectators: players have no avatar, so the world is the same whoever watches."""

    name = "watchers"

    def on_join(self, player: Any) -> None:
        pass


def _crowd(clients: int, spread: bool) -> Room:
    """A view room with ``clients`` players watching the same world: all from the same few
    spots (``spread`` False), or each from its own."""
    room = Room("crowd", Watchers, RoomConfig(max_players=64, checksum_interval=5))
    for i in range(clients):
        p = room.seat(f"c{i}", "")
        spot = (i % 4) if not spread else i
        p.data["focus"] = (100.0 + 230.0 * (spot % 4), 100.0 + 230.0 * (spot // 4 % 4))
    room.tick()
    return room


def _encodes_per_tick(room: Room, ticks: int) -> list[int]:
    game = room.game
    assert isinstance(game, ViewsGame)
    out = []
    for t in range(ticks):

        def wander(g: ViewsGame, t: int = t) -> None:
            for i, mob in enumerate(g.state.of_type(MOB)):
                if (i + t) % 3 == 0:
                    mob.x = (mob.x + 37.0) % 1000
                    mob.y = (mob.y + 11.0) % 1000

        game.script.append(wander)
        out.append(room.tick().encode_calls)
    return out


def test_encode_calls_per_tick_do_not_grow_with_the_number_of_clients() -> None:
    few = _encodes_per_tick(_crowd(4, spread=False), 20)
    many = _encodes_per_tick(_crowd(64, spread=False), 20)
    assert few == many, "64 clients on the same 4 spots cost the encodes of 4"
    assert sum(few) > 0
    # and bounded by the world: at most each entity's record and patch, plus a few chunks
    # per cell, whatever the number of clients
    room = _crowd(64, spread=True)
    ents = len(room.ctx.state.entities)
    cells = len({c for n in range(1, 65) for c in room.views.cells_of(n)})  # type: ignore[union-attr]
    for n in _encodes_per_tick(room, 20):
        assert n <= 2 * ents + 3 * cells + 3


def test_snapshots_of_one_tick_share_the_cells_chunks() -> None:
    room = _crowd(8, spread=False)
    before = room.counters.encode_calls
    first = room.snapshot_for(1)
    after_one = room.counters.encode_calls
    a = parse_server_message(first, SCHEMA, version=2)
    b = parse_server_message(room.snapshot_for(5), SCHEMA, version=2)
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot)
    assert (a.entities, a.checksum) == (b.entities, b.checksum), "same spot, same view"
    assert (a.acks, b.acks) == (((1, 0),), ((5, 0),)), "each its own ack"
    again = room.counters.encode_calls
    assert after_one > before and again == after_one


def test_a_view_room_has_no_history_and_no_whole_room_snapshot() -> None:
    room = Room("r", ViewsGame, RoomConfig(history_ticks=100, seat_hold_ticks=100))
    room.seat("a", "")
    room.tick()
    room.tick()
    assert room.history is None and room.catch_up(1) is None
    with pytest.raises(LocalProtocolError, match="snapshot_for"):
        room.snapshot()
    assert room.is_view and AVATAR in ViewsGame.interest.positions  # type: ignore[union-attr]
