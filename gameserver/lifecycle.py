"""The connection lifecycle: who gets a seat, in what order, and how a connection ends. No trio.

Everything that decides the fate of a connection lives here, as in h11's ``_state.py``: the
states, the transitions between them (:data:`TRANSITIONS`), the admission orders
(:data:`ADMISSION` for a JOIN, :data:`RESUME_ADMISSION` for a RESUME) and what becomes of a
seat when its connection ends (:data:`SEAT_FATES`) are data, and a :class:`Lifecycle` walks
them. The trio layer (``gameserver.server``) is the driver: it feeds events in
(:meth:`Lifecycle.receive`) and carries the actions that come out::

    life = Lifecycle(directory, version)            # the WebSocket handshake is done
    actions = life.receive(JoinReceived(join, verdict))
    # -> [CreateRoom(...)?, Evict(...)?, Seat(...)] when admitted, or
    #    [Refuse(refusal), Send(ERROR bytes), Close(code, reason)] when refused
    actions = life.receive(ResumeReceived(resume, claims))   # instead of a JOIN (v2)
    # -> [ReplaceAttached(...)?, Reattach(...)] when admitted, or the refusal as above
    life.receive(SeatTaken(number))                 # the driver took the seat
    actions = life.receive(SessionEnded(code, reason, cause=EndCause.TRANSPORT_LOST))
    # -> [Detach(...) | Unseat(...) | nothing, Send(CLOSE bytes)?, Close(...)]

Inputs the core cannot compute itself are injected: the token verifier's verdict travels in
:class:`JoinReceived`, the resume token's (``gameserver.resume.ResumeKey.parse``) in
:class:`ResumeReceived`, and the server's state (draining, CPU load, games, rooms, seats,
held seats) is read through a :class:`Directory`. The core never changes that state: it asks
for rooms to be created, older seats to be evicted or replaced, seats to be taken, held or
freed, and the driver does it.

Connection states::

    AWAITING_JOIN --JoinReceived--> JOIN_RECEIVED --token--> AUTHENTICATED --checks--> ADMITTED
      |   |                               |                        |                     |
      |   |  JoinTimedOut, Draining,      +--------refused---------+              SeatTaken
      |   |  PeerError, ConnectionLost                |                                  v
      |   +-----------------------------------------> CLOSED <--SessionEnded------- SEATED
      |                                                 ^   (not held: Unseat)     ^   |
      |                                     refused     |                SeatTaken |   |
      +--ResumeReceived--> RESUME_RECEIVED --draining, token, seat--> RESUMED -----+   |
                                                                                       |
                                           DETACHED <--SessionEnded (held: Detach)-----+

``DETACHED``: this connection ended and its seat is held for a resume (the room counts the
hold down in ticks and lets the seat leave when it runs out). A RESUME arrives on another
connection, whose own lifecycle goes ``RESUME_RECEIVED -> RESUMED -> SEATED``. ``CLOSED`` and
``DETACHED`` are final.

Whether a seat is held is decided by the typed cause of the session's end (:class:`EndCause`,
set by the driver): a lost connection the server did not decide is held (:data:`HOLDS`), on a
v2 connection, in a room whose games hold seats (``Directory.seat_hold``), while the server is
not draining; a LEAVE, a close 1000, the peer's errors and the server's own decisions are not.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

import attrs

from gameserver.auth import AuthError, Identity
from gameserver.game import Game
from gameserver.reasons import (
    PEER_ERROR_CODES,
    ErrorKind,
    Refusal,
)
from gameserver.resume import ResumeClaims, ResumeRefusal, ResumeTokenError
from gameserver.room import PRIVATE_ROOM_RE, ROOM_NAME_RE
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.messages import Close as CloseMessage
from shared.messages import Error as ErrorMessage
from shared.messages import Join, Resume
from shared.protocol import DRAINING_MESSAGE, PROTOCOL_VERSION, CloseCode


class LifecycleError(LocalProtocolError):
    """The driver fed an event the current state cannot take (our bug, never the peer's)."""


# ------------------------------------------------------------------ states


class State(enum.Enum):
    AWAITING_JOIN = "awaiting_join"  # the WebSocket handshake is done; no JOIN yet
    JOIN_RECEIVED = "join_received"  # a well-formed JOIN arrived; its token is not checked yet
    AUTHENTICATED = "authenticated"  # the token holds; the server-wide and room checks follow
    ADMITTED = "admitted"  # every check passed; the driver is taking the seat
    RESUME_RECEIVED = "resume_received"  # a well-formed RESUME arrived (v2), instead of JOIN
    RESUMED = "resumed"  # the RESUME passed its checks; the driver is taking the seat back
    SEATED = "seated"  # playing: the room's tick does the connection's I/O
    DETACHED = "detached"  # final: this connection ended and its seat is held for a resume
    CLOSED = "closed"  # final


# ------------------------------------------------------------------ events (in)


@attrs.frozen
class JoinReceived:
    """A well-formed JOIN, and the token verifier's verdict on its token."""

    join: Join
    verdict: Identity | AuthError


@attrs.frozen
class ResumeReceived:
    """A well-formed RESUME (v2), and what its token claims, or why it is no token of ours
    (``gameserver.resume.ResumeKey.parse``)."""

    resume: Resume
    verdict: ResumeClaims | ResumeTokenError


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


class EndCause(enum.Enum):
    """Why a seated session ended, as the driver saw it. It decides the seat's fate
    (:data:`SEAT_FATES`); the value is a label for logs and metrics."""

    LEFT = "left"  # the player sent LEAVE
    PEER_CLOSED_NORMAL = "peer_closed_normal"  # the peer's close frame, code 1000
    PEER_CLOSED_OTHER = "peer_closed_other"  # the peer's close frame, any other code (1001 ...)
    TRANSPORT_LOST = "transport_lost"  # reset, EOF without a close frame, broken TLS
    IDLE = "idle"  # nothing from the peer for --idle-timeout (1001)
    TOO_SLOW = "too_slow"  # its reliable backlog piled up (4008)
    PEER_ERROR = "peer_error"  # bad input (1002, 1003, 1007, 1009)
    FLOOD = "flood"  # sustained message rate over the limit (1008)
    KICKED = "kicked"  # by an admin (4010)
    ROOM_CLOSED = "room_closed"  # by an admin (4011)
    REPLACED = "replaced"  # a JOIN of the same player id took over; its seat is freed (4009)
    RESUMED_ELSEWHERE = "resumed_elsewhere"  # a RESUME took the seat over (4009)
    DRAINED = "drained"  # the drain's deadline passed (1001)
    SHUTDOWN = "shutdown"  # the server stopped (1001)
    CRASHED = "crashed"  # the game raised (1011)


class SeatFate(enum.Enum):
    """What becomes of a seat when its session ends."""

    HOLD = "hold"  # kept for a resume: :class:`Detach`
    UNSEAT = "unseat"  # freed now (on_leave at the next tick): :class:`Unseat`
    MOVED = "moved"  # no longer this session's (evicted or resumed elsewhere): left alone


#: The fate of a seat by the cause of its session's end. HOLD applies only on a v2
#: connection, in a room that holds seats, while the server is not draining; else UNSEAT.
# fmt: off
SEAT_FATES: Mapping[EndCause, SeatFate] = {
    EndCause.LEFT:               SeatFate.UNSEAT,
    EndCause.PEER_CLOSED_NORMAL: SeatFate.UNSEAT,
    EndCause.PEER_CLOSED_OTHER:  SeatFate.HOLD,
    EndCause.TRANSPORT_LOST:     SeatFate.HOLD,
    EndCause.IDLE:               SeatFate.HOLD,
    EndCause.TOO_SLOW:           SeatFate.HOLD,
    EndCause.PEER_ERROR:         SeatFate.UNSEAT,
    EndCause.FLOOD:              SeatFate.UNSEAT,
    EndCause.KICKED:             SeatFate.UNSEAT,
    EndCause.ROOM_CLOSED:        SeatFate.UNSEAT,
    EndCause.REPLACED:           SeatFate.MOVED,
    EndCause.RESUMED_ELSEWHERE:  SeatFate.MOVED,
    EndCause.DRAINED:            SeatFate.UNSEAT,
    EndCause.SHUTDOWN:           SeatFate.UNSEAT,
    EndCause.CRASHED:            SeatFate.UNSEAT,
}
# fmt: on
#: the causes whose seat is held (a connection lost without LEAVE, not by our decision)
HOLDS: frozenset[EndCause] = frozenset(c for c, f in SEAT_FATES.items() if f is SeatFate.HOLD)


@attrs.frozen
class SessionEnded:
    """A seated session ended: its close code and reason, whether the peer can still be
    told why (an ERROR or CLOSE message before the close frame), and why it ended."""

    code: int
    reason: str
    send_message: bool = True
    cause: EndCause = attrs.field(kw_only=True)


ConnectionEvent = (
    JoinReceived
    | ResumeReceived
    | JoinTimedOut
    | Draining
    | PeerError
    | ConnectionLost
    | SeatTaken
    | SessionEnded
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
class ReplaceAttached:
    """A RESUME takes over seat ``number`` of ``room`` while an older connection is still
    attached to it (the server has not noticed it die): close that one with 4009 "replaced by
    a resumed connection" and detach it from the seat at once, so that its end can never
    touch the seat again (its fate is :attr:`SeatFate.MOVED`)."""

    room: str
    number: int


@attrs.frozen
class Reattach:
    """Give seat ``number`` of ``room`` (held, or just freed of its old connection) to this
    connection: rotate its token generation (so the token just used, and any racing copy of
    it, is dead), then report :class:`SeatTaken`. After the next tick the driver sends
    JOINED(RESUMED) and a catch-up from ``have_tick``."""

    room: str
    number: int
    have_tick: int


@attrs.frozen
class Detach:
    """The session ended without LEAVE: hold its seat for a resume (``Room.detach``)."""

    room: str
    number: int


@attrs.frozen
class Unseat:
    """The session ended: free its seat now (``Room.unseat``; on_leave at the next tick)."""

    room: str
    number: int


@attrs.frozen
class Send:
    """Send this message (an ERROR or a CLOSE) on the WebSocket."""

    data: bytes


@attrs.frozen
class Close:
    """Send the close frame (unless the closing handshake has begun) and finish it."""

    code: int
    reason: str


Action = (
    Refuse | CreateRoom | Evict | Seat | ReplaceAttached | Reattach | Detach | Unseat | Send | Close
)


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

    def seat_hold(self, room: str) -> float:
        """Seconds a dropped seat of ``room`` is held for a resume (0: never held)."""
        ...

    def resume_check(self, room: str, claims: ResumeClaims) -> ResumeRefusal | None:
        """Whether the seat a genuine resume token names may be taken back: None, or
        ``SEAT_LOST`` (no live room with that epoch, or the seat is neither held nor seated)
        or ``TOKEN_USED`` (a newer token of the seat exists)."""
        ...

    def seat_attached(self, room: str, number: int) -> bool:
        """Whether seat ``number`` of ``room`` still has a live connection (not held)."""
        ...


# ------------------------------------------------------------------ the admission order


class Step(enum.Enum):
    """The admission steps: a JOIN's in :data:`ADMISSION` order, then a RESUME's own
    (:data:`RESUME_ADMISSION`: ``DRAINING``, ``TOKEN``, ``SEAT``)."""

    TOKEN = "token"
    DRAINING = "draining"
    CPU_BUDGET = "cpu_budget"
    GAME = "game"
    ROOM = "room"
    ROOM_OPEN = "room_open"
    CAPACITY = "capacity"
    SEAT = "seat"  # RESUME only: the seat is still held (or seated) and the token current


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


@attrs.define
class _Resume:
    """One RESUME on its way through :data:`RESUME_ADMISSION`."""

    resume: Resume
    verdict: ResumeClaims | ResumeTokenError
    directory: Directory
    claims: ResumeClaims | None = None


_Verdict = tuple[Refusal, str] | None
_T = TypeVar("_T", _Join, _Resume)


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
    if game.interest is not None and j.join.version < 2:  # views exist from v2 on
        return Refusal.VERSION_REQUIRED, f"game {game.name!r} needs gamesync.v2"
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
class Row(Generic[_T]):
    """One admission step: the check, the refusals it may give, and the state after it."""

    step: Step
    check: Callable[[_T], _Verdict]
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
ADMISSION: tuple[Row[_Join], ...] = (
    #   step             check              may refuse with         the state after it
    Row(Step.TOKEN,      _check_token,      _AUTH_REFUSALS,         State.AUTHENTICATED),
    Row(Step.DRAINING,   _check_draining,   {Refusal.DRAINING},     State.AUTHENTICATED),
    Row(Step.CPU_BUDGET, _check_cpu_budget, {Refusal.SERVER_FULL},  State.AUTHENTICATED),
    Row(Step.GAME,       _check_game,       {Refusal.UNKNOWN_GAME,
                                             Refusal.FORBIDDEN_GAME,
                                             Refusal.VERSION_REQUIRED}, State.AUTHENTICATED),
    Row(Step.ROOM,       _check_room,       _ROOM_REFUSALS,         State.AUTHENTICATED),
    Row(Step.ROOM_OPEN,  _check_room_open,  {Refusal.ROOM_CLOSED},  State.AUTHENTICATED),
    Row(Step.CAPACITY,   _check_capacity,   {Refusal.ROOM_FULL},    State.ADMITTED),
)
# fmt: on


def _check_resume_draining(r: _Resume) -> _Verdict:
    if r.directory.draining:
        return Refusal.DRAINING, DRAINING_MESSAGE
    return None


def _check_resume_token(r: _Resume) -> _Verdict:
    if isinstance(r.verdict, ResumeTokenError):
        return Refusal.RESUME_BAD_TOKEN, ResumeRefusal.MALFORMED.message
    r.claims = r.verdict
    return None


def _check_seat(r: _Resume) -> _Verdict:
    assert r.claims is not None
    refused = r.directory.resume_check(r.resume.room, r.claims)
    if refused is None:
        return None
    if refused is ResumeRefusal.TOKEN_USED:
        return Refusal.RESUME_REPLAYED, refused.message
    return Refusal.SEAT_LOST, ResumeRefusal.SEAT_LOST.message


#: The admission order of a RESUME (v2). No CPU-budget check: the seat is already paid for.
#: Past the last row the RESUME is RESUMED, and only then is an older connection replaced
#: and the seat taken back.
# fmt: off
RESUME_ADMISSION: tuple[Row[_Resume], ...] = (
    #   step           check                   may refuse with              the state after
    Row(Step.DRAINING, _check_resume_draining, {Refusal.DRAINING},          State.RESUME_RECEIVED),
    Row(Step.TOKEN,    _check_resume_token,    {Refusal.RESUME_BAD_TOKEN},  State.RESUME_RECEIVED),
    Row(Step.SEAT,     _check_seat,            {Refusal.SEAT_LOST,
                                                Refusal.RESUME_REPLAYED},   State.RESUMED),
)
# fmt: on


def passes_before(event: JoinReceived | ResumeReceived, directory: Directory, step: Step) -> bool:
    """Whether ``event`` passes every admission row before ``step`` (a JOIN's
    :data:`ADMISSION`, a RESUME's :data:`RESUME_ADMISSION`). Those rows only read: a cluster
    node runs them before it asks the directory where the room lives (``Step.ROOM`` for a
    JOIN, ``Step.SEAT`` for a RESUME), so that a JOIN that would be refused anyway, or an
    unauthenticated one, never costs a directory call."""
    if isinstance(event, JoinReceived):
        join = _Join(event.join, event.verdict, directory)
        return _passes(ADMISSION, join, step)
    return _passes(RESUME_ADMISSION, _Resume(event.resume, event.verdict, directory), step)


def _passes(rows: tuple[Row[_T], ...], item: _T, step: Step) -> bool:
    for row in rows:
        if row.step is step:
            return True
        if row.check(item) is not None:
            return False
    return True


#: The lifecycle's event-triggered transitions: ``TRANSITIONS[state][event type]`` is the next
#: state. From JOIN_RECEIVED the :data:`ADMISSION` rows take over (to ADMITTED or CLOSED),
#: from RESUME_RECEIVED the :data:`RESUME_ADMISSION` rows (to RESUMED or CLOSED). From SEATED
#: an end goes to CLOSED, or to DETACHED when the seat is held (:data:`SEAT_FATES`).
#: Anything not listed raises :class:`LifecycleError`.
TRANSITIONS: Mapping[State, Mapping[type[ConnectionEvent], State]] = {
    State.AWAITING_JOIN: {
        JoinReceived: State.JOIN_RECEIVED,
        ResumeReceived: State.RESUME_RECEIVED,
        JoinTimedOut: State.CLOSED,
        Draining: State.CLOSED,
        PeerError: State.CLOSED,
        ConnectionLost: State.CLOSED,
    },
    State.JOIN_RECEIVED: {},
    State.AUTHENTICATED: {},
    State.ADMITTED: {SeatTaken: State.SEATED},
    State.RESUME_RECEIVED: {},
    State.RESUMED: {SeatTaken: State.SEATED},
    State.SEATED: {SessionEnded: State.CLOSED, ConnectionLost: State.CLOSED},
    State.DETACHED: {},
    State.CLOSED: {},
}


class Lifecycle:
    """One connection's lifecycle, from the end of the WebSocket handshake to CLOSED."""

    def __init__(self, directory: Directory, version: int = PROTOCOL_VERSION) -> None:
        self.directory = directory
        #: the protocol version negotiated for the connection (its subprotocol): RESUME and
        #: held seats exist from 2 on
        self.version = version
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
        #: what became of the seat when the session ended
        self.fate: SeatFate | None = None

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
        if isinstance(event, JoinReceived | ResumeReceived):
            version = (
                event.join.version if isinstance(event, JoinReceived) else event.resume.version
            )
            if version != self.version:  # the codec checks it against the subprotocol
                raise LifecycleError(
                    f"a version {version} message on a version {self.version} connection"
                )
            if isinstance(event, ResumeReceived) and self.version < 2:
                raise LifecycleError("RESUME on a version 1 connection")
        if self.state is State.SEATED:  # SessionEnded, or ConnectionLost: nothing to send
            if isinstance(event, SessionEnded):
                fate = self._seat_fate(event.cause)
                return [*fate, *goodbye(event.code, event.reason, event.send_message)]
            return self._seat_fate(EndCause.TRANSPORT_LOST)
        self._enter(next_state)
        if isinstance(event, JoinReceived):
            return self._admit(event)
        if isinstance(event, ResumeReceived):
            return self._admit_resume(event)
        if isinstance(event, SeatTaken):
            self.number = event.number
            return []
        if isinstance(event, JoinTimedOut):
            return self._refuse(Refusal.JOIN_TIMEOUT, "no JOIN within the join deadline")
        if isinstance(event, Draining):
            return self._refuse(Refusal.DRAINING, DRAINING_MESSAGE)
        if isinstance(event, PeerError):
            return goodbye(event.code, event.message, error=True)
        return []  # ConnectionLost: nothing can be sent any more

    def _seat_fate(self, cause: EndCause) -> list[Action]:
        """Leave SEATED: the seat's fate (:data:`SEAT_FATES`) as the driver's action, and the
        state that follows (DETACHED for a held seat, else CLOSED)."""
        assert self.room is not None and self.number is not None
        fate = SEAT_FATES[cause]
        d = self.directory
        if fate is SeatFate.HOLD and (
            self.version < 2 or d.draining or d.seat_hold(self.room) <= 0
        ):
            fate = SeatFate.UNSEAT
        self.fate = fate
        self._enter(State.DETACHED if fate is SeatFate.HOLD else State.CLOSED)
        if fate is SeatFate.HOLD:
            return [Detach(self.room, self.number)]
        if fate is SeatFate.UNSEAT:
            return [Unseat(self.room, self.number)]
        return []

    def _refuse(self, refusal: Refusal, message: str, step: Step | None = None) -> list[Action]:
        refuse = Refuse(refusal, message, step)
        self.refused = refuse
        if self.state is not State.CLOSED:
            self._enter(State.CLOSED)
        return [refuse, *goodbye(refuse.code, message, error=True)]

    def _admit_resume(self, event: ResumeReceived) -> list[Action]:
        r = _Resume(event.resume, event.verdict, self.directory)
        for row in RESUME_ADMISSION:
            verdict = row.check(r)
            if verdict is not None:
                refusal, message = verdict
                if refusal not in row.refusals:
                    raise LifecycleError(f"step {row.step.name} refused with {refusal.name}")
                return self._refuse(refusal, message, row.step)
            if row.then is not self.state:
                self._enter(row.then)
        assert r.claims is not None
        room, number = event.resume.room, r.claims.number
        self.room = room
        actions: list[Action] = []
        if self.directory.seat_attached(room, number):
            actions.append(ReplaceAttached(room, number))
        actions.append(Reattach(room, number, event.resume.have_tick))
        return actions

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
