"""The bundled pong game on a pure Room: seats, paddles, the ball, scoring, determinism; and
gamebots' paddle behaviour playing it (no sockets)."""

from __future__ import annotations

import math
import random
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.bots.behaviours import IDLE, WANDER, Behaviour, default_behaviour
from clients.bots.behaviours import PADDLE as PADDLE_BOT
from clients.bots.lean import Bot, BotFailed, InputEncoder
from gameserver.game import Player, default_registry
from gameserver.games.arena import Arena
from gameserver.games.pong import (
    BALL,
    BALL_RADIUS,
    HEIGHT,
    INPUT,
    LEFT,
    MAX_SPEED,
    PADDLE,
    PADDLE_INSET,
    PADDLE_LENGTH,
    PADDLE_SPEED,
    RIGHT,
    SERVE_DELAY,
    SERVE_SPEED,
    SPEEDUP,
    WIDTH,
    Pong,
)
from gameserver.room import Room, RoomConfig
from shared import wire
from shared.messages import Delta, Joined, Snapshot, parse_server_message
from shared.replica import Replica
from shared.schema import Entity, Float, InputSchema

TICK = 1 / Pong.tick_rate
LEFT_FACE = PADDLE_INSET + BALL_RADIUS  # the ball's centre when it touches the left paddle


def make_room(seed: int = 1, max_players: int = 2, tick_rate: int = Pong.tick_rate) -> Room:
    return Room("p", Pong, RoomConfig(max_players=max_players, tick_rate=tick_rate, seed=seed))


def game(room: Room) -> Pong:
    assert isinstance(room.game, Pong)
    return room.game


def paddles(room: Room) -> dict[int, Entity]:
    """The paddle entities in the state, by side."""
    return {p.side: p for p in room.ctx.state.of_type(PADDLE)}


def steer(room: Room, player: Player, direction: float) -> None:
    seq = room.acks.get(player.number, 0) + 1 + len(room._seats[player.number].inputs)
    assert room.push_input(player.number, seq, INPUT.codes_for({"dir": direction}))


def ticks(room: Room, n: int) -> None:
    for _ in range(n):
        room.tick()


def place_ball(room: Room, x: float, y: float, vx: float, vy: float) -> None:
    g = game(room)
    g.x, g.y, g.vx, g.vy, g.wait = x, y, vx, vy, 0.0


def test_pong_is_bundled_and_arena_stays_the_default() -> None:
    registry = default_registry()
    assert registry.get("pong") is Pong and registry.default == "arena"
    assert Pong.max_players == 2 and [t.name for t in Pong.schema] == ["paddle", "ball"]


def test_paddles_spawn_on_join_and_go_on_leave() -> None:
    room = make_room()
    a = room.seat("a", "alice")
    room.tick()
    [(side, pad)] = paddles(room).items()
    assert side == LEFT and pad.owner == a.number and pad.name == "alice"
    assert pad.y == HEIGHT / 2 and pad.score == 0
    b = room.seat("b", "bob")
    room.tick()
    assert {s: p.owner for s, p in paddles(room).items()} == {LEFT: a.number, RIGHT: b.number}
    room.unseat(a.number)
    room.tick()
    assert {s: p.owner for s, p in paddles(room).items()} == {RIGHT: b.number}
    c = room.seat("c", "carol")  # takes the free side
    room.tick()
    assert {s: p.owner for s, p in paddles(room).items()} == {LEFT: c.number, RIGHT: b.number}
    room.unseat(b.number)
    room.unseat(c.number)
    room.tick()
    assert paddles(room) == {} and len(list(room.ctx.state.of_type(BALL))) == 1


def test_the_ball_waits_for_a_player_then_is_served_and_moves() -> None:
    room = make_room()
    ticks(room, 10)
    [ball] = room.ctx.state.of_type(BALL)
    assert (ball.x, ball.y, ball.vx, ball.vy) == (WIDTH / 2, HEIGHT / 2, 0, 0)  # nobody plays
    room.seat("a", "a")
    ticks(room, round(SERVE_DELAY / TICK))  # the serve's delay
    assert (ball.x, ball.y) == (WIDTH / 2, HEIGHT / 2)
    ticks(room, 5)
    assert ball.x != WIDTH / 2
    assert math.hypot(ball.vx, ball.vy) == pytest.approx(SERVE_SPEED, abs=0.2)
    assert abs(ball.vy) <= abs(ball.vx) * math.tan(math.radians(30)) + 0.1  # within 30 degrees


