"""Routing a join in a cluster: which node hosts the room, decided as data. No trio.

A node that takes a JOIN (or RESUME) for a room it does not host asks the directory where the
room lives, and either serves it (the room is placed here: *adopt* its lease, or create it),
places it on another node and sends the player there, sends the player to the owner, or
refuses. The decision is a small state machine, :class:`Router`: it asks for one directory
call at a time (:data:`Call`), is fed the answer (a value or the directory's error), and ends
with an :data:`Outcome`. ``gameserver.cluster_node`` is the driver that makes the calls::

    router = Router(request, node_id="b", may_host=True, new_private_id=draw)
    step = router.start(hosted=False)         # Lookup("lobby")
    step = router.answer(lease_on_a)          # Redirect("wss://a:8443/", "lobby")

The rules (docs/directory.md, "Routing a join"):

- hosted here: :class:`Local`, and the directory is never asked;
- a new private room: created here under a fresh id (drawn again if taken);
- otherwise ``lookup``: a lease naming another node -> :class:`Redirect` there; a lease
  naming this node (placed here by another node, or left from before a restart) -> adopt it
  (:class:`Local` with the lease) and create the room here; absent: a RESUME's seat is lost,
  a private id names no room; a public room is placed by ``pick_node``: created here, or
  created on the picked node's behalf and the player redirected there;
- a creation race (``RoomTaken``) goes to the winner (adopted if the winner is this node);
- the directory unreachable -> refused with 4016 (``directory_unavailable``); the
  creation limit spent -> 1008 (``room_create_rate``), as on one node.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from gameserver.auth import Identity
from gameserver.directory.base import Directory
from gameserver.directory.types import (
    DirectoryRefused,
    DirectoryUnavailable,
    NodeRecord,
    Refused,
    RoomLease,
    RoomTaken,
)
from gameserver.lifecycle import Action, Close, JoinReceived, Refuse, ResumeReceived, Send, goodbye
from gameserver.reasons import Refusal
from gameserver.room import PRIVATE_ROOM_RE, ROOM_NAME_RE
from shared.messages import Error, Redirect
from shared.protocol import CloseCode


@attrs.frozen
class ClusterOptions:
    """Make a server a node of a cluster (``open_gameserver(..., cluster=...)``).

    ``node_id``: its id in the directory, unique in the cluster and stable across restarts
    (default ``HOSTNAME:PORT``). ``public_url``: the URL clients dial to reach it, sent in
    REDIRECT (default the listening socket's ``wss://HOST:PORT/``)."""

    directory: Directory
    node_id: str | None = None
    public_url: str | None = None


#: how many private ids are drawn before giving up (a collision of 22 random characters is
#: a broken random source, not bad luck)
PRIVATE_DRAWS = 3


# ------------------------------------------------------------------ what is routed


class Kind(enum.Enum):
    JOIN = "join"
    RESUME = "resume"


@attrs.frozen
class RouteRequest:
    """A JOIN or RESUME that passed every admission step before the room, to be routed.

    ``room`` is "" for a new private room (``private``); ``game`` the resolved game name."""

    kind: Kind
    room: str
    player_id: str = ""
    game: str = ""
    private: bool = False

    @property
    def private_id(self) -> bool:
        """The request names a private room by its id (``~...``): joining never creates it."""
        return bool(PRIVATE_ROOM_RE.fullmatch(self.room))


def join_request(event: JoinReceived, identity: Identity, game: str) -> RouteRequest | None:
    """The JOIN as a request to route, or None when admission will refuse it for its room
    name or authorization anyway (then it is refused locally, exactly as on one node)."""
    join = event.join
    if join.private:
        if not identity.may_join("*"):
            return None
        return RouteRequest(Kind.JOIN, "", identity.player_id, game, private=True)
    name = join.room
    if not (PRIVATE_ROOM_RE.fullmatch(name) or ROOM_NAME_RE.fullmatch(name)):
        return None
    if not identity.may_join(name):
        return None
    return RouteRequest(Kind.JOIN, name, identity.player_id, game)


def resume_request(event: ResumeReceived) -> RouteRequest:
    return RouteRequest(Kind.RESUME, event.resume.room)


# ------------------------------------------------------------------ calls (out), answers (in)


@attrs.frozen
class Lookup:
    room: str


@attrs.frozen
class PickNode:
    """``pick_node``: the node for the new room ``room``."""

    room: str


@attrs.frozen
class CreateHere:
    """``create_room`` on this node (the LiveDirectory caches the lease)."""

    room: str
    creator: str
    game: str
    private: bool = False


@attrs.frozen
class CreateFor:
    """``create_room`` on behalf of ``node`` (it adopts the lease when the player arrives)."""

    room: str
    node: NodeRecord
    creator: str
    game: str


Call = Lookup | PickNode | CreateHere | CreateFor
#: what a call returned, or the directory error it raised
Answer = RoomLease | NodeRecord | None | DirectoryUnavailable | DirectoryRefused


# ------------------------------------------------------------------ outcomes


@attrs.frozen
class Local:
    """Admit the request here (the lifecycle's admission runs as on one node). ``lease``: the
    lease this node holds on the room now (created, or to adopt into the cache); ``room``: the
    room's name (a new private room's drawn id)."""

    room: str
    lease: RoomLease | None = None


@attrs.frozen
class RedirectTo:
    """Send the player to the owner: REDIRECT (v2) or ERROR 4015 (v1), then close 4015."""

    url: str
    room: str


@attrs.frozen
class RefuseJoin:
    """Refuse here (ERROR and close with the refusal's code)."""

    refusal: Refusal
    message: str


Outcome = Local | RedirectTo | RefuseJoin
Step = Call | Outcome

DIRECTORY_UNAVAILABLE_MESSAGE = "the room directory is unreachable; try again in a moment"
_SEAT_LOST = "seat lost: the seat is no longer held"
_NO_SUCH_PRIVATE = "no such private room"
_SERVER_FULL = "server full: no more rooms can be created"
_CREATE_RATE = "creating rooms too fast; join one or wait a little"


class RouterError(Exception):
    """The driver fed an answer the router was not waiting for (our bug)."""


class Router:
    """One request's way through the directory (see the module docstring for the rules).

    ``node_id``: this node. ``may_host``: it may create one more room (under ``--max-rooms``).
    ``new_private_id``: draws a fresh private room id."""

    def __init__(
        self,
        request: RouteRequest,
        node_id: str,
        *,
        may_host: bool = True,
        new_private_id: Callable[[], str] = lambda: "",
    ) -> None:
        self.request = request
        self.node_id = node_id
        self.may_host = may_host
        self._new_private_id = new_private_id
        self._waiting: Call | None = None
        self._draws = 0
        #: every call made, in order (for tests and logs)
        self.calls: list[Call] = []
        self.outcome: Outcome | None = None

    def start(self, hosted: bool) -> Step:
        """``hosted``: the room runs here already, or this node holds its lease."""
        if self._waiting is not None or self.calls or self.outcome is not None:
            raise RouterError("the router has started already")
        req = self.request
        if req.private:
            return self._create_private()
        if hosted:
            return self._end(Local(req.room))
        return self._call(Lookup(req.room))

    def answer(self, answer: Answer) -> Step:
        """Feed the answer to the call last asked for."""
        call = self._waiting
        if call is None:
            raise RouterError("no call is waiting for an answer")
        self._waiting = None
        if isinstance(answer, DirectoryUnavailable):
            return self._end(
                RefuseJoin(Refusal.DIRECTORY_UNAVAILABLE, DIRECTORY_UNAVAILABLE_MESSAGE)
            )
        if isinstance(call, Lookup):
            if not (answer is None or isinstance(answer, RoomLease)):
                raise RouterError(f"lookup answered with {answer!r}")
            return self._found(answer)
        if isinstance(call, PickNode):
            return self._picked(answer)
        return self._created(call, answer)

    # ------------------------------------------------------------ the rules
    def _found(self, lease: RoomLease | None) -> Step:
        req = self.request
        if lease is None:
            if req.kind is Kind.RESUME:
                return self._end(RefuseJoin(Refusal.SEAT_LOST, _SEAT_LOST))
            if req.private_id:
                return self._end(RefuseJoin(Refusal.NO_SUCH_ROOM, _NO_SUCH_PRIVATE))
            return self._call(PickNode(req.room))
        if req.kind is Kind.JOIN and lease.game and req.game and lease.game != req.game:
            wrong = f"room {req.room!r} runs the game {lease.game!r}"
            return self._end(RefuseJoin(Refusal.WRONG_GAME, wrong))
        if lease.node_id != self.node_id:
            return self._end(RedirectTo(lease.url, req.room))
        # the lease names this node, but the room does not run here: a RESUME's seat cannot be
        # here, a private room is never made again under its id; a public room is adopted
        if req.kind is Kind.RESUME:
            return self._end(RefuseJoin(Refusal.SEAT_LOST, _SEAT_LOST))
        if req.private_id:
            return self._end(RefuseJoin(Refusal.NO_SUCH_ROOM, _NO_SUCH_PRIVATE))
        return self._adopt(lease)

    def _picked(self, answer: Answer) -> Step:
        req = self.request
        if isinstance(answer, DirectoryRefused) and answer.kind is Refused.NO_NODE:
            # no live node record (ours has not landed yet, e.g. the store just restarted)
            return self._create_here()
        if not isinstance(answer, NodeRecord):
            raise RouterError(f"pick_node answered with {answer!r}")
        if answer.node_id == self.node_id:
            return self._create_here()
        return self._call(CreateFor(req.room, answer, req.player_id, req.game))

    def _created(self, call: CreateHere | CreateFor, answer: Answer) -> Step:
        req = self.request
        if isinstance(answer, RoomTaken):
            if req.private:
                return self._create_private()  # the id is taken: draw another
            return self._found(answer.lease)
        if isinstance(answer, DirectoryRefused):
            if answer.kind is Refused.CREATE_RATE:
                return self._end(RefuseJoin(Refusal.ROOM_CREATE_RATE, _CREATE_RATE))
            raise RouterError(f"create_room refused with {answer.kind}")
        if not isinstance(answer, RoomLease):
            raise RouterError(f"create_room answered with {answer!r}")
        if isinstance(call, CreateFor):
            return self._end(RedirectTo(answer.url or call.node.url, call.room))
        return self._end(Local(call.room, answer))

    def _adopt(self, lease: RoomLease) -> Step:
        if not self.may_host:
            return self._end(RefuseJoin(Refusal.SERVER_FULL, _SERVER_FULL))
        return self._end(Local(lease.room, lease))

    def _create_here(self) -> Step:
        req = self.request
        if not self.may_host:
            return self._end(RefuseJoin(Refusal.SERVER_FULL, _SERVER_FULL))
        return self._call(CreateHere(req.room, req.player_id, req.game))

    def _create_private(self) -> Step:
        req = self.request
        if not self.may_host:
            return self._end(RefuseJoin(Refusal.SERVER_FULL, _SERVER_FULL))
        if self._draws >= PRIVATE_DRAWS:
            raise RouterError(f"{PRIVATE_DRAWS} private room ids drawn were all taken")
        self._draws += 1
        return self._call(CreateHere(self._new_private_id(), req.player_id, req.game, True))

    def _call(self, call: Call) -> Call:
        self._waiting = call
        self.calls.append(call)
        return call

    def _end(self, outcome: Outcome) -> Outcome:
        self.outcome = outcome
        return outcome


# ------------------------------------------------------------------ outcomes as actions


def redirect_actions(url: str, room: str, version: int) -> list[Action]:
    """REDIRECT (v2) or ERROR 4015 ``room 'R' lives at URL`` (v1), then the close frame."""
    code = CloseCode.REDIRECT
    if version >= 2:
        return [Send(Redirect(url, room).to_bytes()), Close(code, "redirect")]
    text = f"room {room!r} lives at {url}"
    return [Send(Error(code, text).to_bytes()), Close(code, "redirect")]


def refusal_actions(refused: RefuseJoin) -> list[Action]:
    """Count the refusal, ERROR with its code, then the close frame (as the lifecycle does)."""
    refuse = Refuse(refused.refusal, refused.message)
    return [refuse, *goodbye(refuse.code, refused.message, error=True)]
