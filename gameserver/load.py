"""CPU-budget admission control: is this process using more of a core than it may?"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

#: returns (CPU seconds this process has used, wall-clock seconds); both only ever grow
Sampler = Callable[[], tuple[float, float]]


def process_sampler() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


class LoadMonitor:
    """Samples this process's CPU time to tell when the tick budget is used up.

    All rooms and all player I/O run in this one thread, so the process's CPU share of one
    core is the measure: past ``budget``, new joins are refused (4006 "server full") rather
    than slowing every room. Players already seated are never dropped for load; their rooms
    skip ticks if they must.

    :meth:`observe` is the pure part (feed it samples); :meth:`run` samples every ``window``
    seconds. ``sample`` is injectable, so tests can make any load they like.
    """

    def __init__(self, budget: float, window: float, sample: Sampler = process_sampler) -> None:
        self.budget = budget
        self.window = window
        self.load = 0.0  # CPU share of one core over the last window
        self._sample = sample
        self._last: tuple[float, float] | None = None

    @property
    def overloaded(self) -> bool:
        return self.budget > 0 and self.load > self.budget

    def observe(self, cpu: float, wall: float) -> None:
        """One sample: the load becomes the CPU share since the previous sample. Samples less
        than half a window apart are ignored (a mock clock may run ahead of real time)."""
        last = self._last
        if last is None:
            self._last = (cpu, wall)
            return
        if wall - last[1] < self.window / 2:
            return
        self.load = (cpu - last[0]) / (wall - last[1])
        self._last = (cpu, wall)

    async def run(self) -> None:
        self.observe(*self._sample())
        while True:
            await trio.sleep(self.window)
            self.observe(*self._sample())
