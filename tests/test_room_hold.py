"""Held seats in the pure Room (gamesync.v2 resume): detach, reattach, expiry, the hooks and
their order, capacity, the held seat's event buffer, the input seq reset. No trio."""

from __future__ import annotations

from typing import Any

import pytest

from gameserver.game import GameRegistry, Player, RoomContext
from gameserver.games.arena import INPUT, SCHEMA, Arena
from gameserver.resume import ResumeClaims, ResumeRefusal
from gameserver.room import NoSuchSeat, Room, RoomConfig, RoomFull, TickOutput, ticks_for
from shared.messages import Delta, RoomEvent, Snapshot, parse_server_message
from shared.replica import Replica
from shared.schema import InputValues

EPOCH = b"\x11" * 8
HOLD = 5


class HookArena(Arena):
    """Arena that records its hooks, and sends an event per hook to test the buffers."""

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.log: list[tuple[Any, ...]] = []

    def on_join(self, player: Player) -> None:
        self.log.append(("join", player.number, player.connected))
        super().on_join(player)

    def on_leave(self, player: Player) -> None:
        self.log.append(("leave", player.number))
        super().on_leave(player)

    def on_drop(self, player: Player) -> None:
        self.log.append(
            ("drop", player.number, player.connected, player.number in self.ctx.players)
        )
        super().on_drop(player)

    def on_resume(self, player: Player) -> None:
        self.log.append(("resume", player.number, player.connected))
        super().on_resume(player)

    def on_input(self, player: Player, inp: InputValues) -> None:
        self.log.append(("input", player.number))
        super().on_input(player, inp)

    def on_event(self, player: Player, name: str, data: bytes) -> None:
        self.log.append(("event", player.number, name))
        if name == "dm":  # reply to one other player
            self.ctx.send_to(self.ctx.players[int(data)], "dm", b"for " + data)
        else:
            super().on_event(player, name, data)


def make_room(**config: Any) -> Room:
    config.setdefault("seat_hold_ticks", HOLD)
    config.setdefault("epoch", EPOCH)
    return Room("hold-room", HookArena, RoomConfig(**config))


def take_log(room: Room) -> list[tuple[Any, ...]]:
    game = room.game
    assert isinstance(game, HookArena)
    out = list(game.log)
    game.log.clear()
    return out


def move() -> tuple[Any, ...]:
    return INPUT.codes_for({"dx": 1.0, "dy": 0.0})


def seated(room: Room, n: int) -> list[Player]:
    players = [room.seat(f"id-{i}", f"p{i}") for i in range(n)]
    room.tick()
    take_log(room)
    return players


def event_names(payloads: list[bytes]) -> list[tuple[int, str, bytes]]:
    out = []
    for data in payloads:
        msg = parse_server_message(data)
        assert isinstance(msg, RoomEvent)
        out.append((msg.sender, msg.name, msg.data))
    return out


# ---------------------------------------------------------------- detach and hold


def test_a_held_seat_stays_in_the_room_and_counts_toward_capacity() -> None:
    room = make_room(max_players=2)
    a, b = seated(room, 2)
    avatar = room.ctx.players[a.number].data["avatar"]
    assert room.detach(a.number) is True
    assert room.is_held(a.number) and not room.is_held(b.number)
    assert a.connected is False and b.connected is True
    assert room.player_count == 2 and room.held_count == 1
    assert a.number in room.ctx.players
    with pytest.raises(RoomFull):
        room.seat("id-x", "x")
    out = room.tick()
    assert take_log(room) == [("drop", a.number, False, True)]
    assert out.expired == () and out.resumed == ()
    assert room.ctx.state.get(avatar.id) is avatar  # the entity stays
    assert room.counters.holds == 1


def test_drop_runs_in_the_per_player_step_before_that_players_inputs() -> None:
    room = make_room()
    a, b, c = seated(room, 3)
    room.push_input(a.number, 1, move())
    room.push_input(c.number, 1, move())
    room.push_input(b.number, 1, move())
    room.detach(b.number)  # b's queued input is dropped with the connection
    room.unseat(c.number)
    room.tick()
    assert take_log(room) == [
        ("leave", c.number),
        ("input", a.number),
        ("drop", b.number, False, True),
    ]


