"""The SDK's reconnect policy, without I/O: backoff, which ends are worth a reconnect, stalls.

:class:`Reconnector` is a small state machine. The trio layer (:mod:`clients.client`) tells it
what happened -- a JOIN or RESUME handshake succeeded (:meth:`Reconnector.seated`), the seated
connection ended (:meth:`Reconnector.ended`), an attempt failed
(:meth:`Reconnector.attempt_failed`) -- and gets back what to do: :class:`Retry` (sleep
``delay``, then connect and send RESUME, or a fresh JOIN) or :class:`Finish` (the client is
lost), plus the connection events to publish. Time and randomness come in as arguments, so
every rule is testable without trio.

Backoff is exponential with full jitter: attempt n (1-based) waits
``random() * min(cap, base * 2 ** (n - 1))``; with the defaults (0.1 s, 0.75 s, 40 attempts) the
first try after the network returns comes within about a second, and the attempts span about
30 s, beyond the server's default 20 s seat hold.
"""

from __future__ import annotations

import enum
import math
import random as _random
from collections.abc import Callable

import attrs

from shared.protocol import CloseCode

#: gamesync.v2's close code for a RESUME whose seat is no longer held (the hold expired, the
#: player left, the room closed); the SDK falls back to a fresh JOIN.
SEAT_LOST = CloseCode.SEAT_LOST


class ConnectionState(enum.StrEnum):
    """``GameClient.connection_state``; compares equal to its string value."""

    #: before the first JOINED (``open_game_client`` yields only once connected)
    CONNECTING = "connecting"
    #: seated: the server streams the room's state to us
    CONNECTED = "connected"
    #: the connection ended unexpectedly; attempts to resume (or rejoin) are under way
    RECONNECTING = "reconnecting"
    #: for good: we left, or the client is lost (see ``GameClient.failure``)
    CLOSED = "closed"


class EndCause(enum.Enum):
    """How a connection, or a connection attempt, ended."""

    #: we left: ``close()``, or the end of the ``async with`` block
    LEFT = "left"
    #: the TCP/TLS stream broke or ended without a WebSocket close (1006), or a send failed
    TRANSPORT = "transport"
    #: the server closed the connection: a CLOSE message or a close frame, with ``code``
    CLOSED = "closed"
    #: the server answered JOIN or RESUME with ERROR ``code``
    REFUSED = "refused"
    #: no message from the server for the stall timeout while seated: the socket is dead
    STALLED = "stalled"
    #: TCP, TLS or the WebSocket handshake failed
    CONNECT_FAILED = "connect failed"
    #: the attempt (connect and handshake) took longer than its timeout
    TIMEOUT = "timeout"
    #: a malformed message from the server, or a desync with ``raise_on_desync``
    PROTOCOL = "protocol"
    #: the ``token`` function raised (or returned a token too long for JOIN)
    TOKEN_FAILED = "token failed"
    #: a REDIRECT the client did not follow: more than 3 for one join, or a URL it refuses
    REDIRECT = "redirect failed"


@attrs.frozen
class ConnectionEnd:
    """What ended a connection or an attempt: the cause, the close/error code if there was one,
    and the server's close reason or error message (or our description of the failure). The
    text is for logs; nothing compares it."""

    cause: EndCause
    code: int | None = None
    detail: str = ""


class Phase(enum.Enum):
    """Where a connection was when it ended."""

    SEATED = "seated"  # after a successful JOIN or RESUME
    RESUMING = "resuming"  # in the handshake of a RESUME attempt
    JOINING = "joining"  # in the handshake of a fresh JOIN during a reconnect


class Verdict(enum.Enum):
    RETRY = "retry"  # try again after a backoff delay
    REJOIN = "rejoin"  # the seat is gone: a fresh JOIN of the same room, at once
    FINAL = "final"  # the client is lost (or we left)


