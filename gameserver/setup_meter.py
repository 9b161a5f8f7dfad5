"""The trio part of admission (``gameserver.load`` is the pure part): measure the CPU that
connection setup costs, sample the load, and make new connections wait their turn.

* :class:`SetupMeter`, a trio Instrument, adds up the CPU time of the task steps of the
  connections being set up (from accept until seated, refused or gone). It is installed only
  while at least one connection is being set up, so a server without joins pays nothing.
* :func:`run_monitor` samples the process's CPU time and the counters every ``window``.
* :class:`SetupGate` lets a new connection start its TLS handshake when the
  :class:`~gameserver.load.SetupPacer` has a token at the monitor's
  :meth:`~gameserver.load.LoadMonitor.setup_rate`; connections waiting are served in arrival
  order (a fair ``trio.Lock``), each at most ``wait`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from gameserver.load import LoadCounters, LoadMonitor, SetupPacer

#: how often, per window, the monitor notes the players seated (for the window's mean)
PLAYER_NOTES = 8


class SetupMeter(trio.abc.Instrument):
    """CPU seconds spent in the task steps of connections being set up, and how many setups
    have finished. :meth:`begin` and :meth:`end` are called by the connection's own task."""

    def __init__(self, clock: Callable[[], float] = time.process_time) -> None:
        self.cpu = 0.0
        self.finished = 0
        self._clock = clock
        self._tasks: set[trio.lowlevel.Task] = set()
        self._t0 = 0.0
        self._installed = False

    @property
    def active(self) -> int:
        """Connections being set up now."""
        return len(self._tasks)

    def begin(self) -> None:
        task = trio.lowlevel.current_task()
        if task in self._tasks:
            return
        self._tasks.add(task)
        self._t0 = self._clock()  # the rest of this step counts
        if not self._installed:
            trio.lowlevel.add_instrument(self)
            self._installed = True

    def end(self) -> None:
        """This task's setup is over (idempotent): its current step counts up to now."""
        task = trio.lowlevel.current_task()
        if task not in self._tasks:
            return
        self.cpu += self._clock() - self._t0
        self._tasks.discard(task)
        self.finished += 1
        if not self._tasks and self._installed:
            trio.lowlevel.remove_instrument(self)
            self._installed = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task in self._tasks:
            self._t0 = self._clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task in self._tasks:
            self.cpu += self._clock() - self._t0


async def run_monitor(monitor: LoadMonitor, counters: Callable[[], LoadCounters]) -> None:
    """Sample forever: the CPU time and ``counters()`` every ``monitor.window`` seconds, and
    the players seated :data:`PLAYER_NOTES` times in between."""
    monitor.observe(*monitor.sample(), counters())
    step = monitor.window / PLAYER_NOTES
    while True:
        for _ in range(PLAYER_NOTES - 1):
            await trio.sleep(step)
            monitor.note_players(counters().players)
        await trio.sleep(step)
        monitor.observe(*monitor.sample(), counters())


class SetupGate:
    """New connections wait here for their turn to start the handshake (see the module
    docstring). ``wait``: seconds a connection may wait (0: no pacing at all)."""

    def __init__(self, monitor: LoadMonitor, wait: float, pacer: SetupPacer | None = None) -> None:
        self.monitor = monitor
        self.wait = wait
        self.pacer = pacer if pacer is not None else SetupPacer()
        self._turn = trio.Lock()  # fair: the first to wait is the first served

    async def turn(self, bypass: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a token; False if none came within ``wait`` seconds (the connection is
        to be refused). ``bypass()`` true (a drain: the JOIN is refused at once anyway):
        go now."""
        if self.wait <= 0:
            return True
        monitor = self.monitor
        monitor.waiting += 1
        try:
            with trio.move_on_after(self.wait):
                async with self._turn:
                    while not bypass():
                        rate = monitor.setup_rate()
                        delay = self.pacer.take(trio.current_time(), rate)
                        if delay <= 0:
                            break
                        # re-read the rate at least every 50 ms: players come and go
                        await trio.sleep(min(max(delay, 0.001), 0.05))
                return True
            return False
        finally:
            monitor.waiting -= 1