def test_a_paddle_returns_the_ball_faster_at_an_angle_set_by_where_it_hit() -> None:
    room = make_room()
    room.seat("a", "a")
    room.tick()
    pad = paddles(room)[LEFT]
    place_ball(room, LEFT_FACE + 5, pad.y, -300.0, 0.0)  # dead centre
    room.tick()
    g = game(room)
    assert g.vx == pytest.approx(300.0 * SPEEDUP) and g.vy == pytest.approx(0.0)
    assert g.x > LEFT_FACE
    place_ball(room, LEFT_FACE + 5, pad.y + PADDLE_LENGTH / 2, -400.0, 0.0)  # near the end
    room.tick()
    assert g.vx > 0 and g.vy > 0  # off the lower half: sent downward
    assert math.hypot(g.vx, g.vy) == pytest.approx(400.0 * SPEEDUP)


def test_the_speed_up_is_bounded() -> None:
    room = make_room()
    room.seat("a", "a")
    room.tick()
    pad = paddles(room)[LEFT]
    place_ball(room, LEFT_FACE + 5, pad.y, -MAX_SPEED, 0.0)
    room.tick()
    assert game(room).vx == pytest.approx(MAX_SPEED)


def test_a_miss_scores_for_the_other_side_and_the_ball_is_served_again() -> None:
    room = make_room()
    room.seat("a", "a")
    room.seat("b", "b")
    room.tick()
    left, right = paddles(room)[LEFT], paddles(room)[RIGHT]
    place_ball(room, LEFT_FACE + 5, left.y - 200, -300.0, 0.0)  # far above the left paddle
    ticks(room, 10)
    assert (left.score, right.score) == (0, 1)
    g = game(room)
    [ball] = room.ctx.state.of_type(BALL)
    assert (ball.x, ball.y, ball.vx) == (WIDTH / 2, HEIGHT / 2, 0)  # served: waiting
    assert g.wait > 0 and g.vx < 0  # toward the side that missed
    ticks(room, round(SERVE_DELAY / TICK) + 1)
    assert ball.x < WIDTH / 2 and ball.vx < 0


def test_an_empty_side_is_a_wall() -> None:
    room = make_room()
    room.seat("a", "a")
    room.tick()
    place_ball(room, WIDTH - LEFT_FACE - 5, 100.0, 300.0, 0.0)
    ticks(room, 5)
    g = game(room)
    assert g.vx == pytest.approx(-300.0)  # bounced back, no faster
    assert paddles(room)[LEFT].score == 0 and g.wait <= 0


def test_the_ball_bounces_off_top_and_bottom() -> None:
    room = make_room()
    room.seat("a", "a")
    room.tick()
    place_ball(room, WIDTH / 2, BALL_RADIUS + 2, 0.0, -300.0)
    room.tick()
    assert game(room).vy == 300.0 and game(room).y >= BALL_RADIUS


def test_inputs_move_the_paddle_within_bounds() -> None:
    room = make_room()
    a = room.seat("a", "a")
    room.tick()
    pad = paddles(room)[LEFT]
    steer(room, a, 0.5)
    room.tick()
    assert pad.y == pytest.approx(HEIGHT / 2 + 0.5 * PADDLE_SPEED * TICK, abs=0.05)
    ticks(room, 10)  # the last input holds
    assert pad.y == pytest.approx(HEIGHT / 2 + 11 * 0.5 * PADDLE_SPEED * TICK, abs=0.6)
    steer(room, a, 1.0)
    ticks(room, 100)
    assert pad.y == HEIGHT - PADDLE_LENGTH / 2
    steer(room, a, -1.0)
    ticks(room, 100)
    assert pad.y == PADDLE_LENGTH / 2


def test_a_new_opponent_starts_a_new_match() -> None:
    room = make_room()
    a = room.seat("a", "a")
    b = room.seat("b", "b")
    room.tick()
    paddles(room)[LEFT].score = 3
    room.unseat(b.number)
    room.tick()
    assert paddles(room)[LEFT].score == 3  # the rally goes on against a wall
    room.seat("c", "c")
    room.tick()
    assert [p.score for p in paddles(room).values()] == [0, 0]
    assert game(room).wait > 0 and a.data["side"] == LEFT


