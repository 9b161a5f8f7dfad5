"""The trio layer under :func:`clients.client.open_game_client`: one connection after another.

:class:`Runner` opens the first connection and joins; when a connection ends it asks the pure
:class:`~clients.reconnect.Reconnector` what to do, and runs the attempts it asks for: connect,
RESUME (or a fresh JOIN), the catch-up state, the buffered inputs, then serving the connection
(reading, the stall detector, RESYNC) until it ends.

In a cluster each join may be redirected: :class:`~clients.routing.Route` says which URL each
connection dials (the owner's first for a resume, the entry URL if the owner cannot be
reached), and the REDIRECTs of one join are followed with the same JOIN (or RESUME), up to 3.
A first JOIN refused with 4016 (the node cannot reach the room directory) is tried again with
backoff until ``connect_timeout``.
"""

from __future__ import annotations

import inspect
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

import attrs
import trio
import trio_websocket

from clients.connect import Connection, closed_from, connect, parse_url
from clients.errors import (
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    GameClientError,
    ServerError,
)
from clients.reconnect import (
    ConnectionEnd,
    ConnectionState,
    EndCause,
    Finish,
    Reconnector,
    Redirected,
    Rejoined,
    Resumed,
    Retry,
    StallDetector,
    Step,
)
from clients.routing import GotRedirect, RedirectError, Route
from shared.errors import GameProtocolError, RemoteProtocolError
from shared.messages import Join, Leave
from shared.protocol import CloseCode
from shared.replica import DesyncError

if TYPE_CHECKING:
    from clients.client import GameClient

