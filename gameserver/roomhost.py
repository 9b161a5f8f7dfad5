"""A room's host: its tick loop task and the sessions seated in it; the server's rooms by name.

The tick task does all of a seated player's I/O without awaiting: at each tick
:meth:`RoomHost.step` reads every player's socket once (inputs go into the pure
:class:`~gameserver.room.Room`), runs the tick, frames the delta once, and writes it to every
player's :class:`~gameserver.outbound.Outbound`. A player's own task (in
``gameserver.server``) only wakes to drain a full send buffer, and to close.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable

import trio

from gameserver._tws import FastConnection, TransportClosed
from gameserver.config import ServerConfig
from gameserver.game import Game, Player
from gameserver.lifecycle import PeerError, RoomInfo, SessionEnded
from gameserver.limits import MessageLimiter, TokenBucket
from gameserver.logsafe import peer_text
from gameserver.outbound import Outbound
from gameserver.reasons import (
    ErrorKind,
    flood_error,
    join_twice_error,
    text_frame_error,
)
from gameserver.room import Room, RoomConfig
from gameserver.stats import ServerStats
from shared.errors import RemoteProtocolError
from shared.messages import Event, Input, Leave, parse_client_message
from shared.protocol import CloseCode
from shared.wsframe import OP_PING, binary_frame, frame

log = logging.getLogger("gameserver")


def ping_frame() -> bytes:
    return frame(OP_PING, b"idle?")


class Session:
    """One seated player's connection."""

    def __init__(
        self,
        conn: FastConnection,
        player: Player,
        outbound: Outbound,
        limiter: MessageLimiter,
        now: float,
    ) -> None:
        self.conn = conn
        self.player = player
        self.outbound = outbound
        self.limiter = limiter
        self.scope = trio.CancelScope()
        self.end: SessionEnded | None = None
        self.host: RoomHost | None = None
        # idle detection: when bytes last arrived, and whether a ping is out
        self.seen_bytes = conn.bytes_in
        self.last_rx = now
        self.pinged = False

    def close(self, code: int, reason: str, send_message: bool = True) -> None:
        """End this session (from any task; never awaits). The first reason given wins."""
        if self.end is None:
            self.end = SessionEnded(code, reason, send_message)
        self.scope.cancel()


def peer_error(stats: ServerStats, exc: RemoteProtocolError) -> PeerError:
    """Count and log (no traceback) a peer's bad input; return it as a lifecycle event."""
    event = PeerError.from_exc(exc)
    stats.protocol_errors[event.kind.value] += 1
    log.info("closing a peer for bad input (%s): %s", event.kind.value, peer_text(exc))
    return event


