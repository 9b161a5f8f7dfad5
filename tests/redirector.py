"""A test-only cluster node that hosts nothing: it answers every JOIN or RESUME with REDIRECT
to ``target`` (gamesync.v2; ERROR 4015 on v1) and closes with 4015, as a real node does for a
room that lives elsewhere. Real sockets on 127.0.0.1 port 0 (WSS with the given context)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
import trio_websocket

from shared.errors import RemoteProtocolError
from shared.messages import Error, Join, Redirect, Resume, parse_client_message
from shared.protocol import SUPPORTED_SUBPROTOCOLS, CloseCode, version_of_subprotocol

Target = str | Callable[[Join | Resume], str]


@attrs.define(eq=False)
class Redirector:
    url: str
    port: int
    #: where every join goes (a URL, or a function of the JOIN or RESUME)
    target: Target
    #: the first message of every connection, in order
    received: list[Join | Resume] = attrs.Factory(list)
    versions: list[int] = attrs.Factory(list)
    #: refuse this many joins first with 4016 DIRECTORY_UNAVAILABLE (ERROR, then close)
    unavailable: int = 0

    def url_for(self, first: Join | Resume) -> str:
        return self.target if isinstance(self.target, str) else self.target(first)


async def _serve(node: Redirector, stream: trio.abc.Stream) -> None:
    async with trio.open_nursery() as nursery:
        with trio.move_on_after(10):
            try:
                request = await trio_websocket.wrap_server_stream(nursery, stream)
                offered = request.proposed_subprotocols
                chosen = next((p for p in SUPPORTED_SUBPROTOCOLS if p in offered), None)
                if chosen is None:
                    await request.reject(400, body=b"no gamesync subprotocol")
                    return
                ws = await request.accept(subprotocol=chosen)
                version = version_of_subprotocol(chosen) or 1
                node.versions.append(version)
                data = await ws.get_message()
                assert isinstance(data, bytes)
                first = parse_client_message(data, version=version)
                assert isinstance(first, Join | Resume)
                node.received.append(first)
                if node.unavailable > 0:
                    node.unavailable -= 1
                    code = CloseCode.DIRECTORY_UNAVAILABLE
                    await ws.send_message(Error(code, "directory unavailable").to_bytes())
                    await ws.aclose(code, "directory unavailable")
                    return
                url = node.url_for(first)
                if version >= 2:
                    await ws.send_message(Redirect(url, first.room).to_bytes())
                else:
                    text = f"room {first.room!r} lives at {url}"
                    await ws.send_message(Error(CloseCode.REDIRECT, text).to_bytes())
                await ws.aclose(CloseCode.REDIRECT, "redirect")
            except (
                trio_websocket.ConnectionClosed,
                trio_websocket.HandshakeError,
                trio.BrokenResourceError,
                RemoteProtocolError,
            ):
                pass
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_redirector(
    target: Target, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Redirector]:
    """A redirecting node for the block; ``node.target`` may be changed meanwhile."""
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for raw in await trio.open_tcp_listeners(0, host=host):
        if ssl_context is None:
            listeners.append(raw)
        else:
            listeners.append(trio.SSLListener(raw, ssl_context, https_compatible=True))
    first = listeners[0]
    raw_listener = first.transport_listener if isinstance(first, trio.SSLListener) else first
    assert isinstance(raw_listener, trio.SocketListener)
    port = raw_listener.socket.getsockname()[1]
    scheme = "wss" if ssl_context is not None else "ws"
    node = Redirector(f"{scheme}://{host}:{port}", port, target)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, functools.partial(_serve, node), listeners)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
