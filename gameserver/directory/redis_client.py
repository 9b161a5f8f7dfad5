"""A small Redis client on trio streams (RESP2), for the directory.

Every call has one deadline (``timeout``) that covers waiting for a connection, dialling,
authenticating, sending and reading the reply; past it, or on any connection error, the call
raises :class:`DirectoryUnavailable` and the connection is dropped (never reused with a reply
in flight, so a late reply cannot answer the next call). The next call dials again: recovery
needs nothing but Redis coming back. Scripts run by EVALSHA, falling back to EVAL when the
server does not have them (a restarted Redis forgets its script cache).
"""

from __future__ import annotations

import hashlib
import select
import ssl
import urllib.parse
from collections.abc import Sequence

import attrs
import trio

from gameserver.directory.resp import (
    Reply,
    RespError,
    RespParser,
    RespProtocolError,
    encode_command,
)
from gameserver.directory.types import DirectoryUnavailable


class RedisReplyError(Exception):
    """Redis answered with an error reply to a command we built: our bug (or a wrong server),
    not a transient failure."""

    def __init__(self, error: RespError) -> None:
        super().__init__(error.message)
        self.error = error


@attrs.frozen
class RedisAddress:
    """Where Redis is: parsed from ``redis://[user:password@]host[:port][/db]`` (``rediss://``
    for TLS)."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database in {url!r} must be a number")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=int(path or 0),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:  # never shows the password
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


class Script:
    """A Lua script, run by its SHA1 (loaded on first use, and again after a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Connection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = RespParser()

    def stale(self) -> bool:
        """An idle connection with bytes (or EOF) waiting: the server closed it (a restart)
        or sent something unasked. Checked before reuse, so that a request is never sent on
        a connection already known dead (and never retried: it might have run)."""
        inner = self.stream
        if isinstance(inner, trio.SSLStream):
            inner = inner.transport_stream
        if not isinstance(inner, trio.SocketStream):
            return False
        try:
            readable, _, _ = select.select([inner.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def call(self, payload: bytes) -> Reply:
        await self.stream.send_all(payload)
        while True:
            for reply in self.parser.replies():
                return reply
            data = await self.stream.receive_some(65536)
            if not data:
                raise DirectoryUnavailable("Redis closed the connection")
            self.parser.feed(data)


class RedisClient:
    """A pool of up to ``max_connections`` connections to one Redis server.

    No background task: use it from any trio task. ``aclose()`` closes idle connections."""

    def __init__(
        self,
        address: RedisAddress,
        timeout: float = 1.0,
        max_connections: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(max_connections)
        self._ssl = ssl_context
        self._closed = False

    async def _dial(self) -> _Connection:
        a = self.address
        stream: trio.abc.Stream = await trio.open_tcp_stream(a.host, a.port)
        if a.tls:
            ctx = self._ssl or ssl.create_default_context()
            tls = trio.SSLStream(stream, ctx, server_hostname=a.host)
            await tls.do_handshake()
            stream = tls
        conn = _Connection(stream)
        if a.password is not None:
            args = ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
            _check(await conn.call(encode_command(*args)))
        if a.db:
            _check(await conn.call(encode_command("SELECT", a.db)))
        return conn

    async def execute(self, *args: bytes | str | int | float) -> Reply:
        """One command; its reply (an error reply raises RedisReplyError)."""
        return _check(await self._roundtrip(encode_command(*args)))

    async def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[bytes | str | int | float]
    ) -> Reply:
        reply = await self._roundtrip(
            encode_command("EVALSHA", script.sha, len(keys), *keys, *args)
        )
        if isinstance(reply, RespError) and reply.kind == "NOSCRIPT":
            reply = await self._roundtrip(
                encode_command("EVAL", script.source, len(keys), *keys, *args)
            )
        return _check(reply)

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale():
                return conn
            await _discard(conn)
        return await self._dial()

    async def _roundtrip(self, payload: bytes) -> Reply:
        if self._closed:
            raise DirectoryUnavailable("the directory is closed")
        conn: _Connection | None = None
        try:
            with trio.fail_after(self.timeout):
                async with self._slots:
                    conn = await self._acquire()
                    reply = await conn.call(payload)
        except trio.TooSlowError:
            await _discard(conn)
            raise DirectoryUnavailable(
                f"Redis at {self.address} did not answer within {self.timeout:g} s"
            ) from None
        except (
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            RespProtocolError,
        ) as exc:
            await _discard(conn)
            raise DirectoryUnavailable(f"Redis at {self.address}: {exc}") from None
        except DirectoryUnavailable:
            await _discard(conn)
            raise
        except BaseException:  # cancelled mid-call: a reply may still be in flight
            await _discard(conn)
            raise
        if isinstance(reply, RespError) and reply.kind in ("LOADING", "BUSY", "MASTERDOWN"):
            self._idle.append(conn)
            raise DirectoryUnavailable(f"Redis at {self.address}: {reply.message}")
        self._idle.append(conn)
        return reply

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)


async def _discard(conn: _Connection | None) -> None:
    if conn is not None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(conn.stream)


def _check(reply: Reply) -> Reply:
    if isinstance(reply, RespError):
        raise RedisReplyError(reply)
    return reply
