"""The client's protocol core, without I/O: messages in, state and bytes to send out.

:class:`ClientSession` decodes and applies server messages (:meth:`ClientSession.handle_message`),
keeps the verified replica, numbers inputs and keeps the unacked ones for a re-send after a
resume, collects room events and connection events, and decides when to ask for a RESYNC.
It imports no trio: :class:`clients.client.GameClient` adds the waiting and the sending, and
:func:`clients.client.open_game_client` the sockets.

A seat's life, as the I/O layer drives it: :meth:`begin_join` (or :meth:`begin_resume`, whose
bytes go out instead of JOIN), messages until :attr:`handshake_done` (JOINED and the first
state), then :meth:`take_unsent_inputs` to flush what the outage buffered, then messages until
the connection ends; then again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, NoReturn, TypeVar

import attrs

from clients.errors import ConnectionClosed, ServerError
from clients.reconnect import ConnectionEvent, ConnectionState
from clients.routing import GotRedirect
from shared import wire
from shared.delta_v3 import coding_for
from shared.errors import RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    Error,
    Input,
    Joined,
    Redirect,
    Resume,
    Resync,
    RoomEvent,
    ServerMessage,
    Snapshot,
    parse_server_message,
)
from shared.protocol import CloseCode, Kind
from shared.replica import DesyncError, Replica

Clock = Callable[[], float]
T = TypeVar("T")

#: inputs remembered for latency measurement until acked (the oldest are forgotten beyond this)
MAX_UNACKED_INPUTS = 4096
#: unacked inputs kept for a re-send after a resume (and buffered during an outage)
INPUT_BUFFER = 64
#: connection events kept for ``next_connection_event()``
CONNECTION_HISTORY = 64
#: seconds between two RESYNC requests (the server's own limit refills one per 2 s)
RESYNC_INTERVAL = 2.0
_DELTA = bytes((Kind.DELTA,))


# ---------------------------------------------------------------- counters


@attrs.define
class ClientStats:
    """Counters of one client session. Bytes are WebSocket message payload bytes."""

    messages_received: int = 0
    bytes_down: int = 0
    messages_sent: int = 0
    bytes_up: int = 0
    snapshots: int = 0
    deltas: int = 0
    #: deltas not applied: stale ones (older than a snapshot) and those while awaiting one
    deltas_skipped: int = 0
    room_events: int = 0
    #: room events that fell out of the ``events`` buffer before ``next_event()`` took them
    events_missed: int = 0
    checksums_verified: int = 0
    inputs_sent: int = 0
    inputs_acked: int = 0
    events_sent: int = 0
    #: inputs sent again after a resume (the server had not applied them)
    inputs_resent: int = 0
    #: inputs given to ``send_input`` that were never sent: they fell out of the input buffer
    #: during an outage, or the seat was lost (a fresh JOIN starts over)
    inputs_dropped: int = 0
    #: RESYNC requests sent (after a tolerated desync, gamesync.v2)
    resyncs: int = 0
    #: REDIRECTs followed (a cluster node sent the join to the room's owner), over all joins
    redirects: int = 0
    #: first joins tried again after 4016 DIRECTORY_UNAVAILABLE
    directory_retries: int = 0
    #: reconnect attempts made, seats resumed, fresh JOINs after a lost seat
    reconnect_attempts: int = 0
    resumes: int = 0
    rejoins: int = 0
    connection_events: int = 0
    #: connection events that fell out of ``connection_events`` before they were taken
    connection_events_missed: int = 0

    @property
    def updates(self) -> int:
        """State messages received: SNAPSHOTs plus DELTAs (including skipped ones)."""
        return self.snapshots + self.deltas


class _Log(Generic[T]):
    """A bounded log with a reader cursor: the newest ``maxlen`` items, and how many the
    reader missed because they fell out before it took them."""

    def __init__(self, maxlen: int | None) -> None:
        self.items: deque[T] = deque(maxlen=maxlen)
        self.total = 0
        self.cursor = 0

    def append(self, item: T) -> None:
        self.items.append(item)
        self.total += 1

    @property
    def has_new(self) -> bool:
        return self.cursor < self.total

    def take(self) -> tuple[T, int]:
        """The next item (there must be one) and how many were missed before it."""
        first = self.total - len(self.items)
        missed = 0
        if self.cursor < first:
            missed = first - self.cursor
            self.cursor = first
        item = self.items[self.cursor - first]
        self.cursor += 1
        return item, missed


@attrs.define
class _Pending:
    """An input not yet acked: kept to be (re-)sent on the next connection."""

    seq: int
    data: bytes
    sent: bool = False  # on the current connection
    ever_sent: bool = False


# ---------------------------------------------------------------- the session


class ClientSession:
    """One player's session without I/O: the replica, inputs and their acks, room events,
    connection events and counters."""

    def __init__(
        self,
        *,
        raise_on_desync: bool = True,
        event_history: int = 256,
        latency_history: int | None = 4096,
        input_buffer: int = INPUT_BUFFER,
        connection_history: int = CONNECTION_HISTORY,
        resync_interval: float = RESYNC_INTERVAL,
        clock: Clock = time.perf_counter,
    ) -> None:
        if input_buffer < 1:
            raise ValueError(f"input_buffer must be at least 1, not {input_buffer}")
        self.raise_on_desync = raise_on_desync
        self.resync_interval = resync_interval
        self._clock = clock
        self.stats = ClientStats()
        self._joined: Joined | None = None
        self._replica: Replica | None = None
        #: True until the first SNAPSHOT, and again after a tolerated desync
        self._need_snapshot = True
        self._desynced = False  # a tolerated desync, until the next SNAPSHOT
        self._last_resync: float | None = None
        self._snapshot_tick = -1
        self._last_update: Snapshot | Delta | None = None
        self._update_serial = 0  # counts the state messages decoded (not skipped unread)
        self._next_seq = 1
        self._unacked: deque[tuple[int, float]] = deque(maxlen=MAX_UNACKED_INPUTS)
        self._input_buffer = input_buffer
        self._pending: deque[_Pending] = deque()
        #: recent input latencies in seconds (send to first state acking it), oldest first
        self.latencies: deque[float] = deque(maxlen=latency_history)
        self._room_log: _Log[RoomEvent] = _Log(event_history)
        self._conn_log: _Log[ConnectionEvent] = _Log(connection_history)
        #: every desync seen (with ``raise_on_desync`` the first one also ends the session)
        self.desyncs: list[DesyncError] = []
        #: ERROR messages the server sent
        self.server_errors: list[Error] = []
        #: the CLOSE message, if the server sent one (the last one)
        self.close_message: Close | None = None
        #: the REDIRECT messages received (the newest 16), oldest first
        self.redirects_received: deque[Redirect] = deque(maxlen=16)
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._closing = False
        #: set by the I/O layer that runs reconnects: then a message never records the failure
        #: itself (a CLOSE may be resumed after); the I/O layer decides and calls ``_finish``
        self._supervised = False
        self.connection_state = ConnectionState.CONNECTING
        #: the protocol version of the current connection (None: accept any we speak)
        self._wire_version: int | None = None
        # the handshake under way: None, "join" or "resume"; and its progress
        self._handshake: str | None = None
        self._handshake_joined = False
        self._handshake_serial = 0

    # ------------------------------------------------------------ state
    @property
    def joined(self) -> Joined:
        """The JOINED message: player number, room, game, tick rate and schemas (the latest one:
        a resume brings a new one, with a new resume token)."""
        if self._joined is None:
            raise RuntimeError("not joined yet")
        return self._joined

    @property
    def player(self) -> int:
        """Our player number in the room (a fresh JOIN after a lost seat brings a new one)."""
        return self.joined.player

    @property
    def version(self) -> int:
        """The protocol version the server speaks with us (1 or 2); 0 before JOINED."""
        return 0 if self._joined is None else self._joined.version

    @property
    def replica(self) -> Replica:
        """The room's state as last received (kept in place across snapshots and resumes; a
        fresh JOIN after a lost seat makes a new one)."""
        if self._replica is None:
            raise RuntimeError("not joined yet")
        return self._replica

    @property
    def state(self) -> Replica:
        """Alias of :attr:`replica`."""
        return self.replica

    @property
    def tick(self) -> int:
        """The tick of the replica; -1 before the first snapshot."""
        return -1 if self._replica is None else self._replica.tick

    @property
    def ready(self) -> bool:
        """Joined and holding a snapshot."""
        return self._replica is not None and self._replica.tick >= 0

    @property
    def in_sync(self) -> bool:
        """False before the first snapshot and after a tolerated desync until the next one."""
        return not self._need_snapshot

    @property
    def last_acked(self) -> int:
        """The last input sequence number the server applied for us (0 = none yet)."""
        if self._replica is None or self._joined is None:
            return 0
        return self._replica.acks.get(self._joined.player, 0)

    @property
    def last_sent(self) -> int:
        """The sequence number of the last input sent or buffered (0 = none yet)."""
        return self._next_seq - 1

    @property
    def buffered_inputs(self) -> int:
        """Inputs numbered but not yet on the wire of the current connection (an outage)."""
        return sum(1 for p in self._pending if not p.sent)

    @property
    def last_update(self) -> Snapshot | Delta | None:
        """The last SNAPSHOT or DELTA received."""
        return self._last_update

    @property
    def failure(self) -> BaseException | None:
        """What ended the session, if something did."""
        return self._failure

    @property
    def events(self) -> deque[RoomEvent]:
        """Recent room events, oldest first (bounded by ``event_history``)."""
        return self._room_log.items

    @property
    def connection_events(self) -> deque[ConnectionEvent]:
        """Recent connection events (``Reconnecting``, ``Resumed``, ``Lost``, ``Rejoined``),
        oldest first (bounded by ``connection_history``)."""
        return self._conn_log.items

    def pop_latencies(self) -> list[float]:
        """Take the recorded input latencies (seconds) and clear them."""
        out = list(self.latencies)
        self.latencies.clear()
        return out

    def iter_new_events(self) -> Iterator[RoomEvent]:
        """The room events not yet taken by ``next_event`` (takes them), without waiting."""
        while self._room_log.has_new:
            yield self._take_event()

    def iter_connection_events(self) -> Iterator[ConnectionEvent]:
        """The connection events not yet taken by ``next_connection_event`` (takes them),
        without waiting."""
        while self._conn_log.has_new:
            yield self._take_connection_event()

    def _take_event(self) -> RoomEvent:
        event, missed = self._room_log.take()
        self.stats.events_missed += missed
        return event

    def _take_connection_event(self) -> ConnectionEvent:
        event, missed = self._conn_log.take()
        self.stats.connection_events_missed += missed
        return event

    def _emit(self, event: ConnectionEvent) -> None:
        self._conn_log.append(event)
        self.stats.connection_events += 1
        self._notify()

    def _set_connection_state(self, state: ConnectionState) -> None:
        self.connection_state = state
        self._notify()

    # ------------------------------------------------------------ incoming
    def handle_message(self, data: bytes | str) -> ServerMessage | None:
        """Decode and apply one server message; returns it (None for a DELTA skipped unread).

        Raises (and records as :attr:`failure`) :class:`ServerError` for ERROR,
        :class:`ConnectionClosed` for CLOSE, ``RemoteProtocolError`` for a malformed or
        unexpected message, and ``DesyncError`` on a checksum mismatch if ``raise_on_desync``.
        (Under ``open_game_client`` with reconnects, the failure is recorded only once the
        client is lost: a CLOSE may be followed by a resume.)
        """
        stats = self.stats
        stats.messages_received += 1
        if isinstance(data, str):
            stats.bytes_down += len(data.encode())
            self._fail(
                RemoteProtocolError("text frame from the server", CloseCode.UNSUPPORTED_DATA)
            )
        stats.bytes_down += len(data)
        replica = self._replica
        is_delta = data[:1] == _DELTA
        try:
            version = self._wire_version
            if replica is None:
                msg = parse_server_message(data, version=version)
            else:
                if is_delta and self._skip_delta(_delta_tick(data)):
                    return None
                msg = parse_server_message(
                    data,
                    replica.schema,
                    replica.type_of,
                    version=version,
                    coding=replica.coding,
                    predict=replica.predicted,
                )
        except DesyncError as exc:  # a DELTA patching an entity the replica lacks
            stats.deltas += 1
            self._desync(exc)
            return None
        except RemoteProtocolError as exc:
            self._fail(exc)
        if isinstance(msg, Delta):
            self._on_delta(msg)
        elif isinstance(msg, Snapshot):
            self._on_snapshot(msg)
        elif isinstance(msg, RoomEvent):
            stats.room_events += 1
            self._room_log.append(msg)
            self._notify()
        elif isinstance(msg, Joined):
            self._on_joined(msg)
        elif isinstance(msg, Error):
            self.server_errors.append(msg)
            self._fail(ServerError(msg.code, msg.message))
        elif isinstance(msg, Redirect):
            self._on_redirect(msg)
        else:  # Close
            self.close_message = msg
            self._fail(ConnectionClosed(msg.code, msg.reason))
        return msg

    def _on_joined(self, msg: Joined) -> None:
        old = self._joined
        if msg.resumed:
            if self._handshake != "resume" or old is None:
                self._fail(RemoteProtocolError("resumed JOINED without RESUME"))
            if (msg.player, msg.room) != (old.player, old.room):
                self._fail(
                    RemoteProtocolError(
                        f"resumed JOINED for player {msg.player} in {msg.room!r}, "
                        f"not player {old.player} in {old.room!r}"
                    )
                )
            if msg.view != old.view:
                self._fail(RemoteProtocolError("resumed JOINED changed the VIEW flag"))
            self._joined = msg
            if self._replica is not None:  # the new connection may speak another version
                self._replica.coding = coding_for(msg.version, msg.view)
            # the server applied our inputs up to input_seq: the rest are sent again
            self._ack_pending(msg.input_seq)
        else:
            if old is not None and self._handshake != "join":
                self._fail(RemoteProtocolError("second JOINED", CloseCode.PROTOCOL_ERROR))
            self._joined = msg
            # a view room (JOINED flag VIEW) sends this client its view, with view checksums
            self._replica = Replica(
                msg.schema, view=msg.view, coding=coding_for(msg.version, msg.view)
            )
            self._need_snapshot = True
            self._desynced = False
            self._snapshot_tick = -1
        if self._handshake is not None:
            self._handshake_joined = True
            self._handshake_serial = self._update_serial
        self._notify()

    def _on_redirect(self, msg: Redirect) -> NoReturn:
        """REDIRECT (v2) answers a JOIN or RESUME: only before JOINED. Raises
        :class:`~clients.routing.GotRedirect` (not a failure: the I/O layer follows it)."""
        if self._handshake is None or self._handshake_joined:
            self._fail(RemoteProtocolError("REDIRECT after JOINED", CloseCode.PROTOCOL_ERROR))
        self.redirects_received.append(msg)
        raise GotRedirect(msg)

    def _skip_delta(self, tick: int) -> bool:
        """Count a DELTA; True if it is not to be applied: before the first snapshot, after a
        tolerated desync until the next snapshot, or older than the last snapshot (stale)."""
        if self._need_snapshot or tick <= self._snapshot_tick:
            self.stats.deltas += 1
            self.stats.deltas_skipped += 1
            self._notify()
            return True
        return False

    def _on_snapshot(self, snap: Snapshot) -> None:
        replica = self.replica
        self.stats.snapshots += 1
        self._last_update = snap
        self._update_serial += 1
        self._need_snapshot = False
        self._desynced = False
        self._snapshot_tick = snap.tick
        try:
            replica.apply_snapshot(snap)
        except DesyncError as exc:
            self._desync(exc)
        finally:
            self.stats.checksums_verified = replica.checks
        self._after_state()

    def _on_delta(self, delta: Delta) -> None:
        replica = self.replica
        self.stats.deltas += 1
        self._last_update = delta
        self._update_serial += 1
        try:
            replica.apply_delta(delta)
        except DesyncError as exc:
            self._desync(exc)
        finally:
            self.stats.checksums_verified = replica.checks
        self._after_state()

    def _after_state(self) -> None:
        ack = self.last_acked
        unacked = self._unacked
        if unacked and unacked[0][0] <= ack:
            now = self._clock()
            while unacked and unacked[0][0] <= ack:
                _, sent_at = unacked.popleft()
                self.latencies.append(now - sent_at)
                self.stats.inputs_acked += 1
        self._ack_pending(ack)
        self._notify()

    def _ack_pending(self, ack: int) -> None:
        pending = self._pending
        while pending and pending[0].seq <= ack:
            pending.popleft()

    def _desync(self, exc: DesyncError) -> None:
        self.desyncs.append(exc)
        if self.raise_on_desync:
            self._fail(exc)
        # keep going: ignore deltas until the server sends a snapshot (asked for by RESYNC)
        self._need_snapshot = True
        self._desynced = True
        self._notify()

    def _fail(self, exc: BaseException) -> NoReturn:
        """Record ``exc`` as the failure (the first one wins; not when supervised: the I/O
        layer decides), wake waiters, raise it."""
        if not self._supervised:
            self._record_failure(exc)
        self._notify()
        raise exc

    def _forget_failure(self) -> None:
        """The I/O layer tries the first join again (a 4016 refusal): it was not the end."""
        self._failure = None
        self._failure_raised = False

    def _record_failure(self, exc: BaseException) -> None:
        if self._failure is None and not self._closing:
            self._failure = exc

    def _notify(self) -> None:
        """Wake waiters (the I/O layer's hook)."""

    # ------------------------------------------------------------ the seat's handshakes
    def begin_join(self, version: int | None = None) -> None:
        """A JOIN is about to go out on a connection speaking protocol ``version``. If we held a
        seat (a fresh JOIN after a lost seat), its unsent inputs are dropped and seqs restart
        at 1; the replica is replaced on JOINED."""
        if self._joined is not None:
            self.stats.inputs_dropped += sum(1 for p in self._pending if not p.ever_sent)
            self._pending.clear()
            self._unacked.clear()
            self._next_seq = 1
        self._start_handshake("join", version)

    def begin_resume(self, version: int = 2) -> bytes:
        """The RESUME to send instead of JOIN on a new connection: our room, the resume token
        of the last JOINED, and the replica's tick (0 after a tolerated desync, to get a
        SNAPSHOT)."""
        joined = self.joined
        replica = self._replica
        have = replica.tick if replica is not None and not self._need_snapshot else 0
        self._start_handshake("resume", version)
        return Resume(joined.room, joined.resume_token, max(have, 0), version=version).to_bytes()

    def _start_handshake(self, kind: str, version: int | None) -> None:
        self._wire_version = version
        self._handshake = kind
        self._handshake_joined = False
        for p in self._pending:
            p.sent = False

    @property
    def handshake_done(self) -> bool:
        """JOINED and the first state message after it (a SNAPSHOT, or a resume's catch-up
        DELTA) have arrived since :meth:`begin_join` / :meth:`begin_resume`."""
        return self._handshake_joined and self._update_serial > self._handshake_serial

    def end_handshake(self) -> None:
        self._handshake = None
        self._handshake_joined = False

    @property
    def resumable(self) -> bool:
        """Whether the seat can be resumed: gamesync.v2 and a resume token."""
        return (
            self._joined is not None
            and self._joined.version >= 2
            and bool(self._joined.resume_token)
        )

    # ------------------------------------------------------------ outgoing
    def encode_input(self, values: dict[str, Any]) -> tuple[int, bytes]:
        """Take the next sequence number and encode an INPUT; returns (seq, bytes)."""
        schema = self.joined.input_schema
        codes = schema.codes_for(values)
        seq = self._next_seq
        data = Input(seq, codes).to_bytes(schema)
        self._next_seq = seq + 1
        return seq, data

    def _buffer_input(self, seq: int, data: bytes) -> _Pending:
        """Keep an input until acked (the oldest falls out beyond ``input_buffer``)."""
        pending = self._pending
        if len(pending) >= self._input_buffer:
            if not pending.popleft().ever_sent:
                self.stats.inputs_dropped += 1
        entry = _Pending(seq, data)
        pending.append(entry)
        self._unacked.append((seq, self._clock()))
        return entry

    def take_unsent_inputs(self) -> list[bytes]:
        """The buffered inputs not yet sent on this connection, in seq order (marks them sent):
        after a resume those the server had not applied, and those made during the outage."""
        out = []
        for p in self._pending:
            if not p.sent:
                p.sent = True
                if p.ever_sent:
                    self.stats.inputs_resent += 1
                else:
                    self.stats.inputs_sent += 1
                p.ever_sent = True
                out.append(p.data)
        return out

    def poll_resync(self, now: float) -> bytes | None:
        """A RESYNC to send, if one is due: after a tolerated desync on gamesync.v2, at most
        once per ``resync_interval`` until the SNAPSHOT comes (the server ignores an excess
        one, so this retries)."""
        if not self._desynced or self.version < 2:
            return None
        last = self._last_resync
        if last is not None and now - last < self.resync_interval:
            return None
        self._last_resync = now
        self.stats.resyncs += 1
        return Resync().to_bytes()


def _delta_tick(data: bytes) -> int:
    """The tick of an encoded DELTA, read without decoding the rest."""
    reader = wire.Reader(data, 2)  # kind, flags
    return reader.varint()
