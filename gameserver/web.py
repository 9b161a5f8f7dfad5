"""What the WSS port answers to HTTP requests that are not WebSocket upgrades. No trio.

:class:`WebApp` routes a parsed request (``gameserver.http_static.HttpRequest``) to a
``Response``:

* ``GET`` and ``HEAD``: the web demo's static files (``gameserver.http_static.StaticSite``,
  whose docstring has the URL map); a path not on the allow-list is 404 (whatever the
  method), another method on a file 405.
* ``POST /guest``: a guest token (``gameserver.guest``), only with ``--guest-tokens``
  (else the path is 404 like any other). Same-origin only: the request's ``Origin`` must be
  the origin of this server's own pages, else 403, so another site cannot mint tokens.
* With ``--no-web`` there are no files: every request gets 426 Upgrade Required.

Every response carries the security headers of ``http_static.security_headers`` and closes
the connection (one request per connection). Nothing here touches rooms or the tick.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import attrs

from gameserver.guest import GuestIssuer
from gameserver.http_static import (
    HttpRequest,
    Response,
    StaticSite,
    decode_path,
    security_headers,
    text_response,
)
from shared.protocol import SUPPORTED_SUBPROTOCOLS

GUEST_PATH = "/guest"
#: the largest ``POST /guest`` body (a JSON object with a name)
MAX_GUEST_BODY = 1024
#: what a client over ``--max-connections`` is told to wait, in seconds (``Retry-After``)
FULL_RETRY_AFTER = 5


@attrs.frozen
class RequestInfo:
    """What the server knows about a request beyond its bytes."""

    #: the origin of this server's own pages (``https://127.0.0.1:8443``) if the request's Host
    #: names this server (``gameserver.handshake.own_origin``), else None
    own_origin: str | None
    #: the client's IP address
    address: str
    #: a monotonic clock (rate limits) and the wall clock (token expiry), in seconds
    now: float
    wall: float


def ws_origin(own_origin: str | None) -> str:
    """``wss://host:port`` for ``https://host:port`` (what the CSP's connect-src names)."""
    if own_origin is None:
        return ""
    if own_origin.startswith("https://"):
        return "wss://" + own_origin.removeprefix("https://")
    return "ws://" + own_origin.removeprefix("http://")


def json_response(
    status: int, value: object, connect: str = "", extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    headers = (
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        *extra,
        *security_headers(connect),
    )
    return Response(status, headers, json.dumps(value).encode() + b"\n")


def server_full(info: RequestInfo) -> Response:
    """The answer to any plain request while the server is at ``--max-connections``."""
    return text_response(
        503,
        "server full; try again in a moment",
        ws_origin(info.own_origin),
        (("Retry-After", str(FULL_RETRY_AFTER)),),
    )


class WebApp:
    """Routes plain HTTP requests: ``site`` (None: ``--no-web``), ``guest`` (None: off), the
    game guest tokens are for when the request names none (the server's default game), and
    the games a request may name (``games``; the default game alone when empty)."""

    def __init__(
        self,
        site: StaticSite | None,
        guest: GuestIssuer | None = None,
        game: str = "",
        games: Collection[str] = (),
    ) -> None:
        self.site = site
        self.guest = guest
        self.game = game
        self.games = frozenset(games) | {game}

    def body_length(self, req: HttpRequest) -> int | Response:
        """How many body bytes to read before :meth:`respond`, or the answer at once.

        Only ``POST /guest`` has a body worth reading; the body of any other request is left
        unread (the connection closes after the answer)."""
        if self.guest is None or req.method != "POST" or req.path != GUEST_PATH:
            return 0
        if req.values("transfer-encoding"):
            return text_response(400, "send the body with Content-Length, not chunked")
        lengths = req.values("content-length")
        if not lengths:
            return text_response(411, "a Content-Length is required")
        if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 9:
            return text_response(400, "malformed Content-Length")
        length = int(lengths[0])
        if length > MAX_GUEST_BODY:
            return text_response(413, f"the body is larger than {MAX_GUEST_BODY} bytes")
        return length

    def respond(self, req: HttpRequest, body: bytes, info: RequestInfo) -> Response:
        """The answer to a request (its body, if any, already read)."""
        connect = ws_origin(info.own_origin)
        path = decode_path(req.path)
        if not req.target.startswith("/") or path is None:
            return text_response(400, "malformed request target", connect)
        if self.guest is not None and path == GUEST_PATH:
            if req.method != "POST":
                return text_response(405, "method not allowed", connect, (("Allow", "POST"),))
            return self._guest(req, body, info, connect)
        if self.site is None:
            return text_response(
                426,
                "this port speaks WebSocket (" + ", ".join(SUPPORTED_SUBPROTOCOLS) + "); "
                "the web demo is off (--no-web)",
                connect,
                (("Upgrade", "websocket"),),
            )
        found = self.site.lookup(path)
        if found is None:
            return text_response(404, "not found", connect)
        if req.method not in ("GET", "HEAD"):
            return text_response(405, "method not allowed", connect, (("Allow", "GET, HEAD"),))
        return found.response(connect, req.header("if-none-match"))

    def _guest(self, req: HttpRequest, body: bytes, info: RequestInfo, connect: str) -> Response:
        guest = self.guest
        assert guest is not None
        fetch_site = req.header("sec-fetch-site")
        if (
            info.own_origin is None
            or req.values("origin") != [info.own_origin]
            or (fetch_site is not None and fetch_site != "same-origin")
        ):
            return json_response(
                403, {"error": "guest tokens are for this server's own pages only"}, connect
            )
        name = ""
        game = self.game
        if body:
            ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return json_response(415, {"error": "send application/json"}, connect)
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return json_response(400, {"error": "the body is not JSON"}, connect)
            if (
                not isinstance(data, dict)
                or not isinstance(data.get("name", ""), str)
                or not isinstance(data.get("game", ""), str)
            ):
                return json_response(400, {"error": 'send {"name": "...", "game": "..."}'}, connect)
            name = data.get("name", "")
            game = data.get("game", "") or self.game
            if game not in self.games:
                return json_response(
                    404, {"error": f"this server runs no game {game[:64]!r}"}, connect
                )
        if not guest.allow(info.address, info.now):
            return json_response(
                429,
                {"error": "too many guest tokens from this address; try again later"},
                connect,
                (("Retry-After", str(guest.retry_after())),),
            )
        return json_response(200, guest.mint(name, game, info.wall).to_json(), connect)
