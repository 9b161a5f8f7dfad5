"""A room's host: its tick loop task and the sessions seated in it; the server's rooms by name.

The tick task does all of a seated player's I/O without awaiting: at each tick
:meth:`RoomHost.step` reads every player's socket once (inputs go into the pure
:class:`~gameserver.room.Room`), runs the tick, frames the delta once, and writes it to every
player's :class:`~gameserver.outbound.Outbound`. A player's own task (in
``gameserver.server``) only wakes to drain a full send buffer, and to close.

Held seats (gamesync.v2): a session whose connection was lost is kept in
:attr:`RoomHost.held_seats` (and in ``by_player``, so that one seat per player still holds)
while the room holds its seat; the room reports the holds that run out
(``TickOutput.expired``) and the host forgets them. A resumed session gets JOINED(RESUMED),
then a catch-up delta or a snapshot, then the events kept for it, after the next tick
(``TickOutput.resumed``).
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable

import attrs
import trio

from gameserver._tws import FastConnection, TransportClosed
from gameserver.activity import ActivityKind, ActivityLog
from gameserver.config import ServerConfig
from gameserver.game import Game, Player
from gameserver.lifecycle import EndCause, PeerError, RoomInfo, SessionEnded
from gameserver.limits import MessageLimiter, TokenBucket
from gameserver.logging_setup import log_event
from gameserver.outbound import Outbound
from gameserver.reasons import (
    ErrorKind,
    flood_error,
    join_twice_error,
    text_frame_error,
)
from gameserver.resume import EPOCH_BYTES, ResumeKey
from gameserver.room import Room, RoomConfig, ticks_for
from gameserver.stats import ServerStats
from gameserver.ticker import TickClock
from shared.delta_v3 import coding_for
from shared.errors import RemoteProtocolError
from shared.messages import (
    Event,
    Input,
    Joined,
    Leave,
    Resync,
    decode_input,
    parse_client_message,
)
from shared.protocol import CloseCode
from shared.wsframe import OP_PING, binary_frame, frame

log = logging.getLogger("gameserver")


def ping_frame() -> bytes:
    return frame(OP_PING, b"idle?")


class Session:
    """One seated player's connection (and, once it has ended, its held seat)."""

    # slots: a room's tick reads these for every player, twice; in place, not in a dict
    __slots__ = (
        "bytes_received", "conn", "end", "host", "last_rx", "limiter", "outbound", "pinged",
        "player", "resume_from", "scope", "seen_bytes", "version", "welcomed",
    )  # fmt: skip

    def __init__(
        self,
        conn: FastConnection,
        player: Player,
        outbound: Outbound,
        limiter: MessageLimiter,
        now: float,
        version: int = 1,
    ) -> None:
        self.conn = conn
        self.player = player
        self.outbound = outbound
        self.limiter = limiter
        #: the protocol version of the connection (its subprotocol)
        self.version = version
        self.scope = trio.CancelScope()
        self.end: SessionEnded | None = None
        self.host: RoomHost | None = None
        #: JOINED has gone out (a RESYNC before it is ignored)
        self.welcomed = False
        #: set by a RESUME until its JOINED(RESUMED) goes out: the client's tick
        self.resume_from: int | None = None
        # idle detection: when bytes last arrived, and whether a ping is out
        self.seen_bytes = conn.bytes_in
        #: message bytes read from this player (as ``stats.bytes_in`` counts them)
        self.bytes_received = 0
        self.last_rx = now
        self.pinged = False

    def close(self, code: int, reason: str, send_message: bool = True, *, cause: EndCause) -> None:
        """End this session (from any task; never awaits). The first reason given wins."""
        if self.end is None:
            self.end = SessionEnded(code, reason, send_message, cause=cause)
        self.scope.cancel()

    def take_seat_away(self, code: int, reason: str, cause: EndCause) -> None:
        """The seat moved on (evicted, or resumed on another connection): end this session
        with ``cause`` even if it had already ended for another reason whose cleanup has not
        run yet, so that its cleanup never touches the seat (its fate is MOVED)."""
        if self.end is None:
            self.end = SessionEnded(code, reason, cause=cause)
        else:
            self.end = attrs.evolve(self.end, cause=cause)
        self.scope.cancel()


