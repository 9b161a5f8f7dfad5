"""The trio layer: accept WSS connections, run the join handshake, host rooms and their ticks.

Data path: a TLS stream is accepted; trio-websocket parses the upgrade request and the
subprotocol is checked; the connection is then taken over by a
:class:`~gameserver._tws.FastConnection` (synchronous send and receive). The client sends JOIN
and takes a seat in a room. From then on the room's tick task does all of that player's I/O
without awaiting: at each tick it reads every player's socket once (inputs go into the pure
:class:`~gameserver.room.Room`), runs the tick, frames the delta once, and writes it to every
player's :class:`~gameserver.outbound.Outbound`. A player's own task only wakes to drain a full
send buffer, and to close.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NoReturn

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest

from gameserver import _tws
from gameserver._tws import FastConnection, TransportClosed
from gameserver.auth import AuthError, Identity, TokenVerifier
from gameserver.game import MAX_TICK_RATE, Game, GameRegistry, Player
from gameserver.limits import MessageLimiter, TokenBucket
from gameserver.outbound import Outbound, OutboundOverflow
from gameserver.room import PRIVATE_ROOM_RE, ROOM_NAME_RE, Room, RoomConfig, RoomFull
from gameserver.stats import ServerStats
from shared.errors import RemoteProtocolError
from shared.messages import Close, Error, Event, Input, Join, Leave, parse_client_message
from shared.protocol import SUBPROTOCOL, SUPPORTED_SUBPROTOCOLS, CloseCode
from shared.wsframe import OP_PING, binary_frame, frame


def ping_frame() -> bytes:
    return frame(OP_PING, b"idle?")


log = logging.getLogger("gameserver")

_ERROR_CODES = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_PAYLOAD,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
        CloseCode.BAD_JOIN,
        CloseCode.UNAUTHORIZED,
        CloseCode.FORBIDDEN,
        CloseCode.UNKNOWN_GAME,
        CloseCode.ROOM_FULL,
        CloseCode.SERVER_FULL,
        CloseCode.JOIN_TIMEOUT,
    }
)


@attrs.frozen
class ServerConfig:
    """Everything tunable about the server. The CLI maps flags onto these fields."""

    host: str = "127.0.0.1"
    port: int = 8443
    #: overrides every game's own tick rate (1..120 Hz)
    tick_rate: int | None = None
    #: overrides every game's own room size
    max_players: int | None = None
    max_rooms: int = 1000
    #: largest WebSocket message accepted from a client; larger ones close with 1009
    max_message_size: int = 4096
    #: seconds to finish the TLS + WebSocket handshake (slowloris guard)
    connect_timeout: float = 5.0
    #: seconds from the WebSocket handshake to an authenticated JOIN
    join_timeout: float = 5.0
    #: seconds allowed for the closing handshake
    close_timeout: float = 2.0
    #: bytes of reliable messages a player may have queued before it is dropped as too slow
    outbound_limit: int = 256 * 1024
    #: bytes read from one player's socket per tick at most (the rest waits in the kernel)
    read_budget: int = 16 * 1024
    #: seconds an empty room lives before it is disposed of
    room_grace: float = 10.0
    input_queue_limit: int = 8
    checksum_interval: int = 5
    #: open connections at most, in total and from one IP address (0 = no limit)
    max_connections: int = 10000
    max_connections_per_ip: int = 256
    #: per-player token buckets: sustained rate per second and burst; the excess is dropped.
    #: Inputs: at least 3 per tick at the room's tick rate (60/s at 20 Hz), whichever is more.
    input_rate: float = 60.0
    input_burst: float = 30.0
    event_rate: float = 5.0
    event_burst: float = 10.0
    #: dropped messages tolerated beyond the rate, refilled at the rate; past it: close 1008
    abuse_allowance: float = 5.0  # in seconds' worth of the rate
    #: a WebSocket ping after this many seconds without a byte from the player ...
    ping_interval: float = 15.0
    #: ... and a close (1001) after this many
    idle_timeout: float = 30.0
    #: browser Origins allowed to connect ("*" = any); requests without Origin are not browsers
    allowed_origins: tuple[str, ...] = ()
    #: rooms one player id may create: a sustained rate per second and a burst (a player hopping
    #: through new room names must not fill ``max_rooms`` for everyone)
    room_create_rate: float = 0.2
    room_create_burst: float = 5.0
    #: refuse new joins (4006 "server full") while the process uses more than this share of
    #: one core, measured over the last ``load_window`` seconds; 0 disables the check
    cpu_budget: float = 0.85
    load_window: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.tick_rate is not None and not 1 <= self.tick_rate <= MAX_TICK_RATE:
            raise ValueError(f"tick rate must be 1..{MAX_TICK_RATE} Hz")


class SessionEnd(Exception):
    """Why a session ends: the close code and reason, and whether to send ERROR/CLOSE first."""

    def __init__(self, code: int, reason: str, send_message: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.send_message = send_message


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
        self.end: SessionEnd | None = None
        self.host: RoomHost | None = None
        # idle detection: when bytes last arrived, and whether a ping is out
        self.seen_bytes = conn.bytes_in
        self.last_rx = now
        self.pinged = False

    def close(self, code: int, reason: str, send_message: bool = True) -> None:
        """End this session (from any task; never awaits). The first reason given wins."""
        if self.end is None:
            self.end = SessionEnd(code, reason, send_message)
        self.scope.cancel()


def peer_error(stats: ServerStats, exc: RemoteProtocolError, kind: str | None = None) -> SessionEnd:
    """Count and log (no traceback) a peer's bad input; return how to close it."""
    kind = kind or f"close_{exc.close_code}"
    stats.protocol_errors[kind] += 1
    log.info("closing a peer for bad input (%s): %s", kind, exc)
    return SessionEnd(exc.close_code, str(exc))


