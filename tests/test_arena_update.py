"""The arena's update, written for speed, moves and scores exactly as its plain form did."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.game import Game
from gameserver.games.arena import GEM, PICKUP_RADIUS, WORLD, Arena
from gameserver.room import Room, RoomConfig
from shared.schema import Entity


class PlainArena(Arena):
    """The arena with its update in the plain form it had (min/max clamps, abs distances)."""

    def update(self, dt: float) -> None:
        gems: list[tuple[Entity | None, float, float]] = [
            (gem, gem.x, gem.y) for gem in self.state.of_type(GEM)
        ]
        players = self.ctx.players
        for number, (vx, vy) in self.velocity.items():
            if not (vx or vy):
                continue
            avatar = players[number].data["avatar"]
            x = min(max(avatar.x + vx * dt, 0.0), WORLD)
            y = min(max(avatar.y + vy * dt, 0.0), WORLD)
            avatar.x = x
            avatar.y = y
            for i, (gem, gx, gy) in enumerate(gems):
                if gem is not None and abs(gx - x) < PICKUP_RADIUS and abs(gy - y) < PICKUP_RADIUS:
                    avatar.score += gem.value
                    self.state.remove(gem)
                    gems[i] = (None, gx, gy)
                    self._spawn_gem()


def _room(game: type[Game], seed: int) -> Room:
    room = Room("r", game, RoomConfig(seed=seed))
    for p in range(8):
        room.seat(f"p{p}", f"p{p}")
    return room


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(1, 10_000), steer=st.integers(0, 2**32 - 1))
def test_the_fast_update_matches_the_plain_one(seed: int, steer: int) -> None:
    fast, plain = _room(Arena, seed), _room(PlainArena, seed)
    rng = random.Random(steer)
    axis = [0, 100, 200, 17, 183]  # codes: -1, 0, +1 and in between (edges get reached)
    for tick in range(1, 301):
        for number in range(1, 9):
            if rng.random() < 0.3:
                codes = (rng.choice(axis), rng.choice(axis))
                assert fast.push_input(number, tick, codes) == plain.push_input(number, tick, codes)
        assert fast.tick().delta == plain.tick().delta
    assert fast.snapshot() == plain.snapshot()