def peer_error(stats: ServerStats, exc: RemoteProtocolError) -> PeerError:
    """Count and log (no traceback) a peer's bad input; return it as a lifecycle event."""
    event = PeerError.from_exc(exc)
    stats.protocol_errors[event.kind.value] += 1
    stats.peer_log.event(
        event.kind.value,
        "closing a peer for bad input",
        kind=event.kind.value,
        code=event.code,
        detail=event.message,
    )
    return event


class RoomHost:
    """Runs one room: its tick loop task, the sessions seated in it and its held seats."""

    def __init__(
        self,
        room: Room,
        config: ServerConfig,
        stats: ServerStats,
        on_disposed: Callable[[RoomHost], None],
        private: bool = False,
        *,
        resume_key: ResumeKey | None = None,
        seat_hold: float = 0.0,
        by_player: dict[str, Session] | None = None,
        clock: TickClock | None = None,
    ) -> None:
        self.room = room
        #: calls each tick at its deadline: the server's shared timer (None: trio.sleep_until)
        self._clock = clock
        # the tick loop's schedule: deadlines are start + n * period (see _next_deadline)
        self._start = 0.0
        self._n = 0
        self._empty_since: float | None = None
        self.config = config
        self.stats = stats
        self.private = private
        self.closing = False
        self.draining = False
        #: a cluster node lost this room's lease (it moved to another node): it is closing,
        #: and a join for its name is routed by the directory, not refused here
        self.moved = False
        #: the sessions attached to a seat, by player number: the tick reads and writes these.
        #: Change it only with :meth:`attach` and :meth:`detach` (they keep ``room.codings``)
        self.sessions: dict[int, Session] = {}
        self._sync_codings()
        #: the seats held for a resume, by player number: the session that ended (its player)
        self.held_seats: dict[int, Session] = {}
        #: mints the resume tokens of this room's JOINED messages (None: no tokens)
        self.resume_key = resume_key
        #: seconds a dropped v2 seat is held (0: never); JOINED's ``seat_hold_ms``
        self.seat_hold = seat_hold if resume_key is not None else 0.0
        #: the server's one-seat-per-player map (shared by every host)
        self.by_player: dict[str, Session] = by_player if by_player is not None else {}
        self.period = 1.0 / room.config.tick_rate
        self._on_disposed = on_disposed
        self.ticks = 0
        self.late = 0
        self.skipped = 0
        self.closed = False
        self.started = time.monotonic()  # for the dashboard's room age
        self.tick_times: deque[float] = deque(maxlen=256)  # recent tick durations (dashboard)
        self._encode_seen = room.counters.encode_calls  # counted into stats.encode_calls

    # ------------------------------------------------------------ sessions
    def attach(self, session: Session) -> None:
        """``session`` now carries its player's seat (replacing any before it)."""
        self.sessions[session.player.number] = session
        self._sync_codings()

    def detach(self, number: int) -> Session | None:
        """The session of seat ``number`` no longer carries it; returns that session."""
        session = self.sessions.pop(number, None)
        self._sync_codings()
        return session

    def _sync_codings(self) -> None:
        # the DELTA codings the sessions need (v3: shared.delta_v3); the room encodes each
        # once per tick, and none that no session needs
        room = self.room
        room.codings = frozenset(
            coding_for(s.version, room.is_view) for s in self.sessions.values()
        )

    def close(self, code: int, reason: str, cause: EndCause = EndCause.ROOM_CLOSED) -> None:
        """Close every session and free every held seat (an admin closed the room). The room
        refuses joins (4011) from now on, is disposed of once empty, and its name stays
        refused for ``room_grace`` seconds more (``RoomDirectory.held``); then it is free
        again."""
        self.closing = True
        self.release_held()
        for session in list(self.sessions.values()):
            session.close(code, reason, cause=cause)

    def drain(self, timeout: float) -> None:
        """The server is draining: tell the game when its players will be closed (its
        ``on_shutdown`` runs in the next tick), free the held seats (a RESUME is refused
        while draining), and dispose of the room once it is empty."""
        self.draining = True
        self.release_held()
        self.room.shutdown(math.ceil(timeout * self.room.config.tick_rate))

    # ------------------------------------------------------------ held seats
    def hold(self, session: Session) -> bool:
        """``session`` ended (it no longer is in :attr:`sessions`); hold its seat for a
        resume. False if the room unseated it instead (holds off, or on_join had not run)."""
        number = session.player.number
        if not self.room.detach(number):
            self._forget_player(session)
            return False
        self.held_seats[number] = session
        self.stats.seats_held += 1
        return True

    def release(self, number: int) -> bool:
        """Free a held seat now (kick, eviction by a JOIN of the same player, room closed,
        drain): on_leave at the next tick. False if the seat is not held."""
        session = self.held_seats.pop(number, None)
        if session is None:
            return False
        self.stats.seats_held -= 1
        self.room.unseat(number)
        self._forget_player(session)
        return True

    def release_held(self) -> None:
        """Free every held seat."""
        for number in list(self.held_seats):
            self.release(number)

    def resumed_seat(self, number: int) -> None:
        """A RESUME took seat ``number`` back: it is no longer held here."""
        if self.held_seats.pop(number, None) is not None:
            self.stats.seats_held -= 1

    def _expired(self, players: tuple[Player, ...]) -> None:
        """The room let these held seats go (their hold ran out; on_leave ran)."""
        for player in players:
            session = self.held_seats.pop(player.number, None)
            if session is not None:
                self.stats.seats_held -= 1
                self.stats.seats_expired += 1
                self._forget_player(session)

    def _forget_player(self, session: Session) -> None:
        if self.by_player.get(session.player.id) is session:
            del self.by_player[session.player.id]

    # ------------------------------------------------------------ the tick loop
    async def run(self) -> None:
        """Tick at a fixed rate until the room has been empty for the grace period."""
        try:
            await self._loop()
        except Exception:
            log.exception("room %r crashed; closing it", self.room.name)
            for session in list(self.sessions.values()):
                session.close(CloseCode.INTERNAL_ERROR, "the game crashed", cause=EndCause.CRASHED)
        finally:
            self.closed = True
            for session in self.held_seats.values():  # the room is gone: so are its holds
                self.stats.seats_held -= 1
                self._forget_player(session)
            self.held_seats.clear()
            self._on_disposed(self)

    async def _loop(self) -> None:
        self._start = trio.current_time()
        self._n = 0
        self._empty_since = None
        deadline = self._next_deadline()
        clock = self._clock
        if clock is not None:
            # the shared timer calls each tick itself: no task switch per tick
            error: list[Exception] = []

            def fire() -> float | None:
                nonlocal deadline
                try:
                    if not self._tick_at(deadline):
                        return None
                except Exception as exc:
                    error.append(exc)
                    return None
                deadline = self._next_deadline()
                return deadline

            handle = clock.repeat(deadline, fire)
            if handle is not None:
                try:
                    await handle.done.wait()
                finally:
                    clock.cancel(handle)
                if error:
                    raise error[0]
                if not handle.stopped:
                    return  # the room is done
                # the timer stopped (the server is closing): carry on with trio's own sleep
        while True:
            await trio.sleep_until(deadline)
            if not self._tick_at(deadline):
                return
            deadline = self._next_deadline()

    def _next_deadline(self) -> float:
        """The next tick's deadline: ``start + n * period``, never drifting; more than a whole
        period behind, the missed slots are dropped instead of spiralling."""
        period = self.period
        self._n += 1
        deadline = self._start + self._n * period
        now = trio.current_time()
        if now >= deadline + period:
            missed = math.floor((now - deadline) / period)
            self._n += missed
            self.skipped += missed
            self.stats.ticks_skipped += missed
            deadline = self._start + self._n * period
        return deadline

    def _tick_at(self, deadline: float) -> bool:
        """The tick due at ``deadline`` (now or just after it); False once the room is done:
        empty while closing or draining, or empty for the grace period."""
        t0 = time.perf_counter()
        self.step()
        spent = time.perf_counter() - t0
        self.stats.tick_histogram.observe(spent)
        self.tick_times.append(spent)
        now = trio.current_time()
        if now > deadline + self.period:
            self.late += 1
            self.stats.ticks_late += 1
        if self.room.is_empty:
            if self.closing or self.draining:
                return False
            if self._empty_since is None:
                self._empty_since = now
            elif now - self._empty_since >= self.config.room_grace:
                return False
        else:
            self._empty_since = None
        return True

    def step(self) -> None:
        """One tick: read inputs, advance the room, write its bytes. Never awaits."""
        self.read_inputs()
        room = self.room
        out = room.tick()
        self.ticks += 1
        self.stats.ticks += 1
        sessions = self.sessions
        joined = set()
        for player in out.joined:
            session = sessions.get(player.number)
            if session is not None:
                joined.add(player.number)
                session.outbound.send_reliable(self.joined_frame(session))
                session.outbound.send_snapshot()
                session.welcomed = True
        if out.resumed:
            for player in out.resumed:
                session = sessions.get(player.number)
                if session is not None and session.resume_from is not None:
                    joined.add(player.number)
                    self._welcome_back(session, session.resume_from)
        if out.expired:
            self._expired(out.expired)
        # the tick's encodes and those of the snapshots built since the last tick
        encoded = room.counters.encode_calls
        self.stats.encode_calls += encoded - self._encode_seen
        self._encode_seen = encoded
        deltas = out.deltas
        if deltas is None:
            delta = binary_frame(out.delta) if out.delta else b""
            delta_v3 = binary_frame(out.delta_v3) if out.delta_v3 else b""
            for number, session in sessions.items():
                if number not in joined:
                    session.outbound.offer_state(delta_v3 if session.version >= 3 else delta)
        else:  # a view room: each player its own delta
            for number, session in sessions.items():
                if number in joined:
                    continue
                data = deltas.get(number)
                if data is None:  # no delta for it (cannot happen): resynchronize it
                    session.outbound.send_snapshot()
                else:
                    session.outbound.offer_state(binary_frame(data))
        for payload, target in out.events:
            event = binary_frame(payload)
            if target is None:
                for session in sessions.values():
                    session.outbound.send_reliable(event)
            elif (session := sessions.get(target)) is not None:
                session.outbound.send_reliable(event)

    def joined_frame(self, session: Session, resumed: bool = False) -> bytes:
        """JOINED for ``session``, framed: the v1 layout on a v1 connection; on v2 with a
        fresh resume token (a fresh join rotates the seat's generation here; a resume did at
        admission), the seat hold and the last input seq the game applied."""
        room = self.room
        player = session.player
        number = player.number
        game = room.game_cls
        if session.version < 2:
            msg = Joined(
                number, room.name, game.name, room.config.tick_rate, game.schema,
                game.input_schema, version=1,
            )  # fmt: skip
            return binary_frame(msg.to_bytes())
        token = ""
        hold_ms = 0
        key = self.resume_key
        if key is not None and self.seat_hold > 0:
            generation = room.generation(number) if resumed else room.rotate(number)
            assert generation is not None
            token = key.mint(room.name, room.epoch, number, generation)
            hold_ms = round(self.seat_hold * 1000)
        msg = Joined(
            number,
            room.name,
            game.name,
            room.config.tick_rate,
            game.schema,
            game.input_schema,
            version=session.version,
            resumed=resumed,
            resume_token=token,
            seat_hold_ms=hold_ms,
            input_seq=room.last_applied(number),
            view=room.is_view,
        )
        return binary_frame(msg.to_bytes())

    def _welcome_back(self, session: Session, have_tick: int) -> None:
        """After the tick that ran ``on_resume``: JOINED(RESUMED), then the catch-up delta
        from the client's tick (or a snapshot), then the room events kept for the seat."""
        session.resume_from = None
        room = self.room
        out = session.outbound
        out.send_reliable(self.joined_frame(session, resumed=True))
        # always None in a view room: a snapshot
        catch_up = room.catch_up(have_tick, coding_for(session.version, room.is_view))
        if catch_up is None:
            out.send_snapshot()
        else:
            out.offer_state(binary_frame(catch_up))  # a snapshot instead if the path is full
        for payload in room.take_held_events(session.player.number):
            out.send_reliable(binary_frame(payload))
        session.welcomed = True

    def read_inputs(self) -> None:
        """Read each player's socket once, without awaiting, and queue what arrived.

        Rate limits apply here; idle players are pinged and, later, closed."""
        room = self.room
        input_schema = room.input_schema
        push_input = room.push_input
        stats = self.stats
        cfg = self.config
        budget = cfg.read_budget
        now = trio.current_time()
        messages_in = bytes_in = 0  # counted into stats once, after the loop
        for number, session in self.sessions.items():
            if session.end is not None:
                continue
            conn = session.conn
            limiter = session.limiter
            version = session.version
            try:
                conn.read_available(budget)
                next_message = conn.next_message
                while (data := next_message()) is not None:
                    n = len(data)
                    messages_in += 1
                    bytes_in += n
                    session.bytes_received += n
                    if type(data) is bytes and (fast := decode_input(data, input_schema)):
                        # the common case: an INPUT (decode_input agrees with the parser)
                        verdict = limiter.take_input(now)
                        if verdict and push_input(number, fast[0], fast[1]):
                            continue
                        stats.inputs_dropped += 1
                        if verdict is None:
                            raise flood_error()
                        continue
                    if isinstance(data, str):
                        raise text_frame_error()
                    msg = parse_client_message(data, input_schema, version=version)
                    if isinstance(msg, Input):
                        verdict = limiter.take_input(now)
                        if verdict and push_input(number, msg.seq, msg.codes):
                            continue
                        stats.inputs_dropped += 1
                        if verdict is None:
                            raise flood_error()
                    elif isinstance(msg, Event):
                        verdict = limiter.take_event(now)
                        if verdict:
                            stats.events_dropped += not room.push_event(number, msg.name, msg.data)
                        elif verdict is None:
                            raise flood_error()
                    elif isinstance(msg, Leave):
                        session.close(CloseCode.NORMAL, "left", False, cause=EndCause.LEFT)
                        break
                    elif isinstance(msg, Resync):
                        self._resync(session, now)
                    else:
                        raise join_twice_error()
            except RemoteProtocolError as exc:
                end = peer_error(stats, exc)
                cause = EndCause.FLOOD if end.kind is ErrorKind.FLOOD else EndCause.PEER_ERROR
                session.close(end.code, end.message, cause=cause)
                continue
            except TransportClosed:
                session.close(
                    CloseCode.GOING_AWAY, "connection lost", False, cause=EndCause.TRANSPORT_LOST
                )
                continue
            if conn.peer_close is not None or conn.eof:
                if conn.peer_close is None:  # EOF without a close frame: the transport is gone
                    cause = EndCause.TRANSPORT_LOST
                elif conn.peer_close[0] == CloseCode.NORMAL:
                    cause = EndCause.PEER_CLOSED_NORMAL
                else:
                    cause = EndCause.PEER_CLOSED_OTHER
                session.close(CloseCode.NORMAL, "peer closed", False, cause=cause)
            elif conn.bytes_in != session.seen_bytes:
                session.seen_bytes = conn.bytes_in
                session.last_rx = now
                session.pinged = False
            elif now - session.last_rx > cfg.idle_timeout:
                stats.protocol_errors[ErrorKind.IDLE_TIMEOUT.value] += 1
                session.close(
                    CloseCode.GOING_AWAY, "idle timeout: no data or pong", cause=EndCause.IDLE
                )
            elif now - session.last_rx > cfg.ping_interval and not session.pinged:
                session.pinged = True
                try:
                    conn.write(ping_frame())
                except TransportClosed:
                    session.close(
                        CloseCode.GOING_AWAY,
                        "connection lost",
                        False,
                        cause=EndCause.TRANSPORT_LOST,
                    )
        stats.messages_in += messages_in
        stats.bytes_in += bytes_in

    def _resync(self, session: Session, now: float) -> None:
        """A RESYNC (v2): a fresh SNAPSHOT, within the rate limit; the excess is ignored and
        counted, and a flood of them is closed (1008) as a flood of events would be."""
        verdict = session.limiter.take_resync(now)
        if verdict and session.welcomed:
            self.stats.resyncs += 1
            session.outbound.send_snapshot()
            return
        self.stats.resyncs_limited += 1
        if verdict is None:
            raise flood_error()