class RoomHost:
    """Runs one room: its tick loop task and the sessions seated in it."""

    def __init__(
        self,
        room: Room,
        config: ServerConfig,
        stats: ServerStats,
        on_disposed: Callable[[RoomHost], None],
        private: bool = False,
    ) -> None:
        self.room = room
        self.config = config
        self.stats = stats
        self.private = private
        self.closing = False
        self.draining = False
        self.sessions: dict[int, Session] = {}
        self.period = 1.0 / room.config.tick_rate
        self._on_disposed = on_disposed
        self.ticks = 0
        self.late = 0
        self.skipped = 0
        self.closed = False

    def close(self, code: int, reason: str) -> None:
        """Close every session (an admin closed the room). The room refuses joins (4011) from
        now on, is disposed of once empty, and its name stays refused for ``room_grace``
        seconds more (``RoomDirectory.held``); then it is free again."""
        self.closing = True
        for session in list(self.sessions.values()):
            session.close(code, reason)

    def drain(self, timeout: float) -> None:
        """The server is draining: tell the game when its players will be closed (its
        ``on_shutdown`` runs in the next tick), and dispose of the room once it is empty."""
        self.draining = True
        self.room.shutdown(math.ceil(timeout * self.room.config.tick_rate))

    async def run(self) -> None:
        """Tick at a fixed rate until the room has been empty for the grace period."""
        try:
            await self._loop()
        except Exception:
            log.exception("room %r crashed; closing it", self.room.name)
            for session in list(self.sessions.values()):
                session.close(CloseCode.INTERNAL_ERROR, "the game crashed")
        finally:
            self.closed = True
            self._on_disposed(self)

    async def _loop(self) -> None:
        period = self.period
        start = trio.current_time()
        n = 0
        empty_since: float | None = None
        while True:
            n += 1
            deadline = start + n * period
            now = trio.current_time()
            if now >= deadline + period:
                # more than a whole period behind: drop the missed slots instead of spiralling
                missed = math.floor((now - deadline) / period)
                n += missed
                self.skipped += missed
                self.stats.ticks_skipped += missed
                deadline = start + n * period
            await trio.sleep_until(deadline)
            t0 = time.perf_counter()
            self.step()
            self.stats.tick_histogram.observe(time.perf_counter() - t0)
            if trio.current_time() > deadline + period:
                self.late += 1
                self.stats.ticks_late += 1
            if (self.closing or self.draining) and self.room.is_empty:
                return
            if self.room.is_empty:
                if empty_since is None:
                    empty_since = trio.current_time()
                elif trio.current_time() - empty_since >= self.config.room_grace:
                    return
            else:
                empty_since = None

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
                session.outbound.send_reliable(binary_frame(room.joined_message(player)))
                session.outbound.send_snapshot()
        delta = binary_frame(out.delta)
        for number, session in sessions.items():
            if number not in joined:
                session.outbound.offer_state(delta)
        for payload, target in out.events:
            event = binary_frame(payload)
            if target is None:
                for session in sessions.values():
                    session.outbound.send_reliable(event)
            elif (session := sessions.get(target)) is not None:
                session.outbound.send_reliable(event)

    def read_inputs(self) -> None:
        """Read each player's socket once, without awaiting, and queue what arrived.

        Rate limits apply here; idle players are pinged and, later, closed."""
        room = self.room
        input_schema = room.input_schema
        stats = self.stats
        cfg = self.config
        budget = cfg.read_budget
        now = trio.current_time()
        for number, session in self.sessions.items():
            if session.end is not None:
                continue
            conn = session.conn
            limiter = session.limiter
            try:
                conn.read_available(budget)
                for data in conn.messages():
                    stats.messages_in += 1
                    stats.bytes_in += len(data)
                    if isinstance(data, str):
                        raise text_frame_error()
                    msg = parse_client_message(data, input_schema)
                    if isinstance(msg, Input):
                        verdict = limiter.take_input(now)
                        if verdict and room.push_input(number, msg.seq, msg.codes):
                            continue
                        stats.inputs_dropped += 1
                        if verdict is None:
                            raise flood_error()
                    elif isinstance(msg, Event):
                        verdict = limiter.take_event(now)
                        if verdict:
                            room.push_event(number, msg.name, msg.data)
                        elif verdict is None:
                            raise flood_error()
                    elif isinstance(msg, Leave):
                        session.close(CloseCode.NORMAL, "left", False)
                        break
                    else:
                        raise join_twice_error()
            except RemoteProtocolError as exc:
                end = peer_error(stats, exc)
                session.close(end.code, end.message)
                continue
            except TransportClosed:
                session.close(CloseCode.GOING_AWAY, "connection lost", False)
                continue
            if conn.peer_close is not None or conn.eof:
                session.close(CloseCode.NORMAL, "peer closed", False)
            elif conn.bytes_in != session.seen_bytes:
                session.seen_bytes = conn.bytes_in
                session.last_rx = now
                session.pinged = False
            elif now - session.last_rx > cfg.idle_timeout:
                stats.protocol_errors[ErrorKind.IDLE_TIMEOUT.value] += 1
                session.close(CloseCode.GOING_AWAY, "idle timeout: no data or pong")
            elif now - session.last_rx > cfg.ping_interval and not session.pinged:
                session.pinged = True
                try:
                    conn.write(ping_frame())
                except TransportClosed:
                    session.close(CloseCode.GOING_AWAY, "connection lost", False)


class RoomDirectory:
    """The rooms of one server, by name. Rooms start in the server's room nursery."""

    def __init__(self, nursery: trio.Nursery, config: ServerConfig, stats: ServerStats) -> None:
        self._nursery = nursery
        self.config = config
        self.stats = stats
        self.rooms: dict[str, RoomHost] = {}
        self._seeds = itertools.count(1)
        self._creations: dict[str, TokenBucket] = {}  # room creations per player id
        #: public rooms an admin closed, once disposed of: name -> (hold until, game name)
        self._held: dict[str, tuple[float, str]] = {}

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
        room_cfg = RoomConfig(
            max_players=cfg.max_players or game_cls.max_players,
            tick_rate=cfg.tick_rate or game_cls.tick_rate,
            input_queue_limit=cfg.input_queue_limit,
            checksum_interval=cfg.checksum_interval,
            seed=next(self._seeds),
        )
        host = RoomHost(Room(name, game_cls, room_cfg), cfg, self.stats, self._disposed, private)
        self.rooms[name] = host
        self.stats.rooms_created += 1
        self._nursery.start_soon(host.run, name=f"room {name}")
        return host

    def _disposed(self, host: RoomHost) -> None:
        name = host.room.name
        if self.rooms.get(name) is host:
            del self.rooms[name]
        self.stats.rooms_disposed += 1
        if host.closing and not host.private:  # closed by an admin: see held()
            now = trio.current_time()
            self._held = {k: v for k, v in self._held.items() if v[0] > now}
            self._held[name] = (now + self.config.room_grace, host.room.game_cls.name)
