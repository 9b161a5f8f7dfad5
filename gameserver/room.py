"""The pure room core: seats, input queues, the tick, and the bytes it produces. No trio.

Driven as in h11: ``seat()``/``unseat()``/``push_input()``/``push_event()`` feed events in, and
``tick()`` returns the bytes to send. The trio layer (``gameserver.server``) calls ``tick()`` at a
fixed rate and delivers its output.

Held seats and resume (gamesync.v2), as the driver uses them:

* A connection lost without LEAVE: ``detach(number)`` instead of ``unseat``. The seat is held
  for ``config.seat_hold_ticks`` ticks (``on_drop`` at the next tick); if the hold runs out the
  seat leaves in that tick like ``unseat`` and the player is in ``TickOutput.expired``.
* Every JOINED carries a token for ``(room.epoch, number, room.rotate(number))``. A RESUME's
  token is parsed by ``gameserver.resume.ResumeKey.parse``, then ``resume_check(claims)``
  decides (None = admit); then ``reattach(number)`` (which also invalidates older tokens by
  ``rotate`` when the driver mints the new one). After the next ``tick()`` the player is in
  ``TickOutput.resumed``: send it JOINED(RESUMED) with ``input_seq = last_applied(number)``,
  then ``catch_up(have_tick)`` or, when that is None, ``snapshot()``, then
  ``take_held_events(number)``, then that tick's ``TickOutput.events`` as for everyone else.
* Room events emitted while a seat is held are kept for it (``config.held_event_limit``);
  ``TickOutput.events`` still lists every event, so the fan-out stays the same: a held seat
  simply has no connection to send to.

Views (a game with ``interest``, gamesync.v2): ``room.views`` is a
:class:`~gameserver.interest.ViewEncoder`. Each tick yields ``TickOutput.deltas``, one DELTA
per connected player (not the ones that joined or resumed in it, nor held seats), instead of
the one ``TickOutput.delta``; ``snapshot_for(number)`` is the player's SNAPSHOT (its view);
``catch_up`` is always None (no history: a resume gets a snapshot). A game without
``interest`` runs exactly the code path it always did.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from gameserver.game import Game, Player, RoomContext
from gameserver.history import DeltaHistory
from gameserver.interest import Cell, ViewEncoder
from gameserver.resume import EPOCH_BYTES, ResumeClaims, ResumeRefusal
from shared.delta_v3 import CODING_V3
from shared.errors import LocalProtocolError
from shared.messages import Joined, RoomEvent
from shared.schema import Code
from shared.state import State, catch_up_v3

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: private rooms: ``~`` and 22 URL-safe base64 characters, made by the server
PRIVATE_ROOM_RE = re.compile(r"~[A-Za-z0-9_\-]{22}")


class RoomFull(Exception):
    """No seat is free."""


class NoSuchSeat(LookupError):
    """``reattach`` of a seat that is neither held nor seated (check ``resume_check`` first)."""


def ticks_for(seconds: float, tick_rate: int) -> int:
    """A duration in whole ticks, rounded up (0 stays 0): for ``seat_hold_ticks`` and
    ``history_ticks``."""
    return max(0, math.ceil(seconds * tick_rate - 1e-9))


def _check_epoch(_: object, __: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != EPOCH_BYTES:
        raise ValueError(f"a room epoch is {EPOCH_BYTES} bytes")


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
    #: ticks a detached seat is held for a resume (0 = no holds: ``detach`` unseats)
    seat_hold_ticks: int = 0
    #: ticks of per-tick deltas kept for catch-up deltas (0 = none: resumes get a SNAPSHOT)
    history_ticks: int = 0
    #: the history's bound in bytes of recorded deltas
    history_bytes: int = 1 << 20
    #: room events kept for a held seat; beyond this they are dropped and counted
    held_event_limit: int = 32
    #: this room instance's random epoch, bound into its resume tokens (the server passes
    #: ``secrets.token_bytes(8)``; a room made again under the same name gets a new one)
    epoch: bytes = attrs.field(default=b"\0" * EPOCH_BYTES, validator=_check_epoch)


@attrs.define
class RoomCounters:
    ticks: int = 0
    inputs_applied: int = 0
    inputs_dropped: int = 0
    events_dropped: int = 0
    joins: int = 0
    leaves: int = 0
    #: seats detached and held
    holds: int = 0
    #: held (or still attached) seats taken back by ``reattach``
    resumes: int = 0
    #: holds that ran out (the seat left)
    holds_expired: int = 0
    #: room events not kept for a held seat (its buffer was full)
    events_dropped_held: int = 0
    #: records, patches and (view rooms) cell chunks encoded, snapshots included: the
    #: server's ``gameserver_encode_calls_total``
    encode_calls: int = 0


@attrs.frozen
class TickOutput:
    tick: int
    #: the DELTA for every player seated before this tick (encoded once); b"" in a view room
    delta: bytes
    #: players whose join completed this tick: send them JOINED, then a SNAPSHOT
    joined: tuple[Player, ...]
    #: ROOM_EVENT messages emitted this tick, with their target (None = everyone); those
    #: for held seats are also kept for them (``Room.take_held_events``)
    events: tuple[tuple[bytes, int | None], ...]
    #: players reattached since the last tick (still seated and attached): send each
    #: JOINED(RESUMED), then ``Room.catch_up``/``Room.snapshot``, then its held events
    resumed: tuple[Player, ...] = ()
    #: players whose hold ran out this tick: their seat is gone (on_leave ran)
    expired: tuple[Player, ...] = ()
    #: view rooms: the DELTA of each connected player seated before this tick, by number
    #: (None in other rooms: everyone gets ``delta``)
    deltas: Mapping[int, bytes] | None = None
    #: records, patches and chunks encoded in this tick
    encode_calls: int = 0
    #: the same DELTA as ``delta`` in the gamesync.v3 coding (b"" unless ``Room.codings``
    #: holds 3, or the room keeps a history and no session wants v2): for the v3 sessions;
    #: ``delta`` is b"" when no session needs it
    delta_v3: bytes = b""


class _Seat:
    __slots__ = (
        "active",
        "events",
        "generation",
        "held_events",
        "held_until",
        "inputs",
        "last_seq",
        "player",
        "seen_connected",
    )

    def __init__(self, player: Player) -> None:
        self.player = player
        self.inputs: deque[tuple[int, tuple[Code, ...]]] = deque()
        self.events: deque[tuple[str, bytes]] = deque()
        self.last_seq = 0  # highest seq accepted into the queue
        self.active = False  # on_join has run
        self.seen_connected = True  # player.connected as the game last saw it (hooks)
        self.held_until: int | None = None  # while held: the tick the hold runs out
        self.held_events: list[bytes] = []
        self.generation = 0  # of the seat's newest resume token


class Room:
    """One room running one game. Seating is synchronous, so it is atomic under trio."""

    def __init__(self, name: str, game_cls: type[Game], config: RoomConfig) -> None:
        self.name = name
        self.game_cls = game_cls
        self.config = config
        self.max_players = config.max_players
        self.epoch = config.epoch
        self.counters = RoomCounters()
        self.state_tick = 0
        self.ctx = RoomContext(
            name, State(game_cls.schema), config.tick_rate, config.seed, config.max_players
        )
        self.game = game_cls(self.ctx)
        self.input_schema = game_cls.input_schema
        self.dt = 1.0 / config.tick_rate
        self._seats: dict[int, _Seat] = {}
        self._next_number = 1
        self._leaving: list[_Seat] = []
        self._held: dict[int, _Seat] = {}
        self._reattached: list[_Seat] = []
        self.acks: dict[int, int] = {}  # player number -> last applied input seq
        self._snapshot: tuple[int, bytes] | None = None
        self._snapshot_v3: tuple[int, bytes] | None = None
        #: the state codings the next tick's DELTA is wanted in (2: v1/v2 sessions, 3: v3;
        #: :func:`shared.delta_v3.coding_for`), set by the driver when its sessions change.
        #: The catch-up history records whichever the room makes (one coding, never two)
        self.codings: frozenset[int] = frozenset((2,))
        self._shutdown_pending = False
        # the initial state (e.g. spawned in __init__) is tick 0; it reaches players by snapshot
        state = self.ctx.state
        interest = game_cls.interest
        #: views (the game has an ``interest``): the per-client encoder; None for other games
        self.views: ViewEncoder | None = None
        if interest is None:
            state.encode_delta(0, (), False)
        else:
            self.views = ViewEncoder(interest, game_cls.schema)
            self.views.start(state)
        self._encoded = state.encode_calls
        self.history: DeltaHistory | None = None
        # catch-ups built after the last tick, by base: resumes in one tick share them
        self._catch_ups: tuple[int, dict[int, bytes | None]] = (0, {})
        if config.history_ticks > 0 and self.views is None:
            self.history = DeltaHistory(config.history_ticks, config.history_bytes)
            state.removal_log = []

    # ------------------------------------------------------------ seats
    @property
    def player_count(self) -> int:
        """Seats taken, held ones included (they count toward ``max_players``)."""
        return len(self._seats)

    @property
    def held_count(self) -> int:
        """Seats held now for a resume."""
        return len(self._held)

    @property
    def is_empty(self) -> bool:
        """No seat at all, held or not (a room whose only seats are held is not empty)."""
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
        """Free the seat now, held or not; the game's on_leave runs at the next tick if
        on_join had run."""
        seat = self._seats.pop(number, None)
        if seat is None:
            return
        self._held.pop(number, None)
        seat.held_events = []
        if seat.active:
            self._leaving.append(seat)

    def detach(self, number: int) -> bool:
        """The seat's connection is lost without LEAVE: hold the seat for a resume.

        True if the seat is held now (or already was): it stays (in ``ctx.players``, counted
        in ``player_count``), ``player.connected`` becomes False, its queued inputs and events
        are dropped, the highest accepted input seq goes back to the last applied one (a
        resumed client re-sends what was not applied), and the game's ``on_drop`` runs in the
        next tick. The hold runs out ``config.seat_hold_ticks`` ticks from now: in that tick the
        seat leaves as by ``unseat`` (``on_leave``, ack 0 in the delta) and the player is in
        ``TickOutput.expired``.

        False if the seat was unseated instead: holds are off (``seat_hold_ticks`` 0), or the
        player never got its JOINED (on_join has not run), or there is no such seat."""
        seat = self._seats.get(number)
        if seat is None:
            return False
        if self.config.seat_hold_ticks <= 0 or not seat.active:
            self.unseat(number)
            return False
        if seat.held_until is not None:
            return True
        seat.held_until = self.state_tick + self.config.seat_hold_ticks
        seat.player.connected = False
        self._forget_queued(seat)
        self._held[number] = seat
        self.counters.holds += 1
        return True

    def reattach(self, number: int) -> Player:
        """A RESUME for this seat was admitted: take the seat back, now (atomic).

        For a held seat the hold ends, ``player.connected`` is True again and ``on_resume``
        runs in the next tick (unless ``on_drop`` had not run yet: then neither runs). For a
        seat still attached to a connection the server has not yet seen die, this is the
        takeover: the old connection's queued inputs and events are dropped (close that
        connection with 4009; its cleanup must not ``unseat`` or ``detach`` this seat).
        Either way the highest accepted input seq goes back to ``last_applied(number)`` and
        the player is in ``TickOutput.resumed`` after the next tick. Raises
        :class:`NoSuchSeat` if the seat is gone."""
        seat = self._seats.get(number)
        if seat is None or not seat.active:
            raise NoSuchSeat(f"room {self.name!r} has no seat {number} to resume")
        if self._held.pop(number, None) is not None:
            seat.held_until = None
            seat.player.connected = True
        self._forget_queued(seat)
        if seat not in self._reattached:
            self._reattached.append(seat)
        self.counters.resumes += 1
        return seat.player

    def _forget_queued(self, seat: _Seat) -> None:
        seat.inputs.clear()
        seat.events.clear()
        seat.last_seq = self.acks.get(seat.player.number, 0)

    def is_held(self, number: int) -> bool:
        """The seat exists and is held (its connection is lost)."""
        return number in self._held

    def player(self, number: int) -> Player | None:
        """The player in seat ``number`` (held or not), or None."""
        seat = self._seats.get(number)
        return None if seat is None else seat.player

    def last_applied(self, number: int) -> int:
        """The seq of the seat's last input the game applied (0 if none): JOINED's
        ``input_seq``."""
        return self.acks.get(number, 0)

    def generation(self, number: int) -> int | None:
        """The seat's current token generation (None if there is no such seat)."""
        seat = self._seats.get(number)
        return None if seat is None else seat.generation

    def rotate(self, number: int) -> int:
        """Bump the seat's token generation and return it: mint the seat's new token with it
        (for every JOINED, fresh or resumed). Older tokens of the seat are dead from now on.
        Raises :class:`NoSuchSeat` if the seat is gone."""
        seat = self._seats.get(number)
        if seat is None:
            raise NoSuchSeat(f"room {self.name!r} has no seat {number}")
        seat.generation += 1
        return seat.generation

    def resume_check(self, claims: ResumeClaims) -> ResumeRefusal | None:
        """Whether a genuine token (``ResumeKey.parse``) may take its seat back: None if it
        may (then call ``reattach``), ``SEAT_LOST`` if this room instance (epoch) no longer
        has the seat, ``TOKEN_USED`` if a newer token of the seat exists."""
        if claims.epoch != self.epoch:
            return ResumeRefusal.SEAT_LOST
        seat = self._seats.get(claims.number)
        if seat is None or not seat.active:
            return ResumeRefusal.SEAT_LOST
        if claims.generation != seat.generation:
            return ResumeRefusal.TOKEN_USED
        return None

    def take_held_events(self, number: int) -> list[bytes]:
        """The ROOM_EVENT messages (encoded) kept for the seat while it was held, oldest
        first; empties the buffer. Send them after the resume's state."""
        seat = self._seats.get(number)
        if seat is None:
            return []
        out, seat.held_events = seat.held_events, []
        return out

    def shutdown(self, ticks: int) -> None:
        """The server is draining and closes the players in ``ticks`` ticks: the game's
        ``on_shutdown`` runs in the next tick (once, however often this is called)."""
        if self.ctx.shutdown_at is None:
            self.ctx.shutdown_at = self.state_tick + max(1, ticks)
            self._shutdown_pending = True

    # ------------------------------------------------------------ inputs
    def push_input(self, number: int, seq: int, codes: tuple[Code, ...]) -> bool:
        """Queue an input for the next tick. False if dropped (stale seq, queue full, or the
        seat is held)."""
        seat = self._seats.get(number)
        if seat is None or seat.held_until is not None:
            return False
        if seq <= seat.last_seq or len(seat.inputs) >= self.config.input_queue_limit:
            self.counters.inputs_dropped += 1
            return False
        seat.last_seq = seq
        seat.inputs.append((seq, codes))
        return True

    def push_event(self, number: int, name: str, data: bytes) -> bool:
        seat = self._seats.get(number)
        if seat is None or seat.held_until is not None:
            return False
        if len(seat.events) >= self.config.event_queue_limit:
            self.counters.events_dropped += 1
            return False
        seat.events.append((name, data))
        return True

    # ------------------------------------------------------------ tick
    def tick(self) -> TickOutput:
        """Run one tick: leaves (and expired holds), joins, drops/resumes, inputs, events,
        update; return the tick's bytes."""
        game = self.game
        ctx = self.ctx
        tick = self.state_tick + 1
        ctx.tick = tick
        ack_changes: list[tuple[int, int]] = []
        expired: list[Player] = []
        if self._held:
            for number, seat in list(self._held.items()):
                assert seat.held_until is not None
                if tick >= seat.held_until:
                    expired.append(seat.player)
                    self.unseat(number)
                    self.counters.holds_expired += 1
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
            elif player.connected is not seat.seen_connected:
                seat.seen_connected = player.connected
                if player.connected:
                    game.on_resume(player)
                else:
                    game.on_drop(player)
            inputs = seat.inputs
            if inputs:
                last = 0
                self.counters.inputs_applied += len(inputs)
                while inputs:
                    seq, codes = inputs.popleft()
                    game.on_input(player, values_for(codes))
                    last = seq
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
        if self.views is not None:
            return self._view_tick(tick, ack_changes, joined, expired)
        interval = self.config.checksum_interval
        state = ctx.state
        history = self.history
        codings = self.codings
        # the history records whichever coding is made (v3 where both are), and makes the room
        # encode one only when no session wants either
        v2 = 2 in codings
        delta, delta_v3 = state.encode_deltas(
            tick,
            ack_changes,
            interval > 0 and tick % interval == 0,
            v2=v2,
            v3=3 in codings or (history is not None and not v2),
        )
        encoded = state.encode_calls - self._encoded
        self._encoded = state.encode_calls
        self.counters.encode_calls += encoded
        if history is not None:
            if delta_v3 is not None:
                history.record(tick, delta_v3, state.removal_log, CODING_V3)
            else:
                assert delta is not None
                history.record(tick, delta, state.removal_log)
            if state.removal_log:
                state.removal_log = []
        self.state_tick = tick
        self.counters.ticks += 1
        events = self._events()
        resumed = self._take_resumed()
        return TickOutput(
            tick,
            delta or b"",
            tuple(joined),
            events,
            resumed,
            tuple(expired),
            encode_calls=encoded,
            delta_v3=delta_v3 or b"",
        )

    def _events(self) -> tuple[tuple[bytes, int | None], ...]:
        events = tuple(
            (RoomEvent(sender, name, data).to_bytes(), target)
            for sender, name, data, target in self.ctx.take_outbox()
        )
        if self._held and events:
            self._keep_for_held(events)
        return events

    def _take_resumed(self) -> tuple[Player, ...]:
        resumed: tuple[Player, ...] = ()
        if self._reattached:
            resumed = tuple(
                s.player
                for s in self._reattached
                if s.held_until is None and self._seats.get(s.player.number) is s
            )
            self._reattached.clear()
        return resumed

    def _view_tick(
        self,
        tick: int,
        ack_changes: list[tuple[int, int]],
        joined: list[Player],
        expired: list[Player],
    ) -> TickOutput:
        """The end of a view room's tick: each connected player's cells from the game's
        ``focus``/``view`` hooks, then one DELTA per connected player seated before this tick
        (held seats, and players that joined or resumed now, get none: they get a snapshot)."""
        views = self.views
        assert views is not None
        game = self.game
        cells: dict[int, frozenset[Cell]] = {}
        for seat in self._seats.values():
            player = seat.player
            if seat.active and player.connected:
                cells[player.number] = frozenset(game.view(player, game.focus(player)))
        resumed = self._take_resumed()
        fresh = {p.number for p in joined}
        fresh.update(p.number for p in resumed)
        deliver = [n for n in cells if n not in fresh]
        acks = {number: inc for number, inc in ack_changes if inc}
        interval = self.config.checksum_interval
        deltas = views.tick(
            self.ctx.state, tick, cells, acks, interval > 0 and tick % interval == 0, deliver
        )
        self.state_tick = tick
        self.counters.ticks += 1
        encoded = views.tick_encode_calls
        self.counters.encode_calls += encoded
        events = self._events()
        return TickOutput(
            tick,
            b"",
            tuple(joined),
            events,
            resumed,
            tuple(expired),
            deltas=deltas,
            encode_calls=encoded,
        )

    def _keep_for_held(self, events: tuple[tuple[bytes, int | None], ...]) -> None:
        limit = self.config.held_event_limit
        held = self._held
        for payload, target in events:
            seats = held.values() if target is None else (held[target],) if target in held else ()
            for seat in seats:
                if len(seat.held_events) < limit:
                    seat.held_events.append(payload)
                else:
                    self.counters.events_dropped_held += 1

    # ------------------------------------------------------------ outgoing state
    @property
    def is_view(self) -> bool:
        """The game uses views: JOINED carries the VIEW flag, each player gets its own
        deltas and snapshots (gamesync.v2 only)."""
        return self.views is not None

    def joined_message(self, player: Player, version: int = 2) -> bytes:
        """JOINED for ``player``: its number, the room, the tick rate and both schemas (of
        protocol ``version``: 2 by default, as the room's other outputs, ``snapshot()`` and
        ``TickOutput.delta``, are v1/v2 coded unless asked otherwise)."""
        return Joined(
            player.number,
            self.name,
            self.game_cls.name,
            self.config.tick_rate,
            self.game_cls.schema,
            self.game_cls.input_schema,
            version=version,
            view=self.is_view,
        ).to_bytes()

    def snapshot_for(self, number: int, coding: int = 2) -> bytes:
        """The SNAPSHOT for player ``number`` after the last tick: ``snapshot()`` in a room
        without views; in a view room its view (the global entities and those of its cells as
        of the last tick), its view checksum and only its own ack. Built when called (between
        ticks, when the snapshot is sent); every snapshot of one tick shares the cells' chunks.
        """
        views = self.views
        if views is None:
            return self.snapshot(coding)
        if not views.knows(number):
            # no cells yet (a seat whose first tick has not run): from the hooks, now
            seat = self._seats.get(number)
            if seat is not None and seat.active:
                views.set_view(number, self.game.view(seat.player, self.game.focus(seat.player)))
        before = views.encode_calls
        data = views.snapshot(number, self.state_tick, self.acks.get(number, 0))
        self.counters.encode_calls += views.encode_calls - before
        return data

    def view_of(self, number: int) -> Mapping[int, Any]:
        """View rooms: the entities player ``number`` sees after the last tick (what its
        replica must hold), by id."""
        assert self.views is not None, "view_of() is for view rooms"
        return self.views.visible(number)

    def snapshot(self, coding: int = 2) -> bytes:
        """A SNAPSHOT of the state after the last tick (cached until the next tick), in the
        v1/v2 layout or (``coding`` 3) gamesync.v3's, which adds the motion section. A view
        room has none for everyone: use :meth:`snapshot_for`."""
        cached = self._snapshot_v3 if coding == 3 else self._snapshot
        if cached is not None and cached[0] == self.state_tick:
            return cached[1]
        if self.views is not None:
            raise LocalProtocolError("a view room has no whole-room snapshot: snapshot_for()")
        state = self.ctx.state
        before = state.encode_calls
        data = state.encode_snapshot(self.state_tick, self.acks, 3 if coding == 3 else 2)
        self.counters.encode_calls += state.encode_calls - before
        self._encoded = state.encode_calls
        if coding == 3:
            self._snapshot_v3 = (self.state_tick, data)
        else:
            self._snapshot = (self.state_tick, data)
        return data

    def catch_up(self, have_tick: int, coding: int = 2) -> bytes | None:
        """A DELTA with the BASE flag (base ``have_tick``, tick ``state_tick``, always with a
        checksum) taking a replica at ``have_tick`` straight to the state after the last tick;
        None when the client must get ``snapshot()`` instead: ``have_tick`` is 0, not below
        ``state_tick`` (a delta's base is below its tick) or older than the history (``config.history_ticks``, ``history_bytes``), or the
        delta would be no smaller than the snapshot. ``coding`` 3: in gamesync.v3's layout (plain
        codes in its patches, the state's motion at the end). Call it between ticks (right after
        ``tick()``), never from inside a game hook."""
        history = self.history
        now = self.state_tick
        if history is None or not 0 < have_tick < now:
            return None
        at, built = self._catch_ups
        if at != now:
            built = {}
            self._catch_ups = (now, built)
        key = have_tick if coding != 3 else -have_tick
        if key in built:
            return built[key]
        state = self.ctx.state
        data = history.catch_up(have_tick, now, state)
        if data is not None and coding == 3:
            data = catch_up_v3(data, state)
        if data is not None and len(data) >= len(self.snapshot(coding)):
            data = None
        built[key] = data
        return data

    def players(self) -> Iterable[Player]:
        return (s.player for s in self._seats.values())
