"""gameserver.room.Room with the Arena game: pure tests, no trio and no sockets.

Tests of what players receive drive the room through gameserver.testing.RoomHarness, which
routes each tick's bytes to every seated player as the server does; the rest call Room itself.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gameserver.game import Player, RoomContext
from gameserver.games.arena import GEM, GEM_COUNT, INPUT, PLAYER, SCHEMA, SPEED, Arena
from gameserver.room import Room, RoomConfig, RoomFull, TickOutput
from gameserver.testing import HarnessClient, RoomHarness
from shared.messages import (
    Delta,
    Joined,
    RoomEvent,
    Snapshot,
    parse_server_message,
)
from shared.replica import Replica
from shared.schema import InputValues


class RecordingArena(Arena):
    """Arena that also records the hooks it sees."""

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.log: list[tuple[Any, ...]] = []

    def on_join(self, player: Player) -> None:
        self.log.append(("join", player.number))
        super().on_join(player)

    def on_leave(self, player: Player) -> None:
        self.log.append(("leave", player.number))
        super().on_leave(player)

    def on_input(self, player: Player, inp: InputValues) -> None:
        self.log.append(("input", player.number, round(inp.dx, 2), round(inp.dy, 2)))
        super().on_input(player, inp)

    def on_event(self, player: Player, name: str, data: bytes) -> None:
        self.log.append(("event", player.number, name, data))
        super().on_event(player, name, data)


def make_room(**config: Any) -> Room:
    return Room("test-room", RecordingArena, RoomConfig(**config))


def log(room: Room) -> list[tuple[Any, ...]]:
    game = room.game
    assert isinstance(game, RecordingArena)
    out = list(game.log)
    game.log.clear()
    return out


def codes(dx: float, dy: float) -> tuple[Any, ...]:
    return INPUT.codes_for({"dx": dx, "dy": dy})


def synced(room: Room) -> Replica:
    """A replica built from the room's current SNAPSHOT, as a newly joined client gets it."""
    replica = Replica(SCHEMA)
    snap = parse_server_message(room.snapshot(), SCHEMA)
    assert isinstance(snap, Snapshot)
    replica.apply_snapshot(snap)
    return replica


def apply(replica: Replica, out: TickOutput) -> Delta:
    msg = parse_server_message(out.delta, SCHEMA, replica.type_of)
    assert isinstance(msg, Delta)
    replica.apply_delta(msg)
    return msg


def last_delta(client: HarnessClient) -> Delta:
    """The DELTA the last tick sent ``client``."""
    msg = client.last_update
    assert isinstance(msg, Delta)
    return msg


def view(entities: Any) -> dict[int, tuple[str, list[Any]]]:
    return {e.id: (e.etype.name, list(e.codes)) for e in entities}


def avatar_of(room: Room, number: int) -> Any:
    return room.ctx.players[number].data["avatar"]


# ---------------------------------------------------------------- seats


def test_seating_is_capped_at_max_players() -> None:
    room = make_room(max_players=2)
    a = room.seat("id-a", "alice")
    b = room.seat("id-b", "bob")
    assert (a.number, b.number) == (1, 2)
    assert room.player_count == 2
    with pytest.raises(RoomFull):
        room.seat("id-c", "carol")
    assert room.player_count == 2
    room.unseat(a.number)
    c = room.seat("id-c", "carol")
    assert c.number == 3  # numbers are never reused
    with pytest.raises(RoomFull):
        room.seat("id-d", "dave")
    assert [p.name for p in room.players()] == ["bob", "carol"]


def test_join_runs_at_the_next_tick_and_reports_joined() -> None:
    room = make_room()
    assert room.is_empty
    p = room.seat("id-a", "alice")
    assert not room.is_empty
    assert log(room) == []
    assert p.number not in room.ctx.players
    out = room.tick()
    assert out.tick == 1
    assert out.joined == (p,)
    assert log(room) == [("join", 1)]
    avatar = avatar_of(room, 1)
    assert avatar.owner == 1 and avatar.hp == 100 and avatar.name == "alice"
    assert room.acks == {1: 0}
    assert room.counters.joins == 1
    # the new player's avatar is a creation in this tick's delta
    msg = parse_server_message(out.delta, SCHEMA)
    assert isinstance(msg, Delta)
    assert [(r.id, r.type_id) for r in msg.created] == [(avatar.id, PLAYER.type_id)]
    assert room.tick().joined == ()


