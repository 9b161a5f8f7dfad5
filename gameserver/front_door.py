"""The front door: a connection from TCP accept to a WebSocket the lifecycle drives, or to its
refusal. The trio layer of ``gameserver.handshake`` and ``gameserver.web``.

:meth:`FrontDoor.handshake` runs TLS and reads the request (``gameserver._tws``) under one
deadline (``--connect-timeout``), then:

* a plain HTTP request (no ``Upgrade``) is answered by the web demo (``gameserver.web``) and
  the connection closes;
* a refused upgrade gets its HTTP error, or, from a browser (one ``Origin``), a close frame
  its page can read (docs/protocol.md, "Refusals a browser can read");
* an accepted upgrade becomes a :class:`~gameserver._tws.FastConnection` speaking the newest
  subprotocol the client offered (``gamesync.v2``, else ``gamesync.v1``: its ``subprotocol``),
  which the server's lifecycle takes from there.

:meth:`FrontDoor.tell_full` does the same for a connection over ``--max-connections``, only to
refuse it ("server full"), for at most :data:`FULL_NOTICES` connections at a time.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter

import trio

from gameserver import _tws
from gameserver._tws import FastConnection, PlainRequest, TransportClosed, UpgradeRequest
from gameserver.config import ServerConfig
from gameserver.handshake import (
    SERVER_FULL_CLOSE,
    browser_close,
    check_upgrade,
    echo_subprotocol,
    is_browser,
    own_origin,
)
from gameserver.http_static import Response
from gameserver.reasons import Refusal
from gameserver.stats import ServerStats
from gameserver.web import FULL_RETRY_AFTER, RequestInfo, WebApp, server_full
from shared.errors import RemoteProtocolError
from shared.protocol import select_subprotocol

log = logging.getLogger("gameserver")

#: connections over ``--max-connections`` that may be handshaking at once only to be told
#: "server full" (a browser's page reads close 4006; others get HTTP 503), in all and per
#: address; beyond these an extra connection is closed before TLS, as ever
FULL_NOTICES = 32
FULL_NOTICES_PER_IP = 4
#: seconds to write a plain HTTP response (a web demo file) to a slow reader
HTTP_WRITE_TIMEOUT = 30.0


class FrontDoor:
    """TLS, the request and its answer, for one server (see the module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None,
        stats: ServerStats,
        web: WebApp,
    ) -> None:
        self.config = config
        self.ssl_context = ssl_context
        self.stats = stats
        #: what plain HTTP requests get: the web demo's files, guest tokens
        self.web = web
        #: connections over --max-connections being told "server full": in all, and per IP
        self.full_notices = 0
        self._notices_per_ip: Counter[str] = Counter()

    # ------------------------------------------------------------ a full server

    def may_tell_full(self, ip: str) -> bool:
        """Whether a connection over --max-connections from ``ip`` may be told so (a notice
        slot is free), rather than closed before TLS."""
        return self.full_notices < FULL_NOTICES and self._notices_per_ip[ip] < FULL_NOTICES_PER_IP

    async def tell_full(self, stream: trio.abc.Stream, ip: str) -> None:
        """Run the handshake of a connection over --max-connections only to refuse it
        ("server full"; counted as ``connection_limit`` by the caller)."""
        per_ip = self._notices_per_ip
        self.full_notices += 1
        per_ip[ip] += 1
        try:
            await self.handshake(stream, ip, full=True)
        except Exception:
            log.exception("internal error while refusing a connection")
            await _tws.close_stream(stream)
        finally:
            self.full_notices -= 1
            per_ip[ip] -= 1
            if not per_ip[ip]:
                del per_ip[ip]

    # ------------------------------------------------------------ the handshake

    async def handshake(
        self, stream: trio.abc.Stream, ip: str, *, full: bool = False
    ) -> FastConnection | None:
        """The connection taken over after a 101, or None once it has been answered otherwise
        (a plain HTTP request, a refusal) and closed. ``full``: the server is at
        --max-connections, so every request is refused."""
        cfg = self.config
        stats = self.stats
        deadline = trio.current_time() + cfg.connect_timeout  # one deadline for it all
        request = await _tws.receive_request(
            stream, self.ssl_context, max_message_size=cfg.max_message_size, deadline=deadline
        )
        if request is None:
            if not full:
                stats.refused[Refusal.HANDSHAKE.value] += 1
                stats.peer_log.event("handshake", "refused a handshake", reason="handshake", ip=ip)
            return None
        if isinstance(request, PlainRequest):
            await self._answer_plain(request, ip, full, deadline)
            return None
        own = self.own_origin(request.host, request.local)
        allowed = cfg.allowed_origins if own is None else (*cfg.allowed_origins, own)
        refused = check_upgrade(
            request.head, request.headers, request.proposed_subprotocols, allowed
        )
        if refused is not None:
            if not full:
                stats.refused[refused.kind.value] += 1
                stats.peer_log.event(
                    refused.kind.value, "refused an upgrade", reason=refused.kind.value, ip=ip
                )
            visible = browser_close(refused, request.headers)
            if visible is not None:
                await self._close_at_once(request, *visible, deadline)
            else:
                await request.reject(refused.status, refused.body, cfg.close_timeout)
            return None
        if full:
            if is_browser(request.headers):
                await self._close_at_once(request, *SERVER_FULL_CLOSE, deadline)
            else:
                retry = [(b"Retry-After", str(FULL_RETRY_AFTER).encode())]
                await request.reject(503, SERVER_FULL_CLOSE[1] + "\n", cfg.close_timeout, retry)
            return None
        selected = select_subprotocol(request.proposed_subprotocols)
        with trio.move_on_at(deadline):
            try:
                conn = await request.accept(selected, cfg.max_message_size)
            except TransportClosed:
                return None
            stats.connections_accepted += 1
            return conn
        request.close()
        return None

    def own_origin(self, host: str | None, local: tuple[str, int]) -> str | None:
        """The origin of the pages this server serves, if ``host`` names this server (only
        while it serves the web demo): allowed without --allow-origin."""
        if self.web.site is None:
            return None
        return own_origin(
            host,
            tls=self.ssl_context is not None,
            local_ip=local[0],
            local_port=local[1],
            bound_host=self.config.host,
        )

    async def _close_at_once(
        self, request: UpgradeRequest, code: int, reason: str, deadline: float
    ) -> None:
        """Complete the handshake only to send a close frame a browser's page can read; read
        nothing from the connection: what arrives before the peer's close is dropped
        unparsed, and the connection closes once the peer answers, or after the close
        timeout."""
        with trio.move_on_at(deadline):
            try:
                conn = await request.accept(
                    echo_subprotocol(request.proposed_subprotocols), self.config.max_message_size
                )
            except TransportClosed:
                return
            try:
                with trio.move_on_after(self.config.close_timeout):
                    conn.send_close(code, reason)
                    await conn.flush()
                    while conn.peer_close is None and not conn.eof and not conn.closed:
                        await conn.wait_readable()
                        conn.read_available()
                        for _ in conn.messages():
                            pass  # data is dropped: nothing from a refused peer is read
            except (TransportClosed, RemoteProtocolError):
                pass
            finally:
                conn.close()
            return
        request.close()

    # ------------------------------------------------------------ plain HTTP

    async def _answer_plain(
        self, request: PlainRequest, ip: str, full: bool, deadline: float
    ) -> None:
        """A plain HTTP request on this port: the web demo's files or a guest token
        (gameserver.web), or 503 while the server is full. Never touches a room."""
        http = request.http
        info = RequestInfo(
            self.own_origin(http.header("host"), request.local),
            ip,
            trio.current_time(),
            time.time(),
        )
        response: Response
        if full:
            response = server_full(info)
        else:
            need = self.web.body_length(http)
            if isinstance(need, Response):
                response = need
            else:
                body: bytes | None = b""
                if need:
                    body = None
                    with trio.move_on_at(deadline):
                        try:
                            body = await request.read_body(need)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                if body is None:  # the body did not come in time
                    request.close()
                    return
                response = self.web.respond(http, body, info)
        self.stats.http_responses[str(response.status)] += 1
        data = response.to_bytes(head_only=http.method == "HEAD", now=info.wall)
        await request.respond(data, HTTP_WRITE_TIMEOUT)
