"""Everything that reaches below trio-websocket's (and trio's) public API lives here.

trio-websocket does the opening handshake: it parses the HTTP upgrade request, negotiates the
subprotocol, and writes the 101 response (or the refusal). After that the server takes the
connection over, because trio-websocket's per-connection reader task and message queue, and
its awaited ``send_message``, cost several times more CPU per message than the synchronous
path below, and an awaited send per player would let one stalled player hold up its room's
tick.
``docs/transport.md`` gives the reasons, the measured costs (``tools/bench_transport.py``)
and the private names relied on; change it together with this module.

1. :func:`receive_request`: the reader task runs in a nursery we own; we cancel it *before*
   accepting, when it is idle in ``receive_some`` (a client sends nothing until it sees the
   101), then ``accept()`` writes the 101.
2. :class:`FastConnection` keeps the TLS state (trio's ``SSLObject`` and its memory BIOs) and the
   raw non-blocking socket, and does synchronous I/O: ``write()`` frames, encrypts and calls
   ``send()`` without awaiting; ``read_available()`` calls ``recv()`` without awaiting. Only a
   full kernel send buffer makes the writer await (``flush()``), and only a connection that is
   not yet in a room awaits readability. A room reads every player's socket once per tick.

Private attributes used: ``WebSocketConnection._reader_task/_get_request/_stream/
_max_message_size`` (trio-websocket), ``SSLStream._ssl_object/_incoming/_outgoing/
_delayed_outgoing`` and ``trio.socket.SocketType._sock`` (trio). ``tests/test_tws.py`` pins
this behaviour; it was last checked with trio 0.35.0, trio-websocket 0.12.2 and wsproto 1.3.2.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection

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


class TransportClosed(Exception):
    """The TCP connection is gone (EOF, reset, or a TLS failure)."""


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close a stream now (no TLS close_notify wait), e.g. after a refused handshake."""
    with trio.move_on_after(0.5) as scope:
        scope.shield = True
        try:
            await trio.aclose_forcefully(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def receive_request(
    stream: trio.abc.Stream, *, max_message_size: int, deadline: float
) -> WebSocketRequest | None:
    """Let trio-websocket read the upgrade request, then stop its reader task.

    This is ``wrap_server_stream`` with the reader in a nursery we own, so that (1) the reader
    is cancelled while idle in ``receive_some`` (a client sends nothing until it sees the 101),
    leaving the stream to :class:`FastConnection`, and (2) a handshake that fails (TLS garbage,
    non-HTTP bytes: the reader gives up or answers 400 itself) ends at once instead of waiting
    for the deadline. Returns None if no request arrived by ``deadline``.
    """
    connection = WebSocketConnection(
        stream,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=1,
        max_message_size=max_message_size,
    )
    request: WebSocketRequest | None = None
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            await connection._reader_task()
            nursery.cancel_scope.cancel()  # the reader ended before a request arrived

        nursery.start_soon(read)
        with trio.move_on_at(deadline):
            request = await connection._get_request()
        nursery.cancel_scope.cancel()
    return request


class FastConnection:
    """A server-side WebSocket connection with synchronous, non-awaiting send and receive."""

    def __init__(
        self,
        tsock: trio.socket.SocketType,
        ssl_object: ssl.SSLObject | None,
        incoming: ssl.MemoryBIO | None,
        outgoing: ssl.MemoryBIO | None,
        pending: bytes = b"",
        max_message_size: int = 4096,
    ) -> None:
        self._tsock = tsock
        self._sock: socket.socket = tsock._sock  # type: ignore[attr-defined]
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._backlog = bytearray(pending)  # encrypted bytes the kernel has not taken yet
        self.reader = FrameReader(max_message_size=max_message_size, require_mask=True)
        self.closed = False  # the transport is gone or closed by us
        self.eof = False  # the peer closed its side
        self.close_sent = False
        self.peer_close: tuple[int, str] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_pong_payload: bytes | None = None

    @classmethod
    def take_over(cls, ws: WebSocketConnection) -> FastConnection:
        stream = ws._stream
        pending = b""
        ssl_object: ssl.SSLObject | None = None
        incoming: ssl.MemoryBIO | None = None
        outgoing: ssl.MemoryBIO | None = None
        if isinstance(stream, trio.SSLStream):
            ssl_object = stream._ssl_object
            incoming = stream._incoming
            outgoing = stream._outgoing
            if stream._delayed_outgoing is not None:  # TLS 1.3 tickets held back by trio
                pending = stream._delayed_outgoing
                stream._delayed_outgoing = None
            pending += outgoing.read()
            transport = stream.transport_stream
            assert isinstance(transport, trio.SocketStream)
            tsock = transport.socket
        else:
            assert isinstance(stream, trio.SocketStream)
            tsock = stream.socket
        conn = cls(tsock, ssl_object, incoming, outgoing, b"", ws._max_message_size)
        if pending:
            conn._send_raw(pending)
        return conn

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
        """Await until the backlog is in the kernel. Raises TransportClosed."""
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

        Pings are answered at once; a CLOSE from the peer is answered and recorded in
        ``peer_close``. Raises FrameError (with its close code) on a framing violation."""
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
                # answer only when nothing waits for the kernel: a peer that sends pings but
                # never reads cannot grow our backlog (RFC 6455 lets us skip pongs)
                if not self.close_sent and not self._backlog:
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
        if not self._tsock.fileno() == -1:
            self._tsock.close()
        self.closed = True
