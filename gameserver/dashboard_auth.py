"""The dashboard's sessions and watcher cap: plain Python, no trio, no I/O.

The admin token is typed into the page once and POSTed to ``/dashboard/session``; it is
checked, then forgotten. The browser gets a random session id in an ``HttpOnly;
SameSite=Strict`` cookie (``Secure`` over TLS) and, in the JSON answer, a separate random CSRF
token that the page keeps in memory and sends back as ``X-CSRF-Token`` with every action. So
the token lands in no URL, cookie, log or referrer, and a stolen cookie alone cannot act.

:class:`SessionStore` is bounded (``max_sessions``: the oldest is dropped) and each session
expires ``idle`` seconds after its last use and ``lifetime`` seconds after login, whichever
comes first. :class:`WatcherGate` counts the live-feed watchers against a cap.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

import attrs

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "DashboardSession",
    "SessionStore",
    "WatcherGate",
    "cookie_value",
    "session_cookie",
]

COOKIE_NAME = "gs_dashboard"
#: the header an action's request must carry (a custom header: a cross-site form cannot send
#: it, and a cross-origin fetch would need a CORS preflight this server never grants)
CSRF_HEADER = "x-csrf-token"
_COOKIE_PATH = "/dashboard"


@attrs.define
class DashboardSession:
    admin: str  # the admin token's player id, for the log ("admin ops kicked ...")
    csrf: str
    created: float
    last_used: float


class SessionStore:
    """Session id -> :class:`DashboardSession`, bounded and expiring. ``clock`` is monotonic
    seconds (``trio.current_time`` in the server, so MockClock tests can expire sessions)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_sessions: int = 32,
        idle: float = 30 * 60.0,
        lifetime: float = 8 * 3600.0,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._clock = clock
        self.max_sessions = max_sessions
        self.idle = idle
        self.lifetime = lifetime
        self._sessions: dict[str, DashboardSession] = {}  # insertion order = login order

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, admin: str) -> tuple[str, DashboardSession]:
        """A new session for ``admin``: (session id for the cookie, the session)."""
        now = self._clock()
        self._expire(now)
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[next(iter(self._sessions))]  # the oldest login goes
        sid = secrets.token_urlsafe(32)
        session = DashboardSession(admin, secrets.token_urlsafe(32), now, now)
        self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> DashboardSession | None:
        """The live session for this cookie value (its idle timer restarts), or None."""
        if not sid:
            return None
        now = self._clock()
        session = self._sessions.get(sid)
        if session is None:
            return None
        if self._expired(session, now):
            del self._sessions[sid]
            return None
        session.last_used = now
        return session

    def check_csrf(self, sid: str | None, csrf: str | None) -> DashboardSession | None:
        """The session if ``csrf`` is its CSRF token (compared in constant time), else None."""
        session = self.get(sid)
        if session is None or not csrf:
            return None
        if not hmac.compare_digest(session.csrf.encode(), csrf.encode("utf-8", "replace")):
            return None
        return session

    def remove(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def _expired(self, session: DashboardSession, now: float) -> bool:
        return now - session.last_used >= self.idle or now - session.created >= self.lifetime

    def _expire(self, now: float) -> None:
        for sid in [k for k, v in self._sessions.items() if self._expired(v, now)]:
            del self._sessions[sid]


class WatcherGate:
    """How many live-feed watchers are connected, against ``cap``."""

    def __init__(self, cap: int = 16) -> None:
        self.cap = cap
        self.count = 0

    def try_enter(self) -> bool:
        """Take a place (False: the cap is reached; refuse this watcher)."""
        if self.count >= self.cap:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        if self.count <= 0:
            raise RuntimeError("WatcherGate.leave without a matching try_enter")
        self.count -= 1


def cookie_value(header: str, name: str = COOKIE_NAME) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` header (the first one), or None."""
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value.strip().strip('"')
    return None


def session_cookie(sid: str, *, secure: bool, max_age: float | None = None) -> str:
    """The ``Set-Cookie`` value for a session id (``sid=""`` with ``max_age=0`` clears it)."""
    parts = [f"{COOKIE_NAME}={sid}", f"Path={_COOKIE_PATH}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    return "; ".join(parts)