def test_resume_runs_at_the_next_tick_then_the_players_inputs() -> None:
    room = make_room()
    a, _ = seated(room, 2)
    room.detach(a.number)
    room.tick()
    take_log(room)
    assert room.reattach(a.number) is a
    assert a.connected is True and not room.is_held(a.number)
    assert room.push_input(a.number, 1, move())
    out = room.tick()
    assert take_log(room) == [("resume", a.number, True), ("input", a.number)]
    assert out.resumed == (a,)
    assert room.tick().resumed == ()  # reported once
    assert room.counters.resumes == 1


def test_a_drop_and_resume_between_two_ticks_run_no_hooks() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    room.detach(a.number)
    room.reattach(a.number)
    out = room.tick()
    assert take_log(room) == []
    assert out.resumed == (a,)
    # dropped, seen by the game, resumed and dropped again before a tick: still dropped
    room.detach(a.number)
    room.tick()
    assert take_log(room) == [("drop", a.number, False, True)]
    room.reattach(a.number)
    room.detach(a.number)
    out = room.tick()
    assert take_log(room) == [] and out.resumed == ()
    assert room.is_held(a.number)


def test_detach_unseats_when_holds_are_off_or_the_join_never_completed() -> None:
    room = make_room(seat_hold_ticks=0)
    (a,) = seated(room, 1)
    assert room.detach(a.number) is False
    assert room.player_count == 0
    room.tick()
    assert take_log(room) == [("leave", a.number)]

    room = make_room()
    b = room.seat("id-b", "b")  # on_join has not run: the client never got JOINED
    assert room.detach(b.number) is False
    assert room.player_count == 0 and room.is_empty
    room.tick()
    assert take_log(room) == []
    assert room.detach(99) is False


def test_detaching_a_held_seat_again_keeps_its_deadline() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    room.detach(a.number)
    room.tick()
    room.tick()
    assert room.detach(a.number) is True
    expired_at = [room.tick().expired for _ in range(HOLD - 2)]
    assert expired_at[-1] == (a,) and all(e == () for e in expired_at[:-1])


# ---------------------------------------------------------------- expiry


def test_a_hold_that_runs_out_leaves_like_unseat() -> None:
    room = make_room()
    a, _ = seated(room, 2)
    room.push_input(a.number, 1, move())
    room.tick()
    avatar_id = room.ctx.players[a.number].data["avatar"].id
    replica = Replica(SCHEMA)
    snap = parse_server_message(room.snapshot(), SCHEMA)
    assert isinstance(snap, Snapshot)
    replica.apply_snapshot(snap)
    take_log(room)
    start = room.state_tick
    room.detach(a.number)
    outs: list[TickOutput] = []
    deltas: list[Delta] = []
    for _ in range(HOLD):
        outs.append(room.tick())
        msg = parse_server_message(outs[-1].delta, SCHEMA, replica.type_of)
        assert isinstance(msg, Delta)
        replica.apply_delta(msg)
        deltas.append(msg)
    last = deltas[-1]
    assert [o.tick for o in outs if o.expired] == [start + HOLD]
    assert outs[-1].expired == (a,)
    assert (a.number, 0) in last.acks and avatar_id in last.removed
    assert take_log(room) == [("drop", a.number, False, True), ("leave", a.number)]
    assert a.number not in room.ctx.players and room.player_count == 1
    assert replica.get(avatar_id) is None and a.number not in replica.acks
    assert room.counters.holds_expired == 1 and room.counters.leaves == 1
    assert room.resume_check(ResumeClaims(EPOCH, a.number, 1)) is ResumeRefusal.SEAT_LOST
    with pytest.raises(NoSuchSeat):
        room.reattach(a.number)
    room.seat("id-new", "new")  # the seat is free again


