"""A pure test harness for games: a real :class:`~gameserver.room.Room`, no trio, no sockets.

::

    h = RoomHarness(Pong)
    alice, bob = h.join("alice"), h.join("bob")
    h.tick()                      # on_join runs; both get JOINED and a SNAPSHOT
    alice.input(dir=1.0)          # encoded as the wire carries it, applied at the next tick
    h.advance(0.5)                # half a second of game time
    assert alice.entities("paddle")[0].y > 300
    h.assert_in_sync()            # every replica equals the server's state, field by field

Everything a player would receive goes through the real bytes: the harness routes each tick's
output the way the server does (JOINED then SNAPSHOT to a player whose join completed, the
DELTA to everyone else, then the tick's ROOM_EVENTs), and each :class:`HarnessClient` decodes
those bytes with the ``shared`` codecs into a :class:`~shared.replica.Replica`, checking the
server's checksums as a real client does. Inputs and events are encoded and parsed back through
the wire codec too, so a game sees quantized values exactly as the server would.

A lost connection is held as on the server: ``client.drop()`` keeps the seat for the game's
``seat_hold`` (``on_drop`` runs at the next tick), ``client.resume()`` takes it back (``on_resume``,
then a resumed JOINED and a catch-up DELTA from the client's tick, or a SNAPSHOT), and a hold
that runs out leaves as LEAVE does (``on_leave``). Resume tokens are the server's business and
are not modelled.

Views (a game with ``interest``): each client gets its own deltas and snapshots, as on the
server; its replica is its view (``client.replica``), :meth:`HarnessClient.server_view` is
what the server decided it sees, :attr:`HarnessClient.cells` its cells, and
:meth:`RoomHarness.assert_in_sync` compares each replica with that client's view (its own ack,
its view checksum). A resume in a view room always gets a SNAPSHOT.

What the harness leaves out is the network: no rate limits, no slow readers, no timeouts.
Use the ``game_server`` pytest fixture (:mod:`gameserver.testing.pytest_plugin`) for those.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from gameserver.game import MAX_TICK_RATE, Game, GameRegistry, Player
from gameserver.room import (
    PRIVATE_ROOM_RE,
    ROOM_NAME_RE,
    Room,
    RoomConfig,
    TickOutput,
    ticks_for,
)
from gameserver.testing.sync import Difference, OutOfSync, compare
from shared.messages import (
    Delta,
    Event,
    Input,
    Joined,
    RoomEvent,
    ServerMessage,
    Snapshot,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import MAX_PLAYER_NAME_BYTES, CloseCode, Kind
from shared.replica import DesyncError, Replica
from shared.schema import Entity, EntityType
from shared.state import State

G = TypeVar("G", bound=Game)

_DELTA = bytes((Kind.DELTA,))


class HarnessClient:
    """One seated player as the harness sees it: what it sends, and the replica it builds.

    Made by :meth:`RoomHarness.join`. ``player`` is the server's :class:`~gameserver.game.Player`
    (the object the game's hooks receive); the rest is the client's side: ``joined`` (the decoded
    JOINED), ``replica``, ``events`` (every ROOM_EVENT received) and ``messages`` (the most recent
    decoded server messages, oldest first).
    """

    def __init__(self, harness: RoomHarness[Any], player: Player, history: int) -> None:
        self._harness = harness
        #: the server's Player: ``number``, ``id``, ``name`` and the game's ``data``
        self.player = player
        #: the JOINED message (None until the join tick has run)
        self.joined: Joined | None = None
        #: the most recent decoded server messages (SNAPSHOT, DELTA, ROOM_EVENT, JOINED)
        self.messages: deque[ServerMessage] = deque(maxlen=history)
        #: every room event received, oldest first
        self.events: list[RoomEvent] = []
        #: every desync the replica detected (a real client would have to rejoin)
        self.desyncs: list[DesyncError] = []
        #: bytes of server messages received
        self.bytes_received = 0
        #: inputs and events the room refused (stale sequence number, queue full)
        self.inputs_dropped = 0
        self.events_dropped = 0
        #: why the connection ended (NORMAL: left, GOING_AWAY: dropped, REPLACED); None = seated
        self.close_code: CloseCode | None = None
        self.last_update: Snapshot | Delta | None = None
        #: the seat's hold ran out while the connection was lost (the player has left)
        self.expired = False
        #: how often this client resumed its held seat
        self.resumes = 0
        self._replica: Replica | None = None
        self._need_snapshot = True
        self._next_seq = 1
        self._event_cursor = 0
        self._resume_from: int | None = None  # the replica's tick when resume() was called

    def __repr__(self) -> str:
        state = "seated" if self.connected else f"closed {self.close_code!r}"
        return f"<HarnessClient {self.id!r} #{self.number} {state} tick={self.tick}>"

    # ------------------------------------------------------------ identity and state
    @property
    def id(self) -> str:
        """The player id (one seat per id, as on the server)."""
        return self.player.id

    @property
    def name(self) -> str:
        return self.player.name

    @property
    def number(self) -> int:
        """The player number in the room (never reused)."""
        return self.player.number

    @property
    def connected(self) -> bool:
        """Seated and receiving (False after :meth:`leave`, :meth:`drop` or a replacement)."""
        return self.close_code is None

    @property
    def ready(self) -> bool:
        """JOINED and a SNAPSHOT have been received."""
        return self._replica is not None and self._replica.tick >= 0

    @property
    def replica(self) -> Replica:
        """The client's copy of the room's state, decoded from the bytes it received."""
        if self._replica is None:
            raise RuntimeError(
                f"player {self.id!r} has not received JOINED yet: run a tick after join()"
            )
        return self._replica

    @property
    def tick(self) -> int:
        """The replica's tick; -1 before the first SNAPSHOT."""
        return -1 if self._replica is None else self._replica.tick

    @property
    def last_acked(self) -> int:
        """The last input sequence number the server applied for this player (0 = none)."""
        if self._replica is None:
            return 0
        return self._replica.acks.get(self.number, 0)

    @property
    def last_sent(self) -> int:
        """The sequence number of the last input sent (0 = none yet)."""
        return self._next_seq - 1

    def entities(self, etype: EntityType | str) -> list[Entity]:
        """The replica's entities of one type (by type or type name), ascending id."""
        name = etype.name if isinstance(etype, EntityType) else etype
        schema = self.replica.schema
        if name not in schema.by_name:
            raise KeyError(f"no entity type {name!r}; the game has {sorted(schema.by_name)}")
        return sorted(self.replica.of_type(name), key=lambda e: e.id)

    def entity(self, entity_id: int) -> Entity | None:
        """The replica's entity ``entity_id``, or None."""
        return self.replica.get(entity_id)

    def take_events(self) -> list[RoomEvent]:
        """The room events received since the last call (all of them, the first time)."""
        new = self.events[self._event_cursor :]
        self._event_cursor = len(self.events)
        return new

    def events_named(self, name: str) -> list[RoomEvent]:
        """Every room event called ``name`` received so far."""
        return [e for e in self.events if e.name == name]

    # ------------------------------------------------------------ sending
    def input(self, **values: Any) -> int:
        """Queue one input for the next tick, fields by name (a missing field is neutral, as in
        the SDK: 0, False or ""; a Float whose range excludes 0 takes the bound nearest to it).

        The values are encoded with the game's InputSchema and parsed back as the server does,
        so the game receives them quantized. Returns the input's sequence number; the input is
        acknowledged (:attr:`last_acked`) in the delta of the tick that applies it.
        """
        seq = self._next_seq
        self.send_input(seq, values)
        return seq

    def send_input(self, seq: int, values: Mapping[str, Any]) -> bool:
        """Queue an input with an explicit sequence number (to test stale or repeated ones).

        True if the room accepted it; False if it was dropped (a sequence number not above the
        last accepted one, or a full input queue), as the server would drop it.
        """
        self._check_connected("send input")
        room = self._harness.room
        schema = self.joined.input_schema if self.joined is not None else room.input_schema
        data = Input(seq, schema.codes_for(dict(values))).to_bytes(schema)
        msg = parse_client_message(data, room.input_schema)
        assert isinstance(msg, Input)
        self._next_seq = max(self._next_seq, seq + 1)
        if room.push_input(self.number, msg.seq, msg.codes):
            return True
        self.inputs_dropped += 1
        return False

    def event(self, name: str, data: bytes = b"") -> bool:
        """Queue a room event for the next tick (the game's ``on_event`` receives it).

        False if the room's event queue for this player is full (the event is dropped)."""
        self._check_connected("send an event")
        msg = parse_client_message(Event(name, data).to_bytes())
        assert isinstance(msg, Event)
        if self._harness.room.push_event(self.number, msg.name, msg.data):
            return True
        self.events_dropped += 1
        return False

    def leave(self) -> None:
        """Leave the room (LEAVE): the seat is freed now, ``on_leave`` runs at the next tick."""
        self._harness._close(self, CloseCode.NORMAL)

    def drop(self) -> None:
        """Lose the connection without a goodbye. The seat is held for the game's
        ``seat_hold`` (the harness's ``seat_hold``): the entity stays, ``on_drop`` runs at the
        next tick, nothing reaches this client until :meth:`resume`, and if the hold runs out
        the player leaves (``on_leave``; :attr:`expired` becomes True). With holds off (or
        before the player's join tick has run) this is the same as leaving."""
        self._harness._drop(self)

    @property
    def held(self) -> bool:
        """The connection is lost and the seat is held for a resume."""
        return self.number in self._harness._held

    def resume(self, *, keep_state: bool = True) -> None:
        """Come back to the held seat, as a RESUME does: ``on_resume`` runs at the next tick,
        which then sends a resumed JOINED and a catch-up DELTA from this client's tick (or a
        SNAPSHOT, always with ``keep_state=False``, as for a client that kept only its token),
        then the room events kept while it was away. Inputs the game had not applied are
        forgotten: re-send them with :meth:`send_input` (their seqs are above
        ``joined.input_seq``). Raises RuntimeError if the seat is not held."""
        self._harness._resume(self, keep_state)

    def _check_connected(self, what: str) -> None:
        if not self.connected:
            raise RuntimeError(f"player {self.id!r} cannot {what}: it is no longer seated")

    # ------------------------------------------------------------ receiving
    def receive(self, data: bytes) -> ServerMessage | None:
        """Decode and apply one server message, as the SDK client does.

        The harness calls this with every message the server would send this player. Returns
        the message, or None for a DELTA skipped while waiting for a SNAPSHOT after a desync.
        A desync is recorded in :attr:`desyncs`, not raised; any other malformed message is
        raised (it would be a server bug).
        """
        self.bytes_received += len(data)
        replica = self._replica
        try:
            if replica is None:
                msg = parse_server_message(data)
            elif data[:1] == _DELTA and self._need_snapshot:
                return None
            else:
                msg = parse_server_message(data, replica.schema, replica.type_of)
        except DesyncError as exc:  # a DELTA patching an entity the replica lacks
            self.desyncs.append(exc)
            self._need_snapshot = True
            return None
        self.messages.append(msg)
        if isinstance(msg, Joined):
            if msg.resumed:
                if self.joined is None or msg.player != self.number:
                    raise AssertionError(f"player {self.id!r} got a resumed JOINED for {msg}")
                self.joined = msg
                self._need_snapshot = False
                if self._resume_from == 0 or msg.view:
                    self._replica = Replica(msg.schema, view=msg.view)
                    self._need_snapshot = True
                self._resume_from = None
                return msg
            if self.joined is not None:
                raise AssertionError(f"player {self.id!r} received a second JOINED")
            self.joined = msg
            self._replica = Replica(msg.schema, view=msg.view)
        elif isinstance(msg, Snapshot):
            assert replica is not None
            self.last_update = msg
            self._need_snapshot = False
            try:
                replica.apply_snapshot(msg)
            except DesyncError as exc:
                self.desyncs.append(exc)
        elif isinstance(msg, Delta):
            assert replica is not None
            self.last_update = msg
            try:
                replica.apply_delta(msg)
            except DesyncError as exc:
                self.desyncs.append(exc)
                if replica.tick != msg.tick:  # not applied: wait for a snapshot
                    self._need_snapshot = True
        elif isinstance(msg, RoomEvent):
            self.events.append(msg)
        else:
            raise AssertionError(f"player {self.id!r} received an unexpected {msg!r}")
        return msg

    # ------------------------------------------------------------ comparing
    def differences(self) -> list[Difference]:
        """Every way this player's replica differs from the server's state now ([] if none).

        A player whose join tick has not run yet has nothing to compare and gives []."""
        if not self.ready:
            return []
        return compare(self.id, self._harness.room, self.replica, self.desyncs, number=self.number)

    def server_view(self) -> dict[int, Entity]:
        """What the server decided this player sees after the last tick, by entity id: in a
        view room (the game has ``interest``) the global entities and those in its cells; in
        other rooms the whole state. Its :attr:`replica` must hold exactly these."""
        room = self._harness.room
        if room.views is None:
            return dict(room.ctx.state.entities)
        return dict(room.view_of(self.number))

    @property
    def cells(self) -> frozenset[tuple[int, int]]:
        """View rooms: the cells this player sees as of the last tick (empty otherwise)."""
        views = self._harness.room.views
        return frozenset() if views is None else views.cells_of(self.number)


class RoomHarness(Generic[G]):
    """One room of ``game_cls`` driven by hand: seat players, queue inputs, advance ticks.

    ``config`` keywords override the room's settings (``seed``, ``tick_rate``,
    ``max_players``, ``checksum_interval``, ``input_queue_limit``, ``event_queue_limit``);
    by default the room runs at the game's own tick rate and size, as the server would make it.
    ``seat_hold`` (seconds; default the game's ``seat_hold``, 0 = off) and ``resume_history``
    (seconds of catch-up history, default 10) are the server's ``--seat-hold`` and
    ``--resume-history``. ``history`` bounds each client's :attr:`HarnessClient.messages`.
    """

    def __init__(
        self,
        game_cls: type[G],
        room: str = "test-room",
        *,
        history: int = 1000,
        seat_hold: float | None = None,
        resume_history: float = 10.0,
        **config: Any,
    ) -> None:
        GameRegistry().register(game_cls)  # the server's own checks on a game class
        if not (ROOM_NAME_RE.fullmatch(room) or PRIVATE_ROOM_RE.fullmatch(room)):
            raise ValueError(f"room name {room!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
        hold = game_cls.seat_hold if seat_hold is None else seat_hold
        if hold < 0 or resume_history < 0:
            raise ValueError("seat_hold and resume_history must not be negative")
        rate = config.get("tick_rate", game_cls.tick_rate)
        base = RoomConfig(
            max_players=game_cls.max_players,
            tick_rate=game_cls.tick_rate,
            seat_hold_ticks=ticks_for(hold, rate) if rate > 0 else 0,
            history_ticks=ticks_for(resume_history, rate) if rate > 0 else 0,
        )
        cfg = attrs.evolve(base, **config)
        if not 1 <= cfg.tick_rate <= MAX_TICK_RATE:
            raise ValueError(f"tick_rate must be 1..{MAX_TICK_RATE}, got {cfg.tick_rate}")
        if cfg.max_players < 1:
            raise ValueError(f"max_players must be at least 1, got {cfg.max_players}")
        self.room = Room(room, game_cls, cfg)
        self.history = history
        #: the last tick's output, as the server would route it (None before the first tick)
        self.last_output: TickOutput | None = None
        self._clients: dict[int, HarnessClient] = {}  # seated, by player number
        self._held: dict[int, HarnessClient] = {}  # seats held for a resume, by player number
        self._by_id: dict[str, HarnessClient] = {}
        self._time_owed = 0.0  # seconds passed to advance() not yet worth a whole tick

    # ------------------------------------------------------------ the server's side
    @property
    def game(self) -> G:
        """The game object (the instance of ``game_cls`` the room runs)."""
        return self.room.game  # type: ignore[return-value]

    @property
    def state(self) -> State:
        """The server's authoritative state."""
        return self.room.ctx.state

    @property
    def current_tick(self) -> int:
        """The tick the state is at (0 before the first tick)."""
        return self.room.state_tick

    @property
    def time(self) -> float:
        """Game time in seconds: ticks run divided by the tick rate."""
        return self.room.state_tick / self.room.config.tick_rate

    @property
    def players(self) -> list[Player]:
        """The seated players (server side), in seat order."""
        return list(self.room.players())

    @property
    def clients(self) -> list[HarnessClient]:
        """The seated players' clients, in seat order."""
        return list(self._clients.values())

    def client(self, player_id: str) -> HarnessClient:
        """The seated client of ``player_id``."""
        try:
            return self._by_id[player_id]
        except KeyError:
            raise KeyError(
                f"no seated player {player_id!r}; seated: {sorted(self._by_id)}"
            ) from None

    def entities(self, etype: EntityType | str) -> list[Entity]:
        """The server's entities of one type (by type or type name), ascending id."""
        schema = self.room.game_cls.schema
        name = etype.name if isinstance(etype, EntityType) else etype
        if name not in schema.by_name:
            raise KeyError(f"no entity type {name!r}; the game has {sorted(schema.by_name)}")
        return list(self.state.of_type(schema.by_name[name]))

    def entity(self, entity_id: int) -> Entity | None:
        """The server's entity ``entity_id``, or None."""
        return self.state.get(entity_id)

    # ------------------------------------------------------------ seats
    def join(self, player_id: str, name: str = "") -> HarnessClient:
        """Seat a player now; the game's ``on_join`` runs at the next tick, which also sends
        the player JOINED and a SNAPSHOT. ``name`` defaults to the player id.

        One seat per player id, as on the server: joining with the id of a seated player
        replaces that player (its client is closed with 4009 REPLACED, its seat freed first).
        Raises :class:`~gameserver.room.RoomFull` if no seat is free."""
        if not player_id:
            raise ValueError("a player needs an id")
        name = name or player_id
        if len(name.encode()) > MAX_PLAYER_NAME_BYTES:
            raise ValueError(f"player name {name!r} is over {MAX_PLAYER_NAME_BYTES} bytes")
        old = self._by_id.get(player_id)
        room = self.room
        if room.player_count >= room.max_players and old is None:
            room.seat(player_id, name)  # raises RoomFull with the room's own message
        if old is not None:
            self._close(old, CloseCode.REPLACED)
        client = HarnessClient(self, room.seat(player_id, name), self.history)
        self._clients[client.number] = client
        self._by_id[player_id] = client
        return client

    def _close(self, client: HarnessClient, code: CloseCode) -> None:
        if self._held.pop(client.number, None) is not None:  # a held seat, taken over
            client.close_code = code
            del self._by_id[client.id]
            self.room.unseat(client.number)
            return
        if not client.connected:
            return
        client.close_code = code
        del self._clients[client.number]
        del self._by_id[client.id]
        self.room.unseat(client.number)

    def _drop(self, client: HarnessClient) -> None:
        if not client.connected:
            return
        if not self.room.detach(client.number):  # unseated instead: holds off, or too early
            client.close_code = CloseCode.GOING_AWAY
            del self._clients[client.number]
            del self._by_id[client.id]
            return
        client.close_code = CloseCode.GOING_AWAY
        del self._clients[client.number]
        self._held[client.number] = client

    def _resume(self, client: HarnessClient, keep_state: bool) -> None:
        if self._held.get(client.number) is not client:
            raise RuntimeError(f"player {client.id!r} has no held seat to resume")
        del self._held[client.number]
        self.room.reattach(client.number)
        client.close_code = None
        client.resumes += 1
        replica = client._replica
        client._resume_from = replica.tick if keep_state and replica is not None else 0
        self._clients[client.number] = client

    # ------------------------------------------------------------ time
    def tick(self, n: int = 1) -> TickOutput:
        """Run ``n`` ticks and deliver each one's bytes to the seated players; returns the
        last tick's output."""
        if n < 1:
            raise ValueError(f"tick(n) needs n >= 1, got {n}")
        for _ in range(n):
            out = self.room.tick()
            self._deliver(out)
            self.last_output = out
        assert self.last_output is not None
        return self.last_output

    def advance(self, seconds: float) -> int:
        """Run as many ticks as ``seconds`` of game time hold; returns how many ran.

        Fractions carry over: at 20 Hz, ``advance(0.03)`` twice runs one tick, then another."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"advance() needs a non-negative number of seconds, got {seconds}")
        self._time_owed += seconds * self.room.config.tick_rate
        n = math.floor(self._time_owed + 1e-9)
        self._time_owed = max(0.0, self._time_owed - n)
        if n:
            self.tick(n)
        return n

    def run_until(self, condition: Callable[[], object], *, max_ticks: int = 10_000) -> int:
        """Tick until ``condition()`` is true (checked before each tick); returns the ticks run.

        Raises AssertionError if it is still false after ``max_ticks`` ticks."""
        for n in range(max_ticks + 1):
            if condition():
                return n
            if n < max_ticks:
                self.tick()
        rate = self.room.config.tick_rate
        raise AssertionError(
            f"condition still false after {max_ticks} ticks ({max_ticks / rate:g} s of game "
            f"time, now at tick {self.current_tick})"
        )

    def _deliver(self, out: TickOutput) -> None:
        """Route a tick's bytes as ``gameserver.server.RoomHost.step`` does."""
        room = self.room
        clients = self._clients
        joined = set()
        for player in out.joined:
            client = clients.get(player.number)
            if client is not None:
                joined.add(player.number)
                client.receive(room.joined_message(player))
                client.receive(room.snapshot_for(player.number))
        for player in out.resumed:
            client = clients.get(player.number)
            if client is not None and client._resume_from is not None:
                joined.add(player.number)
                have = client._resume_from
                client.receive(self._resumed_joined(player))
                catch_up = room.catch_up(have) if have > 0 else None
                client.receive(room.snapshot_for(player.number) if catch_up is None else catch_up)
                for payload in room.take_held_events(player.number):
                    client.receive(payload)
        for player in out.expired:
            gone = self._held.pop(player.number, None)
            if gone is not None:
                gone.expired = True
                self._by_id.pop(gone.id, None)
        deltas = out.deltas
        for number, client in clients.items():
            if number in joined:
                continue
            if deltas is None:
                client.receive(out.delta)
            else:  # a view room: each player its own delta (a snapshot if it has none)
                delta = deltas.get(number)
                client.receive(room.snapshot_for(number) if delta is None else delta)
        for payload, target in out.events:
            if target is None:
                for client in clients.values():
                    client.receive(payload)
            elif (client := clients.get(target)) is not None:
                client.receive(payload)

    def _resumed_joined(self, player: Player) -> bytes:
        room = self.room
        game = room.game_cls
        hold_ms = round(room.config.seat_hold_ticks * 1000 / room.config.tick_rate)
        return Joined(
            player.number, room.name, game.name, room.config.tick_rate, game.schema,
            game.input_schema, version=2, resumed=True, seat_hold_ms=hold_ms,
            input_seq=room.last_applied(player.number), view=room.is_view,
        ).to_bytes()  # fmt: skip

    # ------------------------------------------------------------ checks
    def differences(self) -> list[Difference]:
        """Every difference between the server's state and each seated player's replica."""
        return [d for client in self._clients.values() for d in client.differences()]

    def assert_in_sync(self) -> None:
        """Assert that every seated player's replica equals the server's state: the same tick,
        the same entities field by field, the same input acks and the same checksum, and that
        no replica saw a desync. Raises :class:`OutOfSync` listing each difference."""
        diffs = self.differences()
        if diffs:
            raise OutOfSync(self.room.state_tick, diffs)
