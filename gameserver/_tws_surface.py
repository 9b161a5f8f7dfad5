"""What the WebSocket takeover (:mod:`gameserver._tws`) relies on in trio and trio-websocket.

The takeover uses only public API, and classes of our own (the stream trio-websocket's
handshake runs over, the connection that carries on after it). It still relies on how that
API behaves, which no version number promises. So the server checks both at start-up
(:func:`check_takeover`, called by ``open_gameserver``) and refuses to start, with one line
naming what is missing, rather than break every connection later with only a log line:

* the names: ``trio_websocket.wrap_server_stream(nursery, stream, message_queue_size=,
  max_message_size=)``, ``WebSocketRequest.accept(subprotocol=)``, ``.reject(status_code,
  extra_headers=, body=)``, ``.headers``, ``.proposed_subprotocols``, ``ConnectionClosed``;
  ``trio.socket.SocketType.detach``, ``trio.lowlevel.wait_readable``, ``wait_writable``,
  ``notify_closing``, ``checkpoint``;
* the behaviour, by running the handshake over a socket pair in this process (a few ms):
  ``wrap_server_stream`` runs its reader in the nursery it is given, reads the request through
  our ``receive_some`` and returns the request once its head is in; the reader, cancelled while
  it waits in our ``receive_some``, leaves the stream alone; ``accept`` writes the 101 with the
  subprotocol through our ``send_all`` with the reader gone; a JOIN sent in the same write as
  the request reaches the connection that takes over; after the takeover nothing else reads
  the socket; a request wsproto refuses gets its 400 and ends the wait at once; ``reject``
  writes our status and body.

``tests/test_tws_surface.py`` runs this check and shows it failing when any of it changes.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable
from importlib import metadata

import trio
import trio_websocket

from gameserver import _tws
from shared.protocol import SUBPROTOCOL
from shared.wsframe import (
    OP_BINARY,
    FrameReader,
    binary_frame,
    check_response,
    client_request,
    frame,
    new_key,
)

#: the versions the takeover was written and tested against (others are checked, not refused)
TESTED_WITH = "trio 0.35, trio-websocket 0.12.2"
#: how long the start-up check may take before it counts as stuck
CHECK_TIMEOUT = 5.0


class TakeoverUnsupported(Exception):
    """The installed trio / trio-websocket lack what :mod:`gameserver._tws` relies on."""


def _params(func: object) -> set[str]:
    try:
        return set(inspect.signature(func).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return set()


def _need(obj: object, name: str, where: str, problems: list[str]) -> object | None:
    value = getattr(obj, name, None)
    if value is None:
        problems.append(f"{where}.{name} is missing")
    return value


def surface_problems() -> list[str]:
    """What is missing from the names and signatures the takeover calls (empty: all there)."""
    problems: list[str] = []
    wrap = _need(trio_websocket, "wrap_server_stream", "trio_websocket", problems)
    if wrap is not None:
        missing = {"nursery", "stream", "message_queue_size", "max_message_size"} - _params(wrap)
        if missing:
            problems.append(f"wrap_server_stream takes no {', '.join(sorted(missing))}")
    request = _need(trio_websocket, "WebSocketRequest", "trio_websocket", problems)
    if request is not None:
        for name, params in (
            ("accept", {"subprotocol"}),
            ("reject", {"status_code", "extra_headers", "body"}),
        ):
            method = _need(request, name, "WebSocketRequest", problems)
            lacking = params - _params(method) if method is not None else set()
            if lacking:
                problems.append(f"WebSocketRequest.{name} takes no {', '.join(sorted(lacking))}")
        for name in ("headers", "proposed_subprotocols"):
            if not isinstance(getattr(request, name, None), property):
                problems.append(f"WebSocketRequest.{name} is not a property")
    closed = getattr(trio_websocket, "ConnectionClosed", None)
    if not (isinstance(closed, type) and issubclass(closed, Exception)):
        problems.append("trio_websocket.ConnectionClosed is missing")
    _need(trio.socket.SocketType, "detach", "trio.socket.SocketType", problems)
    for name in ("wait_readable", "wait_writable", "notify_closing", "checkpoint"):
        _need(trio.lowlevel, name, "trio.lowlevel", problems)
    return problems


# ---------------------------------------------------------------- the behaviour


class _Client:
    """The far end of a socket pair, speaking WebSocket by hand (shared.wsframe)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = b""

    async def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = await self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    async def read_to_eof(self) -> bytes:
        while chunk := await self.sock.recv(65536):
            self.buf += chunk
        return self.buf


def _masked(payload: bytes) -> bytes:
    return frame(OP_BINARY, payload, mask=b"\x01\x02\x03\x04")


def _pair() -> tuple[trio.SocketStream, _Client]:
    a, b = socket.socketpair()
    server_side = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    return server_side, _Client(trio.socket.from_stdlib_socket(b))