def test_a_room_whose_only_seats_are_held_is_not_empty_until_they_expire() -> None:
    room = make_room(seat_hold_ticks=2)
    (a,) = seated(room, 1)
    room.detach(a.number)
    assert not room.is_empty
    room.tick()
    assert not room.is_empty
    assert room.tick().expired == (a,)
    assert room.is_empty


def test_unseat_evicts_a_held_seat_and_it_never_expires() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    room.detach(a.number)
    room.tick()
    room.unseat(a.number)  # e.g. a fresh JOIN by the same player id
    assert room.held_count == 0
    outs = [room.tick() for _ in range(HOLD + 1)]
    assert all(o.expired == () for o in outs)
    assert take_log(room) == [("drop", a.number, False, True), ("leave", a.number)]
    assert room.counters.holds_expired == 0


def test_reattach_refuses_a_seat_that_is_gone_or_not_yet_joined() -> None:
    room = make_room()
    with pytest.raises(NoSuchSeat):
        room.reattach(1)
    p = room.seat("id", "p")
    with pytest.raises(NoSuchSeat):
        room.reattach(p.number)


# ---------------------------------------------------------------- inputs


def test_held_seat_refuses_inputs_and_resume_accepts_resent_seqs() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    for seq in (1, 2, 3):
        assert room.push_input(a.number, seq, move())
    room.tick()
    assert room.last_applied(a.number) == 3
    assert room.push_input(a.number, 4, move())
    assert room.push_input(a.number, 5, move())  # queued, never applied: lost with the link
    room.detach(a.number)
    dropped = room.counters.inputs_dropped
    assert not room.push_input(a.number, 6, move())
    assert room.counters.inputs_dropped == dropped  # not the player's fault
    room.tick()
    assert room.last_applied(a.number) == 3
    room.reattach(a.number)
    assert not room.push_input(a.number, 3, move())  # applied already
    assert room.push_input(a.number, 4, move())  # re-sent after the resume
    assert room.push_input(a.number, 5, move())
    take_log(room)
    room.tick()
    assert take_log(room) == [("resume", a.number, True), ("input", a.number), ("input", a.number)]
    assert room.last_applied(a.number) == 5 and room.acks[a.number] == 5


def test_takeover_of_an_attached_seat_drops_the_old_connections_queue() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    room.push_input(a.number, 1, move())
    room.tick()
    room.push_input(a.number, 2, move())  # from the old connection, not yet applied
    room.push_event(a.number, "chat", b"old")
    assert room.reattach(a.number) is a  # the server had not noticed the old one die
    take_log(room)
    out = room.tick()
    assert take_log(room) == []  # no drop/resume hooks, no stale input or event
    assert out.resumed == (a,)
    assert room.last_applied(a.number) == 1
    assert room.push_input(a.number, 2, move())


# ---------------------------------------------------------------- events kept for a held seat


def test_events_for_a_held_seat_are_kept_and_bounded() -> None:
    room = make_room(held_event_limit=3, seat_hold_ticks=100)
    a, b, c = seated(room, 3)
    room.detach(a.number)
    room.push_event(b.number, "chat", b"1")
    room.push_event(c.number, "dm", str(a.number).encode())  # targeted at a
    room.push_event(c.number, "dm", str(b.number).encode())  # targeted at b: not kept for a
    out = room.tick()
    targets = [t for _, t in out.events]
    assert targets == [None, a.number, b.number]  # the fan-out still sees every event
    room.push_event(b.number, "chat", b"2")
    room.push_event(b.number, "chat", b"3")
    room.tick()
    assert room.counters.events_dropped_held == 1
    assert event_names(room.take_held_events(a.number)) == [
        (b.number, "chat", b"1"),
        (0, "dm", b"for " + str(a.number).encode()),
        (b.number, "chat", b"2"),
    ]
    assert room.take_held_events(a.number) == []
    assert room.take_held_events(b.number) == [] and room.take_held_events(99) == []