def test_joined_message() -> None:
    room = make_room(tick_rate=30)
    p = room.seat("id-a", "alice")
    msg = parse_server_message(room.joined_message(p))
    assert isinstance(msg, Joined)
    assert (msg.player, msg.room, msg.game, msg.tick_rate) == (1, "test-room", "arena", 30)
    assert msg.schema.to_bytes() == SCHEMA.to_bytes()
    assert msg.input_schema.to_bytes() == INPUT.to_bytes()


def test_unseat_before_the_join_completes_is_silent() -> None:
    room = make_room()
    p = room.seat("id-a", "alice")
    room.unseat(p.number)
    room.unseat(p.number)  # twice is harmless
    out = room.tick()
    assert out.joined == ()
    assert log(room) == []
    msg = parse_server_message(out.delta, SCHEMA)
    assert isinstance(msg, Delta) and msg.acks == () and msg.created == ()
    assert room.counters.leaves == 0 and room.is_empty


def test_leaving_player_gets_ack_zero_and_loses_its_entity() -> None:
    h = RoomHarness(RecordingArena, seat_hold=0)  # a dropped connection leaves at once
    room = h.room
    alice, bob, carol = h.join("id-a", "alice"), h.join("id-b", "bob"), h.join("id-c", "carol")
    h.tick()
    avatar_id = avatar_of(room, alice.number).id
    alice.input(dx=1.0, dy=0.0)
    h.tick()
    assert carol.replica.acks == {1: 1, 2: 0, 3: 0}
    alice.leave()
    assert not room.is_empty
    h.tick()
    msg = last_delta(carol)
    assert msg.acks == ((1, 0),)
    assert msg.removed == (avatar_id,)
    assert carol.entity(avatar_id) is None
    assert carol.replica.acks == {2: 0, 3: 0}
    assert log(room)[-1] == ("leave", 1)
    assert room.acks == {2: 0, 3: 0}
    assert 1 not in room.ctx.players
    assert room.counters.leaves == 1
    # a player that never sent input also gets its ack-0 "left" marker, dropped or not
    bob.drop()
    h.tick()
    assert last_delta(carol).acks == ((2, 0),)
    assert [e.name for e in carol.entities("player")] == ["carol"]
    h.assert_in_sync()
    carol.leave()
    h.tick()
    assert room.is_empty and room.acks == {}


# ---------------------------------------------------------------- inputs


def test_inputs_are_applied_in_sequence_order_at_the_next_tick() -> None:
    room = make_room()
    p = room.seat("id-a", "alice")
    room.tick()
    log(room)
    avatar = avatar_of(room, p.number)
    x0, y0 = avatar.x, avatar.y
    assert room.push_input(p.number, 1, codes(0.1, 0.0))
    assert room.push_input(p.number, 2, codes(0.2, 0.0))
    assert room.push_input(p.number, 5, codes(0.0, -1.0))
    assert log(room) == []  # nothing happens before the tick
    assert (avatar.x, avatar.y) == (x0, y0)
    out = room.tick()
    assert log(room) == [("input", 1, 0.1, 0.0), ("input", 1, 0.2, 0.0), ("input", 1, 0.0, -1.0)]
    assert room.counters.inputs_applied == 3
    # the last input wins: straight down at SPEED for one tick (1/20 s = 10 units)
    step = SPEED / room.config.tick_rate
    assert avatar.x == pytest.approx(x0, abs=0.05)
    assert avatar.y == pytest.approx(max(y0 - step, 0.0), abs=0.05)
    msg = parse_server_message(out.delta, SCHEMA, lambda eid: room.ctx.state.entities[eid].etype)
    assert isinstance(msg, Delta)
    assert msg.acks == ((1, 5),)


def test_inputs_pushed_before_the_join_apply_in_the_join_tick() -> None:
    room = make_room()
    p = room.seat("id-a", "alice")
    assert room.push_input(p.number, 1, codes(1.0, 0.0))
    out = room.tick()
    assert log(room) == [("join", 1), ("input", 1, 1.0, 0.0)]
    msg = parse_server_message(out.delta, SCHEMA)
    assert isinstance(msg, Delta) and msg.acks == ((1, 1),)
    assert room.acks == {1: 1}


