"""The public Game API: what a game author writes. No I/O, no trio.

A game is a class with hooks, run by a room at a fixed tick rate::

    class MyGame(Game):
        name = "mygame"
        schema = Schema(PLAYER)
        input_schema = InputSchema(dx=Float(-1, 1, 0.01), dy=Float(-1, 1, 0.01))

        def on_join(self, player): player.data["avatar"] = self.state.spawn(PLAYER)
        def on_input(self, player, inp): ...
        def update(self, dt): ...

Hooks run inside the tick (``Room.tick`` in ``gameserver/room.py``), in this order:

1. ``on_leave`` for every player who left since the last tick, in the order they left (already
   gone from ``ctx.players``). A player who left before its first tick gets no hook at all.
   A held seat whose hold expired (see below) leaves here too, after those who left.
2. Then each seated player in turn, in seating order (player number order):
   ``on_join`` if it took its seat since the last tick (it is in ``ctx.players`` by then), or
   ``on_drop`` / ``on_resume`` if its connection was lost / came back since the last tick; then
   ``on_input`` for each of its queued inputs in sequence order, then ``on_event`` for each of
   its queued events in arrival order. So a new player's ``on_join`` runs after the inputs and
   events of the players seated before it, and before its own.
3. ``on_shutdown(deadline)``, once, in the first tick after the server begins to drain.
4. ``update(dt)``, once.

Everything they change in ``self.state`` goes out in that tick's delta; events they send go out
after it.

Dropped players and held seats: when a player's connection is lost without a LEAVE (network
cut, idle timeout, too slow) the server may hold its seat for ``seat_hold`` seconds so that
the player can resume. While held the player stays in ``ctx.players`` (its entities stay, the
seat counts toward ``max_players``), ``player.connected`` is False and it sends no inputs.
The game gets ``on_drop(player)`` in the next tick and, if the player comes back in time,
``on_resume(player)`` in the tick after the resume (a drop and a resume between the same two
ticks cancel out: neither hook runs). If the hold runs out, the player leaves as usual
(``on_leave``). Room events sent to a held player (broadcast or ``send_to``) are kept, up to
32, and delivered after the resume. By default both hooks do nothing: the entity stays where
it was.

Views (big worlds, gamesync.v2): set ``interest = Interest(cell_size=..., view_cells=...,
positions={TYPE: ("x", "y"), ...})`` (``gameserver.interest``) and override ``focus(player)``
(usually its avatar's position). Each player then receives only the entities in the cells of
its ``view(player, focus)`` (by default the square of cells around the focus) plus every
entity of a type not in ``positions``; entities that come into view arrive in full, those
that leave are removed. Relevance is per cell, not per entity, so each cell is encoded once
per tick for everyone who sees it. Without ``interest`` nothing changes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from shared.errors import LocalProtocolError
from shared.protocol import MAX_EVENT_DATA_BYTES, MAX_NAME_BYTES
from shared.schema import InputSchema, InputValues, Schema
from shared.state import State

if TYPE_CHECKING:
    from gameserver.interest import Cell, Interest

MAX_TICK_RATE = 120


@attrs.define(eq=False)
class Player:
    """A seated player. ``number`` is unique within the room's lifetime (never reused)."""

    number: int
    id: str
    name: str
    data: dict[str, Any] = attrs.Factory(dict)
    #: False while the player's connection is lost and its seat is held (see ``on_drop``)
    connected: bool = True


class RoomContext:
    """What a game sees of its room: the state, the clock, the players, and the event outbox."""

    def __init__(
        self, room_name: str, state: State, tick_rate: int, seed: int, max_players: int = 8
    ) -> None:
        self.room_name = room_name
        #: the room's size (the game's ``max_players`` or the server's ``--max-players``)
        self.max_players = max_players
        self.state = state
        self.tick_rate = tick_rate
        self.tick = 0
        self.players: dict[int, Player] = {}
        #: the last tick before the server closes the room's players, once it is draining
        self.shutdown_at: int | None = None
        self.random = random.Random(seed)
        self._outbox: list[tuple[int, str, bytes, int | None]] = []

    def broadcast(self, name: str, data: bytes = b"", *, sender: int = 0) -> None:
        """Send a reliable room event to every player after this tick's delta."""
        self._check_event(name, data)
        self._outbox.append((sender, name, data, None))

    def send_to(self, player: Player, name: str, data: bytes = b"") -> None:
        """Send a reliable room event to one player after this tick's delta."""
        self._check_event(name, data)
        self._outbox.append((0, name, data, player.number))

    def take_outbox(self) -> list[tuple[int, str, bytes, int | None]]:
        """The events queued this tick, (sender, name, data, target or None); empties it."""
        out, self._outbox = self._outbox, []
        return out

    @staticmethod
    def _check_event(name: str, data: bytes) -> None:
        if len(name.encode()) > MAX_NAME_BYTES or len(data) > MAX_EVENT_DATA_BYTES:
            raise LocalProtocolError("room event name or data too long")


