"""pong: two paddles and a ball; a ball that gets past a paddle is a point for the other side.

The first player to sit down gets the left paddle, the second the right one. The input ``dir``
in [-1, 1] moves the player's paddle up (-1) or down (+1) at up to PADDLE_SPEED, until the next
input changes it; a paddle stays inside the field.

The ball bounces off the top and bottom walls. A paddle sends it back at an angle set by where
it hit (straight back off the middle, up to 60 degrees off an end), 5% faster each hit, up to
MAX_SPEED. A ball that passes a paddle scores a point for the other paddle (``paddle.score``)
and is served again from the centre toward the side that missed, after SERVE_DELAY seconds.

A side without a player is a wall, so one player can practise alone (no one scores). With no
player the ball waits in the centre. Whenever a paddle gets a player, a new match starts: the
scores go to 0 and the ball is served. A player beyond two (a server that seats more than
``max_players``) watches, and takes the next side that is free.

Deterministic: the serves' directions and angles come from ``ctx.random``, seeded per room.
"""

from __future__ import annotations

import math

from gameserver.game import Game, Player, RoomContext
from shared.schema import (
    Entity,
    EntityType,
    Float,
    InputSchema,
    InputValues,
    Schema,
    String,
    UInt8,
    VarUInt,
)

WIDTH, HEIGHT = 800.0, 600.0
PADDLE_LENGTH = 100.0
PADDLE_INSET = 30.0  # from a paddle's face to its edge of the field
PADDLE_SPEED = 400.0  # units per second
BALL_RADIUS = 8.0
SERVE_SPEED = 300.0
SPEEDUP = 1.05  # per paddle hit
MAX_SPEED = 900.0
MAX_BOUNCE = math.radians(60)  # off a paddle's end
MAX_SERVE = math.radians(30)
SERVE_DELAY = 1.0  # seconds
STEPS_PER_S = 30  # the ball moves in steps of at most 1/30 s, whatever the tick rate
LEFT, RIGHT = 0, 1

Y = Float(0.0, HEIGHT, 0.05)
VELOCITY = Float(-MAX_SPEED, MAX_SPEED, 0.1)
PADDLE = EntityType("paddle", side=UInt8(), y=Y, score=VarUInt(), owner=VarUInt(), name=String(32))
BALL = EntityType("ball", x=Float(0.0, WIDTH, 0.05), y=Y, vx=VELOCITY, vy=VELOCITY)
SCHEMA = Schema(PADDLE, BALL)
INPUT = InputSchema(dir=Float(-1.0, 1.0, 0.01))


class Pong(Game):
    name = "pong"
    schema = SCHEMA
    input_schema = INPUT
    tick_rate = 30
    max_players = 2

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.rng = ctx.random
        self.paddles: dict[int, Entity] = {}  # side -> paddle
        self.speed: dict[int, float] = {}  # side -> paddle speed (units per second, down)
        self.ball = self.state.spawn(BALL, x=WIDTH / 2, y=HEIGHT / 2)
        # the ball's exact position and velocity (its entity holds them quantized)
        self.x, self.y, self.vx, self.vy = WIDTH / 2, HEIGHT / 2, 0.0, 0.0
        self.wait = 0.0  # seconds until the ball moves

    def on_join(self, player: Player) -> None:
        free = [side for side in (LEFT, RIGHT) if side not in self.paddles]
        if free:
            self._take_side(player, free[0])

    def on_leave(self, player: Player) -> None:
        side = player.data.pop("side", None)
        if side is None:
            return
        self.state.remove(self.paddles.pop(side))
        del self.speed[side]
        watcher = next((p for p in self.ctx.players.values() if "side" not in p.data), None)
        if watcher is not None:
            self._take_side(watcher, side)

    def on_input(self, player: Player, inp: InputValues) -> None:
        side = player.data.get("side")
        if side is not None:
            self.speed[side] = inp.dir * PADDLE_SPEED

    def _take_side(self, player: Player, side: int) -> None:
        player.data["side"] = side
        name = player.name.encode()[:32].decode("utf-8", "ignore")
        self.paddles[side] = self.state.spawn(
            PADDLE, side=side, y=HEIGHT / 2, owner=player.number, name=name
        )
        self.speed[side] = 0.0
        for paddle in self.paddles.values():
            paddle.score = 0
        self._serve(self.rng.choice((LEFT, RIGHT)))

    def _serve(self, toward: int) -> None:
        angle = self.rng.uniform(-MAX_SERVE, MAX_SERVE)
        self.x, self.y = WIDTH / 2, HEIGHT / 2
        self.vx = SERVE_SPEED * math.cos(angle) * (-1 if toward == LEFT else 1)
        self.vy = SERVE_SPEED * math.sin(angle)
        self.wait = SERVE_DELAY

    def update(self, dt: float) -> None:
        half = PADDLE_LENGTH / 2
        for side, paddle in self.paddles.items():
            paddle.y = min(max(paddle.y + self.speed[side] * dt, half), HEIGHT - half)
        if not self.paddles:  # nobody plays: the ball waits in the centre
            self.x, self.y, self.wait = WIDTH / 2, HEIGHT / 2, SERVE_DELAY
        elif self.wait > 0:
            self.wait -= dt
        else:
            steps = max(1, math.ceil(dt * STEPS_PER_S - 1e-9))
            for _ in range(steps):
                if self.wait <= 0:  # not just served
                    self._move(dt / steps)
        moving = self.wait <= 0
        ball = self.ball
        ball.x, ball.y = self.x, self.y
        ball.vx, ball.vy = (self.vx, self.vy) if moving else (0.0, 0.0)

    def _move(self, dt: float) -> None:
        x, y = self.x + self.vx * dt, self.y + self.vy * dt
        if not BALL_RADIUS <= y <= HEIGHT - BALL_RADIUS:  # off the top or bottom wall
            wall = BALL_RADIUS if y < BALL_RADIUS else HEIGHT - BALL_RADIUS
            y, self.vy = 2 * wall - y, -self.vy
        for side, sign in ((LEFT, -1), (RIGHT, 1)):  # sign: the way toward that side
            face = WIDTH / 2 + sign * (WIDTH / 2 - PADDLE_INSET - BALL_RADIUS)
            if not (self.vx * sign > 0 and (self.x - face) * sign <= 0 <= (x - face) * sign):
                continue  # not crossing that side's paddle line in this step
            paddle = self.paddles.get(side)
            if paddle is None:  # an empty side is a wall
                x, self.vx = 2 * face - x, -self.vx
            elif abs(y - paddle.y) <= PADDLE_LENGTH / 2 + BALL_RADIUS:
                offset = (y - paddle.y) / (PADDLE_LENGTH / 2 + BALL_RADIUS)
                speed = min(math.hypot(self.vx, self.vy) * SPEEDUP, MAX_SPEED)
                angle = offset * MAX_BOUNCE
                x = 2 * face - x
                self.vx, self.vy = -sign * speed * math.cos(angle), speed * math.sin(angle)
        if not 0.0 <= x <= WIDTH:  # past a paddle and out: a point for the other side
            missed = LEFT if x < 0 else RIGHT
            winner = self.paddles.get(1 - missed)
            if winner is not None:
                winner.score += 1
            self._serve(missed)
            return
        self.x, self.y = x, y
