"""gameserver.room.Room with the Arena game: pure tests, no trio and no sockets."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gameserver.game import Player, RoomContext
from gameserver.games.arena import GEM, GEM_COUNT, INPUT, PLAYER, SCHEMA, SPEED, Arena
from gameserver.room import Room, RoomConfig, RoomFull, TickOutput
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
    room = make_room()
    replica = synced(room)
    p = room.seat("id-a", "alice")
    q = room.seat("id-b", "bob")
    apply(replica, room.tick())
    avatar_id = avatar_of(room, p.number).id
    assert room.push_input(p.number, 1, codes(1.0, 0.0))
    apply(replica, room.tick())
    assert replica.acks == {1: 1}
    room.unseat(p.number)
    assert not room.is_empty
    out = room.tick()
    msg = apply(replica, out)
    assert msg.acks == ((1, 0),)
    assert msg.removed == (avatar_id,)
    assert replica.get(avatar_id) is None
    assert replica.acks == {}
    assert log(room)[-1] == ("leave", 1)
    assert room.acks == {2: 0}
    assert 1 not in room.ctx.players
    assert room.counters.leaves == 1
    # a player that never sent input also gets its ack-0 "left" marker
    room.unseat(q.number)
    msg2 = apply(replica, room.tick())
    assert msg2.acks == ((2, 0),)
    assert room.is_empty
    assert replica.of_type("player") == []


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
    room = make_room()
    replica = synced(room)
    a = room.seat("id-a", "alice")
    b = room.seat("id-b", "bob")
    apply(replica, room.tick())
    room.push_input(a.number, 3, codes(0, 0))
    room.push_input(b.number, 10, codes(0, 0))
    msg = apply(replica, room.tick())
    assert sorted(msg.acks) == [(1, 3), (2, 10)]
    room.push_input(a.number, 4, codes(0, 0))
    room.push_input(a.number, 9, codes(0, 0))
    msg = apply(replica, room.tick())
    assert msg.acks == ((1, 6),)  # 3 -> 9
    msg = apply(replica, room.tick())
    assert msg.acks == ()  # no input, no ack entry
    assert replica.acks == {1: 9, 2: 10} == room.acks


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
    room0 = make_room(checksum_interval=0)
    replica0 = synced(room0)
    assert all(apply(replica0, room0.tick()).checksum is None for _ in range(6))


def test_delta_checksum_matches_the_state() -> None:
    room = make_room(checksum_interval=1)
    room.seat("id-a", "alice")
    for _ in range(3):
        msg = parse_server_message(room.tick().delta, SCHEMA, lambda e: GEM)
        assert isinstance(msg, Delta)
        assert msg.checksum == room.ctx.state.checksum()


def steer_to_nearest_gem(room: Room, number: int) -> tuple[Any, ...]:
    avatar = avatar_of(room, number)
    gem = min(room.ctx.state.of_type(GEM), key=lambda g: math.hypot(g.x - avatar.x, g.y - avatar.y))
    dx, dy = gem.x - avatar.x, gem.y - avatar.y
    norm = math.hypot(dx, dy) or 1.0
    return codes(dx / norm, dy / norm)


def test_snapshot_after_ticks_matches_a_replica_built_from_deltas() -> None:
    room = make_room(seed=7, checksum_interval=4)
    replica = synced(room)  # joined at tick 0
    players = [room.seat(f"id-{i}", f"p{i}") for i in range(3)]
    apply(replica, room.tick())
    seqs = dict.fromkeys((p.number for p in players), 0)
    created = removed = 0
    late = None
    for tick in range(2, 400):
        for p in players:
            seqs[p.number] += 1
            assert room.push_input(p.number, seqs[p.number], steer_to_nearest_gem(room, p.number))
        if tick == 50:
            late_player = room.seat("id-late", "late")
        out = room.tick()
        msg = apply(replica, out)
        if tick == 50:
            assert out.joined == (late_player,)
            late = synced(room)  # the late joiner starts from a snapshot after this tick
        elif late is not None:
            apply(late, out)
        created += sum(r.type_id == GEM.type_id for r in msg.created)
        removed += len(msg.removed)
        if tick % 25 == 0:
            fresh = synced(room)
            assert view(fresh) == view(replica) == view(room.ctx.state)
            assert fresh.checksum() == replica.checksum() == room.ctx.state.checksum()
            assert fresh.tick == replica.tick == tick
            assert {p: s for p, s in fresh.acks.items() if s} == replica.acks
    # gems were picked up: each pickup removes a gem and spawns a new one in the same tick
    assert removed > 0 and created == removed
    scores = [avatar_of(room, p.number).score for p in players]
    assert sum(scores) > 0
    assert replica.acks == {p.number: seqs[p.number] for p in players}
    assert late is not None and view(late) == view(replica)
    assert late.checksum() == replica.checksum()
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
