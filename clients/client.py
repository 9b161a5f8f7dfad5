"""The client SDK: connect over WSS, join a room, keep a verified replica, send inputs, and come
back to the same seat when the connection drops.

::

    async with open_game_client("wss://127.0.0.1:8443", "lobby", ca_file="dev-ca.pem") as client:
        seq = await client.send_input(dx=1.0, dy=0.0)
        await client.wait_for_ack(seq)
        print(client.tick, [e.as_dict() for e in client.replica.of_type("player")])

The protocol logic lives in :class:`~clients.session.ClientSession` (no I/O: its
:meth:`~clients.session.ClientSession.handle_message` takes one server message's bytes), the
reconnect rules in :mod:`clients.reconnect` (no I/O either). :class:`GameClient` adds waiting
and sending; :func:`open_game_client` adds the sockets: the WebSocket (offering gamesync.v2,
then v1), the join handshake, a task that feeds every message to ``handle_message``, the
reconnects, and leaving (LEAVE, then close 1000) at the end.

Clusters (several nodes, docs/protocol.md "Clusters: redirects"): a node that does not host
the room answers the JOIN (or RESUME) with REDIRECT; the client connects to the URL it names,
with the same subprotocols and TLS settings, and sends the same JOIN (same token) or RESUME
there -- at most 3 redirects per join, then :class:`RedirectError`. A :class:`Redirected`
connection event tells of each; ``client.url`` is the node's URL, ``client.redirects`` the
redirects the join took. A resume goes to that node first and back to the entry URL if it
cannot be reached. A first JOIN refused with 4016 (the node cannot reach the room directory)
is tried again with backoff while ``connect_timeout`` lasts; during reconnects 4016 is retried
like any refusal a retry may cure.

Reconnects (on by default, gamesync.v2): when the connection ends unexpectedly (a reset, a
close that is not final, or no message for ``stall_timeout`` while seated), the client
reconnects with backoff and sends RESUME with its resume token and replica tick; the server
answers with the same seat and a catch-up DELTA (or a SNAPSHOT), and the client re-sends the
inputs the server had not applied. Meanwhile ``send_input`` buffers, and waits keep waiting.
If the seat is gone (4013, or 4001 to the RESUME) the client joins the same room afresh (a new
player number). ``reconnect=False``, or a gamesync.v1 server: the connection's end is the
client's end.

Failures end the session: an ERROR from the server (:class:`ServerError`), the connection
closing under us for good (:class:`ConnectionClosed`; with reconnects: kicked, room closed,
replaced, a restart, or the attempts ran out -- then the last attempt's error), a malformed
message (:class:`~shared.errors.RemoteProtocolError`) or, unless ``raise_on_desync=False``, a
checksum mismatch (:class:`~shared.replica.DesyncError`). The failure is raised out of every
wait and send; the block of ``async with open_game_client(...)`` is cancelled, and the failure
is raised out of the ``async with``.
"""

from __future__ import annotations

import os
import random as _random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_websocket

from clients.connect import (
    MESSAGE_QUEUE_SIZE,
    closed_from,
    describe,
    make_ssl_context,
)
from clients.errors import (
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    GameClientError,
    NotConnected,
    ServerError,
)
from clients.reconnect import (
    Backoff,
    ConnectionEvent,
    ConnectionState,
    EndCause,
    Lost,
    LostReason,
    Reconnecting,
    Reconnector,
    Redirected,
    Rejoined,
    Resumed,
)
from clients.routing import MAX_REDIRECTS, RedirectError, RedirectProblem
from clients.runner import SEND_ERRORS, Runner, TokenSource, join_builder, reraise, single
from clients.session import MAX_UNACKED_INPUTS, ClientSession, ClientStats, Clock
from shared.messages import Delta, Event, Join, RoomEvent, Snapshot
from shared.protocol import CloseCode

__all__ = [
    "MAX_REDIRECTS",
    "MAX_UNACKED_INPUTS",
    "MESSAGE_QUEUE_SIZE",
    "Backoff",
    "ClientStats",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionEvent",
    "ConnectionState",
    "EndCause",
    "GameClient",
    "GameClientError",
    "Lost",
    "LostReason",
    "NotConnected",
    "Reconnecting",
    "RedirectError",
    "RedirectProblem",
    "Redirected",
    "Rejoined",
    "Resumed",
    "ServerError",
    "TokenSource",
    "make_ssl_context",
    "open_game_client",
]

SendFn = Callable[[bytes], Awaitable[None]]


# ---------------------------------------------------------------- the client


