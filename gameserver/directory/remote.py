"""The directory over a Unix socket: how the workers of ``gameserver serve --workers N`` share
the supervisor's :class:`~gameserver.directory.embedded.EmbeddedDirectory`.

- :func:`serve_directory` (in the supervisor) answers the :class:`Directory` methods over a
  Unix socket: JSON lines, one response per request, in order, per connection (the wire is in
  :mod:`gameserver.directory.remote_wire`). Connections are served concurrently; each
  directory call is a few dict operations that never await, so every call is atomic.
  Hostile input is bounded: at most :data:`MAX_CONNECTIONS` connections, lines of at most
  ``MAX_LINE`` bytes; a malformed request gets a ``bad_request`` reply (a line too long also
  closes the connection), never a traceback.
- :class:`RemoteDirectory` (in a worker) implements :class:`Directory` on that socket, with a
  small pool of connections. Every call has one deadline (``timeout``) covering dialling,
  sending and reading; past it, or if the socket is gone, it raises
  :class:`DirectoryUnavailable` and drops the connection (so a late reply can never answer a
  later call). The directory's refusals come back as the same typed errors (RoomTaken with
  the owner's lease, SeatTaken with the seat, DirectoryRefused(kind)); lost leases come back
  in the Renewal. Lease and seat expiries travel as seconds remaining and are rebuilt on the
  caller's clock (trio's clock has a random offset in each process).

The socket should live in a private directory (the supervisor makes one, mode 0700): anyone
who can connect can act as any node.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import trio

from gameserver.directory import remote_wire as wire
from gameserver.directory.base import Directory
from gameserver.directory.types import (
    DirectoryError,
    DirectoryLimits,
    DirectoryUnavailable,
    NodeRecord,
    Renewal,
    RoomLease,
    Seat,
)

log = logging.getLogger("gameserver.directory")

#: connections :func:`serve_directory` serves at once; more are closed at once
MAX_CONNECTIONS = 256

Json = Any
_Op = Callable[[Directory, dict[str, Json], Callable[[], float]], Awaitable[Json]]


# ------------------------------------------------------------------ the server's operations
async def _heartbeat(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    await d.heartbeat(wire.decode_node(wire.field(a, "node")))
    return None


async def _remove_node(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    await d.remove_node(wire.text(a, "node_id"))
    return None


async def _nodes(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    return [wire.encode_node(n) for n in await d.nodes()]


async def _pick_node(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    return wire.encode_node(await d.pick_node(wire.text(a, "room")))


async def _create_room(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    room, creator = wire.text(a, "room"), wire.text(a, "creator")
    node = wire.decode_node(wire.field(a, "node"))
    game, private = wire.text(a, "game"), wire.flag(a, "private")
    lease = await d.create_room(room, node, creator, game=game, private=private)
    return wire.encode_lease(lease, clock())


async def _lookup(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    lease = await d.lookup(wire.text(a, "room"))
    return None if lease is None else wire.encode_lease(lease, clock())


async def _renew(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    now = clock()
    node_id = wire.text(a, "node_id")
    leases = [wire.decode_lease(x, now) for x in wire.items(a, "leases")]
    seats = [wire.decode_seat(x, now) for x in wire.items(a, "seats")]
    renewal = await d.renew(node_id, leases, seats)
    return wire.encode_renewal(renewal, clock())


async def _release_room(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    return bool(await d.release_room(wire.decode_lease(wire.field(a, "lease"), clock())))


async def _claim_seat(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    now = clock()
    player_id = wire.text(a, "player_id")
    lease = wire.decode_lease(wire.field(a, "lease"), now)
    replace = wire.optional(a, "replace", wire.decode_seat, now)
    return wire.encode_seat(await d.claim_seat(player_id, lease, replace), clock())


async def _seat_of(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    seat = await d.seat_of(wire.text(a, "player_id"))
    return None if seat is None else wire.encode_seat(seat, clock())


async def _release_seat(d: Directory, a: dict[str, Json], clock: Callable[[], float]) -> Json:
    return bool(await d.release_seat(wire.decode_seat(wire.field(a, "seat"), clock())))


_OPS: Mapping[str, _Op] = {
    "heartbeat": _heartbeat,
    "remove_node": _remove_node,
    "nodes": _nodes,
    "pick_node": _pick_node,
    "create_room": _create_room,
    "lookup": _lookup,
    "renew": _renew,
    "release_room": _release_room,
    "claim_seat": _claim_seat,
    "seat_of": _seat_of,
    "release_seat": _release_seat,
}


async def answer(directory: Directory, line: bytes, clock: Callable[[], float]) -> bytes:
    """The response line to one request line (never raises for a bad request: it gets a
    ``bad_request`` reply; a failure of the directory itself gets ``internal``, logged)."""
    call_id: int | None = None
    try:
        call_id, op, args = wire.decode_request(line)
        handler = _OPS.get(op)
        if handler is None:
            raise wire.WireError(f"unknown operation {op[:64]!r}")
        return wire.ok_response(call_id, await handler(directory, args, clock))
    except wire.WireError as exc:
        call_id = exc.call_id if exc.call_id is not None else call_id
        log.debug("directory socket: bad request: %s", exc)
        return wire.error_response(call_id, exc)
    except DirectoryError as exc:  # a refusal: the caller's answer
        return wire.error_response(call_id, exc, clock())
    except Exception as exc:  # our bug: say so in the log, answer "internal"
        log.exception("directory socket: the directory failed")
        return wire.error_response(call_id, exc)


async def _serve_connection(
    directory: Directory,
    clock: Callable[[], float],
    limit: trio.Semaphore,
    stream: trio.SocketStream,
) -> None:
    try:
        limit.acquire_nowait()
    except trio.WouldBlock:
        log.warning("directory socket: more than %d connections; closing one", MAX_CONNECTIONS)
        await trio.aclose_forcefully(stream)
        return
    buffer = wire.LineBuffer()
    try:
        async with stream:
            while True:
                line = buffer.next_line()
                if line is not None:
                    await stream.send_all(await answer(directory, line, clock))
                    continue
                if buffer.overflow:
                    reply = wire.error_response(None, f"line longer than {buffer.max_line} bytes")
                    await stream.send_all(reply)
                    return
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer.feed(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the worker went away
    finally:
        limit.release()


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    os.unlink(path)


async def serve_directory(
    directory: Directory,
    path: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``directory`` on a Unix socket at ``path`` until cancelled; then remove it.

    ``await nursery.start(serve_directory, directory, path, clock=...)`` returns once the
    socket accepts connections. ``clock`` is the clock ``directory``'s expiries are on (the
    one given to the EmbeddedDirectory). A stale socket file at ``path`` is replaced; any
    other file there is an error. The socket file is made owner-only (0600)."""
    _remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    listener = trio.SocketListener(sock)
    limit = trio.Semaphore(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(directory, clock, limit, stream)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, [listener])
            task_status.started(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


# ------------------------------------------------------------------ the client
class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = wire.LineBuffer()

    def stale(self) -> bool:
        """Idle, with bytes (or EOF) waiting: the server closed it or sent something unasked.
        Never reused then (a request is never retried: it might have run)."""
        try:
            readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable) or self.buffer.pending > 0

    async def call(self, payload: bytes) -> bytes:
        await self.stream.send_all(payload)
        while True:
            line = self.buffer.next_line()
            if line is not None:
                return line
            if self.buffer.overflow:
                raise DirectoryUnavailable("the directory sent a line too long")
            data = await self.stream.receive_some(65536)
            if not data:
                raise DirectoryUnavailable("the directory closed the connection")
            self.buffer.feed(data)


