"""One timer for the tick loops of every room of a server.

``trio.sleep_until`` costs a cancel scope, a deadline in trio's heap and a ``Cancelled``
exception raised and caught per wake-up: about 15 µs, paid 20 times a second by every room,
and a task switch on top. A :class:`TickClock` keeps the rooms' deadlines in a heap of its
own, and one timer task sleeps until the earliest one and calls what is due itself
(:meth:`TickClock.repeat`): a synchronous function (a room's tick, which never awaits) that
returns its next deadline. No task switch per tick: the room's task only waits for the repeat
to end. A call is never run twice in one wake-up of the timer: a late room's next tick waits
for the timer's next pass, after a checkpoint, so that other tasks (I/O, handshakes) get their
turn between its ticks.

Deadlines are rounded up to a slot of ``slot`` seconds (2 ms by default), so that rooms due
within the same slot share one wake-up of the timer. A tick never starts before its deadline
and at most one slot after it; deadlines stay ``start + n * period``, so there is no drift.

While no timer runs (the clock is not started, or has stopped) :meth:`TickClock.repeat`
returns None, and a repeat ends (its ``done`` is set, ``stopped`` true) when the timer stops,
so that its owner carries on by itself (``trio.sleep_until``). A cancelled repeat is never
called again; its entry leaves the heap when its slot comes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import attrs
import trio

#: the default width of a wake-up slot, in seconds
TICK_SLOT = 0.002


@attrs.define(eq=False)
class Repeat:
    """A function the timer calls at each deadline it returns (:meth:`TickClock.repeat`)."""

    #: called in the timer's task at the deadline; returns the next deadline, or None to end.
    #: It must not raise (an exception would stop the timer): its owner catches its errors
    call: Callable[[], float | None] | None  # None once ended or cancelled
    #: set when the repeat ends: its call returned None, it was cancelled, or the timer stopped
    done: trio.Event = attrs.field(factory=trio.Event)
    #: the repeat ended because the timer stopped (its owner must carry on by itself)
    stopped: bool = False

    def end(self, stopped: bool = False) -> None:
        self.call = None
        self.stopped = self.stopped or stopped
        self.done.set()


class TickClock:
    """Calls functions at deadlines, many per timer wake-up (see the module's docstring)."""

    def __init__(self, slot: float = TICK_SLOT) -> None:
        if not slot > 0:
            raise ValueError("slot must be positive")
        self.slot = slot
        self._heap: list[tuple[float, int, Repeat]] = []
        self._order = itertools.count()
        self._running = False
        self._armed = math.inf  # the deadline the timer sleeps until
        self._poke = trio.Event()
        #: timer wake-ups, and calls made: their ratio is how many rooms share a wake-up
        self.wakeups = 0
        self.woken = 0

    @property
    def waiting(self) -> int:
        """Entries in the heap (cancelled ones until their slot passes)."""
        return len(self._heap)

    def _due(self, deadline: float) -> float:
        """``deadline`` rounded up to the end of its slot."""
        due = math.ceil(deadline / self.slot) * self.slot
        if due < deadline:  # float rounding: never early
            due += self.slot
        return due

    def _push(self, due: float, entry: Repeat) -> None:
        heapq.heappush(self._heap, (due, next(self._order), entry))
        if due < self._armed:
            self._poke.set()  # the timer sleeps past this deadline: let it re-arm

    def repeat(self, deadline: float, call: Callable[[], float | None]) -> Repeat | None:
        """Call ``call()`` in the timer's task at ``deadline`` (within one slot after it), then
        at each deadline it returns, until it returns None or :meth:`cancel`. None (nothing
        scheduled) while no timer runs."""
        if not self._running:
            return None
        handle = Repeat(call)
        self._push(self._due(deadline), handle)
        return handle

    def cancel(self, handle: Repeat) -> None:
        """End a repeat now (its call is not called again); its entry leaves the heap when due."""
        if handle.call is not None:
            handle.end()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The timer task: runs until cancelled; then every repeat ends, ``stopped``."""
        self._running = True
        task_status.started()
        heap = self._heap
        again: list[tuple[float, Repeat]] = []  # repeats due again: after this pass
        try:
            while True:
                now = trio.current_time()
                woke = 0
                while heap and heap[0][0] <= now:
                    entry = heapq.heappop(heap)[2]
                    call = entry.call
                    if call is None:
                        continue  # cancelled
                    woke += 1
                    deadline = call()
                    if deadline is None:
                        entry.end()
                    elif entry.call is not None:  # else it was cancelled meanwhile
                        again.append((self._due(deadline), entry))
                for due, handle in again:
                    heapq.heappush(heap, (due, next(self._order), handle))
                again.clear()
                if woke:
                    self.wakeups += 1
                    self.woken += woke
                self._armed = heap[0][0] if heap else math.inf
                self._poke = trio.Event()
                with trio.move_on_at(self._armed):
                    await self._poke.wait()
        finally:
            self._running = False
            self._armed = math.inf
            for _, handle in again:
                heapq.heappush(heap, (0.0, next(self._order), handle))
            while heap:  # their owners carry on with trio's own sleep
                entry = heapq.heappop(heap)[2]
                if entry.call is not None:
                    entry.end(stopped=True)
