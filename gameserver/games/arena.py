"""arena: players move around a 2D world and collect gems for score.

Inputs are (dx, dy) in [-1, 1]; a player moves at SPEED units per second along that direction
(the vector is clamped to length 1), clamped to the world's bounds. Touching a gem scores its
value and moves the gem elsewhere (removed and respawned, so deltas carry creates and removes).
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

WORLD = 1000.0
SPEED = 200.0  # units per second
GEM_COUNT = 6
PICKUP_RADIUS = 20.0

POS = Float(0.0, WORLD, 0.05)  # 20,000 steps -> 2 bytes
PLAYER = EntityType(
    "player", x=POS, y=POS, score=VarUInt(), hp=UInt8(), owner=VarUInt(), name=String(32)
)
GEM = EntityType("gem", x=POS, y=POS, value=UInt8())
SCHEMA = Schema(PLAYER, GEM)
AXIS = Float(-1.0, 1.0, 0.01)
INPUT = InputSchema(dx=AXIS, dy=AXIS)


class Arena(Game):
    name = "arena"
    schema = SCHEMA
    input_schema = INPUT
    tick_rate = 20
    max_players = 8

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.rng = ctx.random
        self.velocity: dict[int, tuple[float, float]] = {}
        #: (gem, x, y) of every gem, in id order, kept between ticks (gems never move); None
        #: after a gem is spawned, until the next update lists them again
        self._gems: list[tuple[Entity | None, float, float]] | None = None
        for _ in range(GEM_COUNT):
            self._spawn_gem()

    def _spawn_gem(self) -> None:
        self._gems = None
        self.state.spawn(
            GEM,
            x=self.rng.uniform(0, WORLD),
            y=self.rng.uniform(0, WORLD),
            value=self.rng.randint(1, 3),
        )

    def on_join(self, player: Player) -> None:
        avatar = self.state.spawn(
            PLAYER,
            x=self.rng.uniform(0, WORLD),
            y=self.rng.uniform(0, WORLD),
            hp=100,
            owner=player.number,
            name=player.name.encode()[:32].decode("utf-8", "ignore"),
        )
        player.data["avatar"] = avatar
        self.velocity[player.number] = (0.0, 0.0)
        self.ctx.broadcast("joined", player.name.encode()[:64], sender=0)

    def on_leave(self, player: Player) -> None:
        avatar = player.data.pop("avatar", None)
        if avatar is not None:
            self.state.remove(avatar)
        self.velocity.pop(player.number, None)

    def on_drop(self, player: Player) -> None:
        # a held player's avatar waits where it is (its last input would keep it running)
        self.velocity[player.number] = (0.0, 0.0)

    def on_input(self, player: Player, inp: InputValues) -> None:
        dx, dy = inp.values
        norm = math.hypot(dx, dy)
        if norm > 1.0:
            dx, dy = dx / norm, dy / norm
        self.velocity[player.number] = (dx * SPEED, dy * SPEED)

    def update(self, dt: float) -> None:
        gems = self._gems
        if gems is None:
            gems = self._gems = [(gem, gem.x, gem.y) for gem in self.state.of_type(GEM)]
        players = self.ctx.players
        r = PICKUP_RADIUS
        for number, (vx, vy) in self.velocity.items():
            if not (vx or vy):
                continue
            avatar = players[number].data["avatar"]
            x = avatar.x + vx * dt
            x = 0.0 if x < 0.0 else WORLD if x > WORLD else x  # clamped to the world
            y = avatar.y + vy * dt
            y = 0.0 if y < 0.0 else WORLD if y > WORLD else y
            avatar.x = x
            avatar.y = y
            for i, (gem, gx, gy) in enumerate(gems):
                if -r < gx - x < r and -r < gy - y < r and gem is not None:
                    avatar.score += gem.value
                    self.state.remove(gem)
                    gems[i] = (None, gx, gy)
                    self._spawn_gem()