def _text_frame_error() -> RemoteProtocolError:
    return RemoteProtocolError("text frames are not supported; send binary", 1003)


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
        self.sessions: dict[int, Session] = {}
        self.period = 1.0 / room.config.tick_rate
        self._on_disposed = on_disposed
        self.ticks = 0
        self.late = 0
        self.skipped = 0
        self.closed = False

    def close(self, code: int, reason: str) -> None:
        """Close every session (an admin closed the room). The room refuses joins from now
        on and is disposed of once empty; then its name is free again."""
        self.closing = True
        for session in list(self.sessions.values()):
            session.close(code, reason)

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
            if self.closing and self.room.is_empty:
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
                        raise _text_frame_error()
                    msg = parse_client_message(data, input_schema)
                    if isinstance(msg, Input):
                        verdict = limiter.take_input(now)
                        if verdict and room.push_input(number, msg.seq, msg.codes):
                            continue
                        stats.inputs_dropped += 1
                        if verdict is None:
                            raise _flood_error()
                    elif isinstance(msg, Event):
                        verdict = limiter.take_event(now)
                        if verdict:
                            room.push_event(number, msg.name, msg.data)
                        elif verdict is None:
                            raise _flood_error()
                    elif isinstance(msg, Leave):
                        session.close(CloseCode.NORMAL, "left", False)
                        break
                    else:
                        raise RemoteProtocolError("already joined", CloseCode.PROTOCOL_ERROR)
            except RemoteProtocolError as exc:
                end = peer_error(stats, exc, _error_kind(exc))
                session.close(end.code, end.reason)
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
                stats.protocol_errors["idle_timeout"] += 1
                session.close(CloseCode.GOING_AWAY, "idle timeout: no data or pong")
            elif now - session.last_rx > cfg.ping_interval and not session.pinged:
                session.pinged = True
                try:
                    conn.write(ping_frame())
                except TransportClosed:
                    session.close(CloseCode.GOING_AWAY, "connection lost", False)


def _flood_error() -> RemoteProtocolError:
    return RemoteProtocolError(
        "message flood: sustained input or event rate over the limit", CloseCode.POLICY_VIOLATION
    )


def _error_kind(exc: RemoteProtocolError) -> str:
    if exc.close_code == CloseCode.UNSUPPORTED_DATA:
        return "text_frame"
    if exc.close_code == CloseCode.POLICY_VIOLATION:
        return "flood"
    if str(exc) == "already joined":
        return "join_twice"
    return f"close_{exc.close_code}"


