"""Where the client connects in a cluster (docs/protocol.md "Clusters: redirects"), without I/O.

A node that does not host the room a JOIN (or RESUME) names answers with REDIRECT(url, room)
and closes with 4015. :class:`Route` decides where each connection of one client goes:

- every join (the first JOIN, a RESUME, a fresh JOIN after a lost seat) starts at the owner's
  URL if a seat was held there, else at the entry URL (the one given to ``open_game_client``);
- each REDIRECT of that join moves it to the URL named, at most :data:`MAX_REDIRECTS` times
  (then :class:`RedirectError`: the cluster is changing under the client); the URL must be
  ``ws://`` or ``wss://`` with a host, with the entry URL's scheme (a redirect never turns TLS
  off, and the client's TLS settings are those of the entry URL);
- once seated, the URL of that connection is the owner's: a later RESUME goes straight there;
- if the owner cannot be reached, the client goes back to the entry URL (the room may have
  moved: its node died, and a new JOIN creates it again on a live node).
"""

from __future__ import annotations

import enum
import urllib.parse

import attrs

from clients.errors import GameClientError
from shared.messages import Redirect
from shared.protocol import CloseCode

#: redirects followed for one join; one more and the join fails (docs/protocol.md)
MAX_REDIRECTS = 3


class RedirectProblem(enum.Enum):
    """Why a REDIRECT was not followed."""

    #: more than :data:`MAX_REDIRECTS` redirects for one join
    TOO_MANY = "too many redirects"
    #: the URL is not ``ws://`` or ``wss://`` with a host
    BAD_URL = "bad redirect URL"
    #: the URL's scheme differs from the entry URL's (``wss://`` to ``ws://``, or back)
    SCHEME_CHANGED = "redirect changes the scheme"


class RedirectError(GameClientError):
    """A REDIRECT the client did not follow (``problem`` says why); ``url`` is the URL it
    named, ``hops`` the redirects already followed for this join. The server closed that
    connection with 4015 (``code``)."""

    code = int(CloseCode.REDIRECT)

    def __init__(self, problem: RedirectProblem, url: str, hops: int, detail: str) -> None:
        super().__init__(f"{problem.value}: {detail}")
        self.problem = problem
        self.url = url
        self.hops = hops
        self.detail = detail


class GotRedirect(Exception):
    """Raised by ``ClientSession.handle_message`` for a REDIRECT during a join's handshake:
    the I/O layer follows it (see :class:`Route`)."""

    def __init__(self, redirect: Redirect) -> None:
        super().__init__(f"redirected to {redirect.url} for room {redirect.room!r}")
        self.redirect = redirect


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


def check_redirect_url(url: str, entry: str) -> RedirectProblem | None:
    """None if a client that entered at ``entry`` may follow a REDIRECT to ``url``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return RedirectProblem.BAD_URL
    if parts.scheme.lower() not in ("ws", "wss") or not host:
        return RedirectProblem.BAD_URL
    if parts.scheme.lower() != _scheme(entry):
        return RedirectProblem.SCHEME_CHANGED
    return None


@attrs.define
class Route:
    """The URLs of one client: the entry, the owner of the seat, the one being dialled."""

    entry: str
    max_redirects: int = MAX_REDIRECTS
    #: the URL of the node that seated us (None: the entry URL, or no seat yet)
    owner: str | None = None
    #: the URL of the current (or last) connection
    current: str = ""
    #: redirects followed by the current join
    hops: int = 0
    #: redirects followed over the client's life
    total: int = 0

    def __attrs_post_init__(self) -> None:
        self.current = self.current or self.entry

    def start(self) -> str:
        """A join begins (the first JOIN, a RESUME, a fresh JOIN): the URL to dial."""
        self.hops = 0
        self.current = self.owner or self.entry
        return self.current

    def redirect(self, url: str) -> str:
        """The server answered REDIRECT(``url``): the URL to dial next. Raises
        :class:`RedirectError` if the client must not follow it."""
        problem = check_redirect_url(url, self.entry)
        if problem is None and self.hops >= self.max_redirects:
            problem = RedirectProblem.TOO_MANY
        if problem is not None:
            raise RedirectError(problem, url, self.hops, self._explain(problem, url))
        self.hops += 1
        self.total += 1
        self.current = url
        return url

    def _explain(self, problem: RedirectProblem, url: str) -> str:
        if problem is RedirectProblem.TOO_MANY:
            return (
                f"{self.current} redirected to {url} after {self.hops} redirects for this "
                "join: the cluster is moving the room; try again in a moment"
            )
        if problem is RedirectProblem.SCHEME_CHANGED:
            return f"{self.current} redirected to {url}, not a {_scheme(self.entry)}:// URL"
        return f"{self.current} redirected to {url!r}, not a ws:// or wss:// URL"

    def seated(self) -> None:
        """The join succeeded on :attr:`current`: that node owns the room."""
        self.owner = None if self.current == self.entry else self.current

    def unreachable(self) -> str | None:
        """Connecting to :attr:`current` failed (refused, TLS, timeout). If it was the owner's
        URL, forget it and return the entry URL to dial instead; else None (the join fails)."""
        if self.owner is None or self.current != self.owner:
            return None
        self.owner = None
        self.hops = 0
        self.current = self.entry
        return self.entry

    def forget_owner(self) -> None:
        """The next join starts at the entry URL (the cluster moved things: a redirect failed)."""
        self.owner = None