def test_a_third_player_watches_until_a_side_is_free() -> None:
    room = make_room(max_players=3)  # a server that seats more than pong's two
    a = room.seat("a", "a")
    room.seat("b", "b")
    c = room.seat("c", "c")
    room.tick()
    assert len(paddles(room)) == 2 and "side" not in c.data
    steer(room, c, 1.0)
    room.tick()  # a watcher's input moves nothing
    assert all(p.y == HEIGHT / 2 for p in paddles(room).values())
    room.unseat(a.number)
    room.tick()
    assert paddles(room)[LEFT].owner == c.number


def test_the_ball_takes_the_same_path_at_a_low_tick_rate() -> None:
    """Below 30 Hz the ball moves in steps of 1/30 s: it bounces as often as at 30 Hz."""

    def path(tick_rate: int) -> tuple[float, ...]:
        room = make_room(tick_rate=tick_rate)
        room.seat("a", "a")  # on the left; the right is a wall
        room.tick()
        place_ball(room, WIDTH / 2, HEIGHT / 2, 130.0, 890.0)  # 1.5 heights per second
        ticks(room, tick_rate * 3)  # off the bottom, the top (and so on) and the right wall
        g = game(room)
        return g.x, g.y, g.vx, g.vy

    assert path(1) == pytest.approx(path(30))
    assert path(1) == pytest.approx(path(5))


def _play(seed: int, tick_rate: int = Pong.tick_rate) -> list[bytes]:
    room = make_room(seed, tick_rate=tick_rate)
    a, b = room.seat("a", "a"), room.seat("b", "b")
    out = []
    for t in range(300):
        if t % 7 == 0:
            steer(room, a, math.sin(t))
            steer(room, b, math.cos(t))
        out.append(room.tick().delta)
    return out


def test_pong_is_deterministic_given_the_seed() -> None:
    assert _play(5) == _play(5)
    assert _play(5) != _play(6)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    tick_rate=st.sampled_from([1, 5, 20, 30, 60, 120]),
    script=st.lists(
        st.tuples(
            st.sampled_from(["input", "input", "input", "join", "leave", "fast"]),
            st.integers(0, 2),
            st.floats(-1.0, 1.0),
            st.floats(0.0, 1.0),
            st.integers(1, 20),
        ),
        max_size=40,
    ),
)
def test_the_ball_and_paddles_stay_in_the_field(
    seed: int, tick_rate: int, script: list[tuple[str, int, float, float, int]]
) -> None:
    """Whatever the players do, the ball stays in the field below MAX_SPEED, the paddles stay
    inside it, every seated player up to two has a paddle, and a replica built from the bytes
    agrees with the state."""
    room = make_room(seed, tick_rate=tick_rate)
    g = game(room)
    seated: dict[int, Player] = {}
    replica = Replica(Pong.schema)
    replica.apply_snapshot(parse_server_message(room.snapshot(), Pong.schema))  # type: ignore[arg-type]
    n = 0
    for action, who, value, where, count in script:
        if action == "join" and len(seated) < 2:
            n += 1
            seated[n] = room.seat(f"p{n}", f"p{n}")
        elif action == "leave" and seated:
            room.unseat(seated.pop(sorted(seated)[who % len(seated)]).number)
        elif action == "input" and seated:
            steer(room, seated[sorted(seated)[who % len(seated)]], value)
        elif action == "fast":  # a rally at top speed from a random place
            angle = value * math.radians(60)
            vx, vy = -MAX_SPEED * math.cos(angle), MAX_SPEED * math.sin(angle)
            x, y = WIDTH * (0.1 + 0.8 * where), BALL_RADIUS + (HEIGHT - 2 * BALL_RADIUS) * where
            place_ball(room, x, y, vx, vy)
        for _ in range(count):
            delta = room.tick().delta
            msg = parse_server_message(delta, Pong.schema, replica.type_of)
            assert isinstance(msg, Delta)
            replica.apply_delta(msg)
            assert 0.0 <= g.x <= WIDTH and BALL_RADIUS <= g.y <= HEIGHT - BALL_RADIUS
            assert math.hypot(g.vx, g.vy) <= MAX_SPEED + 1e-6
            for pad in paddles(room).values():
                assert PADDLE_LENGTH / 2 <= pad.y <= HEIGHT - PADDLE_LENGTH / 2
        assert {p.owner for p in paddles(room).values()} == {p.number for p in seated.values()}
    assert replica.checksum() == room.ctx.state.checksum()
    snap = parse_server_message(room.snapshot(), Pong.schema)
    assert isinstance(snap, Snapshot)


