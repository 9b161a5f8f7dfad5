"""One timer for the tick loops of every room of a server.

Each room still runs its own fixed-rate tick loop in its own task (``RoomHost.run``); only the
wait for the next deadline goes through a :class:`TickClock`. ``trio.sleep_until`` costs a
cancel scope, a deadline in trio's heap and a ``Cancelled`` exception raised and caught per
wake-up: about 15 µs, paid 20 times a second by every room. Here a room parks its task
(``wait_task_rescheduled``) in a heap of its own, and one timer task sleeps until the earliest
deadline and reschedules every room that is due.

Deadlines are rounded up to a slot of ``slot`` seconds (2 ms by default), so that rooms due
within the same slot share one wake-up of the timer. A tick never starts before its deadline
and at most one slot after it; deadlines stay ``start + n * period``, so there is no drift.

A room that waits while no timer runs (the clock is not started, or has stopped) falls back to
``trio.sleep_until``. Cancellation works as for any trio sleep: the room's entry is forgotten.
"""

from __future__ import annotations

import heapq
import itertools
import math

import attrs
import trio

#: the default width of a wake-up slot, in seconds
TICK_SLOT = 0.002


@attrs.define(eq=False)
class _Waiter:
    due: float
    task: trio.lowlevel.Task | None  # None once the wait was cancelled


class TickClock:
    """Wakes tasks at deadlines, many per timer wake-up (see the module's docstring)."""

    def __init__(self, slot: float = TICK_SLOT) -> None:
        if not slot > 0:
            raise ValueError("slot must be positive")
        self.slot = slot
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._order = itertools.count()
        self._running = False
        self._armed = math.inf  # the deadline the timer sleeps until
        self._poke = trio.Event()
        #: timer wake-ups, and tasks woken: their ratio is how many rooms share a wake-up
        self.wakeups = 0
        self.woken = 0

    @property
    def waiting(self) -> int:
        """Entries in the heap (cancelled ones until their slot passes)."""
        return len(self._heap)

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``trio.current_time() >= deadline`` (within one slot after it)."""
        if not self._running:
            await trio.sleep_until(deadline)
            return
        due = math.ceil(deadline / self.slot) * self.slot
        if due < deadline:  # float rounding: never early
            due += self.slot
        if due <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter(due, trio.lowlevel.current_task())
        heapq.heappush(self._heap, (due, next(self._order), waiter))
        if due < self._armed:
            self._poke.set()  # the timer sleeps past this deadline: let it re-arm

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            waiter.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if trio.current_time() < deadline:  # woken early: the timer stopped
            await trio.sleep_until(deadline)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The timer task: runs until cancelled; then waiting tasks wake (they fall back)."""
        self._running = True
        task_status.started()
        heap = self._heap
        try:
            while True:
                now = trio.current_time()
                woke = 0
                while heap and heap[0][0] <= now:
                    waiter = heapq.heappop(heap)[2]
                    task = waiter.task
                    if task is not None:
                        waiter.task = None
                        trio.lowlevel.reschedule(task)
                        woke += 1
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
            while heap:  # wake whoever still waits: they sleep the rest with trio
                task = heapq.heappop(heap)[2].task
                if task is not None:
                    trio.lowlevel.reschedule(task)
