"""The WebSocket opening handshake on a stream of our own, and the connection it hands over.

trio-websocket does the opening handshake: it parses the HTTP upgrade request (with wsproto and
h11), negotiates the subprotocol, and writes the 101 response (or the refusal). Its
per-connection reader task and message queue, and its awaited ``send_message``, cost 60-80 µs
per message over TLS, which would cap a server near 200 players. So after the handshake the
server takes the connection over, using only trio-websocket's public API and classes of ours:

1. :class:`HandshakeStream` is the ``trio.abc.Stream`` that trio-websocket's handshake runs
   over. It is ours: TLS is an ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` s on the accepted
   socket, which we own (``trio.socket.SocketType.detach``). It hands trio-websocket the
   request head and nothing after it: bytes that came in the same read (a JOIN sent together
   with the upgrade request) stay in our buffer, and once the head is out its
   ``receive_some`` just waits, so trio-websocket's reader (started by the public
   ``wrap_server_stream`` in a nursery we own) is idle there when we cancel it.
2. :func:`receive_request` runs the TLS handshake and ``wrap_server_stream`` under one
   deadline; a handshake that fails (TLS garbage, a request wsproto refuses with its own 400)
   closes our stream or sees its end, which ends the wait at once.
3. :meth:`HandshakeStream.accept` lets trio-websocket write the 101 (``WebSocketRequest.accept``)
   and builds a :class:`FastConnection` from our own stream's state: the socket, the TLS
   object and its BIOs, and the bytes read after the head.

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

import re
import socket
import ssl
from collections.abc import Iterator

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketRequest

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

READ_CHUNK = 65536
#: the request head is kept (for :mod:`gameserver.handshake`) up to this many bytes; h11 refuses
#: longer heads itself (its limit is 16 KiB)
MAX_HEAD_BYTES = 16 * 1024
# the end of an HTTP head as h11 finds it (it accepts bare LF line ends)
_HEAD_END = re.compile(rb"\n\r?\n")


class TransportClosed(Exception):
    """The TCP connection is gone (EOF, reset, or a TLS failure)."""


def _close_socket(sock: socket.socket) -> None:
    """Close a socket we own; trio is told first, so any task waiting on it wakes up."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close a stream now (no TLS close_notify wait), e.g. after a refused handshake."""
    with trio.move_on_after(0.5) as scope:
        scope.shield = True
        try:
            await trio.aclose_forcefully(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class HandshakeStream(trio.abc.Stream):
    """The stream trio-websocket's opening handshake runs over (see the module docstring).

    It owns the socket: closing it, or the :class:`FastConnection` made from it, closes the
    connection. Until the head of the request has been handed out, ``receive_some`` reads and
    decrypts; after it, ``receive_some`` waits until cancelled and reads nothing more."""

    def __init__(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl: ssl.SSLObject | None = None
        if ssl_context is not None:
            self._ssl = ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._unsent = bytearray()  # encrypted bytes the kernel has not taken yet
        self._plain = bytearray()  # decrypted bytes not handed to trio-websocket
        self._head = bytearray()  # the request head as handed out (at most MAX_HEAD_BYTES)
        self._tail = b""  # the last two bytes handed out: a head's end may span two reads
        self.head_complete = False
        #: tasks waiting in ``receive_some`` after the head (trio-websocket's reader, until it
        #: is cancelled; the start-up check makes sure it is)
        self.parked = 0
        #: set on EOF, a broken transport or a close: no request will come any more
        self.ended = trio.Event()
        self.closed = False
        self._taken = False

    @classmethod
    def over(cls, stream: trio.SocketStream, ssl_context: ssl.SSLContext | None) -> HandshakeStream:
        """Take the socket of an accepted ``trio.SocketStream`` (which is left closed)."""
        return cls(socket.socket(fileno=stream.socket.detach()), ssl_context)

    @property
    def head(self) -> bytes:
        """The request head handed to trio-websocket, up to its blank line."""
        return bytes(self._head)

    # ------------------------------------------------------------ TLS
    async def tls_handshake(self) -> None:
        """Raises trio.BrokenResourceError if the peer does not complete a TLS handshake."""
        sslobj = self._ssl
        if sslobj is None:
            return
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._unsent += self._outgoing.read()
                await self._flush()
                raw = await self._recv_raw()
                if not raw:
                    raise trio.BrokenResourceError("EOF during the TLS handshake") from None
                self._incoming.write(raw)
            except ssl.SSLError as exc:
                self._unsent += self._outgoing.read()  # a TLS alert, if any: sent if it fits
                self._send_now()
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from None
        self._unsent += self._outgoing.read()  # e.g. TLS 1.3 session tickets
        self._send_now()

    # ------------------------------------------------------------ raw I/O
    def _send_now(self) -> None:
        """Send what the kernel takes now, without awaiting (errors are left for later)."""
        try:
            sent = self.sock.send(self._unsent) if self._unsent else 0
        except OSError:
            return
        del self._unsent[:sent]

    async def _flush(self) -> None:
        while self._unsent:
            try:
                sent = self.sock.send(self._unsent)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            del self._unsent[:sent]

    async def _recv_raw(self) -> bytes:
        while True:
            try:
                return self.sock.recv(READ_CHUNK)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from None

    async def _receive_plain(self) -> bytes:
        """Some decrypted bytes; b"" at EOF. Raises trio.BrokenResourceError."""
        sslobj = self._ssl
        while True:
            if sslobj is not None:
                try:
                    return sslobj.read(READ_CHUNK)
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""  # EOF, with or without close_notify (as https_compatible)
                except ssl.SSLError as exc:
                    raise trio.BrokenResourceError(str(exc)) from None
                self._unsent += self._outgoing.read()
                self._send_now()
            raw = await self._recv_raw()
            if sslobj is None:
                return raw
            if raw:
                self._incoming.write(raw)
            else:
                self._incoming.write_eof()

    def _decrypt_buffered(self) -> None:
        """Move what the TLS layer has buffered into ``_plain`` (at the takeover)."""
        sslobj = self._ssl
        if sslobj is None:
            return
        while True:
            try:
                data = sslobj.read(READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return
            except ssl.SSLError:
                return  # FastConnection meets the same error on its first read
            if not data:
                return
            self._plain += data

    # ------------------------------------------------------------ trio.abc.Stream
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.closed or self._taken:
            raise trio.ClosedResourceError
        if self.head_complete:
            # what follows the head belongs to the FastConnection: trio-websocket's reader
            # waits here until receive_request cancels it
            self.parked += 1
            try:
                await trio.sleep_forever()
            finally:
                self.parked -= 1
        if not self._plain:
            data = await self._receive_plain()
            if not data:
                self.ended.set()
                return b""
            self._plain += data
        n = len(self._plain) if max_bytes is None else min(max_bytes, len(self._plain))
        tail = self._tail
        end = _HEAD_END.search(tail + self._plain[:n])
        if end is not None:
            n = end.end() - len(tail)
            self.head_complete = True
        out = bytes(self._plain[:n])
        del self._plain[:n]
        self._tail = (tail + out)[-2:]
        room = MAX_HEAD_BYTES - len(self._head)
        if room > 0:
            self._head += out[:room]
        return out

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed or self._taken:
            raise trio.ClosedResourceError
        if self._ssl is None:
            self._unsent += data
        else:
            try:
                self._ssl.write(data)
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            self._unsent += self._outgoing.read()
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.sock)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the connection now (unless a FastConnection has taken it over)."""
        if not self._taken:
            _close_socket(self.sock)
        self.closed = True
        self.ended.set()

    # ------------------------------------------------------------ the takeover
    def take_over(self, max_message_size: int) -> FastConnection:
        """The FastConnection that carries on from here; this stream is done with.

        Bytes that arrived after the request head (a JOIN sent with the upgrade request) wait
        in its frame reader, and count towards its ``bytes_in``."""
        if self.closed or self._taken:
            raise TransportClosed
        self._decrypt_buffered()
        self._taken = True
        conn = FastConnection(
            self.sock,
            self._ssl,
            self._incoming,
            self._outgoing,
            pending=bytes(self._unsent),
            max_message_size=max_message_size,
        )
        if self._plain:
            conn.bytes_in = len(self._plain)
            conn.reader.feed(bytes(self._plain))
        self._plain.clear()
        self._unsent.clear()
        return conn


class UpgradeRequest:
    """A WebSocket upgrade request that trio-websocket has parsed, not yet answered."""

    def __init__(self, stream: HandshakeStream, request: WebSocketRequest) -> None:
        self.stream = stream
        self.request = request

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
    def proposed_subprotocols(self) -> tuple[str, ...]:
        return tuple(self.request.proposed_subprotocols)

    async def accept(self, subprotocol: str, max_message_size: int) -> FastConnection:
        """Write the 101 response and take the connection over. Raises TransportClosed."""
        try:
            await self.request.accept(subprotocol=subprotocol)
        except ConnectionClosed:
            self.stream.close()
            raise TransportClosed from None
        except BaseException:
            self.stream.close()
            raise
        return self.stream.take_over(max_message_size)

    async def reject(self, status: int, body: str, timeout: float) -> None:
        """Answer with an HTTP error and a short text body, then close the connection."""
        try:
            with trio.move_on_after(timeout):
                await self.request.reject(
                    status,
                    extra_headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
                    body=body.encode(),
                )
        except ConnectionClosed:
            pass
        finally:
            self.stream.close()

    def close(self) -> None:
        self.stream.close()


async def receive_request(
    stream: trio.abc.Stream,
    ssl_context: ssl.SSLContext | None,
    *,
    max_message_size: int,
    deadline: float,
) -> UpgradeRequest | None:
    """TLS (if ``ssl_context``), then the upgrade request, read by trio-websocket.

    ``stream`` is an accepted ``trio.SocketStream``; its socket is taken over. trio-websocket's
    reader runs in a nursery we own and is cancelled once the request is in (it then waits in
    our ``receive_some``). A handshake that fails (TLS garbage, non-HTTP bytes: the reader gives
    up or answers 400 itself) ends at once instead of at the deadline. Returns None, with the
    connection closed, if no request arrived by ``deadline``."""
    if not isinstance(stream, trio.SocketStream):
        raise TypeError(f"receive_request needs a trio.SocketStream, not {type(stream)!r}")
    hs = HandshakeStream.over(stream, ssl_context)
    request: WebSocketRequest | None = None
    try:
        with trio.move_on_at(deadline):
            try:
                await hs.tls_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                hs.close()
                return None
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
    return UpgradeRequest(hs, request)


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
        self._backlog = bytearray()  # encrypted bytes the kernel has not taken yet
        self.reader = FrameReader(max_message_size=max_message_size, require_mask=True)
        self.closed = False  # the transport is gone or closed by us
        self.eof = False  # the peer closed its side
        self.close_sent = False
        self.peer_close: tuple[int, str] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_pong_payload: bytes | None = None
        #: the payload of the latest ping not answered yet because the backlog was not empty:
        #: answered by ``flush`` as soon as the backlog drains (older ones are skipped, as RFC
        #: 6455 section 5.5.3 allows), so a peer that pings but never reads costs one pong
        self.pong_due: bytes | None = None
        if pending:
            self._send_raw(pending)

    # ------------------------------------------------------------ properties
    @property
    def backlog(self) -> int:
        """Bytes waiting for the kernel's send buffer to drain (0 when the path is clear)."""
        return len(self._backlog)

    def fileno(self) -> int:
        return self._sock.fileno()

    # ------------------------------------------------------------ writing
    def write(self, frame_bytes: bytes) -> None:
        """Send one already-framed message without awaiting. Anything the kernel does not take
        now waits in the backlog for :meth:`flush`. Raises TransportClosed."""
        if self.closed:
            raise TransportClosed
        if self._ssl is not None:
            try:
                self._ssl.write(frame_bytes)
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
        if self._backlog:
            self._backlog += data
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._broken()
            raise TransportClosed from exc
        if sent < len(data):
            self._backlog += data[sent:]

    async def flush(self) -> None:
        """Await until the backlog is in the kernel, then answer a ping that waited for it.
        Raises TransportClosed."""
        while True:
            while self._backlog:
                if self.closed:
                    raise TransportClosed
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except trio.ClosedResourceError:
                    raise TransportClosed from None
                try:
                    sent = self._sock.send(self._backlog)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._broken()
                    raise TransportClosed from exc
                del self._backlog[:sent]
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
            data = self._sock.recv(budget)
        except BlockingIOError:
            return
        except OSError as exc:
            self._broken()
            raise TransportClosed from exc
        if not data:
            self.eof = True
        self.bytes_in += len(data)
        if self._ssl is None:
            self.reader.feed(data)
            return
        assert self._incoming is not None and self._outgoing is not None
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        while True:
            try:
                plain = self._ssl.read(READ_CHUNK)
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
            self.reader.feed(plain)
            if not self._incoming.pending and not self._ssl.pending():
                break  # all decrypted: skip the read that would only raise SSLWantReadError
        extra = self._outgoing.read()  # e.g. a TLS 1.3 KeyUpdate answer
        if extra:
            self._send_raw(extra)

    def messages(self) -> Iterator[bytes | str]:
        """Complete data messages parsed so far (text frames come back as ``str``).

        Pings are answered at once, or (the latest one) once the backlog drains; a CLOSE from
        the peer is answered and recorded in ``peer_close``. Raises FrameError (with its close
        code) on a framing violation."""
        reader = self.reader
        while True:
            item = reader.next()
            if item is None:
                return
            opcode, payload = item
            if opcode < 0x8:
                if opcode == 0x1:
                    yield payload.decode("utf-8", "replace")
                else:
                    yield payload
            elif opcode == OP_PING:
                if self.close_sent:
                    pass  # no pong after our close frame
                elif self._backlog:
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
                return

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
        _close_socket(self._sock)
        self.closed = True