async def _accepted_handshake(problems: list[str]) -> None:
    stream, client = _pair()
    key = new_key()
    request_bytes = client_request("localhost", "/", key, [SUBPROTOCOL])
    await client.sock.send(request_bytes + _masked(b"sent with the request"))
    deadline = trio.current_time() + CHECK_TIMEOUT
    try:
        upgrade = await _tws.receive_request(stream, None, max_message_size=1024, deadline=deadline)
        if not isinstance(upgrade, _tws.UpgradeRequest):
            problems.append("wrap_server_stream returned no request for a valid upgrade")
            return
        if upgrade.stream.parked:
            problems.append("trio-websocket's reader outlived the nursery it was started in")
        if upgrade.head != request_bytes:
            problems.append("the request head did not reach trio-websocket through our stream")
        if (b"sec-websocket-key", key.encode()) not in upgrade.headers:
            problems.append("WebSocketRequest.headers lacks the request's headers")
        if upgrade.proposed_subprotocols != (SUBPROTOCOL,):
            problems.append("WebSocketRequest.proposed_subprotocols is wrong")
        try:
            conn = await upgrade.accept(SUBPROTOCOL, 1024)
        except _tws.TransportClosed:
            problems.append("WebSocketRequest.accept failed with the reader task gone")
            return
        try:
            head = await client.read_head()
            try:
                check_response(head, key, [SUBPROTOCOL])
            except Exception as exc:
                problems.append(f"accept wrote a bad 101 response ({exc})")
            if list(conn.messages()) != [b"sent with the request"]:
                problems.append("bytes sent with the upgrade request were lost in the takeover")
            await client.sock.send(_masked(b"after the takeover"))
            got: list[bytes | str] = []
            while not got and not conn.eof:
                await conn.wait_readable()
                conn.read_available()
                got = list(conn.messages())
            if got != [b"after the takeover"]:
                problems.append("something still reads the socket after the takeover")
            conn.write(binary_frame(b"from the server"))
            reader = FrameReader(max_message_size=1024, require_mask=False)
            while (item := reader.next()) is None:
                chunk = client.buf or await client.sock.recv(65536)
                client.buf = b""
                if not chunk:
                    break
                reader.feed(chunk)
            if item != (OP_BINARY, b"from the server"):
                problems.append("the connection taken over cannot send")
        finally:
            conn.close()
    finally:
        client.sock.close()
        await _tws.close_stream(stream)


async def _refused_handshakes(problems: list[str]) -> None:
    # a request wsproto cannot parse: its reader answers 400 and ends, and so does the wait
    stream, client = _pair()
    await client.sock.send(b"NOT HTTP AT ALL\r\n\r\n")
    start = trio.current_time()
    try:
        upgrade = await _tws.receive_request(
            stream, None, max_message_size=1024, deadline=start + CHECK_TIMEOUT
        )
        if upgrade is not None:
            problems.append("wrap_server_stream returned a request for non-HTTP bytes")
            upgrade.close()
        elif trio.current_time() - start >= CHECK_TIMEOUT:
            problems.append("a request trio-websocket refuses does not end its reader")
        if not (await client.read_to_eof()).startswith(b"HTTP/1.1 400 "):
            problems.append("a request trio-websocket refuses gets no 400")
    finally:
        client.sock.close()
    # a request we refuse ourselves: reject() writes our status and body
    stream, client = _pair()
    await client.sock.send(client_request("localhost", "/", new_key(), [SUBPROTOCOL]))
    try:
        upgrade = await _tws.receive_request(
            stream, None, max_message_size=1024, deadline=trio.current_time() + CHECK_TIMEOUT
        )
        if not isinstance(upgrade, _tws.UpgradeRequest):
            problems.append("wrap_server_stream returned no request for a valid upgrade")
            return
        await upgrade.reject(403, "refused by the check\n", CHECK_TIMEOUT)
        answer = await client.read_to_eof()
        if not (answer.startswith(b"HTTP/1.1 403 ") and answer.endswith(b"refused by the check\n")):
            problems.append("WebSocketRequest.reject did not write our status and body")
    finally:
        client.sock.close()


async def behaviour_problems() -> list[str]:
    """Run the takeover over socket pairs; what did not behave as relied on (empty: all did)."""
    problems: list[str] = []
    steps: list[Callable[[list[str]], Awaitable[None]]] = [
        _accepted_handshake,
        _refused_handshakes,
    ]
    with trio.move_on_after(3 * CHECK_TIMEOUT) as scope:
        for step in steps:
            try:
                await step(problems)
            except Exception as exc:  # whatever a changed library raises is the finding
                problems.append(f"{step.__name__.strip('_').replace('_', ' ')}: {exc!r}")
    if scope.cancelled_caught:
        problems.append(
            f"the handshakes over socket pairs did not finish in {3 * CHECK_TIMEOUT:g} s"
        )
    return problems


def _versions() -> str:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return f"trio {version('trio')}, trio-websocket {version('trio-websocket')}"


async def check_takeover() -> None:
    """Raise TakeoverUnsupported, with one line saying what is missing, unless the installed
    trio and trio-websocket do what the takeover relies on."""
    problems = surface_problems()
    if not problems:
        problems = await behaviour_problems()
    if problems:
        raise TakeoverUnsupported(
            f"cannot take WebSocket connections over with {_versions()} "
            f"(tested with {TESTED_WITH}): " + "; ".join(problems)
        )