class LoadMonitor:
    """Samples this process's CPU time to tell when the tick budget is used up.

    All rooms and all player I/O run in this one thread, so the process's CPU share of one
    core is the measure: past ``budget``, new joins are refused rather than slowing every
    room. Players already seated are never dropped for load; their rooms skip ticks if they
    must.
    """

    def __init__(self, budget: float, window: float) -> None:
        self.budget = budget
        self.window = window
        self.load = 0.0  # CPU share of one core over the last window

    @property
    def overloaded(self) -> bool:
        return self.budget > 0 and self.load > self.budget

    async def run(self) -> None:
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        while True:
            await trio.sleep(self.window)
            cpu1 = time.process_time()
            wall1 = time.perf_counter()
            if wall1 - wall0 < self.window / 2:
                continue  # a mock clock ran ahead of real time: keep sampling
            self.load = (cpu1 - cpu0) / (wall1 - wall0)
            cpu0, wall0 = cpu1, wall1


class RoomDirectory:
    """The rooms of one server, by name. Rooms start in the server's room nursery."""

    def __init__(self, nursery: trio.Nursery, config: ServerConfig, stats: ServerStats) -> None:
        self._nursery = nursery
        self.config = config
        self.stats = stats
        self.rooms: dict[str, RoomHost] = {}
        self._seeds = itertools.count(1)
        self._creations: dict[str, TokenBucket] = {}  # room creations per player id

    def create_private(self, game_cls: type[Game], creator: str) -> RoomHost:
        """A new room with an unguessable id (``~`` and 22 URL-safe characters)."""
        name = "~" + secrets.token_urlsafe(16)
        return self.get_or_create(name, game_cls, creator, private=True)

    def _may_create(self, creator: str) -> bool:
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

    def get_or_create(
        self, name: str, game_cls: type[Game], creator: str, private: bool = False
    ) -> RoomHost:
        host = self.rooms.get(name)
        if host is not None and not host.closed:
            if host.room.game_cls is not game_cls:
                raise SessionEnd(
                    CloseCode.BAD_JOIN, f"room {name!r} runs the game {host.room.game_cls.name!r}"
                )
            return host
        if len(self.rooms) >= self.config.max_rooms:
            raise SessionEnd(CloseCode.SERVER_FULL, "server full: no more rooms can be created")
        if not self._may_create(creator):
            self.stats.refused["room_create_rate"] += 1
            raise SessionEnd(
                CloseCode.POLICY_VIOLATION, "creating rooms too fast; join one or wait a little"
            )
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
        if self.rooms.get(host.room.name) is host:
            del self.rooms[host.room.name]
        self.stats.rooms_disposed += 1