class Game:
    """Base class for games. Override the hooks you need; every hook has a default that does
    nothing (``on_event`` relays the event to everyone), so a game that never moves does not
    need ``update``."""

    name: ClassVar[str]
    schema: ClassVar[Schema]
    input_schema: ClassVar[InputSchema]
    tick_rate: ClassVar[int] = 20
    max_players: ClassVar[int] = 8
    #: seconds a dropped player's seat is held for a resume (0 = never held); the server's
    #: ``--seat-hold`` flag overrides it
    seat_hold: ClassVar[float] = 20.0
    #: views (interest management, gamesync.v2): with an :class:`~gameserver.interest.Interest`
    #: each player receives only its view, the entities in the cells around its
    #: :meth:`focus` (see :meth:`view`) plus every entity of a type that has no position.
    #: None (the default): every player receives the whole room, exactly as without views.
    #: A view game refuses gamesync.v1 connections (4014).
    interest: ClassVar[Interest | None] = None

    def __init__(self, ctx: RoomContext) -> None:
        self.ctx = ctx
        self.state = ctx.state

    def on_join(self, player: Player) -> None:
        """A player took a seat (called in the tick after the join, after that tick's leaves)."""

    def on_leave(self, player: Player) -> None:
        """A player left, was disconnected, or its held seat's hold ran out."""

    def on_drop(self, player: Player) -> None:
        """``player``'s connection was lost and its seat is held (``player.connected`` is
        False). It stays in ``ctx.players`` and sends no inputs until ``on_resume``, or until
        the hold runs out and ``on_leave`` runs. By default nothing happens (its entity stays
        as it is); a game may freeze the avatar, mark it away, or pause a round."""

    def on_resume(self, player: Player) -> None:
        """A held ``player`` is back on a new connection (``player.connected`` is True
        again), with the same number, data and entities. By default nothing happens."""

    def on_input(self, player: Player, inp: InputValues) -> None:
        """One input from ``player``; inputs arrive in sequence order."""

    def on_event(self, player: Player, name: str, data: bytes) -> None:
        """A room event from a player. By default it is relayed to everyone."""
        self.ctx.broadcast(name, data, sender=player.number)

    def on_shutdown(self, deadline: int) -> None:
        """The server is draining: it admits no new players, and at tick ``deadline`` it closes
        everyone still here (1001, "come back later"). Called once, inside a tick.

        ``deadline`` is a tick number, ``(deadline - self.ctx.tick) / self.ctx.tick_rate``
        seconds from now (the server's ``drain_timeout``); it is also ``self.ctx.shutdown_at``.
        The room keeps ticking for the players who stay, so this is the moment to end the
        round early, announce it (``self.ctx.broadcast``) or save results. Players may leave
        at any time; the server stops as soon as the last one has. By default nothing
        happens."""

    def update(self, dt: float) -> None:
        """Advance the simulation by ``dt`` seconds."""

    def focus(self, player: Player) -> tuple[float, float] | None:
        """Views only (``interest`` set): where ``player`` looks from, in world units, after
        each tick (typically its avatar's position). None (the default): nowhere; the
        player then sees only the global entities. Called once per tick per connected player,
        after ``update``; keep it cheap and do not change the state here."""
        return None

    def view(self, player: Player, focus: tuple[float, float] | None) -> Iterable[Cell]:
        """Views only: the cells ``player`` sees, given its :meth:`focus`. The default is
        ``interest.cells_around(focus)``: the square of ``2 * view_cells + 1`` cells around
        the focus's cell (none without a focus). Override it for custom relevance at cell
        granularity: team vision (the union of the teammates' cells), fog of war, a
        spectator who sees a whole region. Relevance is per cell, never per entity: that is
        what lets the server encode each cell once per tick for everyone who sees it.
        Called right after :meth:`focus`; do not change the state here."""
        interest = self.interest
        if interest is None or focus is None:
            return ()
        return interest.cells_around(focus)


GameFactory = Callable[[RoomContext], Game]


class GameRegistry:
    """Games by name. Passed in to the server; there is no global registry."""

    def __init__(self) -> None:
        self._games: dict[str, type[Game]] = {}
        self.default: str | None = None

    def register(self, game: type[Game], *, default: bool = False) -> type[Game]:
        name = game.name
        if name in self._games:
            raise ValueError(f"game {name!r} is already registered")
        if not 1 <= game.tick_rate <= MAX_TICK_RATE:
            raise ValueError(f"{name}: tick_rate must be 1..{MAX_TICK_RATE}")
        hold = game.seat_hold
        if not (isinstance(hold, int | float) and math.isfinite(hold) and hold >= 0):
            raise ValueError(f"{name}: seat_hold must be a number of seconds >= 0, got {hold!r}")
        if game.interest is not None:
            try:
                game.interest.check(game.schema)
            except LocalProtocolError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self._games[name] = game
        if default or self.default is None:
            self.default = name
        return game

    def get(self, name: str) -> type[Game] | None:
        if not name:
            name = self.default or ""
        return self._games.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._games)


def default_registry() -> GameRegistry:
    """A fresh registry holding the bundled games."""
    from gameserver.games.arena import Arena
    from gameserver.games.field import Field
    from gameserver.games.pong import Pong

    registry = GameRegistry()
    registry.register(Arena, default=True)
    registry.register(Pong)
    registry.register(Field)
    return registry
