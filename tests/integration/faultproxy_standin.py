"""A stand-in for tools/faultproxy.py (issue 10's fault proxy) with the part of its API the SDK's
resume tests use -- ``open_fault_proxy(host, port)``, ``proxy.port``, ``cut()``,
``down(seconds)``, ``up()``, ``stall()``, ``resume()`` -- used only until the real proxy is on main."""

from __future__ import annotations

import functools
import math
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class StandInProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._down_until = -math.inf
        self._scopes: set[trio.CancelScope] = set()
        self.stalled = False

    def cut(self) -> int:
        """Reset every open connection (RST both ways, no close frame)."""
        scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    def down(self, seconds: float | None = None) -> None:
        """Refuse (reset at once) new connections for ``seconds`` or until up()."""
        self._down_until = math.inf if seconds is None else trio.current_time() + seconds

    def stall(self) -> None:
        """Stop forwarding (bytes are held, sockets stay open), on every connection."""
        self.stalled = True

    def resume(self) -> None:
        self.stalled = False

    def up(self) -> None:
        self._down_until = -math.inf

    @property
    def is_down(self) -> bool:
        return trio.current_time() < self._down_until

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        if self.is_down:
            _reset(client)
            return
        try:
            target = await trio.open_tcp_stream(self.target_host, self.target_port)
        except OSError:
            _reset(client)
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, target, nursery.cancel_scope)
                    nursery.start_soon(self._pump, target, client, nursery.cancel_scope)
            finally:
                self._scopes.discard(scope)
        _reset(client)
        _reset(target)

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                while self.stalled:
                    await trio.sleep(0.01)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


def _reset(stream: trio.SocketStream) -> None:
    sock = stream.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@asynccontextmanager
async def open_fault_proxy(target_host: str, target_port: int) -> AsyncIterator[StandInProxy]:
    proxy = StandInProxy(target_host, target_port)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
