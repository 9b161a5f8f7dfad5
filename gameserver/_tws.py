"""The WebSocket opening handshake on a stream of our own, and the connection it hands over.

trio-websocket does the opening handshake: it parses the HTTP upgrade request (with wsproto and
h11), negotiates the subprotocol, and writes the 101 response (or the refusal). Its
per-connection reader task and message queue, and its awaited ``send_message``, cost 60-80 µs
per message over TLS, which would cap a server near 200 players. So after the handshake the
server takes the connection over, using only trio-websocket's public API and classes of ours:

1. :class:`~gameserver._handshake_stream.HandshakeStream` is the ``trio.abc.Stream`` that
   trio-websocket's handshake runs over. It is ours: TLS is an ``ssl.SSLObject`` over two
   ``ssl.MemoryBIO`` s on the accepted socket, which we own. It hands trio-websocket the
   request head and nothing after it: bytes that came in the same read (a JOIN sent together
   with the upgrade request) stay in our buffer, and once the head is out its
   ``receive_some`` just waits, so trio-websocket's reader (started by the public
   ``wrap_server_stream`` in a nursery we own) is idle there when we cancel it.
2. :func:`receive_request` runs the TLS handshake, reads the request head ahead, and, for a
   WebSocket upgrade, ``wrap_server_stream``, all under one deadline; a handshake that fails
   (TLS garbage, a request wsproto refuses with its own 400) closes our stream or sees its
   end, which ends the wait at once. A request that asks for no upgrade at all (a browser
   fetching the web demo) never reaches trio-websocket: it comes back as a
   :class:`PlainRequest`, which the server answers itself (``gameserver.web``).
3. :meth:`UpgradeRequest.accept` lets trio-websocket write the 101
   (``WebSocketRequest.accept``) and builds a :class:`FastConnection` from our own stream's
   state: the socket, the TLS object and its BIOs, and the bytes read after the head.

:class:`FastConnection` does synchronous I/O: ``write()`` frames, encrypts and calls ``send()``
without awaiting; ``read_available()`` calls ``recv()`` without awaiting. Only a full kernel
send buffer makes the writer await (``flush()``), and only a connection that is not yet in a
room awaits readability. A room reads every player's socket once per tick.

What this relies on from trio and trio-websocket is listed, and checked at server start-up, in
:mod:`gameserver._tws_surface` (a mismatch refuses to start with one clear line);
``tests/test_tws_surface.py`` shows the check failing when any part of it changes.
``docs/transport.md`` gives the reasons and the measured costs (``tools/bench_transport.py``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketRequest

from gameserver._handshake_stream import (
    MAX_HEAD_BYTES,
    READ_CHUNK,
    HandshakeStream,
    TransportClosed,
    close_socket,
)
from gameserver.http_static import BadRequest, HttpRequest
from shared.wsframe import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameReader,
    binary_frame,
    close_payload,
    frame,
    parse_close,
)

__all__ = [
    "MAX_HEAD_BYTES",
    "READ_CHUNK",
    "FastConnection",
    "HandshakeStream",
    "PlainRequest",
    "TransportClosed",
    "UpgradeRequest",
    "close_stream",
    "receive_request",
]


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close a stream now (no TLS close_notify wait), e.g. after a refused handshake."""
    with trio.move_on_after(0.5) as scope:
        scope.shield = True
        try:
            await trio.aclose_forcefully(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _local_address(sock: socket.socket) -> tuple[str, int]:
    try:
        address = sock.getsockname()
        return str(address[0]), int(address[1])
    except (OSError, IndexError, TypeError):
        return "", 0


class UpgradeRequest:
    """A WebSocket upgrade request that trio-websocket has parsed, not yet answered."""

    def __init__(
        self, stream: HandshakeStream, request: WebSocketRequest, http: HttpRequest | None = None
    ) -> None:
        self.stream = stream
        self.request = request
        #: the head as our own parser read it (None if only h11 could parse it)
        self.http = http
        #: the address and port the connection came in on
        self.local = _local_address(stream.sock)

    @property
    def head(self) -> bytes:
        """The request's head as received: the request line and the headers."""
        return self.stream.head

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as h11 parsed them (names lower-case), without Host,
        Sec-WebSocket-Protocol and Sec-WebSocket-Extensions (see ``proposed_subprotocols``)."""
        return list(self.request.headers)

    @property
    def host(self) -> str | None:
        """The Host header (exactly one), or None."""
        return None if self.http is None else self.http.header("host")

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        return tuple(self.request.proposed_subprotocols)

    async def accept(self, subprotocol: str | None, max_message_size: int) -> FastConnection:
        """Write the 101 response and take the connection over. Raises TransportClosed."""
        try:
            await self.request.accept(subprotocol=subprotocol)
        except ConnectionClosed:
            self.stream.close()
            raise TransportClosed from None
        except BaseException:
            self.stream.close()
            raise
        conn = FastConnection.taking_over(self.stream, max_message_size)
        conn.subprotocol = subprotocol
        return conn

    async def reject(
        self,
        status: int,
        body: str,
        timeout: float,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer with an HTTP error and a short text body, then close the connection."""
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"), *(extra_headers or [])]
        try:
            with trio.move_on_after(timeout):
                await self.request.reject(status, extra_headers=headers, body=body.encode())
        except ConnectionClosed:
            pass
        finally:
            self.stream.close()

    def close(self) -> None:
        self.stream.close()


class PlainRequest:
    """An HTTP request that asks for no upgrade (the web demo's files, a guest token), read by
    our own parser; trio-websocket never sees it. One request per connection."""

    def __init__(self, stream: HandshakeStream, http: HttpRequest, head_length: int) -> None:
        self.stream = stream
        self.http = http
        self.head = stream.consume(head_length)
        #: the address and port the connection came in on
        self.local = _local_address(stream.sock)

    async def read_body(self, length: int) -> bytes | None:
        """The request body of ``length`` bytes (bounded by the caller), or None if the peer
        closes first. Raises trio.BrokenResourceError."""
        return await self.stream.read_exactly(length)

    async def respond(self, data: bytes, timeout: float, linger: float = 1.0) -> None:
        """Write the response (within ``timeout``), then close the connection."""
        try:
            with trio.move_on_after(timeout):
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.stream.close()
            return
        await self.stream.finish(linger)

    def close(self) -> None:
        self.stream.close()


async def receive_request(
    stream: trio.abc.Stream,
    ssl_context: ssl.SSLContext | None,
    *,
    max_message_size: int,
    deadline: float,
) -> UpgradeRequest | PlainRequest | None:
    """TLS (if ``ssl_context``), then the request: an upgrade request, read by trio-websocket,
    or a plain HTTP request (no ``Upgrade`` header), read by us alone.

    ``stream`` is an accepted ``trio.SocketStream``; its socket is taken over. The request head
    is read ahead (at most MAX_HEAD_BYTES) and parsed; if it asks for no upgrade it comes back
    as a :class:`PlainRequest`. Anything else (an upgrade, or a head our parser cannot read) goes
    to trio-websocket, whose reader runs in a nursery we own and is cancelled once the request is
    in (it then waits in our ``receive_some``). A handshake that fails (TLS garbage, non-HTTP
    bytes: the reader gives up or answers 400 itself) ends at once instead of at the deadline.
    Returns None, with the connection closed, if no request arrived by ``deadline``."""
    if not isinstance(stream, trio.SocketStream):
        raise TypeError(f"receive_request needs a trio.SocketStream, not {type(stream)!r}")
    hs = HandshakeStream.over(stream, ssl_context)
    request: WebSocketRequest | None = None
    http: HttpRequest | None = None
    try:
        with trio.move_on_at(deadline):
            try:
                await hs.tls_handshake()
                head = await hs.read_head()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                hs.close()
                return None
            if hs.eof_seen:
                hs.close()
                return None
            if head is not None:
                try:
                    http = HttpRequest.from_head(head)
                except BadRequest:
                    pass  # trio-websocket (h11) answers it with its own 400
                if http is not None and not http.is_upgrade:
                    return PlainRequest(hs, http, len(head))
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    await hs.ended.wait()  # the reader met EOF, an error, or closed us
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                request = await trio_websocket.wrap_server_stream(
                    nursery, hs, message_queue_size=1, max_message_size=max_message_size
                )
                nursery.cancel_scope.cancel()
    except BaseException:  # cancelled from outside (a shutdown), or a bug: no socket leaks
        hs.close()
        raise
    if request is None or hs.closed or not hs.head_complete:
        hs.close()
        return None
    return UpgradeRequest(hs, request, http)


_SslCalls = tuple[
    Callable[[int], bytes] | None, Callable[[bytes], int] | None, Callable[[], int] | None
]


def _ssl_calls(ssl_object: ssl.SSLObject | None) -> _SslCalls:
    """``read``, ``write`` and ``pending`` of a TLS object, for the hot path.

    ``ssl.SSLObject``'s methods are Python wrappers around the C object it keeps as
    ``_sslobj`` (CPython 3.11-3.13); calling that object's methods skips one Python frame per
    call. Where it is missing or differs, the public methods are used: same results."""
    if ssl_object is None:
        return None, None, None
    inner = getattr(ssl_object, "_sslobj", None)
    if inner is not None and all(
        callable(getattr(inner, name, None)) for name in ("read", "write", "pending")
    ):
        return inner.read, inner.write, inner.pending
    return ssl_object.read, ssl_object.write, ssl_object.pending


class FastConnection:
    """A server-side WebSocket connection with synchronous, non-awaiting send and receive."""

    def __init__(
        self,
        sock: socket.socket,
        ssl_object: ssl.SSLObject | None,
        incoming: ssl.MemoryBIO | None,
        outgoing: ssl.MemoryBIO | None,
        pending: bytes = b"",
        max_message_size: int = 4096,
    ) -> None:
        self._sock = sock
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        #: encrypted bytes the kernel has not taken yet (empty when the path is clear); read it,
        #: never change it, outside this class (``backlog`` is its length)
        self.out_backlog = bytearray()
        self.reader = FrameReader(max_message_size=max_message_size, require_mask=True)
        self.closed = False  # the transport is gone or closed by us
        self.eof = False  # the peer closed its side
        self.close_sent = False
        self.peer_close: tuple[int, str] | None = None
        #: the subprotocol the 101 selected (None if none)
        self.subprotocol: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_pong_payload: bytes | None = None
        #: the payload of the latest ping not answered yet because the backlog was not empty:
        #: answered by ``flush`` as soon as the backlog drains (older ones are skipped, as RFC
        #: 6455 section 5.5.3 allows), so a peer that pings but never reads costs one pong
        self.pong_due: bytes | None = None
        # the hot path's calls, bound once: the C methods under ``ssl.SSLObject``'s Python
        # wrappers where this Python has them (checked by ``_tws_surface``), else the wrappers
        self._recv = sock.recv
        self._send = sock.send
        self._ssl_read, self._ssl_write, self._ssl_pending = _ssl_calls(ssl_object)
        if pending:
            self._send_raw(pending)

    @classmethod
    def taking_over(cls, stream: HandshakeStream, max_message_size: int) -> FastConnection:
        """The connection that carries on from a handshake stream, which is done with.

        Bytes that arrived after the request head (a JOIN sent with the upgrade request) wait
        in its frame reader, and count towards its ``bytes_in``."""
        released = stream.release()
        conn = cls(
            released.sock,
            released.ssl_object,
            released.incoming,
            released.outgoing,
            pending=released.unsent,
            max_message_size=max_message_size,
        )
        if released.plain:
            conn.bytes_in = len(released.plain)
            conn.reader.feed(released.plain)
        return conn

    # ------------------------------------------------------------ properties
    @property
    def backlog(self) -> int:
        """Bytes waiting for the kernel's send buffer to drain (0 when the path is clear)."""
        return len(self.out_backlog)

    def fileno(self) -> int:
        return self._sock.fileno()

    # ------------------------------------------------------------ writing
    def write(self, frame_bytes: bytes) -> None:
        """Send one already-framed message without awaiting. Anything the kernel does not take
        now waits in the backlog for :meth:`flush`. Raises TransportClosed."""
        if self.closed:
            raise TransportClosed
        if self._ssl_write is not None:
            try:
                self._ssl_write(frame_bytes)
            except ssl.SSLError as exc:
                self._broken()
                raise TransportClosed from exc
            assert self._outgoing is not None
            frame_bytes = self._outgoing.read()
        self.bytes_out += len(frame_bytes)
        self._send_raw(frame_bytes)

    def send_message(self, payload: bytes) -> None:
        self.write(binary_frame(payload))

    def _send_raw(self, data: bytes) -> None:
        if self.out_backlog:
            self.out_backlog += data
            return
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._broken()
            raise TransportClosed from exc
        if sent < len(data):
            self.out_backlog += data[sent:]

    async def flush(self) -> None:
        """Await until the backlog is in the kernel, then answer a ping that waited for it.
        Raises TransportClosed."""
        while True:
            while self.out_backlog:
                if self.closed:
                    raise TransportClosed
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except trio.ClosedResourceError:
                    raise TransportClosed from None
                try:
                    sent = self._sock.send(self.out_backlog)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._broken()
                    raise TransportClosed from exc
                del self.out_backlog[:sent]
            pong = self.pong_due
            if pong is None:
                return
            self.pong_due = None
            if not self.close_sent:
                self.write(frame(OP_PONG, pong))

    # ------------------------------------------------------------ reading
    def read_available(self, budget: int = READ_CHUNK) -> None:
        """Read what has arrived, up to ``budget`` bytes, without awaiting; feed the parser.
        Sets ``eof`` when the peer closed. Raises TransportClosed on a broken connection."""
        if self.closed or self.eof:
            return
        try:
            data = self._recv(budget)
        except BlockingIOError:
            return
        except OSError as exc:
            self._broken()
            raise TransportClosed from exc
        if not data:
            self.eof = True
        self.bytes_in += len(data)
        ssl_read = self._ssl_read
        if ssl_read is None:
            self.reader.feed(data)
            return
        incoming = self._incoming
        outgoing = self._outgoing
        assert incoming is not None and outgoing is not None and self._ssl_pending is not None
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        feed = self.reader.feed
        while True:
            try:
                plain = ssl_read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            except ssl.SSLError as exc:
                self._broken()
                raise TransportClosed from exc
            if not plain:
                self.eof = True
                break
            feed(plain)
            if not incoming.pending and not self._ssl_pending():
                break  # all decrypted: skip the read that would only raise SSLWantReadError
        if outgoing.pending:  # e.g. a TLS 1.3 KeyUpdate answer
            self._send_raw(outgoing.read())

    def messages(self) -> Iterator[bytes | str]:
        """Complete data messages parsed so far (text frames come back as ``str``).

        Pings are answered at once, or (the latest one) once the backlog drains; a CLOSE from
        the peer is answered and recorded in ``peer_close``, and ends the messages. Raises
        FrameError (with its close code) on a framing violation."""
        while (message := self.next_message()) is not None:
            yield message

    def next_message(self) -> bytes | str | None:
        """The next complete data message, as :meth:`messages` yields them, or None (nothing
        complete yet, or the peer's CLOSE has come). No generator: the tick's read path."""
        if self.peer_close is not None:
            return None
        reader = self.reader
        while True:
            item = reader.next()
            if item is None:
                return None
            opcode, payload = item
            if opcode < 0x8:
                if opcode == 0x1:
                    return payload.decode("utf-8", "replace")
                return payload
            if opcode == OP_PING:
                if self.close_sent:
                    pass  # no pong after our close frame
                elif self.out_backlog:
                    self.pong_due = payload  # the latest ping wins; see pong_due
                else:
                    self.write(frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                self.last_pong_payload = payload
            elif opcode == OP_CLOSE:
                code, reason = parse_close(payload)
                self.peer_close = (code, reason)
                if not self.close_sent:
                    self.send_close(1000 if code == 1005 else code)
                return None

    async def wait_readable(self) -> None:
        try:
            await trio.lowlevel.wait_readable(self._sock)
        except trio.ClosedResourceError:
            raise TransportClosed from None

    # ------------------------------------------------------------ closing
    def send_close(self, code: int, reason: str = "") -> None:
        if self.close_sent or self.closed:
            return
        self.close_sent = True
        self.write(frame(OP_CLOSE, close_payload(code, reason)))

    def _broken(self) -> None:
        self.closed = True

    def close(self) -> None:
        """Close the socket now (trio is told, so any task waiting on it wakes up)."""
        close_socket(self._sock)
        self.closed = True