#: close codes of a seated connection that are worth resuming after: the server or a proxy
#: lost us, not our doing. The 1001 "server restarting; come back later" (RESTART_REASON) of a
#: drain's end is one too: the next attempts get 4012 while it drains, then reach the
#: restarted server (or, behind a load balancer, another instance), where RESUME gets 4013
#: and the client joins the room afresh.
RESUMABLE_CLOSE_CODES = frozenset(
    {
        CloseCode.NORMAL,  # a close without our LEAVE (the server only closes 1000 after LEAVE)
        CloseCode.GOING_AWAY,  # connection lost, idle timeout, a drain's RESTART_REASON
        1005,  # no status in the close frame
        1006,  # abnormal closure (no close frame)
        1012,  # service restart (proxies)
        1013,  # try again later
        1014,  # bad gateway
        CloseCode.TOO_SLOW,  # 4008: we did not read in time; the seat is held
    }
)
#: refusals of a JOIN or RESUME attempt that may pass on a later attempt
RETRYABLE_REFUSALS = frozenset(
    {
        CloseCode.GOING_AWAY,
        1006,
        1012,
        1013,
        1014,
        CloseCode.SERVER_FULL,
        CloseCode.JOIN_TIMEOUT,
        CloseCode.DRAINING,
        CloseCode.REDIRECT,  # a 4015 close without a REDIRECT to follow: start again
        CloseCode.DIRECTORY_UNAVAILABLE,  # 4016: the node cannot reach the room directory
    }
)


def classify(end: ConnectionEnd, phase: Phase) -> Verdict:
    """Is ``end`` worth another attempt (in ``phase``)? Pure; the rules of V2 "SDK behaviour".

    - Our own leave, a malformed message, a desync we were told to raise: final.
    - A seated connection: a transport end or a stall is resumed; a close is resumed if its code
      is in :data:`RESUMABLE_CLOSE_CODES` (the drain's RESTART_REASON included); anything
      else (4009 replaced, 4010 kicked, 4011 room closed, 1011 game crashed, protocol errors,
      unknown codes) is final.
    - A RESUME attempt: 4013 (seat lost) or 4001 (bad or used token) falls back to a fresh JOIN;
      connect failures, timeouts and :data:`RETRYABLE_REFUSALS` are retried; the rest is final.
    - A fresh JOIN attempt: like a RESUME, but 4005 (room full) is retried too and 4001 is final
      (our auth token is refused).
    - A redirect not followed (more than 3 for one join, a bad URL), a 4015 close without a
      REDIRECT and 4016 (directory unavailable) are retried: the next attempt starts at the
      entry URL.
    """
    cause = end.cause
    if cause in (EndCause.LEFT, EndCause.PROTOCOL, EndCause.TOKEN_FAILED):
        return Verdict.FINAL
    if cause is EndCause.REDIRECT:  # the cluster is moving the room: start again later
        return Verdict.FINAL if phase is Phase.SEATED else Verdict.RETRY
    if cause in (EndCause.TRANSPORT, EndCause.STALLED, EndCause.CONNECT_FAILED, EndCause.TIMEOUT):
        return Verdict.RETRY
    code = end.code
    if phase is Phase.SEATED:
        if cause is EndCause.CLOSED and code in RESUMABLE_CLOSE_CODES:
            return Verdict.RETRY
        return Verdict.FINAL
    if phase is Phase.RESUMING and code in (SEAT_LOST, CloseCode.UNAUTHORIZED):
        return Verdict.REJOIN
    if code in RETRYABLE_REFUSALS:
        return Verdict.RETRY
    if phase is Phase.JOINING and code == CloseCode.ROOM_FULL:
        return Verdict.RETRY
    return Verdict.FINAL


# ---------------------------------------------------------------- events


