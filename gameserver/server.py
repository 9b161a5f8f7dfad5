"""The trio layer: accept WSS connections, run the join handshake, host rooms and their ticks.

Data path: a TLS stream is accepted; trio-websocket parses the upgrade request and the
subprotocol is checked (``gameserver.front_door``); the connection is then taken over by a
:class:`~gameserver._tws.FastConnection` (synchronous send and receive). The client sends JOIN
and takes a seat in a room. From then on the room's tick task does all of that player's I/O
without awaiting (:class:`~gameserver.roomhost.RoomHost`, re-exported here with
:class:`~gameserver.roomhost.RoomDirectory` and :class:`~gameserver.roomhost.Session`). A
player's own task only wakes to drain a full send buffer, and to close.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import NoReturn

import trio

from gameserver import _tws
from gameserver._tws import FastConnection, TransportClosed
from gameserver._tws_surface import check_takeover
from gameserver.activity import ActivityKind
from gameserver.auth import AuthError, Identity, TokenVerifier
from gameserver.cluster import ClusterOptions
from gameserver.cluster_node import ClusterNode, open_cluster_node
from gameserver.config import ServerConfig as ServerConfig  # re-exported: its old home
from gameserver.directory.live import LiveDirectory
from gameserver.front_door import FrontDoor
from gameserver.game import GameRegistry, Player
from gameserver.guest import GuestIssuer
from gameserver.http_static import StaticSite
from gameserver.lifecycle import (
    Action,
    Close,
    ConnectionEvent,
    ConnectionLost,
    CreateRoom,
    Detach,
    Draining,
    EndCause,
    Evict,
    JoinReceived,
    JoinTimedOut,
    Lifecycle,
    Reattach,
    Refuse,
    ReplaceAttached,
    ResumeReceived,
    Seat,
    SeatTaken,
    Send,
    SessionEnded,
    Step,
    Unseat,
)
from gameserver.limits import MessageLimiter
from gameserver.load import LoadCounters, LoadMonitor
from gameserver.logging_setup import log_event
from gameserver.outbound import Outbound, OutboundOverflow
from gameserver.reasons import (
    Refusal,
    not_join_error,
    pre_join_flood_error,
    text_frame_error,
)
from gameserver.resume import ResumeClaims, ResumeKey, ResumeTokenError
from gameserver.roomhost import RoomDirectory as RoomDirectory  # re-exported: its old home
from gameserver.roomhost import RoomHost as RoomHost
from gameserver.roomhost import Session as Session
from gameserver.roomhost import peer_error
from gameserver.server_state import ServerState
from gameserver.setup_meter import SetupGate, SetupMeter, run_monitor
from gameserver.stats import ServerStats
from gameserver.ticker import TickClock
from gameserver.web import WebApp
from shared.delta_v3 import coding_for
from shared.errors import RemoteProtocolError
from shared.messages import Join, Resume, parse_client_message
from shared.protocol import RESTART_REASON, CloseCode, version_of_subprotocol

log = logging.getLogger("gameserver")


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
        *,
        nursery: trio.Nursery,
        load: LoadMonitor | None = None,
        web: WebApp | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.ssl_context = ssl_context
        self.rooms = rooms
        self.stats = stats
        self.auth = auth
        self.port = 0
        self._player_ids = itertools.count(1)
        #: the session of each player id, attached or held: one seat per player on the server
        self.by_player: dict[str, Session] = rooms.by_player
        self._per_ip: dict[str, int] = {}
        #: TLS, the request and its refusals, plain HTTP (the web demo and guest tokens)
        self.front = FrontDoor(config, ssl_context, stats, web if web is not None else WebApp(None))
        self.load = load if load is not None else load_monitor(config)
        #: the CPU connection setup costs (TLS, upgrade, JOIN), apart from the lasting load
        self.setup_meter = SetupMeter()
        #: new connections wait here for their turn to start the TLS handshake
        self.setup_gate = SetupGate(self.load, config.setup_wait)
        #: set by a drain or a shutdown, never unset: from then on every JOIN is refused (4012)
        self.draining = False
        #: when the drain closes everyone still seated (trio time), once draining
        self.drain_deadline: float | None = None
        #: set once a drain is over (everyone left or was closed with 1001)
        self.drained = trio.Event()
        self._nursery = nursery  # connections, rooms and the drain run here
        self._listening = trio.CancelScope()  # the accept loops: cancelled first
        self._awaiting_join: set[trio.CancelScope] = set()  # connections reading their JOIN
        self._stopped: trio.Event | None = None
        self._directory = ServerState(self)
        #: this node's side of the cluster (None: a server on its own)
        self.cluster: ClusterNode | None = None

    @property
    def live(self) -> LiveDirectory | None:
        """The cluster directory as this node sees it (None without a cluster)."""
        return self.cluster.live if self.cluster is not None else None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def web(self) -> WebApp:
        """What plain HTTP requests on this port get: the web demo, guest tokens."""
        return self.front.web

    def sessions(self) -> list[Session]:
        return [s for host in self.rooms.rooms.values() for s in host.sessions.values()]

    def load_counters(self) -> LoadCounters:
        """What the load monitor samples besides the CPU time (``gameserver.load``)."""
        stats = self.stats
        meter = self.setup_meter
        late = stats.ticks_late + stats.ticks_skipped
        return LoadCounters(
            meter.cpu, meter.finished, stats.tick_histogram.sum, stats.ticks, late, stats.players
        )

    def healthy(self) -> bool:
        """For ``/healthz``: false while draining or over the CPU budget."""
        return not self.draining and not self.load.overloaded

    def ready(self) -> bool:
        """For ``/readyz``: true while a new player would be admitted (not draining, within
        the CPU budget and the connection cap)."""
        cap = self.config.max_connections
        return self.healthy() and not (cap and self.stats.connections_open >= cap)

    async def listen(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]],
    ) -> None:
        """Accept connections until a drain or shutdown cancels this (first of all). The
        accept loops live in their own nursery; the connections run in the server's."""
        nursery = self._nursery
        with self._listening:
            await trio.serve_listeners(
                self.handle_stream, listeners, handler_nursery=nursery, task_status=task_status
            )

    def kick(self, session: Session) -> None:
        """An admin kicked this player: close its session (4010), or free its held seat."""
        host = session.host
        if host is not None and host.held_seats.get(session.player.number) is session:
            host.release(session.player.number)
            return
        session.close(CloseCode.KICKED, "kicked by an admin", cause=EndCause.KICKED)

    def _stop_admitting(self) -> None:
        self.draining = True
        self._listening.cancel()  # the listener closes first
        for scope in list(self._awaiting_join):
            scope.cancel()  # they are refused with 4012 at once

    def begin_drain(self, timeout: float | None = None) -> bool:
        """Drain: admit no more joins (4012 ``draining``), close the listener, tell every
        game (``on_shutdown``), and keep the rooms ticking for the players still in them until
        they leave or ``timeout`` (default ``config.drain_timeout``) seconds pass; then close
        the rest with 1001 :data:`~shared.protocol.RESTART_REASON` and set :attr:`drained`.
        Never awaits (the drain runs in the server's nursery). False if already draining."""
        if self.draining:
            return False
        timeout = self.config.drain_timeout if timeout is None else max(0.0, timeout)
        self._stop_admitting()
        self.drain_deadline = trio.current_time() + timeout
        log.info("draining: %d players have %.1f s to leave", self.stats.players, timeout)
        for host in list(self.rooms.rooms.values()):
            host.drain(timeout)
        self._nursery.start_soon(self._drain, self.drain_deadline)
        return True

    async def drain(self, timeout: float | None = None) -> None:
        """:meth:`begin_drain`, then wait until the drain is over."""
        self.begin_drain(timeout)
        await self.drained.wait()

    async def _drain(self, deadline: float) -> None:
        # until every connection is gone and every room has run its last tick (on_leave)
        with trio.move_on_at(deadline):
            while self.stats.connections_open or self.rooms.rooms:
                await trio.sleep(0.01)
        await self.shutdown(CloseCode.GOING_AWAY, RESTART_REASON, cause=EndCause.DRAINED)
        log.info("drained")
        self.drained.set()

    async def shutdown(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        *,
        cause: EndCause = EndCause.SHUTDOWN,
    ) -> None:
        """Stop now: close the listener, refuse every join and resume from now on, free the
        held seats, close every session with ``code`` and wait (bounded) for them to finish.
        Runs once: a later call waits for the first to finish."""
        if self._stopped is not None:
            await self._stopped.wait()
            return
        self._stopped = trio.Event()
        self._stop_admitting()
        for host in list(self.rooms.rooms.values()):
            host.release_held()
        for session in self.sessions():
            session.close(code, reason, cause=cause)
        with trio.move_on_after(self.config.close_timeout + 0.5):
            while self.stats.players:
                await trio.sleep(0.01)
        self._stopped.set()

    # ------------------------------------------------------------ connections
    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Per TCP connection: limits, handshake, then join, then the session."""
        cfg = self.config
        ip = _peer_ip(stream)
        per_ip = self._per_ip.get(ip, 0)
        over_ip = cfg.max_connections_per_ip and per_ip >= cfg.max_connections_per_ip
        if over_ip or (cfg.max_connections and self.stats.connections_open >= cfg.max_connections):
            self.stats.refused[Refusal.CONNECTION_LIMIT.value] += 1
            self.rooms.activity.refused(Refusal.CONNECTION_LIMIT.value)
            self.stats.peer_log.event(
                "connection_limit", "refused a connection", reason="connection_limit", ip=ip
            )
            if over_ip or not self.front.may_tell_full(ip):
                # refused before the TLS handshake: costs us one accept and one close
                await _tws.close_stream(stream)
                return
            await self.front.tell_full(stream, ip)  # "server full" (bounded), then closed
            return
        self._per_ip[ip] = per_ip + 1
        self.stats.connections_open += 1
        meter = self.setup_meter
        try:
            # paced: while the core is busy, the handshake waits its turn (bounded)
            if not await self.setup_gate.turn(lambda: self.draining):
                await self._refuse_setup(stream, ip)
                return
            meter.begin()  # from here until seated (or refused, or gone): setup CPU
            conn = await self.front.handshake(stream, ip)
            if conn is not None:
                try:
                    await self._connection(conn)
                finally:
                    conn.close()
        except Exception:
            log.exception("internal error while handling a connection")
            await _tws.close_stream(stream)
        finally:
            meter.end()
            self.stats.connections_open -= 1
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]

    async def _refuse_setup(self, stream: trio.abc.Stream, ip: str) -> None:
        """A connection waited ``--setup-wait`` seconds for its turn in vain: tell it the
        server is full (HTTP 503, or close 4006 for a browser) while a notice slot is free,
        else close it before TLS."""
        reason = Refusal.SETUP_BUSY.value
        self.stats.refused[reason] += 1
        self.rooms.activity.refused(reason)
        self.stats.peer_log.event(
            reason, "refused a connection: no handshake turn in time", reason=reason, ip=ip
        )
        if self.front.may_tell_full(ip):
            self.setup_meter.begin()
            await self.front.tell_full(stream, ip)
        else:
            await _tws.close_stream(stream)

    async def _connection(self, conn: FastConnection) -> None:
        """Drive one connection's :class:`~gameserver.lifecycle.Lifecycle`: feed it the JOIN
        or RESUME (or why there is none), carry out its actions, and, once seated, play; at
        the end, hold or free the seat as the lifecycle decides."""
        version = version_of_subprotocol(conn.subprotocol) or 1
        life = Lifecycle(self._directory, version)
        first = await self._read_join(conn, version)
        actions = None
        if self.cluster is not None:  # a room not hosted here: redirected, or placed here
            life, actions = await self.cluster.route(first, life)
        if actions is None:
            actions = life.receive(first)
        session: Session | None = None
        for action in actions:
            if isinstance(action, Refuse):
                self._count_refusal(action, isinstance(first, ResumeReceived), _room_of(first))
            elif isinstance(action, CreateRoom):
                self.rooms.create(action.name, action.game, action.private)
            elif isinstance(action, Evict):
                self._take_over_player(action.player_id)
            elif isinstance(action, Seat):
                session = self._seat(conn, action, version)
                life.receive(SeatTaken(session.player.number))
            elif isinstance(action, ReplaceAttached):
                self._replace_attached(action)
            elif isinstance(action, Reattach):
                session = self._reattach(conn, action, version)
                life.receive(SeatTaken(session.player.number))
        if session is not None:
            self.setup_meter.end()  # seated: from now on this task's CPU is lasting load
            try:
                await self._play(session)
            finally:
                actions = self._end_session(life, session)
        await self._finish(conn, actions)

    async def _read_join(self, conn: FastConnection, version: int = 1) -> ConnectionEvent:
        """The first message, as a lifecycle event: a JOIN with the verifier's verdict on its
        token, or (v2) a RESUME with what its resume token claims, or why there is none (bad
        input, timeout, drain, a lost connection)."""
        # before JOIN a client may send one message's worth of bytes (plus framing, TLS and a
        # few control frames); anything more is refused, unauthenticated data costs little
        allowance = self.config.max_message_size + 4096
        stats = self.stats
        with trio.move_on_after(self.config.join_timeout) as scope:
            self._awaiting_join.add(scope)
            try:
                while not self.draining:
                    conn.read_available(allowance)
                    if conn.bytes_in > allowance:
                        raise pre_join_flood_error()
                    for data in conn.messages():
                        stats.messages_in += 1
                        stats.bytes_in += len(data)
                        if isinstance(data, str):
                            raise text_frame_error()
                        msg = parse_client_message(data, version=version)
                        if isinstance(msg, Join):
                            return JoinReceived(msg, self._verify(msg))
                        if isinstance(msg, Resume):
                            return ResumeReceived(msg, self._resume_claims(msg))
                        raise not_join_error(resume=version >= 2)
                    if conn.peer_close is not None or conn.eof:
                        return ConnectionLost()
                    await conn.wait_readable()
            except RemoteProtocolError as exc:
                return peer_error(stats, exc)
            except TransportClosed:
                return ConnectionLost()
            finally:
                self._awaiting_join.discard(scope)
        return Draining() if self.draining else JoinTimedOut()

    def _verify(self, join: Join) -> Identity | AuthError:
        if self.auth is None:  # an open server (tests, trusted embedding): anyone may play
            pid = f"anon-{next(self._player_ids)}"
            return Identity(pid, join.name or pid, ("*",), ("*",), False, math.inf)
        try:
            return self.auth.verify(join.token)
        except AuthError as exc:
            return exc

    def _resume_claims(self, resume: Resume) -> ResumeClaims | ResumeTokenError:
        try:
            return self.rooms.resume_key.parse(resume.room, resume.token)
        except ResumeTokenError as exc:
            return exc

    def _count_refusal(self, refuse: Refuse, resume: bool = False, room: str | None = None) -> None:
        self.stats.refused[refuse.refusal.value] += 1
        self.rooms.activity.refused(refuse.refusal.value)
        self.stats.peer_log.event(
            refuse.refusal.value,
            f"refused a {'RESUME' if resume else 'JOIN'}",
            room=room,
            reason=refuse.refusal.value,
            code=refuse.refusal.code,
            detail=refuse.message,
        )  # never the token
        if resume:
            self.stats.resume_refusals[refuse.refusal.value] += 1
        elif refuse.step is Step.CPU_BUDGET:
            self.stats.overload_refusals += 1

    def _take_over_player(self, player_id: str) -> None:
        """A newer connection for ``player_id`` takes its seat: close and unseat the old one
        (or free its held seat) now, so its entity is removed in the same tick the new one's
        is created."""
        old = self.by_player.pop(player_id, None)
        if old is None:
            return
        host = old.host
        number = old.player.number
        if host is not None and host.release(number):
            return  # it was a held seat
        old.take_seat_away(
            CloseCode.REPLACED,
            "replaced by a newer connection for the same player",
            EndCause.REPLACED,
        )
        if host is not None and host.sessions.get(number) is old:
            host.detach(number)
            host.room.unseat(number)

    def _replace_attached(self, action: ReplaceAttached) -> None:
        """A RESUME takes over a seat whose old connection is still attached: close that one
        (4009) and detach it from the seat, in the same step as the seat is taken back."""
        host = self.rooms.rooms[action.room]
        old = host.detach(action.number)
        if old is not None:
            old.take_seat_away(
                CloseCode.REPLACED, "replaced by a resumed connection", EndCause.RESUMED_ELSEWHERE
            )

    def _new_session(
        self, conn: FastConnection, host: RoomHost, player: Player, version: int
    ) -> Session:
        cfg = self.config
        now = trio.current_time()
        room = host.room
        tick_rate = room.config.tick_rate
        limiter = MessageLimiter(
            max(cfg.input_rate, 3.0 * tick_rate),
            max(cfg.input_burst, 1.5 * tick_rate),
            cfg.event_rate,
            cfg.event_burst,
            cfg.abuse_allowance,
            now,
            1.0 / cfg.resync_interval,
            cfg.resync_burst,
        )
        # the player's own snapshot (its view, in a view room), built when it is sent
        outbound = Outbound(
            conn,
            functools.partial(room.snapshot_for, player.number, coding_for(version, room.is_view)),
            cfg.outbound_limit,
            self.stats,
        )
        session = Session(conn, player, outbound, limiter, now, version)
        session.host = host
        host.attach(session)
        self.by_player[player.id] = session
        self.stats.players += 1
        self.load.players = self.stats.players  # admission projects from the players now
        return session

    def _seat(self, conn: FastConnection, seat: Seat, version: int = 1) -> Session:
        host = self.rooms.rooms[seat.room]
        identity = seat.identity
        player = host.room.seat(identity.player_id, identity.name)  # admission checked the room
        self.rooms.activity.record(ActivityKind.JOIN, seat.room, player.id)
        log_event(log, "player joined", room=seat.room, player=player.number, player_id=player.id)
        return self._new_session(conn, host, player, version)

    def _reattach(self, conn: FastConnection, action: Reattach, version: int) -> Session:
        """Take a held (or just replaced) seat back for this connection: rotate its token
        generation first, so the token just shown, and any racing copy of it, is dead."""
        host = self.rooms.rooms[action.room]
        room = host.room
        room.rotate(action.number)
        player = room.reattach(action.number)
        host.resumed_seat(action.number)
        self.rooms.activity.record(ActivityKind.RESUME, action.room, player.id)
        session = self._new_session(conn, host, player, version)
        session.resume_from = action.have_tick
        self.stats.resumes += 1
        log_event(
            log, "player resumed", room=action.room, player=player.number, player_id=player.id
        )
        return session

    async def _play(self, session: Session) -> None:
        """Run a seated session until it ends; the room's tick does its reads and writes."""
        try:
            with session.scope:
                await session.outbound.run()
        except OutboundOverflow:
            self.stats.slow_disconnects += 1
            session.close(
                CloseCode.TOO_SLOW,
                "too slow: reliable messages piled up",
                False,
                cause=EndCause.TOO_SLOW,
            )
        except TransportClosed:
            session.close(
                CloseCode.GOING_AWAY, "connection lost", False, cause=EndCause.TRANSPORT_LOST
            )

    def _end_session(self, life: Lifecycle, session: Session) -> list[Action]:
        """The session is over: let the lifecycle decide the seat's fate and carry it out
        (never awaits, so no other connection sees the seat in between). A session that no
        longer owns its seat (evicted, or replaced by a resume) never touches it."""
        end = session.end or SessionEnded(
            CloseCode.GOING_AWAY, "server shutting down", False, cause=EndCause.SHUTDOWN
        )
        actions = life.receive(end)
        host = session.host
        assert host is not None
        number = session.player.number
        owner = host.sessions.get(number) is session
        if owner:
            host.detach(number)
        held = False
        for action in actions:
            if isinstance(action, Detach) and owner:
                held = host.hold(session)
            elif isinstance(action, Unseat) and owner:
                host.room.unseat(number)
        if not held and self.by_player.get(session.player.id) is session:
            del self.by_player[session.player.id]
            if self.cluster is not None:
                self.cluster.seat_freed(session.player.id)
        self.stats.players -= 1
        self.load.players = self.stats.players
        self.rooms.activity.ended(host.room.name, session.player.id, end.code, end.cause.value)
        log_event(
            log,
            "player left" if end.cause is EndCause.LEFT else "player disconnected",
            room=host.room.name,
            player=number,
            player_id=session.player.id,
            code=end.code,
            reason=end.reason,
            cause=end.cause.value,
            held=held,
        )
        return actions

    async def _finish(self, conn: FastConnection, actions: list[Action]) -> None:
        """The lifecycle's last actions: ERROR or CLOSE, then the close frame; then wait
        (bounded) for the peer's close. Nothing at all if the connection is gone."""
        if not any(isinstance(action, Close) for action in actions):
            return
        try:
            with trio.move_on_after(self.config.close_timeout):
                for action in actions:
                    if conn.close_sent:
                        break  # the peer closed first: the close was echoed
                    if isinstance(action, Send):
                        conn.send_message(action.data)
                    elif isinstance(action, Close):
                        conn.send_close(action.code, action.reason)
                await conn.flush()
                while conn.peer_close is None and not conn.eof and not conn.closed:
                    await conn.wait_readable()
                    conn.read_available()
                    for _ in conn.messages():
                        pass  # data after our close frame is discarded
        except (TransportClosed, RemoteProtocolError):
            pass