class RoomDirectory:
    """The rooms of one server, by name. Rooms start in the server's room nursery.

    ``resume_key`` mints and checks the resume tokens of every room (None: a fresh random
    key, for this directory's lifetime)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        config: ServerConfig,
        stats: ServerStats,
        resume_key: ResumeKey | None = None,
        clock: TickClock | None = None,
    ) -> None:
        self._nursery = nursery
        #: the rooms' shared tick timer (None: each room sleeps with trio.sleep_until)
        self.clock = clock
        self.config = config
        self.stats = stats
        self.resume_key = resume_key if resume_key is not None else ResumeKey.generate()
        self.rooms: dict[str, RoomHost] = {}
        self.activity = ActivityLog()  # the dashboard's feed of recent events (one per server)
        #: the session of each player id, attached or held: one seat per player on the server
        self.by_player: dict[str, Session] = {}
        self._seeds = itertools.count(1)
        self._creations: dict[str, TokenBucket] = {}  # room creations per player id
        #: public rooms an admin closed, once disposed of: name -> (hold until, game name)
        self._held: dict[str, tuple[float, str]] = {}
        #: called with each room disposed of (a cluster node releases its lease)
        self.on_dispose: Callable[[RoomHost], None] | None = None

    def held(self, name: str) -> RoomInfo | None:
        """A public room an admin closed keeps refusing joins (4011) while it is disposed of
        (it is still in ``rooms``, closing) and for ``room_grace`` seconds after: so clients
        that reconnect at once cannot recreate it. Then its name is free again."""
        hold = self._held.get(name)
        if hold is None:
            return None
        until, game = hold
        if trio.current_time() >= until:
            del self._held[name]
            return None
        return RoomInfo(name, game, False, True, 0, 0)

    def may_create(self, creator: str) -> bool:
        """Take one of ``creator``'s room-creation tokens (False: none left)."""
        cfg = self.config
        now = trio.current_time()
        buckets = self._creations
        if len(buckets) > 10_000:  # forget players whose buckets have refilled
            for key in [k for k, b in buckets.items() if b.full(now)]:
                del buckets[key]
        bucket = buckets.get(creator)
        if bucket is None:
            bucket = buckets[creator] = TokenBucket(
                cfg.room_create_rate, cfg.room_create_burst, now
            )
        return bucket.take(now)

    def create(self, name: str, game_cls: type[Game], private: bool = False) -> RoomHost:
        """Start a room (admission, in gameserver.lifecycle, decided that it may exist)."""
        cfg = self.config
        tick_rate = cfg.tick_rate or game_cls.tick_rate
        seat_hold = game_cls.seat_hold if cfg.seat_hold is None else cfg.seat_hold
        hold_ticks = ticks_for(seat_hold, tick_rate)
        room_cfg = RoomConfig(
            max_players=cfg.max_players or game_cls.max_players,
            tick_rate=tick_rate,
            input_queue_limit=cfg.input_queue_limit,
            checksum_interval=cfg.checksum_interval,
            seed=next(self._seeds),
            seat_hold_ticks=hold_ticks,
            # catch-up deltas only matter where a seat can be resumed
            history_ticks=ticks_for(cfg.resume_history, tick_rate) if hold_ticks else 0,
            epoch=secrets.token_bytes(EPOCH_BYTES),
        )
        host = RoomHost(
            Room(name, game_cls, room_cfg),
            cfg,
            self.stats,
            self._disposed,
            private,
            resume_key=self.resume_key,
            seat_hold=seat_hold if hold_ticks else 0.0,
            by_player=self.by_player,
            clock=self.clock,
        )
        self.rooms[name] = host
        self.stats.rooms_created += 1
        self.activity.record(ActivityKind.ROOM_CREATED, name, reason=game_cls.name)
        log_event(
            log, "room created", room=name, game=game_cls.name, private=private, tick_rate=tick_rate
        )
        self._nursery.start_soon(host.run, name=f"room {name}")
        return host

    def _disposed(self, host: RoomHost) -> None:
        name = host.room.name
        if self.rooms.get(name) is host:
            del self.rooms[name]
        self.stats.rooms_disposed += 1
        self.activity.record(ActivityKind.ROOM_DISPOSED, name)
        log_event(log, "room disposed", room=name, ticks=host.ticks, closed=host.closing)
        if self.on_dispose is not None:
            self.on_dispose(host)
        if host.closing and not host.private and not host.moved:  # closed by an admin: held()
            now = trio.current_time()
            self._held = {k: v for k, v in self._held.items() if v[0] > now}
            self._held[name] = (now + self.config.room_grace, host.room.game_cls.name)