class RemoteDirectory:
    """A :class:`~gameserver.directory.base.Directory` served by :func:`serve_directory` at
    ``path`` (a Unix socket).

    ``limits`` should be the served directory's (they set the renewal interval; the served
    directory applies its own TTLs and limits). Up to ``max_connections`` calls run at once,
    each on its own connection; idle connections are kept for the next call. ``aclose()``
    (or ``async with``) closes them. Expiries are on ``clock`` (trio's by default)."""

    def __init__(
        self,
        path: str,
        limits: DirectoryLimits | None = None,
        *,
        timeout: float = 1.0,
        max_connections: int = 4,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._limits = limits or DirectoryLimits()
        self._clock = clock
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(max_connections)
        self._ids = 0
        self._closed = False

    @property
    def limits(self) -> DirectoryLimits:
        return self._limits

    async def __aenter__(self) -> RemoteDirectory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale():
                return conn
            await _discard(conn)
        return _Connection(await trio.open_unix_socket(self.path))

    async def _call(self, op: str, args: Mapping[str, Json]) -> tuple[Json, float]:
        """The result of ``op``, and the time (on our clock) taken before it was sent: the
        expiries in the reply are rebuilt from it, so they are never later than the
        directory's."""
        if self._closed:
            raise DirectoryUnavailable("the directory client is closed")
        self._ids += 1
        call_id = self._ids
        payload = wire.encode_request(call_id, op, args)
        conn: _Connection | None = None
        try:
            with trio.fail_after(self.timeout):
                async with self._slots:
                    conn = await self._acquire()
                    sent_at = self._clock()
                    line = await conn.call(payload)
            result = wire.decode_response(line, call_id, sent_at)
        except trio.TooSlowError:
            await _discard(conn)
            raise DirectoryUnavailable(
                f"the directory at {self.path} did not answer within {self.timeout:g} s"
            ) from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await _discard(conn)
            raise DirectoryUnavailable(f"the directory at {self.path}: {exc}") from None
        except (wire.WireError, wire.RemoteFailure) as exc:
            await _discard(conn)
            raise DirectoryUnavailable(f"the directory at {self.path}: {exc}") from None
        except DirectoryUnavailable:
            await _discard(conn)
            raise
        except DirectoryError:  # a refusal: the directory answered, the connection is fine
            if conn is not None and conn.buffer.pending == 0 and not self._closed:
                self._idle.append(conn)
            else:
                await _discard(conn)
            raise
        except BaseException:  # cancelled mid-call: a reply may still be in flight
            await _discard(conn)
            raise
        if self._closed:
            await _discard(conn)
        else:
            self._idle.append(conn)
        return result, sent_at

    async def _decoded(self, op: str, args: Mapping[str, Json], decode: Callable[..., Any]) -> Any:
        result, sent_at = await self._call(op, args)
        try:
            return decode(result, sent_at)
        except wire.WireError as exc:
            raise DirectoryUnavailable(f"the directory at {self.path}: {exc}") from None

    # ------------------------------------------------------------ Directory
    async def heartbeat(self, node: NodeRecord) -> None:
        await self._call("heartbeat", {"node": wire.encode_node(node)})

    async def remove_node(self, node_id: str) -> None:
        await self._call("remove_node", {"node_id": node_id})

    async def nodes(self) -> list[NodeRecord]:
        def decode(result: Json, now: float) -> list[NodeRecord]:
            if not isinstance(result, list):
                raise wire.WireError("nodes: expected a list")
            return [wire.decode_node(x) for x in result]

        nodes: list[NodeRecord] = await self._decoded("nodes", {}, decode)
        return nodes

    async def pick_node(self, room: str) -> NodeRecord:
        node: NodeRecord = await self._decoded("pick_node", {"room": room}, wire.decode_node)
        return node

    async def create_room(
        self, room: str, node: NodeRecord, creator: str, *, game: str = "", private: bool = False
    ) -> RoomLease:
        args = {
            "room": room,
            "node": wire.encode_node(node),
            "creator": creator,
            "game": game,
            "private": private,
        }
        lease: RoomLease = await self._decoded("create_room", args, wire.decode_lease)
        return lease

    async def lookup(self, room: str) -> RoomLease | None:
        lease: RoomLease | None = await self._decoded("lookup", {"room": room}, _or_none_lease)
        return lease

    async def renew(
        self, node_id: str, leases: Sequence[RoomLease], seats: Sequence[Seat]
    ) -> Renewal:
        now = self._clock()
        args = {
            "node_id": node_id,
            "leases": [wire.encode_lease(x, now) for x in leases],
            "seats": [wire.encode_seat(x, now) for x in seats],
        }
        renewal: Renewal = await self._decoded("renew", args, wire.decode_renewal)
        return renewal

    async def release_room(self, lease: RoomLease) -> bool:
        args = {"lease": wire.encode_lease(lease, self._clock())}
        return bool(await self._decoded("release_room", args, _bool))

    async def claim_seat(
        self, player_id: str, lease: RoomLease, replace: Seat | None = None
    ) -> Seat:
        now = self._clock()
        args = {
            "player_id": player_id,
            "lease": wire.encode_lease(lease, now),
            "replace": None if replace is None else wire.encode_seat(replace, now),
        }
        seat: Seat = await self._decoded("claim_seat", args, wire.decode_seat)
        return seat

    async def seat_of(self, player_id: str) -> Seat | None:
        seat: Seat | None = await self._decoded("seat_of", {"player_id": player_id}, _or_none_seat)
        return seat

    async def release_seat(self, seat: Seat) -> bool:
        args = {"seat": wire.encode_seat(seat, self._clock())}
        return bool(await self._decoded("release_seat", args, _bool))


def _or_none_lease(result: Json, now: float) -> RoomLease | None:
    return None if result is None else wire.decode_lease(result, now)


def _or_none_seat(result: Json, now: float) -> Seat | None:
    return None if result is None else wire.decode_seat(result, now)


def _bool(result: Json, now: float) -> bool:
    if not isinstance(result, bool):
        raise wire.WireError("expected true or false")
    return result


async def _discard(conn: _Connection | None) -> None:
    if conn is not None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(conn.stream)
