"""field: a big wrapping world where each player sees only what is near it (views).

The bundled big-world game (gamesync.v2 only: it uses views, see ``gameserver.interest``).
Players walk a square world that wraps around at its edges (leave it on the right, come back on
the left), collect pickups for score and meet wandering creatures. Each player is sent only the
entities in the 3 x 3 cells (of ``CELL`` = 250 units) around its avatar, plus the room's
scoreboard, which every view holds.

Density is the same at every room size: the world is ``cells_per_side(n)`` cells of 250 units
on a side for a room of ``n`` players (``round(sqrt(n))``, at least 4, at most 32), so one cell
per seat: 1000 x 1000 units at 16 players, 2000 at 64, 4000 x 4000 at 256 (the default room
size). There are 4 non-player entities per seat (1,024 at 256): 60% creatures that wander at
40-80 units/s and rest for a while between walks (about half are resting at any time, so not
everything changes every tick), 40% pickups that sit still; touching one scores its value and
it is replaced by a new one somewhere else (a remove and a create). A view (750 x 750 units)
therefore holds about 9 seats' worth of entities: ~9 avatars and ~36 creatures and pickups when
the room is full, at any room size. The wrap (the view hook returns cells modulo the grid) means
no player stands at an edge with a smaller view, so what a player receives does not depend on
the room's size. Rooms larger than 1,024 players get the 8,000-unit world (denser).

Inputs are arena's: (dx, dy) in [-1, 1], the vector clamped to length 1, at SPEED units/s.

The scoreboard (``board``, one entity) holds the room clock in whole seconds, the number of
players, and the room's record score with its holder's name; it changes about once a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gameserver.game import Game, Player, RoomContext
from gameserver.interest import Cell, Interest
from shared.schema import (
    Entity,
    EntityType,
    Float,
    InputSchema,
    InputValues,
    Schema,
    String,
    UInt8,
    UInt16,
    VarUInt,
)

#: the side of a cell (the interest grid) in world units
CELL = 250.0
#: the largest world: 32 cells of 250 units
MAX_CELLS = 32
MIN_CELLS = 4
WORLD_MAX = CELL * MAX_CELLS
SPEED = 200.0  # a player's units per second
#: non-player entities per seat of the room
NPC_PER_SEAT = 4
CREATURE_SHARE = 0.6
CREATURE_SPEED = (40.0, 80.0)
#: seconds a creature walks, then rests (uniform ranges)
WALK_S = (1.0, 4.0)
REST_S = (1.0, 5.0)
PICKUP_RADIUS = 20.0
#: side of the buckets pickups are kept in for the collision test (>= 2 * PICKUP_RADIUS)
_BUCKET = 100.0

#: 64,000 steps of 0.125: 2 bytes per coordinate
POS = Float(0.0, WORLD_MAX, 0.125)
#: wire codes per world unit (positions are kept and moved as codes, see ``_place``)
_PER_UNIT = 1.0 / POS.precision
PLAYER = EntityType("player", x=POS, y=POS, score=VarUInt(), owner=VarUInt(), name=String(32))
CREATURE = EntityType("creature", x=POS, y=POS, kind=UInt8())
PICKUP = EntityType("pickup", x=POS, y=POS, value=UInt8())
BOARD = EntityType("board", clock=VarUInt(), players=UInt16(), record=VarUInt(), holder=String(32))
SCHEMA = Schema(PLAYER, CREATURE, PICKUP, BOARD)
assert all(t.names[:2] == ("x", "y") for t in (PLAYER, CREATURE, PICKUP))
AXIS = Float(-1.0, 1.0, 0.01)
INPUT = InputSchema(dx=AXIS, dy=AXIS)


def cells_per_side(max_players: int) -> int:
    """Cells on a side of the world for a room of ``max_players``: one cell per seat."""
    return min(MAX_CELLS, max(MIN_CELLS, round(math.sqrt(max_players))))


def world_side(max_players: int) -> float:
    """The world's side in units for a room of ``max_players`` (4,000 at 256)."""
    return CELL * cells_per_side(max_players)


