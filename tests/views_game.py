"""A tiny game that uses views (interest management), for the tests of issue 12.

A 1000 x 1000 world in cells of 100: avatars (one per player, moved by its inputs), mobs
that some tests move, spawn and remove by hand (``game.script``), and a global ``clock`` every
view holds. A player's focus is its avatar, or ``player.data["focus"]`` when a test sets it
(a position, or None: no focus); ``player.data["cells"]``, when set, replaces the view
entirely (custom relevance, e.g. team vision).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gameserver.game import Game, Player, RoomContext
from gameserver.interest import Cell, Interest
from shared.schema import EntityType, Float, InputSchema, Schema, UInt8, VarUInt

AVATAR = EntityType("avatar", x=Float(0, 1000, 0.5), y=Float(0, 1000, 0.5), owner=VarUInt())
MOB = EntityType("mob", x=Float(0, 1000, 0.5), y=Float(0, 1000, 0.5), hp=UInt8())
CLOCK = EntityType("clock", t=VarUInt())
SCHEMA = Schema(AVATAR, MOB, CLOCK)
INPUT = InputSchema(dx=Float(-1, 1, 0.01), dy=Float(-1, 1, 0.01))


class ViewsGame(Game):
    name = "views"
    schema = SCHEMA
    input_schema = INPUT
    tick_rate = 20
    max_players = 64
    interest = Interest(
        cell_size=100.0, view_cells=1, positions={AVATAR: ("x", "y"), MOB: ("x", "y")}
    )
    #: mobs spawned by __init__ (a grid of them, 4 per cell in the middle rows)
    initial_mobs = 40
    #: units an input of 1.0 moves the avatar
    speed = 50.0

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.clock = self.state.spawn(CLOCK)
        self.avatars: dict[int, Any] = {}
        #: callables run in update (tests queue world changes here)
        self.script: list[Callable[[ViewsGame], None]] = []
        rnd = ctx.random
        for _ in range(self.initial_mobs):
            self.state.spawn(MOB, x=rnd.uniform(0, 1000), y=rnd.uniform(0, 1000), hp=100)

    def on_join(self, player: Player) -> None:
        n = player.number
        self.avatars[n] = self.state.spawn(
            AVATAR, x=(n * 137.0) % 1000, y=(n * 71.0) % 1000, owner=n
        )

    def on_leave(self, player: Player) -> None:
        avatar = self.avatars.pop(player.number, None)
        if avatar is not None:
            self.state.remove(avatar)

    def on_input(self, player: Player, inp: Any) -> None:
        avatar = self.avatars.get(player.number)
        if avatar is not None:
            avatar.x = avatar.x + inp.dx * self.speed
            avatar.y = avatar.y + inp.dy * self.speed

    def update(self, dt: float) -> None:
        self.clock.t += 1
        script, self.script = self.script, []
        for step in script:
            step(self)

    def focus(self, player: Player) -> tuple[float, float] | None:
        if "focus" in player.data:
            focus: tuple[float, float] | None = player.data["focus"]
            return focus
        avatar = self.avatars.get(player.number)
        return None if avatar is None else (avatar.x, avatar.y)

    def view(self, player: Player, focus: tuple[float, float] | None) -> Iterable[Cell]:
        cells: Iterable[Cell] | None = player.data.get("cells")
        if cells is not None:
            return cells
        return super().view(player, focus)
