"""A player's bounded outbound path. The tick hands it frames and never waits on it.

In the common case a frame goes straight to the socket from the tick (``FastConnection.write``
is synchronous). Only when the kernel's send buffer is full does a backlog form; then the
player's writer task awaits writability, and until the backlog drains:

- the tick's DELTA is skipped, and a "send a fresh SNAPSHOT here" marker is queued instead (once):
  a slow reader skips deltas and converges on a snapshot built when its path clears;
- reliable messages (JOINED, room events) queue up to ``limit_bytes``; beyond that the player is
  too slow to keep and is disconnected (4008) at once: the message that does not fit cancels
  the writer's wait for writability, so a player whose socket never drains (it does not read,
  but keeps sending inputs, so it is never idle) is closed all the same. The events it could
  not take are dropped with it; when it comes back it starts from a fresh SNAPSHOT.

Memory per player is bounded by the kernel buffer, one backlog frame and ``limit_bytes``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from gameserver._tws import FastConnection, TransportClosed
from gameserver.stats import ServerStats
from shared.wsframe import binary_frame


class OutboundOverflow(Exception):
    """Reliable messages for this player exceeded the byte limit."""


class Outbound:
    # slots: the tick offers every player's DELTA here; its fields in place, not in a dict
    __slots__ = (
        "_failed", "_flushing", "_overflow", "_queue", "_snapshot", "_snapshot_pending", "_wake",
        "bytes_sent", "conn", "limit_bytes", "queued_bytes", "stats",
    )  # fmt: skip

    def __init__(
        self,
        conn: FastConnection,
        snapshot: Callable[[], bytes],
        limit_bytes: int,
        stats: ServerStats,
    ) -> None:
        self.conn = conn
        self._snapshot = snapshot
        self.limit_bytes = limit_bytes
        self.stats = stats
        self._queue: deque[bytes | None] = deque()  # framed reliable messages; None = snapshot
        self.queued_bytes = 0
        #: message bytes written to this player (frames, as ``stats.bytes_out`` counts them)
        self.bytes_sent = 0
        self._snapshot_pending = False
        self._overflow = False
        self._failed = False
        self._wake = trio.Event()
        self._flushing: trio.CancelScope | None = None  # the writer's wait for the kernel

    @property
    def clear(self) -> bool:
        """Nothing queued and nothing waiting for the kernel."""
        return not self._queue and not self.conn.out_backlog

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def _write(self, frame: bytes) -> None:
        conn = self.conn
        try:
            conn.write(frame)
        except TransportClosed:
            self._failed = True
            self._wake.set()
            return
        n = len(frame)
        stats = self.stats
        stats.messages_out += 1
        stats.bytes_out += n
        self.bytes_sent += n
        if conn.out_backlog:
            self._wake.set()

    def offer_state(self, frame: bytes) -> None:
        """The tick's framed DELTA. Sent now if the path is clear, else skipped."""
        if self._snapshot_pending:
            self.stats.deltas_skipped += 1
        elif self._queue or self.conn.out_backlog:
            self.stats.deltas_skipped += 1
            self.stats.snapshot_resyncs += 1
            self._snapshot_pending = True
            self._queue.append(None)
            self._wake.set()
        else:
            self._write(frame)

    def send_snapshot(self) -> None:
        """Send a fresh SNAPSHOT now, or as soon as the path clears."""
        if self.clear:
            self._write(binary_frame(self._snapshot()))
        elif not self._snapshot_pending:
            self._snapshot_pending = True
            self._queue.append(None)
            self._wake.set()

    def send_reliable(self, frame: bytes) -> None:
        """A framed message that must arrive. Over the byte limit, the player is dropped."""
        if self.clear:
            self._write(frame)
        elif self.queued_bytes + len(frame) > self.limit_bytes:
            self._overflow = True
            if self._flushing is not None:
                self._flushing.cancel()  # the socket may never become writable again
            self._wake.set()
        else:
            self.queued_bytes += len(frame)
            self._queue.append(frame)
            self._wake.set()

    async def run(self) -> None:
        """The writer task: drains backlogs. Raises OutboundOverflow or TransportClosed."""
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while True:
                if self._overflow:
                    raise OutboundOverflow
                if self._failed:
                    raise TransportClosed
                if self.conn.out_backlog:
                    with trio.CancelScope() as self._flushing:
                        await self.conn.flush()
                    self._flushing = None
                    continue  # check for an overflow first
                if not queue:
                    break
                frame = queue.popleft()
                if frame is None:
                    self._snapshot_pending = False
                    frame = binary_frame(self._snapshot())
                else:
                    self.queued_bytes -= len(frame)
                self._write(frame)
