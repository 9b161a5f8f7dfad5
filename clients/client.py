"""The client SDK: connect over WSS, join a room, keep a verified replica, send inputs.

::

    async with open_game_client("wss://127.0.0.1:8443", "lobby", ca_file="dev-ca.pem") as client:
        seq = await client.send_input(dx=1.0, dy=0.0)
        await client.wait_for_ack(seq)
        print(client.tick, [e.as_dict() for e in client.replica.of_type("player")])

The protocol logic lives in :class:`GameClient`, whose :meth:`GameClient.handle_message` is a
plain method that takes one server message's bytes, so it can be driven without a socket.
:func:`open_game_client` adds the I/O: the WebSocket, the join handshake, a reader task that
feeds every message to ``handle_message``, and leaving (LEAVE, then close 1000) at the end.

Failures end the session: an ERROR from the server (:class:`ServerError`), the connection
closing under us (:class:`ConnectionClosed`), a malformed message
(:class:`~shared.errors.RemoteProtocolError`) or, unless ``raise_on_desync=False``, a checksum
mismatch (:class:`~shared.replica.DesyncError`). The failure is raised out of every wait and
send; the block of ``async with open_game_client(...)`` is cancelled, and the failure is raised
out of the ``async with``.
"""

from __future__ import annotations

import math
import os
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import attrs
import trio
import trio_websocket

from shared import wire
from shared.errors import GameProtocolError, RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    Error,
    Event,
    Input,
    Join,
    Joined,
    Leave,
    RoomEvent,
    ServerMessage,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL, CloseCode, Kind
from shared.replica import DesyncError, Replica

SendFn = Callable[[bytes], Awaitable[None]]
Clock = Callable[[], float]

#: trio-websocket's buffer of received messages; our reader task drains it continuously.
MESSAGE_QUEUE_SIZE = 64
#: inputs remembered for latency measurement until acked (the oldest are forgotten beyond this)
MAX_UNACKED_INPUTS = 4096
_DELTA = bytes((Kind.DELTA,))
#: seconds to let a closing frame go out when nothing can read the server's reply any more
CLOSE_WITHOUT_READER = 0.05


# ---------------------------------------------------------------- errors


class GameClientError(Exception):
    """Base class of the errors this client raises (besides the shared protocol errors)."""


class ServerError(GameClientError):
    """The server sent ERROR: something we asked for failed (e.g. 4005, the room is full)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"server error {code}: {message}")
        self.code = code
        self.message = message


class ConnectionClosed(GameClientError):
    """The server sent CLOSE, or the WebSocket closed, while we still wanted it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(
            f"connection closed ({code}): {reason}" if reason else f"connection closed ({code})"
        )
        self.code = code
        self.reason = reason


class ConnectError(GameClientError):
    """The TCP, TLS or WebSocket handshake failed (the cause is chained)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting and joining took longer than ``connect_timeout``."""


# ---------------------------------------------------------------- counters


@attrs.define
class ClientStats:
    """Counters of one client session. Bytes are WebSocket message payload bytes."""

    messages_received: int = 0
    bytes_down: int = 0
    messages_sent: int = 0
    bytes_up: int = 0
    snapshots: int = 0
    deltas: int = 0
    #: deltas not applied: stale ones (older than a snapshot) and those while awaiting one
    deltas_skipped: int = 0
    room_events: int = 0
    #: room events that fell out of the ``events`` buffer before ``next_event()`` took them
    events_missed: int = 0
    checksums_verified: int = 0
    inputs_sent: int = 0
    inputs_acked: int = 0
    events_sent: int = 0

    @property
    def updates(self) -> int:
        """State messages received: SNAPSHOTs plus DELTAs (including skipped ones)."""
        return self.snapshots + self.deltas


# ---------------------------------------------------------------- the client