def load_monitor(config: ServerConfig) -> LoadMonitor:
    """The load monitor the config describes (admission and the pacing of setups)."""
    return LoadMonitor(
        config.cpu_budget,
        config.load_window,
        max_late=config.late_tick_budget,
        ceiling=config.setup_ceiling,
    )


def _room_of(event: ConnectionEvent) -> str | None:
    """The room a JOIN or RESUME asked for (for the log), if the first message was one."""
    if isinstance(event, JoinReceived):
        return event.join.room
    return event.resume.room if isinstance(event, ResumeReceived) else None


def _peer_ip(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        if isinstance(inner, trio.SocketStream):
            return str(inner.socket.getpeername()[0])
    except OSError:
        pass
    return "?"


@asynccontextmanager
async def open_gameserver(
    config: ServerConfig,
    registry: GameRegistry,
    ssl_context: ssl.SSLContext | None,
    *,
    auth: TokenVerifier | None = None,
    stats: ServerStats | None = None,
    load: LoadMonitor | None = None,
    guest: GuestIssuer | None = None,
    resume_key: ResumeKey | None = None,
    extra_listeners: Sequence[trio.SocketListener] = (),
    cluster: ClusterOptions | None = None,
) -> AsyncIterator[GameServer]:
    """Run a server for the duration of the block; yields it once it is listening.

    ``auth`` verifies the token in each JOIN. ``None`` makes an open server that seats anyone
    (for tests and trusted embedding only; the ``gameserver`` command always sets one).
    ``load`` replaces the CPU-budget monitor made from the config (tests inject one).
    ``guest`` mints guest tokens for the web demo (``POST /guest``; None: off).
    ``resume_key`` mints and checks resume tokens (None: 32 fresh random bytes; a cluster's
    nodes must share one). ``extra_listeners`` are served too, from the start (a worker of
    ``--workers``: the shared ``SO_REUSEPORT`` port); :attr:`GameServer.port` stays that of
    ``config.port``. ``cluster`` makes the server a node of a cluster
    (``gameserver.cluster``): it joins the directory before it listens. With
    ``config.web`` the files under ``config.web_root`` are read here, before listening
    (``gameserver.http_static.WebRootError`` if they cannot be served).

    Leaving the block shuts the server down (:meth:`GameServer.shutdown`, once); to stop
    gracefully, :meth:`GameServer.drain` first."""
    stats = stats if stats is not None else ServerStats()
    await check_takeover()  # TakeoverUnsupported: the installed trio(-websocket) do not fit
    # read at once, before listening (milliseconds for the bundled files; a thread would let
    # a test's autojump clock run ahead while it reads)
    site = StaticSite.load(config.web_root) if config.web else None
    web = WebApp(site, guest, registry.default or "", tuple(registry))
    async with trio.open_nursery() as nursery:
        clock = TickClock()  # one timer for every room's tick loop
        await nursery.start(clock.run)
        rooms = RoomDirectory(nursery, config, stats, resume_key, clock=clock)
        server = GameServer(
            config, registry, ssl_context, rooms, stats, auth, nursery=nursery, load=load, web=web
        )
        # plain TCP listeners: TLS is done per connection, in gameserver._tws
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        raw = listeners[0]
        server.port = raw.socket.getsockname()[1]
        async with AsyncExitStack() as stack:
            if cluster is not None:
                server.cluster = await stack.enter_async_context(open_cluster_node(server, cluster))
            await nursery.start(server.listen, [*listeners, *extra_listeners])
            # the CPU budget, the setup rate, gameserver_cpu_ratio and the admission gauges
            nursery.start_soon(run_monitor, server.load, server.load_counters)
            nursery.start_soon(stats.peer_log.run)  # "suppressed N similar lines" summaries
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
    load: LoadMonitor | None = None,
    guest: GuestIssuer | None = None,
    resume_key: ResumeKey | None = None,
    cluster: ClusterOptions | None = None,
    task_status: trio.TaskStatus[GameServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``server = await nursery.start(serve_gameserver, config, registry, ssl_context)``."""
    async with open_gameserver(
        config,
        registry,
        ssl_context,
        auth=auth,
        stats=stats,
        load=load,
        guest=guest,
        resume_key=resume_key,
        cluster=cluster,
    ) as server:
        task_status.started(server)
        await trio.sleep_forever()
    raise AssertionError("unreachable")