def npc_count(max_players: int) -> int:
    """Creatures and pickups in a room of ``max_players`` (1,024 at 256)."""
    return NPC_PER_SEAT * max(max_players, MIN_CELLS * MIN_CELLS)


def _place(entity: Entity, cx: int, cy: int) -> None:
    """Set an entity's x and y (fields 0 and 1) to these wire codes, marking what changed as
    the field properties do (``entity.x = ...``), without going through floats: field moves
    ~500 entities per tick and this is most of its ``update``."""
    codes = entity.codes
    bits = 0
    if codes[0] != cx:
        codes[0] = cx
        bits = 1
    if codes[1] != cy:
        codes[1] = cy
        bits |= 2
    if bits:
        if not entity.mask and entity._tracker is not None:
            entity._tracker[entity.id] = entity
        entity.mask |= bits


class Field(Game):
    name = "field"
    schema = SCHEMA
    input_schema = INPUT
    tick_rate = 20
    max_players = 256
    interest = Interest(
        cell_size=CELL,
        view_cells=1,
        positions={PLAYER: ("x", "y"), CREATURE: ("x", "y"), PICKUP: ("x", "y")},
    )

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.rng = ctx.random
        self.cells = cells_per_side(ctx.max_players)
        self.side = CELL * self.cells
        #: the world's side in wire codes (positions are 0 .. span - 1)
        self.span = round(self.side * _PER_UNIT)
        self.dt = 1.0 / ctx.tick_rate
        #: player number -> [x, y, vx, vy], position and velocity per tick, in codes
        self.motion: dict[int, list[float]] = {}
        self.board = self.state.spawn(BOARD)
        #: creatures walking now: entity -> (vx, vy), whole codes per tick
        self.walking: dict[Entity, tuple[int, int]] = {}
        #: tick -> creatures that start or stop walking then
        self.due: dict[int, list[Entity]] = {}
        #: pickups by bucket (x // _BUCKET, y // _BUCKET), in every bucket its radius touches
        self.buckets: dict[tuple[int, int], list[Entity]] = {}
        total = npc_count(ctx.max_players)
        creatures = round(total * CREATURE_SHARE)
        for _ in range(creatures):
            creature = self.state.spawn(
                CREATURE, x=self._coord(), y=self._coord(), kind=self.rng.randrange(4)
            )
            if self.rng.random() < 0.5:
                self._walk(creature, 0)
            else:
                self._schedule(creature, 0, REST_S)
        for _ in range(total - creatures):
            self._spawn_pickup()

    # ------------------------------------------------------------ world helpers
    def _coord(self) -> float:
        return self.rng.randrange(self.span) * POS.precision

    def _schedule(self, creature: Entity, tick: int, span: tuple[float, float]) -> None:
        at = tick + max(1, round(self.rng.uniform(*span) * self.ctx.tick_rate))
        self.due.setdefault(at, []).append(creature)

    def _walk(self, creature: Entity, tick: int) -> None:
        heading = self.rng.uniform(0.0, 2 * math.pi)
        step = self.rng.uniform(*CREATURE_SPEED) * self.dt * _PER_UNIT
        self.walking[creature] = (round(step * math.cos(heading)), round(step * math.sin(heading)))
        self._schedule(creature, tick, WALK_S)

    def _pickup_buckets(self, x: float, y: float) -> list[tuple[int, int]]:
        r = PICKUP_RADIUS
        xs = range(int((x - r) // _BUCKET), int((x + r) // _BUCKET) + 1)
        ys = range(int((y - r) // _BUCKET), int((y + r) // _BUCKET) + 1)
        return [(bx, by) for bx in xs for by in ys]

    def _spawn_pickup(self) -> None:
        pickup = self.state.spawn(
            PICKUP, x=self._coord(), y=self._coord(), value=self.rng.randint(1, 3)
        )
        for key in self._pickup_buckets(pickup.x, pickup.y):
            self.buckets.setdefault(key, []).append(pickup)

    # ------------------------------------------------------------ views
    def focus(self, player: Player) -> tuple[float, float] | None:
        avatar = player.data.get("avatar")
        return None if avatar is None else (avatar.x, avatar.y)

    def view(self, player: Player, focus: tuple[float, float] | None) -> Iterable[Cell]:
        """The 3 x 3 cells around the focus, wrapping around the world's edges."""
        if focus is None:
            return ()
        n = self.cells
        cx = int(focus[0] // CELL) % n
        cy = int(focus[1] // CELL) % n
        return [((cx + i) % n, (cy + j) % n) for i in (-1, 0, 1) for j in (-1, 0, 1)]

    # ------------------------------------------------------------ players
    def on_join(self, player: Player) -> None:
        avatar = self.state.spawn(
            PLAYER,
            x=self._coord(),
            y=self._coord(),
            owner=player.number,
            name=player.name.encode()[:32].decode("utf-8", "ignore"),
        )
        player.data["avatar"] = avatar
        self.motion[player.number] = [float(avatar.codes[0]), float(avatar.codes[1]), 0.0, 0.0]
        self.board.players = len(self.ctx.players)

    def on_leave(self, player: Player) -> None:
        avatar = player.data.pop("avatar", None)
        if avatar is not None:
            self.state.remove(avatar)
        self.motion.pop(player.number, None)
        self.board.players = len(self.ctx.players)

    def on_drop(self, player: Player) -> None:
        motion = self.motion.get(player.number)
        if motion is not None:
            motion[2] = motion[3] = 0.0

    def on_input(self, player: Player, inp: InputValues) -> None:
        dx, dy = inp.values
        norm = math.hypot(dx, dy)
        if norm > 1.0:
            dx, dy = dx / norm, dy / norm
        motion = self.motion[player.number]
        scale = SPEED * self.dt * _PER_UNIT
        motion[2] = dx * scale
        motion[3] = dy * scale

    # ------------------------------------------------------------ the tick
    def update(self, dt: float) -> None:
        tick = self.ctx.tick
        span = self.span
        # creatures that start or stop walking this tick
        for creature in self.due.pop(tick, ()):
            if creature in self.walking:
                del self.walking[creature]
                self._schedule(creature, tick, REST_S)
            else:
                self._walk(creature, tick)
        for creature, (cvx, cvy) in self.walking.items():
            codes: list[Any] = creature.codes
            _place(creature, (codes[0] + cvx) % span, (codes[1] + cvy) % span)
        players = self.ctx.players
        buckets = self.buckets
        precision = POS.precision
        for number, motion in self.motion.items():
            x, y, vx, vy = motion
            if not (vx or vy):
                continue
            x = (x + vx) % span
            y = (y + vy) % span
            motion[0] = x
            motion[1] = y
            avatar = players[number].data["avatar"]
            _place(avatar, int(x), int(y))
            ux = int(x) * precision
            uy = int(y) * precision
            bucket = buckets.get((int(ux // _BUCKET), int(uy // _BUCKET)))
            if bucket:
                self._collect(avatar, ux, uy, bucket)
        if tick % self.ctx.tick_rate == 0:
            self.board.clock = tick // self.ctx.tick_rate

    def _collect(self, avatar: Entity, x: float, y: float, bucket: list[Entity]) -> None:
        r = PICKUP_RADIUS
        for pickup in bucket:
            if abs(pickup.x - x) < r and abs(pickup.y - y) < r:
                for key in self._pickup_buckets(pickup.x, pickup.y):
                    self.buckets[key].remove(pickup)
                self.state.remove(pickup)
                avatar.score += pickup.value
                self._spawn_pickup()
                board = self.board
                if avatar.score > board.record:
                    board.record = avatar.score
                    board.holder = avatar.name
                return  # one pickup per tick and player