# ---------------------------------------------------------------- gamebots' paddle behaviour


def _joined_bot(room: Room, player: Player, behaviour: Behaviour, seed: int = 1) -> Bot:
    bot = Bot(player.number, "p", verify=True, rng=random.Random(seed), behaviour=behaviour)
    joined = parse_server_message(room.joined_message(player))
    assert isinstance(joined, Joined)
    bot.on_joined(joined)
    return bot


def test_paddle_bots_play_pong() -> None:
    """Two paddle bots on a pure room: their paddles follow the ball, rallies happen and
    someone scores; their replicas stay in sync with the server."""
    room = make_room(seed=3)
    players = [room.seat("a", "a"), room.seat("b", "b")]
    out = room.tick()
    bots = [_joined_bot(room, p, PADDLE_BOT, seed=i) for i, p in enumerate(players)]
    for bot in bots:
        bot.on_message(room.snapshot(), 0.0)
        PADDLE_BOT.start(bot, 0.0)
    g = game(room)
    hits = 0
    ys = set()
    for t in range(1, 60 * Pong.tick_rate):  # a minute of play
        now = t * TICK
        for bot, player in zip(bots, players, strict=True):
            PADDLE_BOT.step(bot, now)
            codes = tuple(INPUT.decode_all(wire.Reader(bot.codes)))
            assert room.push_input(player.number, t, codes)
        vx = g.vx
        out = room.tick()
        hits += vx * g.vx < 0 and g.wait <= 0
        for bot in bots:
            bot.on_message(out.delta, now)
        ys.update(p.y for p in paddles(room).values())
    assert all(b.desyncs == 0 and b.replica is not None for b in bots)
    assert all(b.replica.checks > 0 for b in bots)  # type: ignore[union-attr]
    assert bots[0].replica.checksum() == room.ctx.state.checksum()  # type: ignore[union-attr]
    assert len(ys) > 50  # the paddles moved, a lot
    assert hits >= 5  # the ball was returned
    assert sum(p.score for p in paddles(room).values()) >= 1  # and someone missed


def test_paddle_bot_steers_its_own_paddle_toward_the_ball() -> None:
    room = make_room()
    a = room.seat("a", "a")
    room.tick()
    bot = _joined_bot(room, a, PADDLE_BOT)
    place_ball(room, WIDTH / 2, 100.0, 300.0, 0.0)
    room.tick()
    bot.on_message(room.snapshot(), 0.0)
    bot.heading = 0.0  # aim at the middle
    with patch.object(bot.rng, "random", return_value=1.0):  # keep the aim
        PADDLE_BOT.step(bot, 0.0)
    assert bot.steering == (-1.0,)  # the ball is 200 above: full speed up
    assert bot.codes == INPUT.encode_all(INPUT.codes_for({"dir": -1.0}))
    assert bot.own_id == paddles(room)[LEFT].id


def test_a_behaviour_that_does_not_fit_fails_at_joined() -> None:
    room = make_room()
    a = room.seat("a", "a")
    room.tick()
    with pytest.raises(BotFailed) as info:
        _joined_bot(room, a, WANDER)
    assert info.value.kind == "misfit:wander"
    assert "dx, dy" in str(info.value) and "dir" in str(info.value)
    assert PADDLE_BOT.misfit(Arena.input_schema, Arena.schema) is not None
    assert IDLE.misfit(Pong.input_schema, Pong.schema) is None
    assert default_behaviour(Pong.input_schema, Pong.schema) == "paddle"
    assert default_behaviour(Arena.input_schema, Arena.schema) == "wander"


def test_the_input_encoder_fills_the_fields_a_behaviour_names() -> None:
    enc = InputEncoder.for_schema(INPUT, ("dir",))
    assert InputEncoder.for_schema(INPUT, ("dir",)) is enc
    assert enc.idle == INPUT.encode_all(INPUT.codes_for({"dir": 0.0}))
    assert enc.encode(-0.25) == INPUT.encode_all(INPUT.codes_for({"dir": -0.25}))
    both = InputSchema(dy=Float(-1, 1, 0.01), fire=Float(0, 1, 1))
    # arena's (dx, dy) against a schema without dx: dy still goes to dy, the rest are defaults
    assert InputEncoder(both).encode(0.3, -0.5) == both.encode_all(both.codes_for({"dy": -0.5}))