class GameClient:
    """One player's session: the replica, inputs and their acks, room events, counters.

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
        clock: Clock = time.perf_counter,
    ) -> None:
        self._sender = send
        self.raise_on_desync = raise_on_desync
        self._clock = clock
        self.stats = ClientStats()
        self._joined: Joined | None = None
        self._replica: Replica | None = None
        #: True until the first SNAPSHOT, and again after a tolerated desync
        self._need_snapshot = True
        self._snapshot_tick = -1
        self._last_update: Snapshot | Delta | None = None
        self._update_serial = 0  # counts the state messages decoded (not skipped unread)
        self._next_seq = 1
        self._unacked: deque[tuple[int, float]] = deque(maxlen=MAX_UNACKED_INPUTS)
        #: recent input latencies in seconds (send to first state acking it), oldest first
        self.latencies: deque[float] = deque(maxlen=latency_history)
        #: recent room events, oldest first
        self.events: deque[RoomEvent] = deque(maxlen=event_history)
        self._event_cursor = 0  # absolute index of the next event next_event() returns
        #: every desync seen (with ``raise_on_desync`` the first one also ends the session)
        self.desyncs: list[DesyncError] = []
        #: ERROR messages the server sent
        self.server_errors: list[Error] = []
        #: the CLOSE message, if the server sent one
        self.close_message: Close | None = None
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._closing = False
        self._changed = trio.Event()
        self._body_scope: trio.CancelScope | None = None

    # ------------------------------------------------------------ state
    @property
    def joined(self) -> Joined:
        """The JOINED message: player number, room, game, tick rate and schemas."""
        if self._joined is None:
            raise RuntimeError("not joined yet")
        return self._joined

    @property
    def player(self) -> int:
        """Our player number in the room."""
        return self.joined.player

    @property
    def replica(self) -> Replica:
        """The room's state as last received (kept in place across snapshots)."""
        if self._replica is None:
            raise RuntimeError("not joined yet")
        return self._replica

    @property
    def state(self) -> Replica:
        """Alias of :attr:`replica`."""
        return self.replica

    @property
    def tick(self) -> int:
        """The tick of the replica; -1 before the first snapshot."""
        return -1 if self._replica is None else self._replica.tick

    @property
    def ready(self) -> bool:
        """Joined and holding a snapshot."""
        return self._replica is not None and self._replica.tick >= 0

    @property
    def in_sync(self) -> bool:
        """False before the first snapshot and after a tolerated desync until the next one."""
        return not self._need_snapshot

    @property
    def last_acked(self) -> int:
        """The last input sequence number the server applied for us (0 = none yet)."""
        if self._replica is None or self._joined is None:
            return 0
        return self._replica.acks.get(self._joined.player, 0)

    @property
    def last_sent(self) -> int:
        """The sequence number of the last input sent (0 = none yet)."""
        return self._next_seq - 1

    @property
    def last_update(self) -> Snapshot | Delta | None:
        """The last SNAPSHOT or DELTA received."""
        return self._last_update

    @property
    def failure(self) -> BaseException | None:
        """What ended the session, if something did."""
        return self._failure

    def pop_latencies(self) -> list[float]:
        """Take the recorded input latencies (seconds) and clear them."""
        out = list(self.latencies)
        self.latencies.clear()
        return out

    # ------------------------------------------------------------ incoming
    def handle_message(self, data: bytes | str) -> ServerMessage | None:
        """Decode and apply one server message; returns it (None for a DELTA skipped unread).

        Raises (and records as :attr:`failure`) :class:`ServerError` for ERROR,
        :class:`ConnectionClosed` for CLOSE, ``RemoteProtocolError`` for a malformed or
        unexpected message, and ``DesyncError`` on a checksum mismatch if ``raise_on_desync``.
        """
        stats = self.stats
        stats.messages_received += 1
        if isinstance(data, str):
            stats.bytes_down += len(data.encode())
            self._fail(
                RemoteProtocolError("text frame from the server", CloseCode.UNSUPPORTED_DATA)
            )
        stats.bytes_down += len(data)
        replica = self._replica
        is_delta = data[:1] == _DELTA
        try:
            if replica is None:
                msg = parse_server_message(data)
            else:
                if is_delta and self._skip_delta(_delta_tick(data)):
                    return None
                msg = parse_server_message(data, replica.schema, replica.type_of)
        except DesyncError as exc:  # a DELTA patching an entity the replica lacks
            stats.deltas += 1
            self._desync(exc)
            return None
        except RemoteProtocolError as exc:
            self._fail(exc)
        if isinstance(msg, Delta):
            self._on_delta(msg)
        elif isinstance(msg, Snapshot):
            self._on_snapshot(msg)
        elif isinstance(msg, RoomEvent):
            stats.room_events += 1
            self.events.append(msg)
            self._notify()
        elif isinstance(msg, Joined):
            if self._joined is not None:
                self._fail(RemoteProtocolError("second JOINED", CloseCode.PROTOCOL_ERROR))
            self._joined = msg
            self._replica = Replica(msg.schema)
            self._notify()
        elif isinstance(msg, Error):
            self.server_errors.append(msg)
            self._fail(ServerError(msg.code, msg.message))
        else:  # Close
            self.close_message = msg
            self._fail(ConnectionClosed(msg.code, msg.reason))
        return msg

    def _skip_delta(self, tick: int) -> bool:
        """Count a DELTA; True if it is not to be applied: before the first snapshot, after a
        tolerated desync until the next snapshot, or older than the last snapshot (stale)."""
        if self._need_snapshot or tick <= self._snapshot_tick:
            self.stats.deltas += 1
            self.stats.deltas_skipped += 1
            self._notify()
            return True
        return False

    def _on_snapshot(self, snap: Snapshot) -> None:
        replica = self.replica
        self.stats.snapshots += 1
        self._last_update = snap
        self._update_serial += 1
        self._need_snapshot = False
        self._snapshot_tick = snap.tick
        try:
            replica.apply_snapshot(snap)
        except DesyncError as exc:
            self._desync(exc)
        finally:
            self.stats.checksums_verified = replica.checks
        self._after_state()

    def _on_delta(self, delta: Delta) -> None:
        replica = self.replica
        self.stats.deltas += 1
        self._last_update = delta
        self._update_serial += 1
        try:
            replica.apply_delta(delta)
        except DesyncError as exc:
            self._desync(exc)
        finally:
            self.stats.checksums_verified = replica.checks
        self._after_state()

    def _after_state(self) -> None:
        ack = self.last_acked
        unacked = self._unacked
        if unacked and unacked[0][0] <= ack:
            now = self._clock()
            while unacked and unacked[0][0] <= ack:
                _, sent_at = unacked.popleft()
                self.latencies.append(now - sent_at)
                self.stats.inputs_acked += 1
        self._notify()

    def _desync(self, exc: DesyncError) -> None:
        self.desyncs.append(exc)
        if self.raise_on_desync:
            self._fail(exc)
        # keep going: ignore deltas until the server sends a snapshot
        self._need_snapshot = True
        self._notify()

    def _fail(self, exc: BaseException) -> NoReturn:
        """Record ``exc`` as the failure (the first one wins), wake waiters, raise it."""
        if self._failure is None and not self._closing:
            self._failure = exc
        self._notify()
        raise exc

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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
        """Wait until the replica has reached ``tick``; returns the replica's tick."""
        await self._wait(lambda: self.tick >= tick)
        return self.tick

    async def wait_for_ack(self, seq: int) -> None:
        """Wait until the server has applied our input ``seq`` (or a later one)."""
        await self._wait(lambda: self.last_acked >= seq)

    async def next_update(self) -> Snapshot | Delta:
        """Wait for the next SNAPSHOT or DELTA (not counting DELTAs skipped unread while
        awaiting a snapshot); returns the newest one received."""
        serial = self._update_serial
        await self._wait(lambda: self._update_serial > serial)
        assert self._last_update is not None
        return self._last_update

    async def next_event(self) -> RoomEvent:
        """The next room event not yet taken, waiting for one if need be."""
        await self._wait(lambda: self._event_cursor < self.stats.room_events)
        first = self.stats.room_events - len(self.events)
        if self._event_cursor < first:
            self.stats.events_missed += first - self._event_cursor
            self._event_cursor = first
        event = self.events[self._event_cursor - first]
        self._event_cursor += 1
        return event

    def iter_new_events(self) -> Iterator[RoomEvent]:
        """The room events not yet taken by :meth:`next_event` (takes them), without waiting."""
        while self._event_cursor < self.stats.room_events:
            first = self.stats.room_events - len(self.events)
            if self._event_cursor < first:
                self.stats.events_missed += first - self._event_cursor
                self._event_cursor = first
            event = self.events[self._event_cursor - first]
            self._event_cursor += 1
            yield event

    # ------------------------------------------------------------ outgoing
    async def _send(self, data: bytes) -> None:
        if self._sender is None:
            raise RuntimeError("this client has no connection")
        try:
            await self._sender(data)
        except trio_websocket.ConnectionClosed as exc:
            closed = _closed_from(exc)
            if self._failure is None and not self._closing:
                self._failure = closed
                self._notify()
            self._raise_failure()
            raise closed from None
        self.stats.messages_sent += 1
        self.stats.bytes_up += len(data)

    def encode_input(self, values: dict[str, Any]) -> tuple[int, bytes]:
        """Take the next sequence number and encode an INPUT; returns (seq, bytes)."""
        schema = self.joined.input_schema
        codes = schema.codes_for(values)
        seq = self._next_seq
        data = Input(seq, codes).to_bytes(schema)
        self._next_seq = seq + 1
        return seq, data

    async def send_input(self, **values: Any) -> int:
        """Send one input (fields by name; missing ones are neutral: 0, False, ""); returns its seq."""
        self._raise_failure()
        seq, data = self.encode_input(values)
        self._unacked.append((seq, self._clock()))
        await self._send(data)
        self.stats.inputs_sent += 1
        return seq

    async def send_event(self, name: str, data: bytes = b"") -> None:
        """Send a room event (relayed to everyone by default games)."""
        self._raise_failure()
        await self._send(Event(name, data).to_bytes())
        self.stats.events_sent += 1

    # ------------------------------------------------------------ I/O (open_game_client)
    def _abort_body(self) -> None:
        if self._body_scope is not None:
            self._body_scope.cancel()

    async def _read_loop(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Feed every message to handle_message until the connection ends or fails."""
        while True:
            try:
                data = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                if not self._closing:
                    if self._failure is None:
                        self._failure = _closed_from(exc)
                    self._notify()
                    self._abort_body()
                return
            try:
                self.handle_message(data)
            except (GameClientError, GameProtocolError):
                if self._closing:
                    continue
                self._abort_body()
                return

    async def _shutdown(self, ws: trio_websocket.WebSocketConnection, timeout: float) -> None:
        """Send LEAVE (if joined) and close the WebSocket (1000, or the close code of the
        protocol error that ended the session), bounded in time and shielded.

        Call it from the task that opened the connection's nursery, outside any inner scope:
        if that nursery is being cancelled from outside, the tasks that would read the server's
        closing handshake are gone, so the close is sent without waiting for the reply.
        """
        readers_cancelled = trio.current_effective_deadline() <= trio.current_time()
        self._closing = True
        self._notify()
        code: int = CloseCode.NORMAL
        failure = self._failure
        if isinstance(failure, RemoteProtocolError) and not isinstance(failure, DesyncError):
            code = failure.close_code
        with trio.move_on_after(timeout, shield=True):
            if ws.closed is None and code == CloseCode.NORMAL and self._joined is not None:
                try:
                    await self._send(Leave().to_bytes())
                except (GameClientError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            # aclose() sends the closing frame, waits for the server's, then closes the stream
            with trio.move_on_after(CLOSE_WITHOUT_READER if readers_cancelled else math.inf):
                await ws.aclose(code)


def _delta_tick(data: bytes) -> int:
    """The tick of an encoded DELTA, read without decoding the rest."""
    reader = wire.Reader(data, 2)  # kind, flags
    return reader.varint()


def _closed_from(exc: trio_websocket.ConnectionClosed) -> ConnectionClosed:
    reason = exc.reason
    if reason is None:
        return ConnectionClosed(CloseCode.GOING_AWAY, "connection lost")
    return ConnectionClosed(reason.code, reason.reason or reason.name)


# ---------------------------------------------------------------- connecting


@attrs.frozen
class _Target:
    secure: bool
    host: str
    port: int
    resource: str  # path and query
    host_header: str


def _parse_url(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the URL must start with wss:// or ws://, not {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"the URL names no host: {url!r}")
    secure = scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == (443 if secure else 80) else f"{name}:{port}"
    return _Target(secure, host, port, resource, host_header)


def make_ssl_context(
    url: str,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ssl.SSLContext | None:
    """The SSL context for ``url``: ``ssl_context`` if given, else one trusting ``ca_file``, else
    the system's defaults. None for ``ws://`` URLs (``ca_file`` is then ignored)."""
    if not _parse_url(url).secure:
        if ssl_context is not None:
            raise ValueError("an ssl_context was given for a ws:// URL; use wss://")
        return None
    if ssl_context is not None:
        return ssl_context
    if ca_file is not None:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    return ssl.create_default_context()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        body = exc.body.decode("utf-8", "replace").strip() if exc.body else ""
        return f"the server refused the WebSocket handshake (HTTP {exc.status_code}) {body}".strip()
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__  # e.g. ssl.SSLCertVerificationError
    return f"{type(exc).__name__}: {exc}"


async def _open_stream(
    target: _Target, context: ssl.SSLContext | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """TCP, then the TLS handshake (done here, so that a certificate error is reported as
    such: trio-websocket would only time out)."""
    tcp = await trio.open_tcp_stream(target.host, target.port)
    if context is None:
        return tcp
    stream = trio.SSLStream(tcp, context, server_hostname=target.host, https_compatible=True)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def _connect(
    nursery: trio.Nursery,
    url: str,
    target: _Target,
    context: ssl.SSLContext | None,
    *,
    deadline: float,
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    with trio.move_on_at(deadline) as scope:
        try:
            stream = await _open_stream(target, context)
        except (OSError, trio.BrokenResourceError) as exc:
            raise ConnectError(f"could not connect to {url}: {_describe(exc)}") from exc
        try:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                target.host_header,
                target.resource,
                subprotocols=[SUBPROTOCOL],
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=max_message_size,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught:
        raise ConnectTimeout(f"connecting to {url} timed out")
    if ws.subprotocol != SUBPROTOCOL:
        with trio.move_on_after(1, shield=True):
            await ws.aclose(CloseCode.PROTOCOL_ERROR)
        raise ConnectError(f"{url} did not accept the WebSocket subprotocol {SUBPROTOCOL!r}")
    return ws


async def _join(
    client: GameClient,
    ws: trio_websocket.WebSocketConnection,
    url: str,
    join: bytes,
    deadline: float,
) -> None:
    """Send JOIN and read until JOINED and the first SNAPSHOT have been applied."""
    with trio.move_on_at(deadline) as scope:
        await client._send(join)
        while not client.ready:
            try:
                data = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise _closed_from(exc) from None
            client.handle_message(data)
    if scope.cancelled_caught:
        raise ConnectTimeout(f"joining at {url} timed out (no JOINED and SNAPSHOT)")


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one interesting exception of a nursery's group, or None if there are several."""
    interesting = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if len(interesting) > 1:
        return None
    return interesting[0] if interesting else group.exceptions[0]


def _reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` unwrapped, keeping its own ``__context__``."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


@asynccontextmanager
async def open_game_client(
    url: str,
    room: str,
    *,
    game: str = "",
    name: str = "",
    token: str = "",
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
) -> AsyncIterator[GameClient]:
    """Connect to ``url``, join ``room`` and yield a :class:`GameClient` holding the first snapshot.

    TLS is verified against ``ca_file`` (or ``ssl_context``, or the system's CAs). Raises
    :class:`ConnectError` if connecting fails, :class:`ConnectTimeout` if connecting and joining
    (up to the first SNAPSHOT) take longer than ``connect_timeout``, and :class:`ServerError`
    if the join is refused. Leaving the block sends LEAVE and closes the WebSocket with 1000.

    ``token`` is the player's signed token (``gameserver token``). With ``private=True`` the
    server creates a new private room (``room`` is ignored); its id is ``client.joined.room``,
    which others pass as ``room`` to join it.
    """
    join = Join(
        room, game, name, token, private=private
    ).to_bytes()  # checks the lengths before connecting
    target = _parse_url(url)
    context = make_ssl_context(url, ca_file=ca_file, ssl_context=ssl_context)
    client = GameClient(
        raise_on_desync=raise_on_desync,
        event_history=event_history,
        latency_history=latency_history,
        clock=clock,
    )
    deadline = trio.current_time() + connect_timeout
    connected = False
    try:
        # this nursery holds trio-websocket's reader task and ours
        async with trio.open_nursery() as nursery:
            ws = await _connect(
                nursery, url, target, context, deadline=deadline, max_message_size=max_message_size
            )
            connected = True
            client._sender = ws.send_message
            body = trio.CancelScope()
            failure_at_exit: BaseException | None = None
            try:
                await _join(client, ws, url, join, deadline)
                nursery.start_soon(client._read_loop, ws)
                client._body_scope = body
                try:
                    with body:
                        yield client
                finally:
                    client._body_scope = None
                    failure_at_exit = client.failure
            finally:
                await client._shutdown(ws, disconnect_timeout)
                nursery.cancel_scope.cancel()
            if failure_at_exit is not None and (
                body.cancelled_caught or not client._failure_raised
            ):
                raise failure_at_exit
    except BaseExceptionGroup as group:
        exc = _single(group)
        if exc is None:
            raise
        if not connected and isinstance(exc, trio_websocket.HandshakeError):
            raise ConnectError(f"could not connect to {url}: {_describe(exc)}") from exc
        _reraise(exc)