def test_stale_and_duplicate_seqs_are_dropped_and_counted() -> None:
    room = make_room()
    p = room.seat("id-a", "alice")
    room.tick()
    assert not room.push_input(p.number, 0, codes(0, 0))  # seqs start at 1
    assert room.push_input(p.number, 4, codes(0.4, 0))
    assert not room.push_input(p.number, 4, codes(0.5, 0))  # duplicate
    assert not room.push_input(p.number, 3, codes(0.3, 0))  # stale
    assert room.counters.inputs_dropped == 3
    room.tick()
    assert room.acks == {1: 4}
    assert not room.push_input(p.number, 4, codes(0.9, 0))  # already applied
    assert room.push_input(p.number, 6, codes(0.6, 0))
    room.tick()
    assert [e for e in log(room) if e[0] == "input"] == [
        ("input", 1, 0.4, 0.0),
        ("input", 1, 0.6, 0.0),
    ]
    assert room.counters.inputs_dropped == 4
    assert room.counters.inputs_applied == 2
    assert room.acks == {1: 6}


def test_inputs_beyond_the_queue_limit_are_dropped_and_counted() -> None:
    room = make_room(input_queue_limit=3)
    p = room.seat("id-a", "alice")
    room.tick()
    results = [room.push_input(p.number, seq, codes(seq / 10, 0)) for seq in range(1, 6)]
    assert results == [True, True, True, False, False]
    assert room.counters.inputs_dropped == 2
    out = room.tick()
    assert [e[2] for e in log(room) if e[0] == "input"] == [0.1, 0.2, 0.3]
    msg = parse_server_message(out.delta, SCHEMA, lambda eid: room.ctx.state.entities[eid].etype)
    assert isinstance(msg, Delta) and msg.acks == ((1, 3),)
    # a dropped seq was never accepted, so it may be sent again after the tick
    assert room.push_input(p.number, 4, codes(0.4, 0))
    room.tick()
    assert room.acks == {1: 4}


def test_input_for_an_unknown_player_is_ignored() -> None:
    room = make_room()
    assert not room.push_input(99, 1, codes(0, 0))
    assert not room.push_event(99, "chat", b"")
    assert room.counters.inputs_dropped == 0 and room.counters.events_dropped == 0


def test_acks_in_deltas_are_increments() -> None:
    h = RoomHarness(RecordingArena)
    a, b = h.join("id-a", "alice"), h.join("id-b", "bob")
    h.tick()
    assert a.send_input(3, {"dx": 0, "dy": 0})
    assert b.send_input(10, {"dx": 0, "dy": 0})
    h.tick()
    assert sorted(last_delta(a).acks) == [(1, 3), (2, 10)]
    a.send_input(4, {})
    a.send_input(9, {})
    h.tick()
    assert last_delta(b).acks == ((1, 6),)  # 3 -> 9
    h.tick()
    assert last_delta(b).acks == ()  # no input, no ack entry
    assert a.replica.acks == b.replica.acks == {1: 9, 2: 10} == h.room.acks
    assert (a.last_acked, b.last_acked) == (9, 10)


# ---------------------------------------------------------------- events


def test_events_are_relayed_after_the_tick() -> None:
    room = make_room()
    a = room.seat("id-a", "alice")
    out = room.tick()
    # Arena announces every join (sender 0 = the room itself)
    assert out.events == ((RoomEvent(0, "joined", b"alice").to_bytes(), None),)
    log(room)
    assert room.push_event(a.number, "chat", b"hello")
    assert room.push_event(a.number, "emote", b"")
    assert log(room) == []
    out = room.tick()
    assert log(room) == [("event", 1, "chat", b"hello"), ("event", 1, "emote", b"")]
    assert [(parse_server_message(data), target) for data, target in out.events] == [
        (RoomEvent(1, "chat", b"hello"), None),
        (RoomEvent(1, "emote", b""), None),
    ]
    assert room.tick().events == ()


def test_event_queue_limit() -> None:
    room = make_room(event_queue_limit=2)
    a = room.seat("id-a", "alice")
    room.tick()
    assert [room.push_event(a.number, f"e{i}", b"") for i in range(4)] == [True, True, False, False]
    assert room.counters.events_dropped == 2
    assert len(room.tick().events) == 2


def test_send_to_targets_one_player() -> None:
    room = make_room()
    a = room.seat("id-a", "alice")
    room.tick()
    room.ctx.send_to(room.ctx.players[a.number], "secret", b"42")
    out = room.tick()
    assert out.events == ((RoomEvent(0, "secret", b"42").to_bytes(), a.number),)


# ---------------------------------------------------------------- state and checksums


def test_initial_snapshot_holds_the_gems_at_tick_zero() -> None:
    room = make_room()
    snap = parse_server_message(room.snapshot(), SCHEMA)
    assert isinstance(snap, Snapshot)
    assert snap.tick == 0
    assert [r.type_id for r in snap.entities] == [GEM.type_id] * GEM_COUNT
    assert snap.acks == ()
    assert room.snapshot() is room.snapshot()  # cached until the next tick