def test_events_after_the_resume_are_not_kept() -> None:
    room = make_room()
    a, b = seated(room, 2)
    room.detach(a.number)
    room.push_event(b.number, "chat", b"while away")
    room.tick()
    room.reattach(a.number)
    room.push_event(b.number, "chat", b"back")
    out = room.tick()
    assert out.resumed == (a,)
    assert [(t, p) for p, t in out.events] == [
        (None, RoomEvent(b.number, "chat", b"back").to_bytes())
    ]
    assert event_names(room.take_held_events(a.number)) == [(b.number, "chat", b"while away")]


def test_an_expired_or_evicted_seat_loses_its_kept_events() -> None:
    room = make_room(seat_hold_ticks=2)
    a, b = seated(room, 2)
    room.detach(a.number)
    room.push_event(b.number, "chat", b"x")
    room.tick()
    room.tick()
    assert room.take_held_events(a.number) == []


# ---------------------------------------------------------------- tokens: generation and check


def test_generation_rotates_and_resume_check_decides() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    assert room.generation(a.number) == 0 and room.generation(99) is None
    assert room.rotate(a.number) == 1  # the fresh JOINED's token
    ok = ResumeClaims(EPOCH, a.number, 1)
    assert room.resume_check(ok) is None  # still attached: a takeover is allowed
    room.detach(a.number)
    assert room.resume_check(ok) is None
    assert room.resume_check(ResumeClaims(b"\x22" * 8, a.number, 1)) is ResumeRefusal.SEAT_LOST
    assert room.resume_check(ResumeClaims(EPOCH, 99, 1)) is ResumeRefusal.SEAT_LOST
    assert room.resume_check(ResumeClaims(EPOCH, a.number, 0)) is ResumeRefusal.TOKEN_USED
    room.reattach(a.number)
    assert room.rotate(a.number) == 2  # the resumed JOINED's token
    assert room.resume_check(ok) is ResumeRefusal.TOKEN_USED  # replayed
    assert room.resume_check(ResumeClaims(EPOCH, a.number, 2)) is None
    with pytest.raises(NoSuchSeat):
        room.rotate(99)


def test_a_seat_that_never_got_joined_cannot_be_resumed() -> None:
    room = make_room()
    p = room.seat("id", "p")
    assert room.resume_check(ResumeClaims(EPOCH, p.number, 0)) is ResumeRefusal.SEAT_LOST


def test_two_racing_resumes_exactly_one_wins() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    claims = ResumeClaims(EPOCH, a.number, room.rotate(a.number))
    room.detach(a.number)
    verdicts = []
    for _ in range(2):  # both parsed the same token; the driver admits them one at a time
        verdict = room.resume_check(claims)
        verdicts.append(verdict)
        if verdict is None:
            room.reattach(a.number)
            room.rotate(a.number)
    assert verdicts == [None, ResumeRefusal.TOKEN_USED]


# ---------------------------------------------------------------- config and the game API


def test_config_and_helpers() -> None:
    assert Room("r", Arena, RoomConfig()).epoch == b"\0" * 8
    assert make_room().epoch == EPOCH
    with pytest.raises(ValueError):
        RoomConfig(epoch=b"short")
    assert ticks_for(20.0, 20) == 400 and ticks_for(0, 20) == 0 and ticks_for(0.01, 30) == 1
    assert Arena.seat_hold == 20.0
    assert ResumeRefusal.SEAT_LOST.close_code == 4013
    assert ResumeRefusal.TOKEN_USED.close_code == 4001
    assert ResumeRefusal.SEAT_LOST.message.startswith("seat lost: ")


@pytest.mark.parametrize("hold", [-1.0, float("nan"), float("inf"), "20"])
def test_registry_refuses_a_bad_seat_hold(hold: Any) -> None:
    cls = type("BadHold", (Arena,), {"name": "badhold", "seat_hold": hold})
    with pytest.raises(ValueError, match="seat_hold"):
        GameRegistry().register(cls)


def test_arena_stops_a_dropped_avatar() -> None:
    room = make_room()
    (a,) = seated(room, 1)
    room.push_input(a.number, 1, move())
    room.tick()
    avatar = room.ctx.players[a.number].data["avatar"]
    room.detach(a.number)
    room.tick()
    x = avatar.x
    room.tick()
    room.tick()
    assert avatar.x == x