class LostReason(enum.Enum):
    """Why a :class:`Lost` event: the seat is gone (a fresh JOIN follows), or the client is."""

    #: a RESUME got 4013: the seat is no longer held (rejoining)
    SEAT_LOST = "seat lost"
    #: a RESUME got 4001: the resume token is bad or used (rejoining)
    RESUME_REFUSED = "resume refused"
    #: the seat could not be resumed at all: the server gave no resume token (seat hold off) or
    #: speaks gamesync.v1 (rejoining)
    NO_RESUME = "no resume"
    #: the server ended the connection for good: kicked, room closed, replaced,
    #: a protocol error, or any end with ``reconnect=False``
    ENDED = "ended"
    #: a JOIN during the reconnect was refused for good (e.g. 4001: the auth token)
    REFUSED = "refused"
    #: ``max_attempts`` attempts failed
    GAVE_UP = "gave up"


@attrs.frozen
class Reconnecting:
    """An attempt is about to start: ``attempt`` (1-based) after ``delay`` seconds, because of
    ``reason`` (and ``code``): what ended the connection, or the previous attempt."""

    attempt: int
    delay: float
    reason: EndCause
    code: int | None = None


@attrs.frozen
class Resumed:
    """Back in the same seat after ``attempts`` attempts and ``downtime`` seconds (from
    noticing the end to the resumed JOINED and its catch-up state)."""

    attempts: int
    downtime: float


@attrs.frozen
class Lost:
    """The seat (``rejoining=True``: a fresh JOIN of the same room follows) or the client
    (``rejoining=False``: ``client.failure`` says why) is lost."""

    reason: LostReason
    code: int | None = None
    rejoining: bool = False
    detail: str = ""


@attrs.frozen
class Rejoined:
    """A fresh JOIN after a lost seat succeeded: a new ``player`` number (was
    ``previous_player``), input seqs restart at 1, a new replica."""

    player: int
    previous_player: int
    attempts: int
    downtime: float


@attrs.frozen
class Redirected:
    """A cluster node sent this join (the first JOIN, a RESUME or a fresh JOIN) to ``url``,
    where ``room`` lives: the client connects there next. ``hop`` counts the redirects of
    this join (1 to 3)."""

    url: str
    room: str
    hop: int


ConnectionEvent = Reconnecting | Resumed | Lost | Rejoined | Redirected


# ---------------------------------------------------------------- the policy


def _check_positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


def _check_attempts(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value!r}")


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter, bounded in attempts."""

    base: float = attrs.field(default=0.1, validator=_check_positive)
    cap: float = attrs.field(default=0.75, validator=_check_positive)
    max_attempts: int = attrs.field(default=40, validator=_check_attempts)

    def ceiling(self, attempt: int) -> float:
        """The longest delay before ``attempt`` (1-based): min(cap, base * 2 ** (attempt - 1))."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 64))

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """``random()`` (uniform in [0, 1)) times :meth:`ceiling`."""
        return random() * self.ceiling(attempt)


@attrs.frozen
class Retry:
    """Wait ``delay`` seconds, then attempt: connect and send RESUME (``resume``) or JOIN."""

    delay: float
    resume: bool
    attempt: int
    events: tuple[ConnectionEvent, ...] = ()


@attrs.frozen
class Finish:
    """The client is lost (or we left): ``end`` says why; publish ``events``."""

    end: ConnectionEnd
    events: tuple[ConnectionEvent, ...] = ()


Step = Retry | Finish