class GameServer:
    """A running server. Made by :func:`open_gameserver` or :func:`serve_gameserver`."""

    def __init__(
        self,
        config: ServerConfig,
        registry: GameRegistry,
        ssl_context: ssl.SSLContext | None,
        rooms: RoomDirectory,
        stats: ServerStats,
        auth: TokenVerifier | None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.ssl_context = ssl_context
        self.rooms = rooms
        self.stats = stats
        self.auth = auth
        self.port = 0
        self._player_ids = itertools.count(1)
        #: the session of each player id: one seat per player on the whole server
        self.by_player: dict[str, Session] = {}
        self._per_ip: dict[str, int] = {}
        self.load = LoadMonitor(config.cpu_budget, config.load_window)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def sessions(self) -> list[Session]:
        return [s for host in self.rooms.rooms.values() for s in host.sessions.values()]

    async def shutdown(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Close every session with ``code`` and wait (bounded) for them to finish."""
        for session in self.sessions():
            session.close(code, reason)
        with trio.move_on_after(self.config.close_timeout + 0.5):
            while self.stats.players:
                await trio.sleep(0.01)

    # ------------------------------------------------------------ connections
    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Per TCP connection: limits, handshake, then join, then the session."""
        cfg = self.config
        ip = _peer_ip(stream)
        per_ip = self._per_ip.get(ip, 0)
        if (cfg.max_connections and self.stats.connections_open >= cfg.max_connections) or (
            cfg.max_connections_per_ip and per_ip >= cfg.max_connections_per_ip
        ):
            # refused before the TLS handshake: costs us one accept and one close
            self.stats.refused["connection_limit"] += 1
            await _tws.close_stream(stream)
            return
        self._per_ip[ip] = per_ip + 1
        self.stats.connections_open += 1
        try:
            conn = await self._handshake(stream)
            if conn is not None:
                try:
                    await self._connection(conn)
                finally:
                    conn.close()
        except Exception:
            log.exception("internal error while handling a connection")
            await _tws.close_stream(stream)
        finally:
            self.stats.connections_open -= 1
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]

    async def _handshake(self, stream: trio.abc.Stream) -> FastConnection | None:
        cfg = self.config
        deadline = trio.current_time() + cfg.connect_timeout  # one deadline for it all
        request = await _tws.receive_request(
            stream, max_message_size=cfg.max_message_size, deadline=deadline
        )
        if request is None:
            self.stats.refused["handshake"] += 1
            await _tws.close_stream(stream)
            return None
        origin = _header(request.headers, b"origin")
        if origin is not None and not self._origin_allowed(origin):
            self.stats.refused["origin"] += 1
            await self._refuse(request, stream, 403, "this Origin is not allowed to connect\n")
            return None
        if SUBPROTOCOL not in request.proposed_subprotocols:
            self.stats.refused["subprotocol"] += 1
            body = (
                "unsupported WebSocket subprotocol; offer one of: "
                + ", ".join(SUPPORTED_SUBPROTOCOLS)
                + " (Sec-WebSocket-Protocol)\n"
            )
            await self._refuse(request, stream, 400, body)
            return None
        with trio.move_on_at(deadline) as scope:
            try:
                ws = await request.accept(subprotocol=SUBPROTOCOL)
            except ConnectionClosed:
                scope.cancel()
        if scope.cancel_called:
            await _tws.close_stream(stream)
            return None
        self.stats.connections_accepted += 1
        return FastConnection.take_over(ws)

    def _origin_allowed(self, origin: str) -> bool:
        allowed = self.config.allowed_origins
        return "*" in allowed or origin in allowed

    async def _refuse(
        self, request: WebSocketRequest, stream: trio.abc.Stream, status: int, body: str
    ) -> None:
        """Refuse the handshake with an HTTP error, then close the TCP connection."""
        with trio.move_on_after(self.config.close_timeout):
            try:
                await request.reject(
                    status,
                    extra_headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
                    body=body.encode(),
                )
            except ConnectionClosed:
                pass
        await _tws.close_stream(stream)

    async def _connection(self, conn: FastConnection) -> None:
        end: SessionEnd | None
        try:
            join = await self._read_join(conn)
            end = await self._join_and_play(conn, join)
        except SessionEnd as exc:
            end = exc
        except TransportClosed:
            return
        await self._finish(conn, end)

    async def _finish(self, conn: FastConnection, end: SessionEnd | None) -> None:
        """Send ERROR or CLOSE, then the close frame; wait (bounded) for the peer's close."""
        try:
            with trio.move_on_after(self.config.close_timeout):
                if end is not None and not conn.close_sent:
                    if end.send_message:
                        msg = (Error if end.code in _ERROR_CODES else Close)(end.code, end.reason)
                        conn.send_message(msg.to_bytes())
                    conn.send_close(end.code, end.reason)
                elif not conn.close_sent:
                    conn.send_close(CloseCode.NORMAL)
                await conn.flush()
                while conn.peer_close is None and not conn.eof and not conn.closed:
                    await conn.wait_readable()
                    conn.read_available()
                    for _ in conn.messages():
                        pass  # data after our close frame is discarded
        except (TransportClosed, RemoteProtocolError):
            pass

    async def _read_join(self, conn: FastConnection) -> Join:
        # before JOIN a client may send one message's worth of bytes (plus framing, TLS and a
        # few control frames); anything more is refused, unauthenticated data costs little
        allowance = self.config.max_message_size + 4096
        with trio.move_on_after(self.config.join_timeout):
            while True:
                conn.read_available(allowance)
                if conn.bytes_in > allowance:
                    raise peer_error(
                        self.stats,
                        RemoteProtocolError(
                            "too much data before JOIN", CloseCode.POLICY_VIOLATION
                        ),
                        "pre_join_flood",
                    )
                try:
                    for data in conn.messages():
                        self.stats.messages_in += 1
                        self.stats.bytes_in += len(data)
                        if isinstance(data, str):
                            raise peer_error(self.stats, _text_frame_error(), "text_frame")
                        msg = parse_client_message(data)
                        if not isinstance(msg, Join):
                            raise peer_error(
                                self.stats,
                                RemoteProtocolError(
                                    "the first message must be JOIN", CloseCode.PROTOCOL_ERROR
                                ),
                                "not_join",
                            )
                        return msg
                except RemoteProtocolError as exc:
                    raise peer_error(self.stats, exc) from None
                if conn.peer_close is not None or conn.eof:
                    raise TransportClosed
                await conn.wait_readable()
        self.stats.refused["join_timeout"] += 1
        raise SessionEnd(CloseCode.JOIN_TIMEOUT, "no JOIN within the join deadline")

    def _authenticate(self, join: Join) -> Identity:
        if self.auth is None:  # an open server (tests, trusted embedding): anyone may play
            pid = f"anon-{next(self._player_ids)}"
            return Identity(pid, join.name or pid, ("*",), ("*",), False, math.inf)
        try:
            return self.auth.verify(join.token)
        except AuthError as exc:
            self.stats.refused[exc.failure.value] += 1
            log.info("refused a JOIN: %s", exc)  # never the token itself
            raise SessionEnd(CloseCode.UNAUTHORIZED, f"unauthorized: {exc}") from None

    def _forbid(self, reason: str, kind: str) -> SessionEnd:
        self.stats.refused[kind] += 1
        return SessionEnd(CloseCode.FORBIDDEN, reason)

    def _find_room(self, join: Join, identity: Identity, game_cls: type[Game]) -> RoomHost:
        if join.private:
            if not identity.may_join("*"):
                raise self._forbid("this token may not create private rooms", "forbidden_room")
            return self.rooms.create_private(game_cls, identity.player_id)
        if PRIVATE_ROOM_RE.fullmatch(join.room):
            host = self.rooms.rooms.get(join.room)
            if host is None or not host.private or host.closed:
                self.stats.refused["no_such_room"] += 1
                raise SessionEnd(CloseCode.BAD_JOIN, "no such private room")
        elif not ROOM_NAME_RE.fullmatch(join.room):
            self.stats.refused["bad_room"] += 1
            raise SessionEnd(
                CloseCode.BAD_JOIN, "room names are 1-64 characters of A-Z a-z 0-9 _ . : -"
            )
        if not identity.may_join(join.room):
            raise self._forbid(f"this token may not join room {join.room!r}", "forbidden_room")
        return self.rooms.get_or_create(join.room, game_cls, identity.player_id)

    def _take_over_player(self, player_id: str) -> None:
        """A newer connection for ``player_id`` takes its seat: close and unseat the old one
        now, so its entity is removed in the same tick the new one's is created."""
        old = self.by_player.pop(player_id, None)
        if old is None:
            return
        old.close(CloseCode.REPLACED, "replaced by a newer connection for the same player")
        host = old.host
        if host is not None and host.sessions.get(old.player.number) is old:
            del host.sessions[old.player.number]
            host.room.unseat(old.player.number)

    async def _join_and_play(self, conn: FastConnection, join: Join) -> SessionEnd | None:
        identity = self._authenticate(join)
        if self.load.overloaded:
            self.stats.refused["server_full"] += 1
            self.stats.overload_refusals += 1
            raise SessionEnd(
                CloseCode.SERVER_FULL, "server full: its CPU budget is in use; try again later"
            )
        game_cls = self.registry.get(join.game)
        if game_cls is None:
            self.stats.refused["unknown_game"] += 1
            raise SessionEnd(CloseCode.UNKNOWN_GAME, f"unknown game {join.game!r}")
        if not identity.may_play(game_cls.name):
            raise self._forbid(f"this token may not play {game_cls.name!r}", "forbidden_game")
        try:
            host = self._find_room(join, identity, game_cls)
        except SessionEnd as exc:
            if exc.code == CloseCode.SERVER_FULL:
                self.stats.refused["server_full"] += 1
            elif exc.code == CloseCode.BAD_JOIN and "runs the game" in exc.reason:
                self.stats.refused["wrong_game"] += 1
            raise
        room = host.room
        if host.closing:
            self.stats.refused["room_closed"] += 1
            raise SessionEnd(CloseCode.ROOM_CLOSED, "this room has been closed")
        old = self.by_player.get(identity.player_id)
        if room.player_count >= room.max_players and (old is None or old.host is not host):
            # refuse before touching an older connection: a failed JOIN must not cost a seat
            self.stats.refused["room_full"] += 1
            raise SessionEnd(CloseCode.ROOM_FULL, f"room {room.name!r} is full")
        self._take_over_player(identity.player_id)
        try:
            player = room.seat(identity.player_id, identity.name)
        except RoomFull as exc:  # pragma: no cover - checked just above
            self.stats.refused["room_full"] += 1
            raise SessionEnd(CloseCode.ROOM_FULL, str(exc)) from None
        cfg = self.config
        now = trio.current_time()
        outbound = Outbound(conn, room.snapshot, cfg.outbound_limit, self.stats)
        tick_rate = room.config.tick_rate
        limiter = MessageLimiter(
            max(cfg.input_rate, 3.0 * tick_rate),
            max(cfg.input_burst, 1.5 * tick_rate),
            cfg.event_rate,
            cfg.event_burst,
            cfg.abuse_allowance,
            now,
        )
        session = Session(conn, player, outbound, limiter, now)
        session.host = host
        host.sessions[player.number] = session
        self.by_player[identity.player_id] = session
        self.stats.players += 1
        try:
            with session.scope:
                await outbound.run()
        except OutboundOverflow:
            self.stats.slow_disconnects += 1
            session.close(CloseCode.TOO_SLOW, "too slow: reliable messages piled up", False)
        except TransportClosed:
            session.close(CloseCode.GOING_AWAY, "connection lost", False)
        finally:
            if host.sessions.get(player.number) is session:
                del host.sessions[player.number]
                room.unseat(player.number)
            if self.by_player.get(identity.player_id) is session:
                del self.by_player[identity.player_id]
            self.stats.players -= 1
        return session.end


def _peer_ip(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        if isinstance(inner, trio.SocketStream):
            return str(inner.socket.getpeername()[0])
    except OSError:
        pass
    return "?"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


@asynccontextmanager
async def open_gameserver(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    *,
    auth: TokenVerifier | None = None,
    stats: ServerStats | None = None,
) -> AsyncIterator[GameServer]:
    """Run a server for the duration of the block; yields it once it is listening.

    ``auth`` verifies the token in each JOIN. ``None`` makes an open server that seats anyone
    (for tests and trusted embedding only; the ``gameserver`` command always sets one)."""
    stats = stats if stats is not None else ServerStats()
    async with trio.open_nursery() as nursery:
        rooms = RoomDirectory(nursery, config, stats)
        server = GameServer(config, registry, ssl_context, rooms, stats, auth)
        listeners: list[Any]
        if ssl_context is None:
            listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        else:
            listeners = await trio.open_ssl_over_tcp_listeners(
                config.port, ssl_context, host=config.host, https_compatible=True
            )
        first = listeners[0]
        raw = first.transport_listener if isinstance(first, trio.SSLListener) else first
        assert isinstance(raw, trio.SocketListener)
        server.port = raw.socket.getsockname()[1]
        serve: Any = partial(trio.serve_listeners, server.handle_stream, listeners)  # type: ignore[misc]
        await nursery.start(serve)
        if config.cpu_budget > 0:
            nursery.start_soon(server.load.run)
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                await server.shutdown()
            nursery.cancel_scope.cancel()


async def serve_gameserver(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    *,
    auth: TokenVerifier | None = None,
    stats: ServerStats | None = None,
    task_status: trio.TaskStatus[GameServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``server = await nursery.start(serve_gameserver, config, registry, ssl_context)``."""
    async with open_gameserver(config, registry, ssl_context, auth=auth, stats=stats) as server:
        task_status.started(server)
        await trio.sleep_forever()
    raise AssertionError("unreachable")
