"""gameserver.testing.RoomHarness: pure tests (no trio, no sockets) of the harness itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.game import Game, Player
from gameserver.games.arena import Arena
from gameserver.games.pong import HEIGHT, PADDLE_LENGTH, PADDLE_SPEED, Pong
from gameserver.room import RoomFull
from gameserver.testing import Difference, DiffKind, OutOfSync, RoomHarness
from shared.errors import LocalProtocolError
from shared.messages import Delta, Joined, RoomEvent, Snapshot
from shared.protocol import CloseCode
from shared.schema import EntityType, Float, InputSchema, InputValues, Schema, String, VarUInt

COUNTER = EntityType("counter", n=VarUInt(), label=String(16), level=Float(0, 10, 0.5))


class Echo(Game):
    """Records what it receives; its one entity counts the inputs applied."""

    name = "echo"
    schema = Schema(COUNTER)
    input_schema = InputSchema(x=Float(-1, 1, 0.01), n=VarUInt())
    tick_rate = 10
    max_players = 3

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.counter = self.state.spawn(COUNTER, label="start")
        self.seen: list[tuple[Any, ...]] = []

    def on_join(self, player: Player) -> None:
        self.seen.append(("join", player.id))

    def on_leave(self, player: Player) -> None:
        self.seen.append(("leave", player.id))

    def on_input(self, player: Player, inp: InputValues) -> None:
        self.seen.append(("input", player.id, inp.x, inp.n))
        self.counter.n += 1

    def on_event(self, player: Player, name: str, data: bytes) -> None:
        self.seen.append(("event", player.id, name, data))
        if name == "whisper":
            self.ctx.send_to(player, "reply", data)
        else:
            super().on_event(player, name, data)


# ---------------------------------------------------------------- seats and the join


def test_a_join_completes_at_the_next_tick_with_joined_then_snapshot() -> None:
    h = RoomHarness(Echo)
    alice = h.join("alice", "Alice")
    assert not alice.ready and alice.tick == -1
    with pytest.raises(RuntimeError, match="run a tick after join"):
        _ = alice.replica
    assert h.game.seen == []
    h.tick()
    assert h.game.seen == [("join", "alice")]
    first, second = alice.messages
    assert isinstance(first, Joined) and isinstance(second, Snapshot)
    assert (first.player, first.room, first.game, first.tick_rate) == (1, "test-room", "echo", 10)
    assert alice.ready and alice.tick == 1 == h.current_tick
    assert (alice.number, alice.name, alice.player.id) == (1, "Alice", "alice")
    assert [e.as_dict() for e in alice.entities("counter")] == [
        {"n": 0, "label": "start", "level": 0.0}
    ]
    h.assert_in_sync()
    h.tick()
    assert isinstance(alice.messages[-1], Delta)  # later ticks are deltas


def test_game_time_follows_the_room_tick_rate() -> None:
    h = RoomHarness(Echo, tick_rate=20)
    assert h.advance(0.5) == 10
    assert h.advance(0.03) == 0  # less than a tick carries over ...
    assert h.advance(0.03) == 1  # ... and adds up
    assert h.current_tick == 11 and h.time == pytest.approx(0.55)
    with pytest.raises(ValueError):
        h.advance(-1)
    with pytest.raises(ValueError):
        h.tick(0)


def test_run_until_stops_when_the_condition_holds_and_explains_when_it_never_does() -> None:
    h = RoomHarness(Echo)
    assert h.run_until(lambda: h.current_tick >= 7) == 7
    assert h.run_until(lambda: True) == 0
    with pytest.raises(AssertionError, match=r"still false after 5 ticks \(0.5 s"):
        h.run_until(lambda: False, max_ticks=5)


def test_room_full_and_one_seat_per_player_id() -> None:
    h = RoomHarness(Echo)
    a, b, c = h.join("a"), h.join("b"), h.join("c")
    with pytest.raises(RoomFull):
        h.join("d")
    h.tick()
    a2 = h.join("a")  # the same player again: replaces its older connection
    assert a.close_code is CloseCode.REPLACED and not a.connected
    assert a2.number == 4 and h.client("a") is a2
    assert [cl.id for cl in h.clients] == ["b", "c", "a"]
    h.tick()
    assert h.game.seen[-2:] == [("leave", "a"), ("join", "a")]
    assert a2.ready and b.ready and c.ready
    h.assert_in_sync()
    with pytest.raises(KeyError, match="seated"):
        h.client("nobody")


def test_config_overrides_and_bad_arguments() -> None:
    h = RoomHarness(Pong, "r1", seed=3, max_players=4, checksum_interval=1)
    assert h.room.config.tick_rate == Pong.tick_rate == 30
    assert (h.room.config.max_players, h.room.config.seed, h.room.name) == (4, 3, "r1")
    with pytest.raises(TypeError):
        RoomHarness(Pong, no_such_setting=1)
    with pytest.raises(ValueError, match="room name"):
        RoomHarness(Pong, "bad room name")
    with pytest.raises(ValueError, match="over 32 bytes"):
        h.join("x", "n" * 33)

    class Fast(Echo):
        tick_rate = 500

    with pytest.raises(ValueError, match="tick_rate"):
        RoomHarness(Fast)
    with pytest.raises(ValueError, match="tick_rate"):
        RoomHarness(Echo, tick_rate=0)
    with pytest.raises(ValueError, match="max_players"):
        RoomHarness(Echo, max_players=0)


# ---------------------------------------------------------------- inputs and events


def test_inputs_reach_the_game_quantized_and_are_acked() -> None:
    h = RoomHarness(Echo)
    alice = h.join("alice")
    seq = alice.input(x=0.123456, n=7)  # before the join tick: applied in it
    assert seq == 1
    h.tick()
    assert h.game.seen == [("join", "alice"), ("input", "alice", pytest.approx(0.12), 7)]
    assert alice.last_acked == 1 == alice.last_sent
    assert alice.input() == 2  # missing fields are neutral: 0 (a Float: 0 clamped into range)
    h.tick()
    assert h.game.seen[-1] == ("input", "alice", 0.0, 0)
    assert alice.entities("counter")[0].n == 2
    with pytest.raises(LocalProtocolError, match="unknown input fields"):
        alice.input(y=1)
    h.assert_in_sync()


def test_stale_sequence_numbers_and_full_queues_are_dropped() -> None:
    h = RoomHarness(Echo, input_queue_limit=2)
    alice = h.join("alice")
    h.tick()
    assert alice.send_input(5, {"n": 5})
    assert not alice.send_input(5, {"n": 55})  # repeated
    assert not alice.send_input(3, {"n": 3})  # stale
    assert alice.send_input(6, {"n": 6})
    assert not alice.send_input(7, {"n": 7})  # the queue holds 2
    assert alice.inputs_dropped == 3
    assert alice.input(n=8) == 8  # input() goes on after the highest seq sent
    h.tick()
    assert [s[3] for s in h.game.seen if s[0] == "input"] == [5, 6]
    assert alice.last_acked == 6
    h.tick()
    assert alice.last_acked == 6  # seq 8 was dropped with the queue full: nothing more


def test_events_are_relayed_to_everyone_or_sent_to_one() -> None:
    h = RoomHarness(Echo, event_queue_limit=2)
    alice, bob = h.join("alice"), h.join("bob")
    h.tick()
    assert alice.event("chat", b"hi")
    assert bob.event("whisper", b"psst")
    h.tick()
    assert alice.take_events() == [RoomEvent(alice.number, "chat", b"hi")]
    assert bob.take_events() == [
        RoomEvent(alice.number, "chat", b"hi"),
        RoomEvent(0, "reply", b"psst"),
    ]
    assert alice.take_events() == [] and alice.events_named("chat") == alice.events
    assert [alice.event(f"e{i}") for i in range(3)] == [True, True, False]
    assert alice.events_dropped == 1
    # the DELTA comes first, then the tick's events, as the server sends them
    h.tick()
    assert [type(m).__name__ for m in list(bob.messages)[-3:]] == [
        "Delta",
        "RoomEvent",
        "RoomEvent",
    ]


def test_leaving_and_dropping_free_the_seat_and_stop_delivery() -> None:
    h = RoomHarness(Echo, seat_hold=0)  # no holds: a dropped connection leaves at once
    alice, bob, carol = h.join("alice"), h.join("bob"), h.join("carol")
    h.tick()
    alice.leave()
    bob.drop()
    assert (alice.close_code, bob.close_code) == (CloseCode.NORMAL, CloseCode.GOING_AWAY)
    assert [p.id for p in h.players] == ["carol"]
    tick = alice.tick
    h.tick(3)
    assert h.game.seen[-2:] == [("leave", "alice"), ("leave", "bob")]
    assert alice.tick == bob.tick == tick  # they receive nothing any more
    assert carol.tick == h.current_tick
    assert set(carol.replica.acks) == {carol.number}  # the leavers' ack entries are gone
    h.assert_in_sync()  # only seated players are compared
    with pytest.raises(RuntimeError, match="no longer seated"):
        alice.input(n=1)
    with pytest.raises(RuntimeError, match="no longer seated"):
        bob.event("chat")
    alice.leave()  # twice is harmless
    assert h.join("alice").number == 4  # and a player may come back


# ---------------------------------------------------------------- reading the state


def test_server_and_replica_views_of_pong() -> None:
    h = RoomHarness(Pong)
    assert isinstance(h.game, Pong)
    left, right = h.join("left"), h.join("right")
    h.tick()
    assert [p.side for p in h.entities("paddle")] == [0, 1]
    assert [p.name for p in left.entities("paddle")] == ["left", "right"]
    ball_id = h.game.ball.id
    assert h.entity(ball_id) is h.game.ball
    assert left.entity(ball_id) is not None and left.entity(999) is None
    with pytest.raises(KeyError, match="'ball', 'paddle'"):
        h.entities("brick")
    with pytest.raises(KeyError, match="'ball', 'paddle'"):
        left.entities("brick")
    y0 = h.game.paddles[0].y
    left.input(dir=1.0)  # down, at full speed, until told otherwise
    right.input(dir=-0.5)
    h.advance(0.1)
    step = PADDLE_SPEED * 3 / Pong.tick_rate
    # each tick's position is quantized (0.05) before the next step adds to it
    assert left.entities("paddle")[0].y == pytest.approx(y0 + step, abs=0.1)
    assert right.entities("paddle")[1].y == pytest.approx(y0 - step / 2, abs=0.1)
    h.advance(5)
    assert left.entities("paddle")[0].y == HEIGHT - PADDLE_LENGTH / 2  # stays on the field
    h.assert_in_sync()


def test_a_late_joiner_starts_from_a_snapshot_and_stays_in_sync() -> None:
    h = RoomHarness(Arena, seed=7, checksum_interval=3)
    early = h.join("early")
    for i in range(40):
        early.input(dx=1.0 if i % 20 < 10 else -1.0, dy=0.5)
        h.tick()
    late = h.join("late")
    h.tick()
    assert isinstance(late.messages[1], Snapshot) and late.messages[1].tick == h.current_tick
    for _ in range(20):
        late.input(dx=-1.0, dy=-1.0)
        h.tick()
    assert late.replica.checks > 1  # the deltas' checksums were verified
    h.assert_in_sync()
    assert h.differences() == []


# ---------------------------------------------------------------- the check itself


def test_assert_in_sync_fails_when_the_server_state_is_corrupted() -> None:
    h = RoomHarness(Echo, checksum_interval=2)
    alice = h.join("alice")
    h.tick()
    counter = h.game.counter
    counter.codes[0] = 41  # behind the change tracking: no delta will carry it
    with pytest.raises(OutOfSync) as info:
        h.assert_in_sync()
    message = str(info.value)
    assert "entity #1 (counter) field 'n': server 41, replica 0" in message
    kinds = [d.kind for d in info.value.differences]
    assert kinds == [DiffKind.FIELD, DiffKind.CHECKSUM]
    assert info.value.differences[0] == Difference(
        DiffKind.FIELD, "alice", 1, "counter", "n", 41, 0, 41, 0
    )
    h.tick()  # tick 2 carries a checksum: the replica itself detects the desync
    assert len(alice.desyncs) == 1 and "checksum mismatch at tick 2" in str(alice.desyncs[0])
    with pytest.raises(OutOfSync, match="replica desync: checksum mismatch"):
        h.assert_in_sync()


def test_assert_in_sync_names_missing_extra_and_mistyped_entities() -> None:
    h = RoomHarness(Pong)
    alice = h.join("alice")
    h.tick()
    rep = alice.replica
    paddle = rep.entities.pop(h.game.paddles[0].id)  # lost by the replica
    rep.entities[77] = paddle  # and one the server never had
    level = h.game.ball
    level.codes[0] = 123  # x = 6.15 on the server only
    with pytest.raises(OutOfSync) as info:
        h.assert_in_sync()
    text = str(info.value)
    assert "entity #2 (paddle) exists on the server but not in the replica" in text
    assert "entity #77 (paddle) is in the replica but not on the server" in text
    assert "entity #1 (ball) field 'x': server 6.15 (code 123), replica 400 (code 8000)" in text
    assert {d.kind for d in info.value.differences} == {
        DiffKind.MISSING,
        DiffKind.EXTRA,
        DiffKind.FIELD,
        DiffKind.CHECKSUM,
    }


def test_assert_in_sync_checks_the_tick_the_acks_and_the_types() -> None:
    h = RoomHarness(Pong)
    alice = h.join("alice")
    alice.input(dir=0.5)
    h.tick()
    rep = alice.replica
    rep.acks[alice.number] = 9
    rep.tick = 0
    ball = rep.entities[h.game.ball.id]
    rep.entities[h.game.ball.id] = rep.schema.by_name["paddle"].cls(ball.id, [0, 0, 0, 0, ""])
    diffs = h.differences()
    assert [d.kind for d in diffs] == [
        DiffKind.TICK,
        DiffKind.TYPE,
        DiffKind.ACK,
        DiffKind.CHECKSUM,
    ]
    assert [str(d) for d in diffs[:3]] == [
        "alice: replica at tick 0, server at tick 1",
        "alice: entity #1 is a ball on the server, a paddle in the replica",
        "alice: last applied input of player 1: server 1, replica 9",
    ]


def test_a_structural_desync_stops_the_replica_until_a_snapshot() -> None:
    h = RoomHarness(Echo)
    alice = h.join("alice")
    h.tick()
    del alice.replica.entities[h.game.counter.id]
    alice.input(n=1)  # the next delta patches the counter the replica lacks
    h.tick(3)
    assert len(alice.desyncs) == 1 and "lacks" in str(alice.desyncs[0])
    assert alice.tick == 1  # later deltas are skipped, as the SDK client skips them
    kinds = {d.kind for d in h.differences()}
    assert {DiffKind.DESYNC, DiffKind.TICK, DiffKind.MISSING} <= kinds


def test_the_out_of_sync_message_is_bounded() -> None:
    many = [Difference(DiffKind.TICK, f"p{i}", server=1, replica=0) for i in range(40)]
    text = str(OutOfSync(5, many))
    assert text.startswith("40 difference(s) between the server at tick 5")
    assert "p24:" in text and "p25:" not in text and "... and 15 more" in text


# ---------------------------------------------------------------- a property


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from("abcd")),
        st.tuples(st.just("leave"), st.sampled_from("abcd")),
        st.tuples(st.just("drop"), st.sampled_from("abcd")),
        st.tuples(st.just("input"), st.sampled_from("abcd"), st.floats(-1, 1)),
        st.tuples(st.just("tick"), st.integers(1, 40)),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(game=st.sampled_from([Arena, Pong]), seed=st.integers(0, 5), actions=ACTIONS)
def test_replicas_stay_in_sync_whatever_the_players_do(
    game: type[Game], seed: int, actions: list[tuple[Any, ...]]
) -> None:
    h = RoomHarness(game, seed=seed, max_players=3, checksum_interval=2)
    field = game.input_schema.names[0]
    for action, *args in actions:
        seated = {c.id: c for c in h.clients}
        if action == "join" and (args[0] in seated or len(seated) < 3):
            h.join(args[0])
        elif action in ("leave", "drop") and args[0] in seated:
            getattr(seated[args[0]], action)()
        elif action == "input" and args[0] in seated:
            seated[args[0]].input(**{field: args[1]})
        elif action == "tick":
            h.tick(args[0])
            h.assert_in_sync()
    h.tick()
    h.assert_in_sync()
    assert all(not c.desyncs for c in h.clients)


def test_a_dropped_player_is_held_and_resumes_with_a_catch_up() -> None:
    from gameserver.games.arena import Arena

    h = RoomHarness(Arena, seed=3)
    alice, bob = h.join("alice"), h.join("bob")
    h.tick()
    for _ in range(10):
        alice.input(dx=1.0)
        h.tick()
    avatar = alice.entities("player")
    mine = next(e for e in avatar if e.owner == alice.number)
    seen_tick = alice.tick
    alice.drop()
    assert alice.held and not alice.connected
    assert alice.number in {p.number for p in h.players}  # still in the room
    h.advance(1.0)  # bob plays on; alice's avatar stays, alice receives nothing
    assert alice.tick == seen_tick and bob.tick == h.current_tick
    server_avatar = h.entity(mine.id)
    assert server_avatar is not None and not h.room.player(alice.number).connected
    alice.resume()
    h.tick()
    assert alice.joined is not None and alice.joined.resumed
    assert alice.joined.input_seq == 10
    assert isinstance(alice.last_update, Delta) and alice.last_update.base == seen_tick
    assert alice.resumes == 1 and not alice.desyncs
    h.assert_in_sync()
    assert alice.input(dx=-1.0) == 11  # numbering goes on
    h.tick()
    h.assert_in_sync()
    # without state (a reloaded page that kept only its token) it gets a snapshot
    alice.drop()
    h.tick()
    alice.resume(keep_state=False)
    h.tick()
    assert isinstance(alice.last_update, Snapshot)
    h.assert_in_sync()


def test_a_hold_that_runs_out_leaves_and_a_held_seat_can_be_taken_over() -> None:
    from gameserver.games.arena import Arena

    h = RoomHarness(Arena, seat_hold=1.0)
    alice, bob = h.join("alice"), h.join("bob")
    h.tick()
    alice.drop()
    h.advance(1.0)
    h.tick()
    assert alice.expired and not alice.held
    assert [p.id for p in h.players] == ["bob"]
    assert all(e.owner != alice.number for e in h.entities("player"))
    with pytest.raises(RuntimeError, match="no held seat"):
        alice.resume()
    bob.drop()
    bob2 = h.join("bob")  # a fresh JOIN of the same player id gives up the held seat
    assert bob.close_code == CloseCode.REPLACED and bob2.number != bob.number
    h.tick()
    assert [p.id for p in h.players] == ["bob"]
    h.assert_in_sync()
