"""Opening one connection for the client SDK: the URL, TLS, TCP and the WebSocket handshake."""

from __future__ import annotations

import os
import ssl
import urllib.parse

import attrs
import trio
import trio_websocket

from clients.errors import ConnectError, ConnectionClosed, ConnectTimeout
from shared.protocol import SUPPORTED_SUBPROTOCOLS, CloseCode, version_of_subprotocol

#: trio-websocket's buffer of received messages; our reader task drains it continuously.
MESSAGE_QUEUE_SIZE = 64

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


@attrs.frozen
class Target:
    secure: bool
    host: str
    port: int
    resource: str  # path and query
    host_header: str


def parse_url(url: str) -> Target:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the URL must start with wss:// or ws://, not {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"the URL names no host: {url!r}")
    secure = scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == (443 if secure else 80) else f"{name}:{port}"
    return Target(secure, host, port, resource, host_header)


def make_ssl_context(
    url: str,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ssl.SSLContext | None:
    """The SSL context for ``url``: ``ssl_context`` if given, else one trusting ``ca_file``, else
    the system's defaults. None for ``ws://`` URLs (``ca_file`` is then ignored)."""
    if not parse_url(url).secure:
        if ssl_context is not None:
            raise ValueError("an ssl_context was given for a ws:// URL; use wss://")
        return None
    if ssl_context is not None:
        return ssl_context
    if ca_file is not None:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    return ssl.create_default_context()


def describe(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        body = exc.body.decode("utf-8", "replace").strip() if exc.body else ""
        return f"the server refused the WebSocket handshake (HTTP {exc.status_code}) {body}".strip()
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__  # e.g. ssl.SSLCertVerificationError
    return f"{type(exc).__name__}: {exc}"


def closed_from(exc: trio_websocket.ConnectionClosed) -> ConnectionClosed:
    reason = exc.reason
    if reason is None:
        return ConnectionClosed(CloseCode.GOING_AWAY, "connection lost")
    return ConnectionClosed(reason.code, reason.reason or reason.name)


async def _open_stream(target: Target, context: ssl.SSLContext | None) -> Stream:
    """TCP, then the TLS handshake (done here, so that a certificate error is reported as
    such: trio-websocket would only time out)."""
    tcp = await trio.open_tcp_stream(target.host, target.port)
    if context is None:
        return tcp
    stream = trio.SSLStream(tcp, context, server_hostname=target.host, https_compatible=True)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


@attrs.frozen
class Connection:
    """An open WebSocket, the stream under it, and the protocol version the server chose."""

    ws: trio_websocket.WebSocketConnection
    stream: Stream
    version: int


async def connect(
    nursery: trio.Nursery,
    url: str,
    target: Target,
    context: ssl.SSLContext | None,
    *,
    deadline: float,
    max_message_size: int,
) -> Connection:
    """Open a WebSocket offering gamesync.v2 and v1 (in that order); trio-websocket's reader
    task runs in ``nursery``. Raises :class:`ConnectError` (or :class:`ConnectTimeout` at
    ``deadline``)."""
    with trio.move_on_at(deadline) as scope:
        try:
            stream = await _open_stream(target, context)
        except (OSError, trio.BrokenResourceError) as exc:
            raise ConnectError(f"could not connect to {url}: {describe(exc)}") from exc
        try:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                target.host_header,
                target.resource,
                subprotocols=list(SUPPORTED_SUBPROTOCOLS),
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=max_message_size,
            )
        except trio_websocket.HandshakeError as exc:
            await trio.aclose_forcefully(stream)
            raise ConnectError(f"could not connect to {url}: {describe(exc)}") from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught:
        raise ConnectTimeout(f"connecting to {url} timed out")
    version = version_of_subprotocol(ws.subprotocol) if ws.subprotocol else None
    if version is None:
        with trio.move_on_after(1, shield=True):
            await ws.aclose(CloseCode.PROTOCOL_ERROR)
        await trio.aclose_forcefully(stream)
        offered = ", ".join(SUPPORTED_SUBPROTOCOLS)
        raise ConnectError(f"{url} accepted none of the WebSocket subprotocols {offered}")
    return Connection(ws, stream, version)
