"""The pure room core: seats, input queues, the tick, and the bytes it produces. No trio.

Driven as in h11: ``seat()``/``unseat()``/``push_input()``/``push_event()`` feed events in, and
``tick()`` returns the bytes to send. The trio layer (``gameserver.server``) calls ``tick()`` at a
fixed rate and delivers its output.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

import attrs

from gameserver.game import Game, Player, RoomContext
from shared.messages import Joined, RoomEvent
from shared.schema import Code
from shared.state import State

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: private rooms: ``~`` and 22 URL-safe base64 characters, made by the server
PRIVATE_ROOM_RE = re.compile(r"~[A-Za-z0-9_\-]{22}")


class RoomFull(Exception):
    """No seat is free."""


@attrs.frozen
class RoomConfig:
    max_players: int = 8
    tick_rate: int = 20
    #: inputs a player may have waiting for the next tick; the excess is dropped and counted
    input_queue_limit: int = 8
    #: room events a player may have waiting for the next tick
    event_queue_limit: int = 8
    #: a DELTA carries the state checksum every this many ticks (a SNAPSHOT always does)
    checksum_interval: int = 5
    seed: int = 0


@attrs.define
class RoomCounters:
    ticks: int = 0
    inputs_applied: int = 0
    inputs_dropped: int = 0
    events_dropped: int = 0
    joins: int = 0
    leaves: int = 0


@attrs.frozen
class TickOutput:
    tick: int
    #: the DELTA for every player seated before this tick (encoded once)
    delta: bytes
    #: players whose join completed this tick: send them JOINED, then a SNAPSHOT
    joined: tuple[Player, ...]
    #: ROOM_EVENT messages emitted this tick, with their target (None = everyone)
    events: tuple[tuple[bytes, int | None], ...]


class _Seat:
    __slots__ = ("active", "events", "inputs", "last_seq", "player")

    def __init__(self, player: Player) -> None:
        self.player = player
        self.inputs: deque[tuple[int, tuple[Code, ...]]] = deque()
        self.events: deque[tuple[str, bytes]] = deque()
        self.last_seq = 0  # highest seq accepted into the queue
        self.active = False  # on_join has run


class Room:
    """One room running one game. Seating is synchronous, so it is atomic under trio."""

    def __init__(self, name: str, game_cls: type[Game], config: RoomConfig) -> None:
        self.name = name
        self.game_cls = game_cls
        self.config = config
        self.max_players = config.max_players
        self.counters = RoomCounters()
        self.state_tick = 0
        self.ctx = RoomContext(name, State(game_cls.schema), config.tick_rate, config.seed)
        self.game = game_cls(self.ctx)
        self.input_schema = game_cls.input_schema
        self.dt = 1.0 / config.tick_rate
        self._seats: dict[int, _Seat] = {}
        self._next_number = 1
        self._leaving: list[_Seat] = []
        self.acks: dict[int, int] = {}  # player number -> last applied input seq
        self._snapshot: tuple[int, bytes] | None = None
        self._shutdown_pending = False
        # the initial state (e.g. spawned in __init__) is tick 0; it reaches players by snapshot
        self.ctx.state.encode_delta(0, (), False)

    # ------------------------------------------------------------ seats
    @property
    def player_count(self) -> int:
        return len(self._seats)

    @property
    def is_empty(self) -> bool:
        return not self._seats and not self._leaving

    def seat(self, player_id: str, name: str) -> Player:
        """Take a seat now (atomic); the game's on_join runs at the next tick."""
        if len(self._seats) >= self.max_players:
            raise RoomFull(f"room {self.name!r} is full ({self.max_players} players)")
        player = Player(self._next_number, player_id, name)
        self._next_number += 1
        self._seats[player.number] = _Seat(player)
        return player

    def unseat(self, number: int) -> None:
        """Free the seat now; the game's on_leave runs at the next tick if on_join had run."""
        seat = self._seats.pop(number, None)
        if seat is not None and seat.active:
            self._leaving.append(seat)

    def shutdown(self, ticks: int) -> None:
        """The server is draining and closes the players in ``ticks`` ticks: the game's
        ``on_shutdown`` runs in the next tick (once, however often this is called)."""
        if self.ctx.shutdown_at is None:
            self.ctx.shutdown_at = self.state_tick + max(1, ticks)
            self._shutdown_pending = True

    # ------------------------------------------------------------ inputs
    def push_input(self, number: int, seq: int, codes: tuple[Code, ...]) -> bool:
        """Queue an input for the next tick. False if dropped (stale seq or queue full)."""
        seat = self._seats.get(number)
        if seat is None:
            return False
        if seq <= seat.last_seq or len(seat.inputs) >= self.config.input_queue_limit:
            self.counters.inputs_dropped += 1
            return False
        seat.last_seq = seq
        seat.inputs.append((seq, codes))
        return True

    def push_event(self, number: int, name: str, data: bytes) -> bool:
        seat = self._seats.get(number)
        if seat is None:
            return False
        if len(seat.events) >= self.config.event_queue_limit:
            self.counters.events_dropped += 1
            return False
        seat.events.append((name, data))
        return True

    # ------------------------------------------------------------ tick
    def tick(self) -> TickOutput:
        """Run one tick: joins, leaves, inputs, events, update; return the tick's bytes."""
        game = self.game
        ctx = self.ctx
        tick = self.state_tick + 1
        ctx.tick = tick
        ack_changes: list[tuple[int, int]] = []
        for seat in self._leaving:
            ctx.players.pop(seat.player.number, None)
            if self.acks.pop(seat.player.number, None) is not None:
                ack_changes.append((seat.player.number, 0))
            game.on_leave(seat.player)
            self.counters.leaves += 1
        self._leaving.clear()
        joined = []
        values_for = self.input_schema.values_for
        for seat in self._seats.values():
            player = seat.player
            if not seat.active:
                seat.active = True
                ctx.players[player.number] = player
                self.acks[player.number] = 0
                game.on_join(player)
                joined.append(player)
                self.counters.joins += 1
            inputs = seat.inputs
            if inputs:
                last = 0
                while inputs:
                    seq, codes = inputs.popleft()
                    game.on_input(player, values_for(codes))
                    last = seq
                    self.counters.inputs_applied += 1
                ack_changes.append((player.number, last - self.acks[player.number]))
                self.acks[player.number] = last
            while seat.events:
                name, data = seat.events.popleft()
                game.on_event(player, name, data)
        if self._shutdown_pending:
            self._shutdown_pending = False
            assert ctx.shutdown_at is not None
            game.on_shutdown(ctx.shutdown_at)
        game.update(self.dt)
        interval = self.config.checksum_interval
        delta = ctx.state.encode_delta(tick, ack_changes, interval > 0 and tick % interval == 0)
        self.state_tick = tick
        self.counters.ticks += 1
        events = tuple(
            (RoomEvent(sender, name, data).to_bytes(), target)
            for sender, name, data, target in ctx.take_outbox()
        )
        return TickOutput(tick, delta, tuple(joined), events)

    # ------------------------------------------------------------ outgoing state
    def joined_message(self, player: Player) -> bytes:
        """JOINED for ``player``: its number, the room, the tick rate and both schemas."""
        return Joined(
            player.number,
            self.name,
            self.game_cls.name,
            self.config.tick_rate,
            self.game_cls.schema,
            self.game_cls.input_schema,
        ).to_bytes()

    def snapshot(self) -> bytes:
        """A SNAPSHOT of the state after the last tick (cached until the next tick)."""
        cached = self._snapshot
        if cached is not None and cached[0] == self.state_tick:
            return cached[1]
        data = self.ctx.state.encode_snapshot(self.state_tick, self.acks)
        self._snapshot = (self.state_tick, data)
        return data

    def players(self) -> Iterable[Player]:
        return (s.player for s in self._seats.values())
