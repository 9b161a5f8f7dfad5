"""A player's bounded outbound path. The tick hands it bytes and never waits on it.

Each player has one writer task and a small queue. The queue holds reliable messages (JOINED,
room events) up to a byte limit, at most one DELTA, and ``None`` as the marker "send a fresh
SNAPSHOT here", built when the writer reaches it so it is always current.

If the writer is still busy when the next tick's DELTA arrives, the DELTA is dropped and a
SNAPSHOT marker is queued instead: a slow reader skips deltas and converges on a snapshot. If the
reliable messages outgrow the limit, the player is too slow to keep and is disconnected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from gameserver.stats import ServerStats

SendFn = Callable[[bytes], Awaitable[None]]


class OutboundOverflow(Exception):
    """Reliable messages for this player exceeded the byte limit."""


class Outbound:
    def __init__(
        self,
        send: SendFn,
        snapshot: Callable[[], bytes],
        limit_bytes: int,
        stats: ServerStats,
    ) -> None:
        self._send = send
        self._snapshot = snapshot
        self.limit_bytes = limit_bytes
        self.stats = stats
        # (frame, reliable); a frame of None is the snapshot marker
        self._queue: deque[tuple[bytes | None, bool]] = deque()
        self._queued_bytes = 0
        self._snapshot_pending = False
        self._busy = False
        self._overflow = False
        self._wake = trio.Event()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._busy and not self._queue

    def offer_state(self, delta: bytes) -> None:
        """The tick's DELTA. Never blocks: a busy path skips it and owes a snapshot."""
        if self._snapshot_pending:
            self.stats.deltas_skipped += 1
            return
        if self._busy or self._queue:
            self.stats.deltas_skipped += 1
            self.stats.snapshot_resyncs += 1
            self._snapshot_pending = True
            self._queue.append((None, False))
        else:
            self._queue.append((delta, False))
        self._wake.set()

    def request_snapshot(self) -> None:
        if not self._snapshot_pending:
            self._snapshot_pending = True
            self._queue.append((None, False))
            self._wake.set()

    def send_reliable(self, frame: bytes) -> None:
        """Queue a message that must arrive. Over the byte limit the player is dropped."""
        if self._queued_bytes + len(frame) > self.limit_bytes:
            self._overflow = True
        else:
            self._queued_bytes += len(frame)
            self._queue.append((frame, True))
        self._wake.set()

    async def run(self) -> None:
        """The writer task. Returns never; raises OutboundOverflow, or what ``send`` raises."""
        queue = self._queue
        stats = self.stats
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while queue:
                if self._overflow:
                    raise OutboundOverflow
                frame, reliable = queue.popleft()
                if frame is None:
                    self._snapshot_pending = False
                    frame = self._snapshot()
                elif reliable:
                    self._queued_bytes -= len(frame)
                self._busy = True
                await self._send(frame)
                self._busy = False
                stats.messages_out += 1
                stats.bytes_out += len(frame)
            if self._overflow:
                raise OutboundOverflow
