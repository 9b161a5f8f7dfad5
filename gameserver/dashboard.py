"""The dashboard: ``GET /dashboard`` on the metrics port, its login, live feed and actions.

=====================================  ======================================================
``GET /dashboard``                     the page (static HTML, JS, CSS from this package)
``POST /dashboard/session``            ``{"token": "<admin token>"}`` (JSON): sets the session
                                       cookie, answers ``{"csrf": ..., "admin": ...}``
``GET /dashboard/session``             the same answer for a live session cookie (a reload)
``POST /dashboard/logout``             ends the session (cookie + ``X-CSRF-Token``)
``GET /dashboard/events``              the live feed: server-sent events, one snapshot a
                                       second (cookie); 503 beyond ``max_watchers``
``GET /dashboard/rooms``               ``/admin/rooms``'s answer (cookie)
``POST /dashboard/kick|close|drain``   the admin actions, JSON parameters as ``/admin/...``'s
                                       query (cookie + ``X-CSRF-Token``)
=====================================  ======================================================

The token is checked once and never stored, logged or put in a URL (see
:mod:`gameserver.dashboard_auth`). Every answer carries a strict Content-Security-Policy
(scripts and styles from this origin only, no inline script), ``Referrer-Policy: no-referrer``
and ``X-Frame-Options: DENY``.

The snapshot is built once a second by :meth:`Dashboard.run` (one task, never inside a room
tick) and encoded once; every watcher task sends that same ``bytes`` object. A watcher holds
a reference to the latest snapshot only: one that has not taken it within
``send_timeout`` seconds is closed, and one that falls behind just skips to the newest.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

import trio

from gameserver.auth import AuthError, TokenVerifier
from gameserver.dashboard_auth import (
    CSRF_HEADER,
    SessionStore,
    WatcherGate,
    cookie_value,
    session_cookie,
)
from gameserver.dashboard_feed import FeedSampler
from gameserver.logsafe import peer_text
from gameserver.metrics import Response, Streamer

if TYPE_CHECKING:
    from collections.abc import Callable

    from gameserver.admin import AdminAPI
    from gameserver.server import GameServer

__all__ = ["MAX_WATCHERS", "SECURITY_HEADERS", "Dashboard"]

log = logging.getLogger("gameserver.dashboard")

#: live-feed watchers at once; more get 503
MAX_WATCHERS = 16
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
)
_JSON = "application/json"
_STATIC = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/style.css": ("style.css", "text/css; charset=utf-8"),
    "/dashboard/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_ACTIONS = {"/dashboard/kick", "/dashboard/close", "/dashboard/drain"}


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("gameserver").joinpath("static", "dashboard")
    return {path: (folder.joinpath(name).read_bytes(), ct) for path, (name, ct) in _STATIC.items()}


def _json(status: int, body: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()) -> Response:
    return status, _JSON, (json.dumps(body) + "\n").encode(), SECURITY_HEADERS + extra


class Dashboard:
    """The ``dashboard=`` handler of :func:`gameserver.metrics.serve_metrics`.

    ``secure``: the port serves TLS (the cookie gets ``Secure``). ``admin`` carries out the
    actions (the same code as ``/admin/...``). ``clock`` defaults to trio time."""

    def __init__(
        self,
        server: GameServer,
        verifier: TokenVerifier,
        admin: AdminAPI,
        *,
        secure: bool,
        max_watchers: int = MAX_WATCHERS,
        interval: float = 1.0,
        idle_interval: float = 5.0,
        send_timeout: float = 5.0,
        clock: Callable[[], float] = trio.current_time,
        sample_process: Callable[[], tuple[float, int]] | None = None,
    ) -> None:
        self.server = server
        self.verifier = verifier
        self.admin = admin
        self.secure = secure
        self.interval = interval
        #: the sampling period while nobody watches (a sample walks every room and session: at
        #: a thousand players that is about 1% of a core at one a second)
        self.idle_interval = idle_interval
        self.send_timeout = send_timeout
        self.sessions = SessionStore(clock)
        self.watchers = WatcherGate(max_watchers)
        self.sampler = FeedSampler(server, clock, sample_process=sample_process)
        self._static = _load_static()
        #: the latest snapshot as one server-sent event, shared by every watcher
        self.latest = b""
        #: how many snapshots have been published
        self.version = 0
        self._published = trio.Event()
        #: watchers closed because they did not take a snapshot in time
        self.stalled = 0

    # ------------------------------------------------------------------ the feed
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish a snapshot every ``interval`` seconds until cancelled."""
        self.publish()
        task_status.started()
        idle = 0.0
        while True:
            await trio.sleep(self.interval)
            idle += self.interval
            if self.watchers.count or idle >= self.idle_interval:
                idle = 0.0
                self.publish()

    def publish(self) -> None:
        """Build and encode one snapshot; wake every watcher. Never awaits."""
        try:
            snapshot = self.sampler.sample(self.watchers.count)
        except Exception:
            log.exception("dashboard: building the snapshot failed")
            return
        data = json.dumps(snapshot, separators=(",", ":"))
        self.latest = f"event: snapshot\nid: {self.version + 1}\ndata: {data}\n\n".encode()
        self.version += 1
        event, self._published = self._published, trio.Event()
        event.set()

    def snapshot(self) -> dict[str, Any]:
        """The latest published snapshot, decoded (for tests)."""
        if not self.latest:
            return {}
        data = self.latest.split(b"\ndata: ", 1)[1]
        loaded: dict[str, Any] = json.loads(data)
        return loaded

    # ------------------------------------------------------------------ requests
    def __call__(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response | Streamer:
        static = self._static.get(path)
        if static is not None:
            if method != "GET":
                return _json(405, {"error": "use GET"}, (("Allow", "GET"),))
            content, content_type = static
            return 200, content_type, content, SECURITY_HEADERS
        sid = cookie_value(headers.get("cookie", ""))
        if path == "/dashboard/session":
            if method == "POST":
                return self._login(headers, body)
            if method != "GET":
                return _json(405, {"error": "use GET or POST"}, (("Allow", "GET, POST"),))
            session = self.sessions.get(sid)
            if session is None:
                return _json(401, {"error": "not signed in"})
            return _json(200, {"csrf": session.csrf, "admin": session.admin})
        if path == "/dashboard/events":
            if method != "GET":
                return _json(405, {"error": "use GET"}, (("Allow", "GET"),))
            if self.sessions.get(sid) is None:
                return _json(401, {"error": "not signed in"})
            if not self.watchers.try_enter():
                return _json(
                    503,
                    {"error": f"too many dashboard watchers (at most {self.watchers.cap})"},
                    (("Retry-After", "10"),),
                )
            assert sid is not None
            return lambda stream: self._watch(stream, sid)
        if path == "/dashboard/rooms":
            if method != "GET":
                return _json(405, {"error": "use GET"}, (("Allow", "GET"),))
            if self.sessions.get(sid) is None:
                return _json(401, {"error": "not signed in"})
            return _json(200, {"rooms": self.admin.rooms()})
        if path in _ACTIONS or path == "/dashboard/logout":
            if method != "POST":
                return _json(405, {"error": "use POST"}, (("Allow", "POST"),))
            session = self.sessions.check_csrf(sid, headers.get(CSRF_HEADER))
            if session is None:
                return _json(403, {"error": "sign in again (session or CSRF token missing)"})
            if path == "/dashboard/logout":
                self.sessions.remove(sid)
                clear = session_cookie("", secure=self.secure, max_age=0)
                return _json(200, {"signed_out": True}, (("Set-Cookie", clear),))
            params = _params(body)
            if params is None:
                return _json(400, {"error": "send the parameters as a JSON object"})
            action = path.rsplit("/", 1)[1]
            status, _, answer = {
                "kick": self.admin.kick,
                "close": self.admin.close_room,
                "drain": self.admin.drain,
            }[action](params, session.admin)
            return status, _JSON, answer, SECURITY_HEADERS
        return _json(404, {"error": "not found"})

    def _login(self, headers: dict[str, str], body: bytes) -> Response:
        # JSON only: a cross-site HTML form cannot send it (no login CSRF)
        if headers.get("content-type", "").split(";")[0].strip().lower() != _JSON:
            return _json(415, {"error": "send the token as JSON (Content-Type: application/json)"})
        params = _params(body)
        token = params.get("token", "") if params is not None else ""
        if not token:
            return _json(400, {"error": 'send {"token": "<admin token>"} as JSON'})
        stats = self.server.stats
        try:
            identity = self.verifier.verify(token.strip())
        except AuthError as exc:
            stats.refused[f"admin_{exc.failure.value}"] += 1
            return _json(401, {"error": str(exc)})
        if not identity.admin:
            stats.refused["admin_forbidden"] += 1
            return _json(403, {"error": "this token has no admin claim"})
        sid, session = self.sessions.create(identity.player_id)
        log.info("dashboard: admin %s signed in", peer_text(identity.player_id))
        cookie = session_cookie(sid, secure=self.secure)
        return _json(200, {"csrf": session.csrf, "admin": session.admin}, (("Set-Cookie", cookie),))

    async def _watch(self, stream: trio.abc.Stream, sid: str) -> None:
        """One watcher: the event-stream head, then each new snapshot (skipping to the newest
        if it fell behind) until it goes away, its session ends, or it stalls."""
        try:
            head = [
                "HTTP/1.1 200 OK",
                "Content-Type: text/event-stream",
                "Cache-Control: no-store",
                "Connection: close",
                *(f"{k}: {v}" for k, v in SECURITY_HEADERS),
            ]
            first = ("\r\n".join(head) + "\r\n\r\nretry: 3000\n\n").encode() + self.latest
            seen = self.version
            if not await self._send(stream, first):
                return
            while True:
                if self.version == seen:
                    await self._published.wait()
                if self.sessions.get(sid) is None:
                    return  # signed out or expired
                seen = self.version
                if not await self._send(stream, self.latest):
                    return
        finally:
            self.watchers.leave()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> bool:
        with trio.move_on_after(self.send_timeout):
            await stream.send_all(data)
            return True
        self.stalled += 1
        log.debug("dashboard: a watcher took no snapshot for %.0f s; closing it", self.send_timeout)
        return False


def _params(body: bytes) -> dict[str, str] | None:
    """A JSON object's values as strings (as a query string's would be), or None."""
    try:
        loaded = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(loaded, dict):
        return None
    return {str(k): str(v) for k, v in loaded.items() if isinstance(v, str | int | float)}
