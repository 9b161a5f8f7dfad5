"""The trio layer: accept WSS connections, run the join handshake, host rooms and their ticks.

Data path: a connection is accepted (subprotocol checked), sends JOIN, takes a seat in a room,
then its session runs two tasks: a reader that parses messages and queues inputs in the pure
:class:`~gameserver.room.Room`, and the :class:`~gameserver.outbound.Outbound` writer. Each room
has one task that ticks at a fixed rate and hands the tick's bytes to every player's outbound
path without awaiting any of them.
"""

from __future__ import annotations

import itertools
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NoReturn

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from gameserver import _tws
from gameserver.game import MAX_TICK_RATE, Game, GameRegistry, Player
from gameserver.outbound import Outbound, OutboundOverflow
from gameserver.room import ROOM_NAME_RE, Room, RoomConfig, RoomFull
from gameserver.stats import ServerStats
from shared.errors import RemoteProtocolError
from shared.messages import Close, Error, Event, Input, Join, Leave, parse_client_message
from shared.protocol import SUBPROTOCOL, SUPPORTED_SUBPROTOCOLS, CloseCode

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
    #: seconds to finish the TLS + WebSocket handshake
    connect_timeout: float = 10.0
    #: seconds from the WebSocket handshake to a JOIN
    join_timeout: float = 10.0
    #: seconds allowed for the closing handshake
    close_timeout: float = 2.0
    #: bytes of reliable messages a player may have queued before it is dropped as too slow
    outbound_limit: int = 256 * 1024
    #: seconds an empty room lives before it is disposed of
    room_grace: float = 10.0
    input_queue_limit: int = 8
    checksum_interval: int = 5

    def __attrs_post_init__(self) -> None:
        if self.tick_rate is not None and not 1 <= self.tick_rate <= MAX_TICK_RATE:
            raise ValueError(f"tick rate must be 1..{MAX_TICK_RATE} Hz")


@attrs.frozen
class TickStats:
    """A snapshot of one room's tick loop (see RoomHost.tick_stats)."""

    ticks: int
    late: int
    skipped: int


