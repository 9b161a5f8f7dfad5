"""A gamesync client by hand for the cluster tests: the shared codec over a raw TLS stream,
dialling any URL, and following a REDIRECT by hand (the SDKs learn to do it themselves).
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any

import trio

from shared.messages import (
    Close,
    Delta,
    Error,
    Join,
    Joined,
    Redirect,
    Resume,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL_V1, SUBPROTOCOL_V2, CloseCode
from shared.replica import Replica
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    FrameReader,
    check_response,
    client_request,
    frame,
    new_key,
    parse_close,
)

MB = 1024 * 1024
BOTH = (SUBPROTOCOL_V2, SUBPROTOCOL_V1)


class Closed(Exception):
    """The server closed the WebSocket (``code``), after telling us ``told``."""

    def __init__(self, code: int | None, told: list[Any]) -> None:
        super().__init__(code, told)
        self.code = code
        self.told = told


class RawClient:
    def __init__(self, stream: trio.abc.Stream, subprotocol: str, url: str) -> None:
        self.stream = stream
        self.url = url
        self.version = 2 if subprotocol == SUBPROTOCOL_V2 else 1
        self.reader = FrameReader(max_message_size=MB, require_mask=False)
        self.joined: Joined | None = None
        self.replica: Replica | None = None
        self.told: list[Any] = []  # ERROR, CLOSE and REDIRECT messages
        self.deltas = 0

    @classmethod
    async def open(
        cls, url: str, ctx: ssl.SSLContext | None, subprotocols: Sequence[str] = BOTH
    ) -> RawClient:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
        assert host is not None and port is not None, url
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if parts.scheme == "wss":
            assert ctx is not None
            tls = trio.SSLStream(stream, ctx, server_hostname=host, https_compatible=True)
            await tls.do_handshake()
            stream = tls
        key = new_key()
        await stream.send_all(client_request(host, "/", key, list(subprotocols)))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(4096)
            assert chunk, buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        selected = check_response(head, key, list(subprotocols))
        assert selected is not None
        client = cls(stream, selected, url)
        client.reader.feed(rest)
        return client

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(frame(OP_BINARY, payload, mask=os.urandom(4)))

    async def recv(self) -> Any:
        while True:
            while (item := self.reader.next()) is None:
                try:
                    chunk = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise Closed(None, self.told) from None
                if not chunk:
                    raise Closed(None, self.told)
                self.reader.feed(bytes(chunk))
            opcode, payload = item
            if opcode == OP_CLOSE:
                raise Closed(parse_close(payload)[0], self.told)
            if opcode != OP_BINARY:
                continue
            schema = self.joined.schema if self.joined is not None else None
            type_of = self.replica.type_of if self.replica is not None else None
            msg = parse_server_message(payload, schema, type_of, version=self.version)
            if isinstance(msg, Joined):
                if self.joined is None or not msg.resumed:
                    self.replica = Replica(msg.schema)
                self.joined = msg
            elif isinstance(msg, Snapshot):
                assert self.replica is not None
                self.replica.apply_snapshot(msg)
            elif isinstance(msg, Delta):
                assert self.replica is not None
                self.replica.apply_delta(msg)  # DesyncError on a gap: a missed tick
                self.deltas += 1
            elif isinstance(msg, Error | Close | Redirect):
                self.told.append(msg)
            return msg

    async def until_closed(self) -> tuple[list[Any], int | None]:
        try:
            while True:
                await self.recv()
        except Closed as closed:
            return closed.told, closed.code

    @property
    def tick(self) -> int:
        return -1 if self.replica is None else self.replica.tick

    async def wait_tick(self, tick: int) -> None:
        while self.tick < tick:
            await self.recv()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def first_answer(client: RawClient, message: Join | Resume) -> Any:
    """Send JOIN or RESUME; the first answer (JOINED, or what the server said before its
    close frame: raises Closed)."""
    await client.send(message.to_bytes())
    msg = await client.recv()
    if isinstance(msg, Joined):
        return msg
    told, code = await client.until_closed()
    raise Closed(code, told)


async def join_following(
    url: str,
    ctx: ssl.SSLContext | None,
    message: Join | Resume,
    subprotocols: Sequence[str] = BOTH,
    max_hops: int = 3,
) -> tuple[RawClient, list[str]]:
    """Join at ``url``, following REDIRECTs (at most ``max_hops``) as the protocol says: the
    same subprotocols, the same message, at the URL named. Returns the joined client and the
    URLs dialled, in order."""
    dialled = [url]
    for _ in range(max_hops + 1):
        client = await RawClient.open(url, ctx, subprotocols)
        try:
            await first_answer(client, message)
            return client, dialled
        except Closed as closed:
            await client.aclose()
            redirect = [m for m in closed.told if isinstance(m, Redirect)]
            if closed.code != CloseCode.REDIRECT or not redirect:
                raise
            url = redirect[0].url
            dialled.append(url)
    raise AssertionError(f"more than {max_hops} redirects: {dialled}")


def error_of(closed: Closed) -> Error:
    errors = [m for m in closed.told if isinstance(m, Error)]
    assert errors, closed.told
    return errors[0]
