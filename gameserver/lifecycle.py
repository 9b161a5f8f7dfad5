"""The connection lifecycle: who gets a seat, in what order, and how a connection ends. No trio.

Everything that decides the fate of a connection lives here, as in h11's ``_state.py``: the
states, the transitions between them (:data:`TRANSITIONS`) and the admission order
(:data:`ADMISSION`) are data, and a :class:`Lifecycle` walks them. The trio layer
(``gameserver.server``) is the driver: it feeds events in (:meth:`Lifecycle.receive`) and
carries the actions that come out::

    life = Lifecycle(directory)                     # the WebSocket handshake is done
    actions = life.receive(JoinReceived(join, verdict))
    # -> [CreateRoom(...)?, Evict(...)?, Seat(...)] when admitted, or
    #    [Refuse(refusal), Send(ERROR bytes), Close(code, reason)] when refused
    life.receive(SeatTaken(number))                 # the driver took the seat
    actions = life.receive(SessionEnded(code, reason))  # -> [Send(CLOSE bytes)?, Close(...)]

Inputs the core cannot compute itself are injected: the token verifier's verdict travels in
:class:`JoinReceived`, and the server's state (draining, CPU load, games, rooms, seats) is read
through a :class:`Directory`. The core never changes that state: it asks for rooms to be
created, older seats to be evicted and seats to be taken, and the driver does it.

Connection states::

    AWAITING_JOIN --JoinReceived--> JOIN_RECEIVED --token--> AUTHENTICATED --checks--> ADMITTED
         |                                |                        |                     |
         |  JoinTimedOut, Draining,       +--------refused---------+              SeatTaken
         |  PeerError, ConnectionLost                 |                                  v
         +------------------------------------------> CLOSED <--SessionEnded------- SEATED

``DETACHED`` and ``RESUMED`` are reserved for resuming a seat after a lost connection (a later
issue): resume will add ``SEATED --ConnectionLost--> DETACHED``, ``DETACHED --Resumed-->
RESUMED``, ``DETACHED --SeatExpired--> CLOSED`` and ``RESUMED --SeatTaken--> SEATED`` to
:data:`TRANSITIONS`; no other code has to know the shape of the graph.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import attrs

from gameserver.auth import AuthError, Identity
from gameserver.game import Game
from gameserver.reasons import (
    PEER_ERROR_CODES,
    ErrorKind,
    Refusal,
)
from gameserver.room import PRIVATE_ROOM_RE, ROOM_NAME_RE
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.messages import Close as CloseMessage
from shared.messages import Error as ErrorMessage
from shared.messages import Join
from shared.protocol import DRAINING_MESSAGE, CloseCode


class LifecycleError(LocalProtocolError):
    """The driver fed an event the current state cannot take (our bug, never the peer's)."""


# ------------------------------------------------------------------ states


class State(enum.Enum):
    AWAITING_JOIN = "awaiting_join"  # the WebSocket handshake is done; no JOIN yet
    JOIN_RECEIVED = "join_received"  # a well-formed JOIN arrived; its token is not checked yet
    AUTHENTICATED = "authenticated"  # the token holds; the server-wide and room checks follow
    ADMITTED = "admitted"  # every check passed; the driver is taking the seat
    SEATED = "seated"  # playing: the room's tick does the connection's I/O
    DETACHED = "detached"  # reserved (resume): the socket is gone, the seat is kept
    RESUMED = "resumed"  # reserved (resume): a new socket claimed a detached seat
    CLOSED = "closed"  # final


# ------------------------------------------------------------------ events (in)


@attrs.frozen
class JoinReceived:
    """A well-formed JOIN, and the token verifier's verdict on its token."""

    join: Join
    verdict: Identity | AuthError


@attrs.frozen
class JoinTimedOut:
    """No JOIN within the join deadline."""


@attrs.frozen
class Draining:
    """The server began to drain while this connection had not joined yet."""


@attrs.frozen
class PeerError:
    """The peer sent bad input (already counted and logged by the driver)."""

    kind: ErrorKind
    code: int
    message: str

    @classmethod
    def from_exc(cls, exc: RemoteProtocolError) -> PeerError:
        return cls(ErrorKind.of(exc), exc.close_code, str(exc))


@attrs.frozen
class ConnectionLost:
    """The transport closed under us: nothing more can be sent."""


@attrs.frozen
class SeatTaken:
    """The driver seated the player (its number in the room)."""

    number: int


@attrs.frozen
class SessionEnded:
    """A seated session ended: its close code and reason, and whether the peer can still be
    told why (an ERROR or CLOSE message before the close frame)."""

    code: int
    reason: str
    send_message: bool = True


ConnectionEvent = (
    JoinReceived | JoinTimedOut | Draining | PeerError | ConnectionLost | SeatTaken | SessionEnded
)


# ------------------------------------------------------------------ actions (out)


@attrs.frozen
class Refuse:
    """Count (and log) a refusal. ``step`` is the admission step that refused, if any."""

    refusal: Refusal
    message: str
    step: Step | None = None

    @property
    def code(self) -> CloseCode:
        code = self.refusal.code
        assert code is not None, self.refusal
        return code


@attrs.frozen
class CreateRoom:
    """Create the room ``name`` running ``game`` (then seat the player in it)."""

    name: str
    game: type[Game]
    private: bool


@attrs.frozen
class Evict:
    """One seat per player: close the older connection of ``player_id`` (4009) and free its
    seat now, so that its avatar leaves in the tick in which the new one joins."""

    player_id: str


@attrs.frozen
class Seat:
    """Seat ``identity`` in room ``room``, then report :class:`SeatTaken`."""

    room: str
    identity: Identity


@attrs.frozen
class Send:
    """Send this message (an ERROR or a CLOSE) on the WebSocket."""

    data: bytes


@attrs.frozen
class Close:
    """Send the close frame (unless the closing handshake has begun) and finish it."""

    code: int
    reason: str


Action = Refuse | CreateRoom | Evict | Seat | Send | Close


def goodbye(
    code: int, reason: str, send_message: bool = True, *, error: bool = False
) -> list[Action]:
    """The last actions of a connection: ERROR (a refusal, or a code of
    :data:`PEER_ERROR_CODES`) or CLOSE (the server's own decision) while the peer can still
    read it, then the close frame."""
    out: list[Action] = []
    if send_message:
        message = ErrorMessage if error or code in PEER_ERROR_CODES else CloseMessage
        out.append(Send(message(code, reason).to_bytes()))
    out.append(Close(code, reason))
    return out


# ------------------------------------------------------------------ what admission reads


@attrs.frozen
class RoomInfo:
    """What admission needs to know about a live room."""

    name: str
    game: str
    private: bool
    closing: bool
    players: int
    max_players: int


class Directory(Protocol):
    """The server's state as admission sees it (injected; the tests pass a fake)."""

    @property
    def draining(self) -> bool: ...

    @property
    def overloaded(self) -> bool:
        """True while the CPU budget is in use (see ``gameserver.load.LoadMonitor``)."""
        ...

    @property
    def max_rooms(self) -> int: ...

    def room_count(self) -> int: ...

    def game(self, name: str) -> type[Game] | None:
        """The game called ``name`` (``""``: the default game), or None."""
        ...

    def room(self, name: str) -> RoomInfo | None:
        """The live room called ``name``, or None."""
        ...

    def seat_of(self, player_id: str) -> str | None:
        """The room in which ``player_id`` has a seat now, or None."""
        ...

    def new_private_room_id(self) -> str:
        """A fresh, unguessable private room id (``~`` and 22 URL-safe characters)."""
        ...

    def may_create_room(self, creator: str) -> bool:
        """Take one of ``creator``'s room-creation tokens; False when there is none left."""
        ...


# ------------------------------------------------------------------ the admission order


class Step(enum.Enum):
    """The admission steps, in :data:`ADMISSION` order."""

    TOKEN = "token"
    DRAINING = "draining"
    CPU_BUDGET = "cpu_budget"
    GAME = "game"
    ROOM = "room"
    ROOM_OPEN = "room_open"
    CAPACITY = "capacity"


@attrs.define
class _Join:
    """One JOIN on its way through the admission steps; each fills in what it found out."""

    join: Join
    verdict: Identity | AuthError
    directory: Directory
    identity: Identity | None = None
    game: type[Game] | None = None
    room: RoomInfo | None = None
    room_name: str = ""
    create: bool = False


_Verdict = tuple[Refusal, str] | None
Check = Callable[[_Join], _Verdict]


def _check_token(j: _Join) -> _Verdict:
    if isinstance(j.verdict, AuthError):
        return Refusal.of_auth(j.verdict.failure), f"unauthorized: {j.verdict}"
    j.identity = j.verdict
    return None


def _check_draining(j: _Join) -> _Verdict:
    if j.directory.draining:
        return Refusal.DRAINING, DRAINING_MESSAGE
    return None


def _check_cpu_budget(j: _Join) -> _Verdict:
    if j.directory.overloaded:
        return Refusal.SERVER_FULL, "server full: its CPU budget is in use; try again later"
    return None


def _check_game(j: _Join) -> _Verdict:
    assert j.identity is not None
    game = j.directory.game(j.join.game)
    if game is None:
        return Refusal.UNKNOWN_GAME, f"unknown game {j.join.game!r}"
    if not j.identity.may_play(game.name):
        return Refusal.FORBIDDEN_GAME, f"this token may not play {game.name!r}"
    j.game = game
    return None


def _check_room(j: _Join) -> _Verdict:
    """Names, private rooms, room authorization, then the room itself: an existing room must
    run the game; a new one needs a free room slot and one of the player's creation tokens."""
    assert j.identity is not None and j.game is not None
    d = j.directory
    join = j.join
    if join.private:
        if not j.identity.may_join("*"):
            return Refusal.FORBIDDEN_ROOM, "this token may not create private rooms"
        name = ""  # a new private room; its id is drawn only if it is created
    else:
        name = join.room
        if PRIVATE_ROOM_RE.fullmatch(name):
            room = d.room(name)
            if room is None or not room.private:
                return Refusal.NO_SUCH_ROOM, "no such private room"
        elif not ROOM_NAME_RE.fullmatch(name):
            return Refusal.BAD_ROOM, "room names are 1-64 characters of A-Z a-z 0-9 _ . : -"
        if not j.identity.may_join(name):
            return Refusal.FORBIDDEN_ROOM, f"this token may not join room {name!r}"
        j.room = d.room(name)
    if j.room is not None:
        if j.room.game != j.game.name:
            return Refusal.WRONG_GAME, f"room {name!r} runs the game {j.room.game!r}"
        j.room_name = name
        return None
    if d.room_count() >= d.max_rooms:
        return Refusal.SERVER_FULL, "server full: no more rooms can be created"
    if not d.may_create_room(j.identity.player_id):
        return Refusal.ROOM_CREATE_RATE, "creating rooms too fast; join one or wait a little"
    j.room_name = name or d.new_private_room_id()
    j.create = True
    return None


def _check_room_open(j: _Join) -> _Verdict:
    if j.room is not None and j.room.closing:
        return Refusal.ROOM_CLOSED, "this room has been closed"
    return None


def _check_capacity(j: _Join) -> _Verdict:
    # an older seat of the same player in this room is about to be freed: it counts as free.
    # The check comes before any eviction: a refused JOIN never costs an older seat.
    assert j.identity is not None
    room = j.room
    if (
        room is not None
        and room.players >= room.max_players
        and j.directory.seat_of(j.identity.player_id) != room.name
    ):
        return Refusal.ROOM_FULL, f"room {room.name!r} is full"
    return None


def _refusals(items: Iterable[Refusal]) -> frozenset[Refusal]:
    return frozenset(items)


@attrs.frozen
class Row:
    """One admission step: the check, the refusals it may give, and the state after it."""

    step: Step
    check: Check
    refusals: frozenset[Refusal] = attrs.field(converter=_refusals)
    then: State = State.AUTHENTICATED


_AUTH_REFUSALS = {
    Refusal.AUTH_MISSING,
    Refusal.AUTH_MALFORMED,
    Refusal.AUTH_EXPIRED,
    Refusal.AUTH_BAD_SIGNATURE,
    Refusal.AUTH_BAD_CLAIMS,
}
_ROOM_REFUSALS = {
    Refusal.FORBIDDEN_ROOM,
    Refusal.NO_SUCH_ROOM,
    Refusal.BAD_ROOM,
    Refusal.WRONG_GAME,
    Refusal.SERVER_FULL,
    Refusal.ROOM_CREATE_RATE,
}

#: The admission order. A JOIN runs these checks top to bottom; the first refusal ends it
#: (-> CLOSED) and nothing after it runs; past the last row the JOIN is ADMITTED, and only
#: then are rooms created, older seats evicted and the seat taken.
# fmt: off
ADMISSION: tuple[Row, ...] = (
    #   step             check              may refuse with         the state after it
    Row(Step.TOKEN,      _check_token,      _AUTH_REFUSALS,         State.AUTHENTICATED),
    Row(Step.DRAINING,   _check_draining,   {Refusal.DRAINING},     State.AUTHENTICATED),
    Row(Step.CPU_BUDGET, _check_cpu_budget, {Refusal.SERVER_FULL},  State.AUTHENTICATED),
    Row(Step.GAME,       _check_game,       {Refusal.UNKNOWN_GAME,
                                             Refusal.FORBIDDEN_GAME}, State.AUTHENTICATED),
    Row(Step.ROOM,       _check_room,       _ROOM_REFUSALS,         State.AUTHENTICATED),
    Row(Step.ROOM_OPEN,  _check_room_open,  {Refusal.ROOM_CLOSED},  State.AUTHENTICATED),
    Row(Step.CAPACITY,   _check_capacity,   {Refusal.ROOM_FULL},    State.ADMITTED),
)
# fmt: on


#: The lifecycle's event-triggered transitions: ``TRANSITIONS[state][event type]`` is the next
#: state. From JOIN_RECEIVED the :data:`ADMISSION` rows take over (to ADMITTED or CLOSED).
#: Anything not listed raises :class:`LifecycleError`.
TRANSITIONS: Mapping[State, Mapping[type[ConnectionEvent], State]] = {
    State.AWAITING_JOIN: {
        JoinReceived: State.JOIN_RECEIVED,
        JoinTimedOut: State.CLOSED,
        Draining: State.CLOSED,
        PeerError: State.CLOSED,
        ConnectionLost: State.CLOSED,
    },
    State.JOIN_RECEIVED: {},
    State.AUTHENTICATED: {},
    State.ADMITTED: {SeatTaken: State.SEATED},
    State.SEATED: {SessionEnded: State.CLOSED, ConnectionLost: State.CLOSED},
    State.DETACHED: {},
    State.RESUMED: {},
    State.CLOSED: {},
}


class Lifecycle:
    """One connection's lifecycle, from the end of the WebSocket handshake to CLOSED."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.state = State.AWAITING_JOIN
        #: every state this connection has been in, in order
        self.history: list[State] = [State.AWAITING_JOIN]
        #: set once the token is verified
        self.identity: Identity | None = None
        #: the room of the seat, once admitted
        self.room: str | None = None
        self.number: int | None = None
        #: why the connection was refused, if it was
        self.refused: Refuse | None = None

    def _enter(self, state: State) -> None:
        self.state = state
        self.history.append(state)

    def receive(self, event: ConnectionEvent) -> list[Action]:
        """Feed one event in; returns the actions for the driver to carry out, in order."""
        try:
            next_state = TRANSITIONS[self.state][type(event)]
        except KeyError:
            raise LifecycleError(
                f"can't handle event {type(event).__name__} in state {self.state.name}"
            ) from None
        self._enter(next_state)
        if isinstance(event, JoinReceived):
            return self._admit(event)
        if isinstance(event, SeatTaken):
            self.number = event.number
            return []
        if isinstance(event, JoinTimedOut):
            return self._refuse(Refusal.JOIN_TIMEOUT, "no JOIN within the join deadline")
        if isinstance(event, Draining):
            return self._refuse(Refusal.DRAINING, DRAINING_MESSAGE)
        if isinstance(event, PeerError):
            return goodbye(event.code, event.message, error=True)
        if isinstance(event, SessionEnded):
            return goodbye(event.code, event.reason, event.send_message)
        return []  # ConnectionLost: nothing can be sent any more

    def _refuse(self, refusal: Refusal, message: str, step: Step | None = None) -> list[Action]:
        refuse = Refuse(refusal, message, step)
        self.refused = refuse
        if self.state is not State.CLOSED:
            self._enter(State.CLOSED)
        return [refuse, *goodbye(refuse.code, message, error=True)]

    def _admit(self, event: JoinReceived) -> list[Action]:
        j = _Join(event.join, event.verdict, self.directory)
        for row in ADMISSION:
            verdict = row.check(j)
            if verdict is not None:
                refusal, message = verdict
                if refusal not in row.refusals:
                    raise LifecycleError(f"step {row.step.name} refused with {refusal.name}")
                return self._refuse(refusal, message, row.step)
            if row.then is not self.state:
                self._enter(row.then)
            if row.step is Step.TOKEN:
                self.identity = j.identity
        assert j.identity is not None and j.game is not None
        self.room = j.room_name
        actions: list[Action] = []
        if j.create:
            actions.append(CreateRoom(j.room_name, j.game, j.join.private))
        if self.directory.seat_of(j.identity.player_id) is not None:
            actions.append(Evict(j.identity.player_id))
        actions.append(Seat(j.room_name, j.identity))
        return actions