class GameClient(ClientSession):
    """One player's session: the replica, inputs and their acks, room events, connection
    events, counters; and waiting for them.

    Made by :func:`open_game_client`. Without a socket (tests), construct it with a ``send``
    coroutine function (or none) and feed server messages to :meth:`handle_message`.
    """

    def __init__(
        self,
        send: SendFn | None = None,
        *,
        raise_on_desync: bool = True,
        event_history: int = 256,
        latency_history: int | None = 4096,
        input_buffer: int = 64,
        connection_history: int = 64,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(
            raise_on_desync=raise_on_desync,
            event_history=event_history,
            latency_history=latency_history,
            input_buffer=input_buffer,
            connection_history=connection_history,
            clock=clock,
        )
        self._sender = send
        self._flushing = False
        self._changed = trio.Event()
        self._body_scope: trio.CancelScope | None = None
        self._runner: Runner | None = None
        if send is not None:
            self.connection_state = ConnectionState.CONNECTED

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------ where (clusters)
    @property
    def url(self) -> str:
        """The URL of the current connection (or of the one being dialled): in a cluster, the
        node that hosts the room once the client is seated. "" without a connection."""
        return self._runner.route.current if self._runner is not None else ""

    @property
    def entry_url(self) -> str:
        """The URL given to :func:`open_game_client` (where a join starts without an owner)."""
        return self._runner.route.entry if self._runner is not None else ""

    @property
    def owner_url(self) -> str | None:
        """The URL of the node that seated us, if not the entry URL: a RESUME goes there
        first (None: the entry URL is the owner, or no seat yet)."""
        return self._runner.route.owner if self._runner is not None else None

    @property
    def redirects(self) -> int:
        """REDIRECTs followed by the current (or last) join, 0 to 3;
        ``stats.redirects`` counts those of every join."""
        return self._runner.route.hops if self._runner is not None else 0

    # ------------------------------------------------------------ waiting
    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_raised = True
            raise self._failure

    async def _wait(self, done: Callable[[], bool]) -> None:
        await trio.lowlevel.checkpoint()
        while not done():
            self._raise_failure()
            if self._closing:
                raise ConnectionClosed(CloseCode.NORMAL, "the client left")
            await self._changed.wait()

    async def wait_for_tick(self, tick: int) -> int:
        """Wait until the replica has reached ``tick``; returns the replica's tick. Keeps
        waiting across a reconnect."""
        await self._wait(lambda: self.tick >= tick)
        return self.tick

    async def wait_for_ack(self, seq: int) -> None:
        """Wait until the server has applied our input ``seq`` (or a later one)."""
        await self._wait(lambda: self.last_acked >= seq)

    async def next_update(self) -> Snapshot | Delta:
        """Wait for the next SNAPSHOT or DELTA (not counting DELTAs skipped unread while
        awaiting a snapshot); returns the newest one received. Keeps waiting across a
        reconnect (a resume's catch-up DELTA or SNAPSHOT is the next update)."""
        serial = self._update_serial
        await self._wait(lambda: self._update_serial > serial)
        assert self._last_update is not None
        return self._last_update

    async def next_event(self) -> RoomEvent:
        """The next room event not yet taken, waiting for one if need be."""
        await self._wait(lambda: self._room_log.has_new)
        return self._take_event()

    async def next_connection_event(self) -> ConnectionEvent:
        """The next connection event (:class:`Reconnecting`, :class:`Resumed`, :class:`Lost`,
        :class:`Rejoined`) not yet taken, waiting for one if need be. The events published
        before the client was lost come out first; then the failure is raised."""
        await self._wait(lambda: self._conn_log.has_new)
        return self._take_connection_event()

    async def wait_connected(self) -> None:
        """Wait until the client is seated (returns at once if it is): after a reconnect, the
        resume or the fresh JOIN."""
        await self._wait(lambda: self.connection_state is ConnectionState.CONNECTED)

    # ------------------------------------------------------------ outgoing
    def _online(self) -> bool:
        return self._sender is not None and not self._flushing

    async def _send(self, data: bytes) -> None:
        sender = self._sender
        if sender is None:
            if self._closing:
                raise ConnectionClosed(CloseCode.NORMAL, "the client left")
            if self._supervised:
                raise NotConnected(f"not connected ({self.connection_state}): nothing was sent")
            raise RuntimeError("this client has no connection")
        try:
            await sender(data)
        except SEND_ERRORS as exc:
            if self._supervised and not self._closing:
                # the connection is dying: the reader notices, and the reconnect begins
                raise NotConnected("the connection was lost: the message was not sent") from exc
            closed = (
                closed_from(exc)
                if isinstance(exc, trio_websocket.ConnectionClosed)
                else ConnectionClosed(CloseCode.GOING_AWAY, "connection lost")
            )
            if self._failure is None and not self._closing:
                self._failure = closed
                self._notify()
            self._raise_failure()
            raise closed from None
        self.stats.messages_sent += 1
        self.stats.bytes_up += len(data)

    async def send_input(self, **values: Any) -> int:
        """Send one input (fields by name; missing ones are neutral: 0, False, ""); returns its
        seq. While the client is reconnecting, the input is numbered and buffered (the newest
        ``input_buffer``), and sent after the resume."""
        self._raise_failure()
        if self._closing:
            raise ConnectionClosed(CloseCode.NORMAL, "the client left")
        seq, data = self.encode_input(values)
        entry = self._buffer_input(seq, data)
        if self._online() or not self._supervised:
            entry.sent = entry.ever_sent = True
            try:
                await self._send(data)
            except NotConnected:
                entry.sent = False  # sent again on the next connection
                return seq
            self.stats.inputs_sent += 1
        return seq

    async def send_event(self, name: str, data: bytes = b"") -> None:
        """Send a room event (relayed to everyone by default games). Raises
        :class:`NotConnected` while the client is reconnecting (events are not buffered)."""
        self._raise_failure()
        if self._flushing:
            raise NotConnected("not connected (resuming): the event was not sent")
        await self._send(Event(name, data).to_bytes())
        self.stats.events_sent += 1

    async def _flush_inputs(self) -> None:
        """Send what the outage buffered, in seq order, before new inputs go out directly."""
        self._flushing = True
        try:
            while batch := self.take_unsent_inputs():
                for data in batch:
                    await self._send(data)
        finally:
            self._flushing = False

    async def close(self) -> None:
        """Leave the room now (LEAVE, then close 1000); no reconnect follows. Waits then raise
        :class:`ConnectionClosed` (1000). Leaving the ``async with`` block does the same."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.leave()

    def _abort_body(self) -> None:
        if self._body_scope is not None:
            self._body_scope.cancel()


# ---------------------------------------------------------------- open_game_client


@asynccontextmanager
async def open_game_client(
    url: str,
    room: str,
    *,
    game: str = "",
    name: str = "",
    token: TokenSource = "",
    private: bool = False,
    ca_file: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10,
    disconnect_timeout: float = 5,
    raise_on_desync: bool = True,
    max_message_size: int = 4 * 1024 * 1024,
    event_history: int = 256,
    latency_history: int | None = 4096,
    clock: Clock = time.perf_counter,
    reconnect: bool = True,
    backoff: Backoff = Backoff(),  # noqa: B008 (frozen)
    random: Callable[[], float] = _random.random,
    stall_timeout: float = 2.0,
    attempt_timeout: float = 2.0,
    input_buffer: int = 64,
    connection_history: int = 64,
) -> AsyncIterator[GameClient]:
    """Connect to ``url``, join ``room`` and yield a :class:`GameClient` holding the first snapshot.

    TLS is verified against ``ca_file`` (or ``ssl_context``, or the system's CAs). Raises
    :class:`ConnectError` if connecting fails, :class:`ConnectTimeout` if connecting and joining
    (up to the first SNAPSHOT) take longer than ``connect_timeout``, :class:`ServerError`
    if the join is refused (none of these is retried, except 4016 DIRECTORY_UNAVAILABLE with
    ``reconnect=True``, tried again with backoff until ``connect_timeout``), and
    :class:`RedirectError` if a cluster redirects the join more than 3 times (or to a URL of
    another scheme). REDIRECTs are followed (see the module's docstring): the client may end
    up on another node than ``url``; ``client.url`` says which. Leaving the block sends LEAVE
    and closes the WebSocket with 1000.

    ``token`` is the player's signed token (``gameserver token``), or a function (sync or
    async) returning a fresh one, called for every JOIN. With ``private=True`` the server
    creates a new private room (``room`` is ignored); its id is ``client.joined.room``, which
    others pass as ``room`` to join it.

    Reconnects (``reconnect=True``, gamesync.v2): an unexpected end of the connection, or
    ``stall_timeout`` seconds without a message while seated, starts up to
    ``backoff.max_attempts`` attempts (each bounded by ``attempt_timeout``) with
    ``backoff``'s delays (``random`` draws the jitter). See the module's docstring and
    :mod:`clients.reconnect` for which ends are final. ``input_buffer`` bounds the inputs kept
    for a re-send (the oldest are dropped), ``connection_history`` the connection events kept.
    """
    # checks the lengths before connecting
    Join(room, game, name, token if isinstance(token, str) else "", private=private).to_bytes()
    context = make_ssl_context(url, ca_file=ca_file, ssl_context=ssl_context)
    client = GameClient(
        raise_on_desync=raise_on_desync,
        event_history=event_history,
        latency_history=latency_history,
        input_buffer=input_buffer,
        connection_history=connection_history,
        clock=clock,
    )
    runner = Runner(
        client,
        Reconnector(backoff, enabled=reconnect, random=random),
        url=url,
        context=context,
        join=join_builder(client, room, game, name, token, private),
        connect_timeout=connect_timeout,
        attempt_timeout=attempt_timeout,
        disconnect_timeout=disconnect_timeout,
        stall_timeout=stall_timeout,
        max_message_size=max_message_size,
    )
    client._runner = runner
    connected = False
    try:
        # this nursery holds the runner, which holds each connection's nursery
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            connected = True
            body = trio.CancelScope()
            failure_at_exit: BaseException | None = None
            try:
                client._body_scope = body
                try:
                    with body:
                        yield client
                finally:
                    client._body_scope = None
                    failure_at_exit = client.failure
            finally:
                await runner.leave()
                nursery.cancel_scope.cancel()
            if failure_at_exit is not None and (
                body.cancelled_caught or not client._failure_raised
            ):
                raise failure_at_exit
    except BaseExceptionGroup as group:
        exc = single(group)
        if exc is None:
            raise
        if not connected and isinstance(exc, trio_websocket.HandshakeError):
            raise ConnectError(f"could not connect to {url}: {describe(exc)}") from exc
        reraise(exc)