def test_checksum_every_checksum_interval_ticks() -> None:
    room = make_room(checksum_interval=3)
    replica = synced(room)
    flags = [apply(replica, room.tick()).checksum is not None for _ in range(10)]
    assert flags == [False, False, True, False, False, True, False, False, True, False]
    assert replica.checks == 1 + 3
    # what a player receives: its join tick's SNAPSHOT (checked), then deltas from tick 2
    h = RoomHarness(RecordingArena, checksum_interval=3)
    alice = h.join("id-a", "alice")
    h.tick()
    flags = []
    for _ in range(10):
        h.tick()
        flags.append(last_delta(alice).checksum is not None)
    assert flags == [False, True, False, False, True, False, False, True, False, False]
    assert alice.replica.checks == 1 + 3
    h0 = RoomHarness(RecordingArena, checksum_interval=0)
    zero = h0.join("id-a", "alice")
    h0.tick()
    for _ in range(6):
        h0.tick()
        assert last_delta(zero).checksum is None
    assert zero.replica.checks == 1  # only the snapshot's


def test_delta_checksum_matches_the_state() -> None:
    room = make_room(checksum_interval=1)
    room.seat("id-a", "alice")
    for _ in range(3):
        msg = parse_server_message(room.tick().delta, SCHEMA, lambda e: GEM)
        assert isinstance(msg, Delta)
        assert msg.checksum == room.ctx.state.checksum()


def steer_to_nearest_gem(room: Room, number: int) -> dict[str, float]:
    avatar = avatar_of(room, number)
    gem = min(room.ctx.state.of_type(GEM), key=lambda g: math.hypot(g.x - avatar.x, g.y - avatar.y))
    dx, dy = gem.x - avatar.x, gem.y - avatar.y
    norm = math.hypot(dx, dy) or 1.0
    return {"dx": dx / norm, "dy": dy / norm}


def test_snapshot_after_ticks_matches_a_replica_built_from_deltas() -> None:
    h = RoomHarness(RecordingArena, seed=7, checksum_interval=4)
    room = h.room
    watcher = synced(room)  # follows every delta from tick 0, as seen from the side
    players = [h.join(f"id-{i}", f"p{i}") for i in range(3)]
    apply(watcher, h.tick())
    first = players[0]
    created = removed = 0
    late: HarnessClient | None = None
    for tick in range(2, 400):
        for p in players:
            p.input(**steer_to_nearest_gem(room, p.number))
        if tick == 50:
            late = h.join("id-late", "late")
        out = h.tick()
        msg = apply(watcher, out)
        assert msg == last_delta(first)  # every seated player got this tick's delta
        if tick == 50:
            assert late is not None and out.joined == (late.player,)
            # the late joiner starts from a snapshot after this tick
            assert isinstance(late.last_update, Snapshot) and late.last_update.tick == 50
        created += sum(r.type_id == GEM.type_id for r in msg.created)
        removed += len(msg.removed)
        if tick % 25 == 0:
            h.assert_in_sync()  # every player's replica, field by field, and its checksum
            fresh = synced(room)
            assert view(fresh) == view(watcher) == view(first.replica) == view(room.ctx.state)
            assert fresh.checksum() == watcher.checksum() == room.ctx.state.checksum()
            assert fresh.tick == watcher.tick == first.tick == tick
            assert {p: s for p, s in fresh.acks.items() if s} == watcher.acks
    # gems were picked up: each pickup removes a gem and spawns a new one in the same tick
    assert removed > 0 and created == removed
    scores = [avatar_of(room, p.number).score for p in players]
    assert sum(scores) > 0
    assert watcher.acks == {p.number: p.last_sent for p in players}
    assert all(p.last_acked == p.last_sent == 398 for p in players)
    assert late is not None and view(late.replica) == view(watcher)
    assert late.replica.checksum() == watcher.checksum()
    # each verified the snapshot's checksum and that of every 4th tick's delta after it
    assert [p.replica.checks for p in [*players, late]] == [1 + 99] * 3 + [1 + 87]
    assert not any(p.desyncs for p in [*players, late])
    h.assert_in_sync()
    assert room.counters.ticks == 399


def test_same_seed_same_bytes() -> None:
    def run(seed: int) -> list[bytes]:
        room = make_room(seed=seed)
        out = [room.snapshot()]
        p = room.seat("id", "alice")
        for seq in range(1, 30):
            room.push_input(p.number, seq, codes(math.cos(seq), math.sin(seq)))
            out.append(room.tick().delta)
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)