#: the player's auth token, or a function returning a fresh one (called for every JOIN)
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
#: seconds to let a closing frame go out when nothing can read the server's reply any more
CLOSE_WITHOUT_READER = 0.05
#: seconds to let a redirected connection finish its close handshake (the server closes 4015)
REDIRECT_CLOSE_WAIT = 1.0
SEND_ERRORS = (trio_websocket.ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


class _TokenError(Exception):
    """The ``token`` function raised (the cause), or its token does not fit in JOIN."""


#: the JOIN of an attempt (``True``: the first one); encoded for each connection's version
JoinFn = Callable[[bool], Awaitable[Join]]


@attrs.frozen
class _Hop:
    """The join was redirected (or the owner is gone): connect to ``url`` next."""

    url: str


def _end_of_closed(
    exc: trio_websocket.ConnectionClosed,
) -> tuple[ConnectionEnd, ConnectionClosed]:
    """A WebSocket that closed under us: a close frame from the server, or none (1006)."""
    closed = closed_from(exc)
    reason = exc.reason
    if reason is None or reason.code == 1006:
        return ConnectionEnd(EndCause.TRANSPORT, None, closed.reason), closed
    return ConnectionEnd(EndCause.CLOSED, closed.code, closed.reason), closed


def _end_of(exc: BaseException) -> ConnectionEnd:
    """The end that a message (or a failure handling it) means."""
    if isinstance(exc, ServerError):
        return ConnectionEnd(EndCause.REFUSED, exc.code, exc.message)
    if isinstance(exc, ConnectionClosed):
        return ConnectionEnd(EndCause.CLOSED, exc.code, exc.reason)
    if isinstance(exc, RedirectError):
        return ConnectionEnd(EndCause.REDIRECT, exc.code, str(exc))
    code = exc.close_code if isinstance(exc, RemoteProtocolError) else None
    return ConnectionEnd(EndCause.PROTOCOL, code, str(exc))


class Runner:
    """Runs the client's connections one after another: the first JOIN, then the attempts the
    :class:`Reconnector` asks for. Each connection has its own nursery (for trio-websocket's
    reader) and its own reading loop, so nothing of a connection outlives it: a late CLOSE on
    an abandoned socket never reaches the client."""

    def __init__(
        self,
        client: GameClient,
        reconnector: Reconnector,
        *,
        url: str,
        context: ssl.SSLContext | None,
        join: JoinFn,
        connect_timeout: float,
        attempt_timeout: float,
        disconnect_timeout: float,
        stall_timeout: float,
        max_message_size: int,
    ) -> None:
        self.client = client
        self.reconnector = reconnector
        parse_url(url)  # ValueError now for a URL we cannot dial
        #: where each connection goes (the entry URL, the owner's, redirects)
        self.route = Route(url)
        self.context = context
        self._join = join
        self.connect_timeout = connect_timeout
        self.attempt_timeout = attempt_timeout
        self.disconnect_timeout = disconnect_timeout
        self.stall_timeout = stall_timeout
        self.max_message_size = max_message_size
        self._leaving = False
        self._finishing = False
        self._run_scope = trio.CancelScope()
        self._serve_scope: trio.CancelScope | None = None
        self._done = trio.Event()
        #: the JOIN of the current attempt: the same one (same token) on every redirect
        self._hello: Join | None = None

    async def leave(self) -> None:
        """Stop: LEAVE and close 1000 if seated, else stop the attempts. Bounded in time."""
        client = self.client
        client._closing = True
        client._notify()
        self._leaving = True
        if self._serve_scope is not None:
            self._serve_scope.cancel()  # LEAVE and close 1000 follow
        elif not self._finishing:
            self._run_scope.cancel()  # no more attempts
        # else: the last connection is closing already (its reader must not be cancelled)
        with trio.move_on_after(self.disconnect_timeout + 1, shield=True):
            await self._done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The first connection (its failure raises before ``task_status.started()``), then
        the reconnects, until the client is lost or leaves."""
        client = self.client
        try:
            with self._run_scope:
                step = await self._first_join(task_status)
                while isinstance(step, Retry):
                    await trio.sleep(step.delay)
                    client.stats.reconnect_attempts += 1
                    step = await self._attempt(step.resume, None)
        finally:
            self.reconnector.left()
            client._set_connection_state(ConnectionState.CLOSED)
            self._done.set()

    async def _first_join(self, task_status: trio.TaskStatus[None]) -> Step:
        """The first JOIN; one refused with 4016 (directory unavailable) is tried again after
        a backoff delay while ``connect_timeout`` lasts. Raises if it fails."""
        deadline = trio.current_time() + self.connect_timeout
        rec = self.reconnector
        tries = 0
        while True:
            try:
                return await self._attempt(None, task_status, deadline)
            except (ServerError, ConnectionClosed) as exc:
                if exc.code != CloseCode.DIRECTORY_UNAVAILABLE:
                    raise
                tries += 1
                delay = rec.backoff.delay(tries, rec.random)
                if not rec.enabled or trio.current_time() + delay >= deadline:
                    raise
            self.client._forget_failure()
            self.client.stats.directory_retries += 1
            await trio.sleep(delay)

    async def _attempt(
        self,
        resume: bool | None,
        task_status: trio.TaskStatus[None] | None,
        deadline: float | None = None,
    ) -> Step:
        """One join: connect, JOIN (``resume`` None: the first one; False: a fresh one after
        a lost seat) or RESUME, following redirects, then serve the connection until it ends.
        Returns what to do next. The first attempt raises instead of failing."""
        first = resume is None
        if deadline is None:
            deadline = trio.current_time() + (
                self.connect_timeout if first else self.attempt_timeout
            )
        self._hello = None
        url = self.route.start()
        while True:
            outcome = await self._hop(url, resume, task_status, deadline)
            if not isinstance(outcome, _Hop):
                return outcome
            url = outcome.url

    async def _hop(
        self,
        url: str,
        resume: bool | None,
        task_status: trio.TaskStatus[None] | None,
        deadline: float,
    ) -> Step | _Hop:
        """One connection of a join, in its own nursery (trio-websocket's reader task)."""
        try:
            async with trio.open_nursery() as nursery:
                try:
                    return await self._connection(nursery, url, resume, task_status, deadline)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            exc = single(group)
            if exc is None:
                raise
            reraise(exc)

    async def _connection(
        self,
        nursery: trio.Nursery,
        url: str,
        resume: bool | None,
        task_status: trio.TaskStatus[None] | None,
        deadline: float,
    ) -> Step | _Hop:
        client = self.client
        rec = self.reconnector
        route = self.route
        first = resume is None
        try:
            conn = await connect(
                nursery,
                url,
                parse_url(url),
                self.context,
                deadline=deadline,
                max_message_size=self.max_message_size,
            )
        except ConnectError as exc:
            fallback = route.unreachable()  # the owner is gone: back to the entry URL
            if fallback is not None and trio.current_time() < deadline:
                return _Hop(fallback)
            if route.hops:  # say where the join was sent from (the cause stays chained)
                noted = type(exc)(f"{exc} (redirected there from {route.entry})")
                noted.__cause__ = exc.__cause__
                exc = noted
            if first:
                raise exc
            timed_out = isinstance(exc, ConnectTimeout)
            end = ConnectionEnd(
                EndCause.TIMEOUT if timed_out else EndCause.CONNECT_FAILED, None, str(exc)
            )
            return self._decided(rec.attempt_failed(end, trio.current_time()), exc)
        seated = False
        step: Step | None = None
        error: BaseException | None = None
        redirected = False
        try:
            failed = await self._handshake(conn, resume, deadline)
            if isinstance(failed, _Hop):
                redirected = True
                client.stats.redirects += 1
                client._emit(Redirected(failed.url, client.redirects_received[-1].room, route.hops))
                return failed
            if failed is not None:
                end, error = failed
                if end.cause is EndCause.REDIRECT or end.code == CloseCode.REDIRECT:
                    route.forget_owner()  # the next join starts at the entry URL
                if first:
                    raise error
                step = rec.attempt_failed(end, trio.current_time())
                return self._decided(step, error)
            seated = True
            step, error = await self._seated(conn, task_status)
            return self._decided(step, error)
        finally:
            client._sender = None
            client._flushing = False
            client.end_handshake()
            if redirected:
                await self._close_redirected(conn)
            else:
                await self._close(conn, seated, step, error)

    def _decided(self, step: Step, error: BaseException | None) -> Step:
        """Before the connection closes: publish the step's events and the new state; if the
        client is lost, record why (after the events, so that a waiter gets them first) and
        cancel the ``async with`` block."""
        client = self.client
        for event in step.events:
            client._emit(event)
        if isinstance(step, Retry):
            client._set_connection_state(ConnectionState.RECONNECTING)
            return step
        self._finishing = True
        if step.end.cause is not EndCause.LEFT and error is not None:
            client._record_failure(error)
            client._notify()
            client._abort_body()
        return step

    async def _handshake(
        self, conn: Connection, resume: bool | None, deadline: float
    ) -> tuple[ConnectionEnd, BaseException] | _Hop | None:
        """Send JOIN or RESUME and read until JOINED and the first state have been applied.
        Returns None on success, a :class:`_Hop` for a REDIRECT to follow, else how it ended
        (and the error for it)."""
        client = self.client
        ws = conn.ws
        with trio.move_on_at(deadline):
            try:
                if resume and conn.version < 2:  # the server speaks v1 now: nothing to resume
                    refused = ServerError(4013, "seat lost: the server speaks gamesync.v1")
                    return ConnectionEnd(EndCause.REFUSED, 4013, refused.message), refused
                if resume:
                    data = client.begin_resume(conn.version)
                else:
                    client.begin_join(conn.version)
                    if self._hello is None:  # the same JOIN (same token) after a redirect
                        self._hello = await self._join(resume is None)
                    data = attrs.evolve(self._hello, version=conn.version).to_bytes()
                await ws.send_message(data)
                client.stats.messages_sent += 1
                client.stats.bytes_up += len(data)
                while not client.handshake_done:
                    client.handle_message(await ws.get_message())
                return None
            except GotRedirect as got:
                try:
                    return _Hop(self.route.redirect(got.redirect.url))
                except RedirectError as exc:
                    return _end_of(exc), exc
            except trio_websocket.ConnectionClosed as exc:
                return _end_of_closed(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                lost = ConnectionClosed(CloseCode.GOING_AWAY, "connection lost")
                return ConnectionEnd(EndCause.TRANSPORT, None, str(exc)), lost
            except (GameClientError, RemoteProtocolError) as exc:
                return _end_of(exc), exc
            except _TokenError as exc:
                cause = exc.__cause__ or exc
                return ConnectionEnd(EndCause.TOKEN_FAILED, None, str(cause)), cause
        timeout = ConnectTimeout(
            f"joining at {self.route.current} timed out (no JOINED and SNAPSHOT)"
        )
        return ConnectionEnd(EndCause.TIMEOUT, None, str(timeout)), timeout

    async def _seated(
        self, conn: Connection, task_status: trio.TaskStatus[None] | None
    ) -> tuple[Step, BaseException | None]:
        """The handshake succeeded: publish it, flush the buffered inputs, serve."""
        client = self.client
        rec = self.reconnector
        client._supervised = rec.enabled and conn.version >= 2
        event = rec.seated(
            trio.current_time(), client.player, version=conn.version, resumable=client.resumable
        )
        self.route.seated()  # a later RESUME goes straight to this node
        if task_status is not None:
            task_status.started()
        client._sender = conn.ws.send_message
        try:
            await client._flush_inputs()
        except GameClientError:
            pass  # the connection is ending: the read loop below says how
        if isinstance(event, Resumed):
            client.stats.resumes += 1
        elif isinstance(event, Rejoined):
            client.stats.rejoins += 1
        client._set_connection_state(ConnectionState.CONNECTED)
        if event is not None:
            client._emit(event)
        end, error = await self._serve(conn)
        return rec.ended(end, trio.current_time()), error

    async def _serve(self, conn: Connection) -> tuple[ConnectionEnd, BaseException | None]:
        """Feed every message to handle_message until the connection ends, stalls, or we
        leave; send RESYNC when the session asks for one."""
        client = self.client
        ws = conn.ws
        stall = None
        if client._supervised:
            stall = StallDetector.for_tick_rate(
                self.stall_timeout, client.joined.tick_rate, trio.current_time()
            )
        with trio.CancelScope() as scope:
            self._serve_scope = scope
            if self._leaving:
                scope.cancel()
            try:
                while True:
                    data: bytes | str | None = None
                    with trio.move_on_at(math.inf if stall is None else stall.deadline):
                        try:
                            data = await ws.get_message()
                        except trio_websocket.ConnectionClosed as exc:
                            return _end_of_closed(exc)
                    now = trio.current_time()
                    if data is None:
                        assert stall is not None
                        text = f"stalled: no message from the server for {stall.timeout:g} s"
                        end = ConnectionEnd(EndCause.STALLED, None, text)
                        return end, ConnectionClosed(1006, text)
                    if stall is not None:
                        stall.message(now)
                    try:
                        client.handle_message(data)
                    except (GameClientError, GameProtocolError) as exc:
                        return _end_of(exc), exc
                    resync = client.poll_resync(now)
                    if resync is not None:
                        try:
                            await client._send(resync)
                        except GameClientError:
                            pass  # the connection is ending: the next read says so
            finally:
                self._serve_scope = None
        return ConnectionEnd(EndCause.LEFT), None

    async def _close_redirected(self, conn: Connection) -> None:
        """The server sent REDIRECT and closes with 4015: wait for its close frame and answer
        it (bounded; anything else it sends is dropped), then go."""
        ws = conn.ws
        with trio.move_on_after(min(REDIRECT_CLOSE_WAIT, self.disconnect_timeout), shield=True):
            try:
                while True:
                    await ws.get_message()
            except trio_websocket.ConnectionClosed:
                pass
        with trio.move_on_after(CLOSE_WITHOUT_READER, shield=True):
            await ws.aclose()
        await trio.aclose_forcefully(conn.stream)

    async def _close(
        self, conn: Connection, seated: bool, step: Step | None, error: BaseException | None
    ) -> None:
        """Close the connection as ``step`` wants: leaving (no step: we were cancelled, or the
        client is done) sends LEAVE if seated and closes 1000 -- or the close code of the
        protocol error that ended it; a reconnect drops the socket without a close frame, so
        that the server holds the seat. Bounded in time and shielded.

        If the client's nursery is being cancelled from outside, the task that would read the
        server's closing handshake is gone, so the close frame is sent without waiting."""
        client = self.client
        ws = conn.ws
        readers_cancelled = trio.current_effective_deadline() <= trio.current_time()
        with trio.move_on_after(self.disconnect_timeout, shield=True):
            if step is None or isinstance(step, Finish):
                code: int = CloseCode.NORMAL
                if isinstance(error, RemoteProtocolError) and not isinstance(error, DesyncError):
                    code = error.close_code
                if ws.closed is None and code == CloseCode.NORMAL and seated:
                    try:
                        await ws.send_message(Leave().to_bytes())
                        client.stats.messages_sent += 1
                        client.stats.bytes_up += 1
                    except SEND_ERRORS:
                        pass
                # aclose() sends the closing frame, waits for the server's, then closes
                with trio.move_on_after(CLOSE_WITHOUT_READER if readers_cancelled else math.inf):
                    await ws.aclose(code)
            await trio.aclose_forcefully(conn.stream)


def join_builder(
    client: GameClient, room: str, game: str, name: str, token: TokenSource, private: bool
) -> JoinFn:
    """The JOIN for each attempt: the first one as asked; a fresh one after a lost seat in
    the room we were in (a private one by its id). ``token`` is read (or called) each time.
    The version is set per connection (``attrs.evolve``)."""

    async def build(first: bool) -> Join:
        try:
            got = token() if callable(token) else token
            value = await got if inspect.isawaitable(got) else got
            if not isinstance(value, str):
                raise TypeError(f"the token function returned {type(value).__name__}, not str")
            if first:
                join = Join(room, game, name, value, private=private)
            else:  # a fresh JOIN after a lost seat: the room we were in (a private one by its id)
                join = Join(client.joined.room, game, name, value)
            join.to_bytes()  # a token too long for JOIN fails here
            return join
        except Exception as exc:
            if first:
                raise
            raise _TokenError(str(exc)) from exc

    return build


def single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one interesting exception of a nursery's group, or None if there are several."""
    interesting = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if len(interesting) > 1:
        return None
    return interesting[0] if interesting else group.exceptions[0]


def reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` unwrapped, keeping its own ``__context__``."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
