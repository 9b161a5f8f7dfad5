"""Admission by lasting load, and pacing of connection setup: the pure core (no trio, no I/O).

All rooms and all player I/O run in one thread, so the process's CPU share of one core is the
measure. It has two parts that behave differently:

* **setup**: the TLS handshake, the HTTP upgrade and the JOIN of a connection being set up
  (about 3.5 ms of CPU each on the bench machine). It lasts as long as joins keep arriving;
  a ramp of 200 joins per second costs most of a core while it lasts, then nothing.
* **lasting**: everything else, the rooms' ticks and the seated players' I/O. It stays as
  long as the players do, and grows with each one.

:class:`LoadMonitor` is fed samples (``observe``: the process's CPU time, and the
:class:`LoadCounters` the trio layer keeps: CPU spent in setup, setups finished, ticks and
late ticks, players). From them it keeps the lasting share, the setup share, the CPU one setup
costs, the lasting cost of one player, and the share of ticks that ran late. Its verdicts:

* :attr:`LoadMonitor.overloaded` (admission, 4006 "server full"): the lasting load projected
  with one more player is over ``budget``, or more than ``max_late`` of the ticks ran late.
  A burst of handshakes does not count against the budget; seated players are never dropped.
* :meth:`LoadMonitor.setup_rate` (pacing): how many setups per second fit in the CPU left under
  ``ceiling`` by the lasting load of the players seated now. :class:`SetupPacer`, a token
  bucket, lets new connections start their handshake at that rate; the rest wait their turn
  (``gameserver.setup_meter``, the thin trio part, does the waiting and the measuring).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import attrs

#: returns (CPU seconds this process has used, wall-clock seconds); both only ever grow
Sampler = Callable[[], tuple[float, float]]

#: CPU seconds one connection setup is assumed to cost until the first are measured
DEFAULT_SETUP_COST = 0.004
#: the least CPU seconds a setup is taken to cost (a TLS handshake is never free)
MIN_SETUP_COST = 0.0001
#: setups finished in a window before their measured cost replaces the estimate
MIN_SETUPS_MEASURED = 5
#: setups per second the pacer always allows (so a server whose ticks run late still tells
#: new players why it refuses them, a few at a time)
MIN_SETUP_RATE = 5.0
#: players seated (on average over a window) before their per-player cost is trusted: with
#: fewer, noise and the idle baseline dominate it, and one more player cannot matter next to
#: the budget's margin, so the lasting load is taken as it is
MIN_PLAYERS_PROJECTED = 16
#: lasting CPU per second of tick work (the seated players' I/O outside the tick, the
#: scheduler, the kernel's share) until a quiet window measures it. A steady ramp has no
#: quiet window, so this is what a ramp is judged by: 1.08-1.13 on the bench machine at
#: 770-820 players (1.14-1.19 once on a busier day); at 1.2, a ramp at 100-200 joins/s
#: projected 0.07 of a core too much and refused joins at a steady load of 0.76
DEFAULT_LASTING_RATIO = 1.12
MAX_LASTING_RATIO = 2.0
#: a window with at most this many setups per second is quiet: its lasting ratio is learned
QUIET_SETUP_RATE = 1.0
#: the tick share a quiet window needs for its lasting ratio to be learned
MIN_TICK_SHARE = 0.05
#: CPU seconds per setup at most that are charged to setup beyond what the meter saw (the
#: accept loop, the scheduler and the kernel working for the handshakes)
MAX_UNMETERED_SETUP = 0.005
#: handshakes that may start at once after a quiet spell (the token bucket's depth)
SETUP_BURST = 4.0
#: windows whose lasting load the projection averages. At a steady 800 players on the bench
#: machine one 2 s window's lasting load swings between 0.69 and 0.84 of a core (inputs and
#: the kernel's work come in bursts): judged one window at a time, a single high window
#: refused joins while the mean was 0.1 under the budget. Three windows cut that noise by
#: about 1.7; a real rise in load still counts a third at once, and late ticks at once
SMOOTH_WINDOWS = 3


def process_sampler() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


@attrs.frozen
class LoadCounters:
    """What the trio layer counts, all cumulative but ``players`` (seated now)."""

    setup_cpu: float = 0.0  # CPU seconds spent setting connections up
    setups: int = 0  # connection setups finished (seated, refused or gone)
    tick_seconds: float = 0.0  # time spent in room ticks (RoomHost.step), all rooms
    ticks: int = 0  # room ticks run, all rooms
    late_ticks: int = 0  # ticks that ran more than a period late, plus skipped ones
    players: int = 0


class LoadMonitor:
    """Lasting load and setup load, from samples; admission and pacing verdicts.

    ``budget``: the share of one core the lasting load may reach with one more player (0: no
    admission check). ``window``: seconds between the samples that count (a sample less than
    half a window after the last one counted is ignored: a mock clock may run ahead of real
    time). ``max_late``: the share of ticks that may run late before joins are refused.
    ``ceiling``: the share of one core lasting load and setups together may use, which sets
    the setup rate (0: no pacing; a ``budget`` of 0 turns pacing off too). ``sample`` is injectable, so tests can make any load.
    """

    def __init__(
        self,
        budget: float,
        window: float,
        sample: Sampler = process_sampler,
        *,
        max_late: float = 0.01,
        ceiling: float = 0.95,
    ) -> None:
        self.budget = budget
        self.window = window
        self.max_late = max_late
        self.ceiling = ceiling
        self.sample = sample
        #: CPU share of one core over the last window, all of it (``gameserver_cpu_ratio``)
        self.load = 0.0
        #: the part of ``load`` spent setting connections up
        self.setup_share = 0.0
        #: CPU seconds one connection setup costs (measured; an estimate until then)
        self.setup_cost = DEFAULT_SETUP_COST
        #: CPU share of one core spent in room ticks over the last window
        self.tick_share = 0.0
        #: lasting CPU per tick CPU, learned in quiet windows
        self.lasting_ratio = DEFAULT_LASTING_RATIO
        #: lasting CPU share per player seated, over the last window
        self.per_player = 0.0
        #: lasting CPU share with nobody seated (learned while the server is empty)
        self.baseline = 0.0
        #: players seated on average over the last window
        self.players_mean = 0.0
        #: (lasting, players_mean) of the last SMOOTH_WINDOWS windows, for the projection
        self._recent: deque[tuple[float, float]] = deque(maxlen=SMOOTH_WINDOWS)
        #: share of the last window's ticks that ran late
        self.late_share = 0.0
        #: players seated now (the trio layer sets it, see :meth:`note_players`)
        self.players = 0
        #: connections waiting for their turn to start the handshake (set by the trio layer)
        self.waiting = 0
        self._last: tuple[float, float, LoadCounters] | None = None
        self._player_sum = 0.0
        self._player_notes = 0

    # ------------------------------------------------------------------ samples in

    def note_players(self, players: int) -> None:
        """The number of players seated now; noted between samples, so that the window's
        per-player cost divides by the players it really carried (not those at its end)."""
        self.players = players
        self._player_sum += players
        self._player_notes += 1

    def observe(self, cpu: float, wall: float, counters: LoadCounters | None = None) -> None:
        """One sample: the shares become those since the previous sample counted."""
        counters = counters if counters is not None else LoadCounters(players=self.players)
        last = self._last
        if last is None:
            self._last = (cpu, wall, counters)
            self._reset_notes(counters.players)
            return
        cpu0, wall0, c0 = last
        span = wall - wall0
        if span < self.window / 2:
            return
        self.note_players(counters.players)
        self.players_mean = self._player_sum / self._player_notes
        self._reset_notes(counters.players)
        self.load = max(0.0, (cpu - cpu0) / span)
        setup_cpu = max(0.0, counters.setup_cpu - c0.setup_cpu)
        self.setup_share = min(self.load, setup_cpu / span)
        setups = counters.setups - c0.setups
        self.tick_share = max(0.0, counters.tick_seconds - c0.tick_seconds) / span
        self._split_setup(setups, span)
        if setups >= MIN_SETUPS_MEASURED:
            self.setup_cost = max(MIN_SETUP_COST, self.setup_share * span / setups)
        ticks = counters.ticks - c0.ticks
        late = counters.late_ticks - c0.late_ticks
        self.late_share = late / (ticks + late) if ticks + late > 0 else 0.0
        lasting = self.lasting
        if counters.players == 0 and c0.players == 0 and self.players_mean == 0:
            self.baseline = lasting  # the idle process: timers, metrics scrapes
        self._recent.append((lasting, self.players_mean))
        if self.players_smooth < MIN_PLAYERS_PROJECTED:
            self.per_player = 0.0
        else:
            self.per_player = max(0.0, self.lasting_smooth - self.baseline) / self.players_smooth
        self._last = (cpu, wall, counters)

    def _split_setup(self, setups: int, span: float) -> None:
        """Part of the setups' CPU is not in their own task steps (the accept loop, the
        scheduler, the kernel): in a window with setups, what the process used beyond the
        lasting load its ticks account for (``tick_share * lasting_ratio``) is setup too, up
        to :data:`MAX_UNMETERED_SETUP` per setup. A quiet window teaches the ratio."""
        raw = self.lasting
        if setups <= QUIET_SETUP_RATE * span:
            if self.tick_share >= MIN_TICK_SHARE:
                ratio = max(0.0, raw - self.baseline) / self.tick_share
                self.lasting_ratio = min(MAX_LASTING_RATIO, max(1.0, ratio))
            return
        expected = self.baseline + self.tick_share * self.lasting_ratio
        unmetered = min(max(0.0, raw - expected), setups * MAX_UNMETERED_SETUP / span)
        self.setup_share = min(self.load, self.setup_share + unmetered)

    def _reset_notes(self, players: int) -> None:
        self._player_sum = float(players)
        self._player_notes = 1

    # ------------------------------------------------------------------ verdicts out

    @property
    def lasting(self) -> float:
        """The CPU share of the last window that was not connection setup."""
        return max(0.0, self.load - self.setup_share)

    @property
    def lasting_smooth(self) -> float:
        """The lasting load of the last :data:`SMOOTH_WINDOWS` windows, their mean (the last
        window's until one has been observed)."""
        recent = self._recent
        return sum(w[0] for w in recent) / len(recent) if recent else self.lasting

    @property
    def players_smooth(self) -> float:
        """The players those windows carried, their mean."""
        recent = self._recent
        return sum(w[1] for w in recent) / len(recent) if recent else self.players_mean

    def projected(self, players: int) -> float:
        """The lasting CPU share with ``players`` seated: that of the last
        :data:`SMOOTH_WINDOWS` windows (their mean), moved along by the per-player cost for
        the players come or gone since (their mean of players)."""
        return max(0.0, self.lasting_smooth + self.per_player * (players - self.players_smooth))

    @property
    def admit_projection(self) -> float:
        """The lasting CPU share projected with one more player than are seated now."""
        return self.projected(self.players + 1)

    @property
    def ticks_late(self) -> bool:
        """More than ``max_late`` of the last window's ticks ran late."""
        return self.late_share > self.max_late

    @property
    def overloaded(self) -> bool:
        """Admission refuses joins (4006): the lasting load with one more player would be over
        the budget, or the ticks run late. Always False with a budget of 0."""
        if self.budget <= 0:
            return False
        return self.admit_projection > self.budget or self.ticks_late

    def setup_rate(self) -> float:
        """Connection setups per second that fit under ``ceiling`` beside the lasting load of
        the players seated now (``inf``: no pacing, with a ceiling or a budget of 0). While
        ticks run late, the minimum."""
        if self.ceiling <= 0 or self.budget <= 0:
            return math.inf
        if self.ticks_late:
            return MIN_SETUP_RATE
        headroom = self.ceiling - self.projected(self.players)
        cost = max(self.setup_cost, 1e-5)
        return max(MIN_SETUP_RATE, headroom / cost)


class SetupPacer:
    """A token bucket for connection setups: :meth:`take` one, at the rate given, or learn
    how long to wait for the next. At most :data:`SETUP_BURST` build up while it is idle."""

    def __init__(self, burst: float = SETUP_BURST) -> None:
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float, rate: float) -> float:
        """Take a token at time ``now``: 0.0 if one was taken, else the seconds until the
        next one comes (at ``rate`` per second; ``inf`` rate: always 0.0)."""
        if math.isinf(rate):
            return 0.0
        last = self._at if self._at is not None else now
        self._tokens = min(self.burst, self._tokens + max(0.0, now - last) * rate)
        self._at = now
        if self._tokens >= 1.0 - 1e-9:  # (rounding must not leave a wait of 1e-17 s)
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / rate