class _SessionEnd(Exception):
    def __init__(self, code: int, reason: str, send_error: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.send_error = send_error


class Session:
    """One seated player's connection."""

    def __init__(self, ws: WebSocketConnection, player: Player, outbound: Outbound) -> None:
        self.ws = ws
        self.player = player
        self.outbound = outbound
        self.scope = trio.CancelScope()
        self.end: _SessionEnd | None = None

    def close(self, code: int, reason: str, send_error: bool = True) -> None:
        """End this session from outside its tasks (kick, room closed, shutdown)."""
        if self.end is None:
            self.end = _SessionEnd(code, reason, send_error)
        self.scope.cancel()


class RoomHost:
    """Runs one room: its tick loop task and the sessions seated in it."""

    def __init__(
        self,
        room: Room,
        config: ServerConfig,
        stats: ServerStats,
        on_disposed: Callable[[RoomHost], None],
    ) -> None:
        self.room = room
        self.config = config
        self.stats = stats
        self.sessions: dict[int, Session] = {}
        self.period = 1.0 / room.config.tick_rate
        self._on_disposed = on_disposed
        self.ticks = 0
        self.late = 0
        self.skipped = 0
        self.tick_seconds: list[float] = []  # recent tick durations (bounded)
        self.closed = False

    def tick_stats(self) -> TickStats:
        return TickStats(self.ticks, self.late, self.skipped)

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
            self.tick_seconds.append(time.perf_counter() - t0)
            if len(self.tick_seconds) > 1024:
                del self.tick_seconds[:512]
            if trio.current_time() > deadline + period:
                self.late += 1
                self.stats.ticks_late += 1
            if self.room.is_empty:
                if empty_since is None:
                    empty_since = trio.current_time()
                elif trio.current_time() - empty_since >= self.config.room_grace:
                    return
            else:
                empty_since = None

    def step(self) -> None:
        """One tick: advance the room and hand its bytes to every player. Never awaits."""
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
                session.outbound.send_reliable(room.joined_message(player))
                session.outbound.request_snapshot()
        delta = out.delta
        for number, session in sessions.items():
            if number not in joined:
                session.outbound.offer_state(delta)
        for frame, target in out.events:
            if target is None:
                for session in sessions.values():
                    session.outbound.send_reliable(frame)
            elif (session := sessions.get(target)) is not None:
                session.outbound.send_reliable(frame)


class RoomDirectory:
    """The rooms of one server, by name. Rooms start in the server's room nursery."""

    def __init__(self, nursery: trio.Nursery, config: ServerConfig, stats: ServerStats) -> None:
        self._nursery = nursery
        self.config = config
        self.stats = stats
        self.rooms: dict[str, RoomHost] = {}
        self._seeds = itertools.count(1)

    def get_or_create(self, name: str, game_cls: type[Game]) -> RoomHost:
        host = self.rooms.get(name)
        if host is not None and not host.closed:
            if host.room.game_cls is not game_cls:
                raise _SessionEnd(
                    CloseCode.BAD_JOIN, f"room {name!r} runs the game {host.room.game_cls.name!r}"
                )
            return host
        if len(self.rooms) >= self.config.max_rooms:
            raise _SessionEnd(CloseCode.SERVER_FULL, "server full: no more rooms can be created")
        cfg = self.config
        room_cfg = RoomConfig(
            max_players=cfg.max_players or game_cls.max_players,
            tick_rate=cfg.tick_rate or game_cls.tick_rate,
            input_queue_limit=cfg.input_queue_limit,
            checksum_interval=cfg.checksum_interval,
            seed=next(self._seeds),
        )
        host = RoomHost(Room(name, game_cls, room_cfg), cfg, self.stats, self._disposed)
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
    ) -> None:
        self.config = config
        self.registry = registry
        self.ssl_context = ssl_context
        self.rooms = rooms
        self.stats = stats
        self.port = 0
        self._player_ids = itertools.count(1)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def sessions(self) -> list[Session]:
        return [s for host in self.rooms.rooms.values() for s in host.sessions.values()]

    def close_all(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        for session in self.sessions():
            session.close(code, reason)

    # ------------------------------------------------------------ handshake
    async def handle_request(self, request: WebSocketRequest) -> None:
        """trio-websocket handler: subprotocol check, then join, then the session."""
        self.stats.connections_open += 1
        try:
            if SUBPROTOCOL not in request.proposed_subprotocols:
                self.stats.refused["subprotocol"] += 1
                body = (
                    "unsupported WebSocket subprotocol; offer one of: "
                    + ", ".join(SUPPORTED_SUBPROTOCOLS)
                    + " (Sec-WebSocket-Protocol)\n"
                ).encode()
                with trio.move_on_after(self.config.close_timeout):
                    await request.reject(
                        400,
                        extra_headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
                        body=body,
                    )
                await _tws.close_transport(request)
                return
            try:
                ws = await request.accept(subprotocol=SUBPROTOCOL)
            except ConnectionClosed:
                return
            self.stats.connections_accepted += 1
            await self._connection(ws)
        except Exception:
            log.exception("internal error while handling a connection")
        finally:
            self.stats.connections_open -= 1

    async def _connection(self, ws: WebSocketConnection) -> None:
        end: _SessionEnd | None = None
        try:
            join = await self._read_join(ws)
            end = await self._join_and_play(ws, join)
        except _SessionEnd as exc:
            end = exc
        except ConnectionClosed:
            end = None
        except Exception:
            log.exception("internal error in a session")
            end = _SessionEnd(CloseCode.INTERNAL_ERROR, "internal server error")
        if end is not None:
            await self._close(ws, end)
        else:
            with trio.move_on_after(self.config.close_timeout):
                await ws.aclose()
        await _tws.close_transport(ws)

    async def _close(self, ws: WebSocketConnection, end: _SessionEnd) -> None:
        reason = end.reason.encode()[:120].decode("utf-8", "ignore")
        with trio.move_on_after(self.config.close_timeout):
            if end.send_error:
                # refusals and the peer's own mistakes are ERRORs; the server's decisions CLOSE
                msg = (Error if end.code in _ERROR_CODES else Close)(end.code, end.reason)
                try:
                    await ws.send_message(msg.to_bytes())
                except ConnectionClosed:
                    return
            await ws.aclose(end.code, reason)

    def _protocol_error(self, exc: RemoteProtocolError, kind: str) -> _SessionEnd:
        self.stats.protocol_errors[kind] += 1
        log.info("closing a peer for bad input (%s): %s", kind, exc)
        return _SessionEnd(exc.close_code, str(exc))

    async def _read_join(self, ws: WebSocketConnection) -> Join:
        with trio.move_on_after(self.config.join_timeout):
            data = await ws.get_message()
            if isinstance(data, str):
                raise self._protocol_error(
                    RemoteProtocolError("text frames are not supported; send binary", 1003),
                    "text_frame",
                )
            try:
                msg = parse_client_message(data)
            except RemoteProtocolError as exc:
                raise self._protocol_error(exc, f"close_{exc.close_code}") from None
            if not isinstance(msg, Join):
                raise self._protocol_error(
                    RemoteProtocolError("the first message must be JOIN", CloseCode.PROTOCOL_ERROR),
                    "not_join",
                )
            return msg
        self.stats.refused["join_timeout"] += 1
        raise _SessionEnd(CloseCode.JOIN_TIMEOUT, "no JOIN within the join deadline")

    async def _join_and_play(self, ws: WebSocketConnection, join: Join) -> _SessionEnd | None:
        game_cls = self.registry.get(join.game)
        if game_cls is None:
            self.stats.refused["unknown_game"] += 1
            raise _SessionEnd(CloseCode.UNKNOWN_GAME, f"unknown game {join.game!r}")
        if not ROOM_NAME_RE.fullmatch(join.room):
            self.stats.refused["bad_room"] += 1
            raise _SessionEnd(
                CloseCode.BAD_JOIN, "room names are 1-64 characters of A-Z a-z 0-9 _ . : -"
            )
        try:
            host = self.rooms.get_or_create(join.room, game_cls)
        except _SessionEnd:
            self.stats.refused["room"] += 1
            raise
        try:
            player = host.room.seat(f"anon-{next(self._player_ids)}", join.name)
        except RoomFull as exc:
            self.stats.refused["room_full"] += 1
            raise _SessionEnd(CloseCode.ROOM_FULL, str(exc)) from None
        room = host.room
        outbound = Outbound(
            partial(self._send, ws), room.snapshot, self.config.outbound_limit, self.stats
        )
        session = Session(ws, player, outbound)
        host.sessions[player.number] = session
        self.stats.players += 1
        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, session)
                    await self._read(session, room)
                    nursery.cancel_scope.cancel()
        finally:
            del host.sessions[player.number]
            room.unseat(player.number)
            self.stats.players -= 1
        return session.end

    async def _send(self, ws: WebSocketConnection, frame: bytes) -> None:
        await ws.send_message(frame)

    async def _write(self, session: Session) -> None:
        try:
            await session.outbound.run()
        except OutboundOverflow:
            self.stats.slow_disconnects += 1
            session.close(CloseCode.TOO_SLOW, "too slow: reliable messages piled up", False)
        except ConnectionClosed:
            session.close(CloseCode.GOING_AWAY, "connection lost", False)

    async def _read(self, session: Session, room: Room) -> None:
        ws = session.ws
        number = session.player.number
        input_schema = room.input_schema
        stats = self.stats
        while True:
            try:
                data = await ws.get_message()
            except ConnectionClosed:
                return
            stats.messages_in += 1
            stats.bytes_in += len(data)
            if isinstance(data, str):
                session.end = self._protocol_error(
                    RemoteProtocolError("text frames are not supported; send binary", 1003),
                    "text_frame",
                )
                return
            try:
                msg = parse_client_message(data, input_schema)
            except RemoteProtocolError as exc:
                session.end = self._protocol_error(exc, f"close_{exc.close_code}")
                return
            if isinstance(msg, Input):
                if not room.push_input(number, msg.seq, msg.codes):
                    stats.inputs_dropped += 1
            elif isinstance(msg, Event):
                room.push_event(number, msg.name, msg.data)
            elif isinstance(msg, Leave):
                session.end = _SessionEnd(CloseCode.NORMAL, "left", False)
                return
            else:
                session.end = self._protocol_error(
                    RemoteProtocolError("already joined", CloseCode.PROTOCOL_ERROR), "join_twice"
                )
                return


@asynccontextmanager
async def open_gameserver(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    *,
    stats: ServerStats | None = None,
) -> AsyncIterator[GameServer]:
    """Run a server for the duration of the block; yields it once it is listening."""
    stats = stats if stats is not None else ServerStats()
    async with trio.open_nursery() as nursery:
        rooms = RoomDirectory(nursery, config, stats)
        server = GameServer(config, registry, ssl_context, rooms, stats)
        ws_server: Any = await nursery.start(
            partial(
                serve_websocket,
                server.handle_request,
                config.host,
                config.port,
                ssl_context,
                max_message_size=config.max_message_size,
                connect_timeout=config.connect_timeout,
                disconnect_timeout=config.close_timeout,
            )
        )
        server.port = ws_server.port
        try:
            yield server
        finally:
            server.close_all()
            nursery.cancel_scope.cancel()


async def serve_gameserver(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    *,
    stats: ServerStats | None = None,
    task_status: trio.TaskStatus[GameServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``server = await nursery.start(serve_gameserver, config, registry, ssl_context)``."""
    async with open_gameserver(config, registry, ssl_context, stats=stats) as server:
        task_status.started(server)
        await trio.sleep_forever()
    raise AssertionError("unreachable")