@attrs.define
class Reconnector:
    """The reconnect state machine of one client. ``enabled=False``: every end is final."""

    backoff: Backoff = attrs.Factory(Backoff)
    enabled: bool = True
    random: Callable[[], float] = _random.random
    state: ConnectionState = ConnectionState.CONNECTING
    #: attempts made in the current outage
    attempts: int = 0
    phase: Phase = Phase.SEATED
    #: when the current outage began (the time passed to :meth:`ended`)
    outage_started: float = 0.0
    #: the negotiated protocol version of the seat we hold (or held); on gamesync.v1 the end
    #: of the connection is the end of the client, as before v2 (no seat is held for v1)
    version: int = 2
    #: whether the seat can be resumed: the server gave a resume token (else, on v2, the SDK
    #: reconnects with a fresh JOIN)
    resumable: bool = False
    player: int = 0

    def seated(
        self, now: float, player: int, *, version: int, resumable: bool
    ) -> ConnectionEvent | None:
        """A JOIN or RESUME handshake succeeded on a gamesync.v``version`` connection; returns
        the event to publish, if any."""
        event: ConnectionEvent | None = None
        if self.state is ConnectionState.RECONNECTING:
            downtime = max(0.0, now - self.outage_started)
            if self.phase is Phase.RESUMING:
                event = Resumed(self.attempts, downtime)
            else:
                event = Rejoined(player, self.player, self.attempts, downtime)
        self.state = ConnectionState.CONNECTED
        self.phase = Phase.SEATED
        self.attempts = 0
        self.player = player
        self.version = version
        self.resumable = resumable and version >= 2
        return event

    def ended(self, end: ConnectionEnd, now: float) -> Step:
        """The seated connection ended."""
        self.outage_started = now
        self.attempts = 0
        if end.cause is EndCause.LEFT:
            return self._finish(end)
        if not self.enabled or self.version < 2 or classify(end, Phase.SEATED) is not Verdict.RETRY:
            return self._finish(end, Lost(LostReason.ENDED, end.code, detail=end.detail))
        self.state = ConnectionState.RECONNECTING
        if self.resumable:
            self.phase = Phase.RESUMING
            return self._next(end)
        self.phase = Phase.JOINING
        lost = Lost(LostReason.NO_RESUME, None, rejoining=True, detail="the seat cannot be resumed")
        return self._next(end, (lost,))

    def attempt_failed(self, end: ConnectionEnd, now: float) -> Step:
        """The attempt announced by the last :class:`Retry` failed before it was seated."""
        if end.cause is EndCause.LEFT:
            return self._finish(end)
        verdict = classify(end, self.phase)
        if verdict is Verdict.REJOIN:
            self.phase = Phase.JOINING
            reason = LostReason.SEAT_LOST if end.code == SEAT_LOST else LostReason.RESUME_REFUSED
            lost = Lost(reason, end.code, rejoining=True, detail=end.detail)
            return self._next(end, (lost,), delay=0.0)
        if verdict is Verdict.RETRY:
            return self._next(end)
        return self._finish(end, Lost(LostReason.REFUSED, end.code, detail=end.detail))

    def left(self) -> None:
        """We left (or the client ended otherwise): no more attempts."""
        self.state = ConnectionState.CLOSED

    def _next(
        self,
        end: ConnectionEnd,
        events: tuple[ConnectionEvent, ...] = (),
        delay: float | None = None,
    ) -> Step:
        if self.attempts >= self.backoff.max_attempts:
            lost = Lost(
                LostReason.GAVE_UP,
                end.code,
                detail=f"{self.attempts} attempts failed; the last: {end.detail or end.cause.value}",
            )
            return self._finish(end, *events, lost)
        self.attempts += 1
        if delay is None:
            delay = self.backoff.delay(self.attempts, self.random)
        event = Reconnecting(self.attempts, delay, end.cause, end.code)
        return Retry(delay, self.phase is Phase.RESUMING, self.attempts, (*events, event))

    def _finish(self, end: ConnectionEnd, *events: ConnectionEvent) -> Finish:
        self.state = ConnectionState.CLOSED
        return Finish(end, events)


@attrs.define
class StallDetector:
    """No message from the server for ``timeout`` seconds while seated means a dead socket
    (the server sends a DELTA every tick, so silence is never normal)."""

    timeout: float
    last: float = 0.0

    @classmethod
    def for_tick_rate(cls, timeout: float, tick_rate: int, now: float) -> StallDetector:
        """At least 3 ticks of silence, for slow-ticking games."""
        return cls(max(timeout, 3.0 / max(tick_rate, 1)), now)

    def message(self, now: float) -> None:
        self.last = now

    @property
    def deadline(self) -> float:
        return self.last + self.timeout

    def stalled(self, now: float) -> bool:
        return now >= self.deadline
