"""The stream the opening handshake runs over: TLS on a socket we own, the request head read ahead.

:class:`HandshakeStream` is the ``trio.abc.Stream`` that trio-websocket's handshake runs over
(see :mod:`gameserver._tws`). TLS is an ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` s on the
accepted socket, which we own (``trio.socket.SocketType.detach``). It reads the request head
ahead (:meth:`HandshakeStream.read_head`), so that the server can see whether it is a
WebSocket upgrade at all before trio-websocket does: a plain HTTP request (the web demo's
files, ``gameserver.web``) is answered from here and never reaches trio-websocket. It hands
trio-websocket the request head and nothing after it: bytes that came in the same read (a JOIN
sent together with the upgrade request) stay in our buffer, and once the head is out its
``receive_some`` just waits, so trio-websocket's reader is idle there when it is cancelled.
:meth:`HandshakeStream.release` gives the socket, the TLS state and the buffered bytes to the
connection that takes over (``gameserver._tws.FastConnection``).
"""

from __future__ import annotations

import re
import socket
import ssl

import attrs
import trio

READ_CHUNK = 65536
#: the request head is kept (for :mod:`gameserver.handshake`) up to this many bytes; h11 refuses
#: longer heads itself (its limit is 16 KiB)
MAX_HEAD_BYTES = 16 * 1024
#: bytes read and dropped, at most, after a plain HTTP response (see ``finish``)
LINGER_BYTES = 64 * 1024
# the end of an HTTP head as h11 finds it (it accepts bare LF line ends)
_HEAD_END = re.compile(rb"\n\r?\n")


class TransportClosed(Exception):
    """The TCP connection is gone (EOF, reset, or a TLS failure)."""


def close_socket(sock: socket.socket) -> None:
    """Close a socket we own; trio is told first, so any task waiting on it wakes up."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()


@attrs.frozen
class Released:
    """What a :class:`HandshakeStream` hands to the connection that takes over."""

    sock: socket.socket
    ssl_object: ssl.SSLObject | None
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    #: encrypted bytes the kernel has not taken yet
    unsent: bytes
    #: decrypted bytes read after the request head
    plain: bytes


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
        #: the peer closed before its request head was complete (``read_head``)
        self.eof_seen = False
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

    # ------------------------------------------------------------ the request head, read ahead
    async def read_head(self) -> bytes | None:
        """Read until the request head is complete, and keep it buffered (``receive_some``
        still hands it out). The head; or None if the peer closed first (``eof_seen``) or
        the head is longer than MAX_HEAD_BYTES (trio-websocket refuses that itself)."""
        while True:
            end = _HEAD_END.search(self._plain)
            if end is not None:
                return bytes(self._plain[: end.end()]) if end.end() <= MAX_HEAD_BYTES else None
            if len(self._plain) > MAX_HEAD_BYTES:
                return None
            data = await self._receive_plain()
            if not data:
                self.eof_seen = True
                return None
            self._plain += data

    def consume(self, n: int) -> bytes:
        """Take ``n`` buffered bytes (a plain request's head) without handing them out."""
        out = bytes(self._plain[:n])
        del self._plain[:n]
        return out

    async def read_exactly(self, n: int) -> bytes | None:
        """The next ``n`` bytes (a request body), or None if the peer closes first."""
        while len(self._plain) < n:
            data = await self._receive_plain()
            if not data:
                return None
            self._plain += data
        return self.consume(n)

    async def finish(self, linger: float) -> None:
        """After a response: TLS close_notify, a TCP half-close, then read and drop what the
        peer still sends for up to ``linger`` seconds (closing with unread bytes would make
        the kernel send a reset, which can destroy the response before it is read); close."""
        try:
            if self._ssl is not None:
                try:
                    self._ssl.unwrap()
                except ssl.SSLError:
                    pass  # the peer's close_notify is not in yet: ours is written anyway
                self._unsent += self._outgoing.read()
            with trio.move_on_after(linger):
                await self._flush()
                self.sock.shutdown(socket.SHUT_WR)
                dropped = 0
                while dropped < LINGER_BYTES:
                    raw = await self._recv_raw()
                    if not raw:
                        break
                    dropped += len(raw)
        except (OSError, trio.BrokenResourceError):
            pass
        finally:
            self.close()

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
        view = memoryview(data)
        for start in range(0, len(view), READ_CHUNK):  # at most a chunk in memory twice
            chunk = view[start : start + READ_CHUNK]
            if self._ssl is None:
                self._unsent += chunk
            else:
                try:
                    self._ssl.write(chunk)
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
            close_socket(self.sock)
        self.closed = True
        self.ended.set()

    # ------------------------------------------------------------ the takeover
    def release(self) -> Released:
        """Hand the connection's state to whatever carries on (a ``FastConnection``); this
        stream is done with. Bytes that arrived after the request head come with it."""
        if self.closed or self._taken:
            raise TransportClosed
        self._decrypt_buffered()
        self._taken = True
        released = Released(
            self.sock,
            self._ssl,
            self._incoming,
            self._outgoing,
            bytes(self._unsent),
            bytes(self._plain),
        )
        self._plain.clear()
        self._unsent.clear()
        return released
