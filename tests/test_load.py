"""The pure admission core (gameserver.load): lasting load apart from connection setup, the
projection with one more player, late ticks, the setup rate and its token bucket."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.load import (
    DEFAULT_LASTING_RATIO,
    DEFAULT_SETUP_COST,
    MAX_LASTING_RATIO,
    MAX_UNMETERED_SETUP,
    MIN_PLAYERS_PROJECTED,
    MIN_SETUP_RATE,
    SMOOTH_WINDOWS,
    LoadCounters,
    LoadMonitor,
    SetupPacer,
)


class Feed:
    """Drives a monitor window by window: each window's CPU split into setup and lasting."""

    def __init__(self, monitor: LoadMonitor, players: int = 0) -> None:
        self.monitor = monitor
        self.wall = 0.0
        self.cpu = 0.0
        self.c = LoadCounters(players=players)
        monitor.observe(self.cpu, self.wall, self.c)

    def window(
        self,
        *,
        lasting: float,
        setup: float = 0.0,
        setups: int = 0,
        players: int = 0,
        ticks: int = 400,
        late: int = 0,
        tick: float | None = None,
        unmetered: float = 0.0,
    ) -> None:
        """``setup``: the setup share the meter sees; ``unmetered``: setup CPU it does not
        see; ``tick``: the tick share (default: what the lasting load implies)."""
        span = self.monitor.window
        self.wall += span
        self.cpu += (lasting + setup + unmetered) * span
        tick = lasting / DEFAULT_LASTING_RATIO if tick is None else tick
        c = self.c
        self.c = LoadCounters(
            setup_cpu=c.setup_cpu + setup * span,
            setups=c.setups + setups,
            tick_seconds=c.tick_seconds + tick * span,
            ticks=c.ticks + ticks,
            late_ticks=c.late_ticks + late,
            players=players,
        )
        for _ in range(7):  # the players changed at the start of the window, then held
            self.monitor.note_players(players)
        self.monitor.observe(self.cpu, self.wall, self.c)


def test_a_burst_of_handshakes_does_not_count_against_the_budget() -> None:
    """200 joins/s at 3.5 ms each is 70% of a core; beside 50% of lasting load that is 120%,
    far over 0.85, but the lasting load is what admission weighs."""
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=600)
    feed.window(lasting=0.5, setup=0.7, setups=400, players=600)
    assert monitor.load == pytest.approx(1.2)
    assert monitor.setup_share == pytest.approx(0.7)
    assert monitor.lasting == pytest.approx(0.5)
    assert monitor.setup_cost == pytest.approx(0.0035)
    assert not monitor.overloaded


def test_setup_cpu_the_meter_does_not_see_is_told_from_the_ticks() -> None:
    """The accept loop, the scheduler and the kernel work for the handshakes outside their
    task steps: in a window with setups, CPU beyond what the ticks account for is setup."""
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=500)
    feed.window(lasting=0.6, tick=0.5, players=500)  # quiet: 0.6 / 0.5 is learned
    assert monitor.lasting_ratio == pytest.approx(1.2)
    feed.window(lasting=0.6, tick=0.5, setup=0.2, unmetered=0.15, setups=200, players=500)
    assert monitor.load == pytest.approx(0.95)
    assert monitor.lasting == pytest.approx(0.6)
    assert monitor.setup_share == pytest.approx(0.35)
    assert monitor.setup_cost == pytest.approx(0.35 * 2.0 / 200)
    # a lasting load that grew beyond the ticks' account is not all blamed on setups
    feed.window(lasting=0.6, tick=0.5, unmetered=0.5, setups=10, players=500)
    assert monitor.setup_share == pytest.approx(10 * MAX_UNMETERED_SETUP / 2.0)
    assert monitor.lasting == pytest.approx(1.1 - 0.025)


def test_the_lasting_ratio_is_learned_only_from_quiet_windows_and_bounded() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=100)
    assert monitor.lasting_ratio == DEFAULT_LASTING_RATIO
    feed.window(lasting=0.04, tick=0.01, players=100)  # too little tick work to tell
    assert monitor.lasting_ratio == DEFAULT_LASTING_RATIO
    feed.window(lasting=0.9, tick=0.1, players=100)
    assert monitor.lasting_ratio == MAX_LASTING_RATIO
    feed.window(lasting=0.4, tick=0.5, players=100)
    assert monitor.lasting_ratio == 1.0
    feed.window(lasting=0.9, tick=0.3, setups=100, setup=0.3, players=100)  # not quiet
    assert monitor.lasting_ratio == 1.0


def test_the_lasting_load_with_one_more_player_is_what_is_refused() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=1000)
    feed.window(lasting=0.80, players=1000)
    assert monitor.per_player == pytest.approx(0.0008)
    monitor.players = 1000
    assert monitor.admit_projection == pytest.approx(0.8008)
    assert not monitor.overloaded
    # 62 more players seated since the window: 0.80 + 63 * 0.0008 > 0.85
    monitor.players = 1062
    assert monitor.admit_projection == pytest.approx(0.8504)
    assert monitor.overloaded
    # players leave: room again
    monitor.players = 1000
    assert not monitor.overloaded


def test_the_projection_divides_by_the_players_the_window_carried() -> None:
    """A window during a ramp carried fewer players on average than are seated at its end:
    the per-player cost divides by the mean of the notes (not by the players at the end)."""
    monitor = LoadMonitor(budget=0.85, window=2.0)
    monitor.observe(0.0, 0.0, LoadCounters(players=400))
    for n in (450, 500, 550, 600, 650, 700, 750):
        monitor.note_players(n)
    monitor.observe(1.2, 2.0, LoadCounters(players=800))  # lasting 0.6 over a mean of 600
    assert monitor.players_mean == pytest.approx(600)
    assert monitor.per_player == pytest.approx(0.001)
    assert monitor.projected(800) == pytest.approx(0.8)
    monitor.players = 800
    assert not monitor.overloaded and monitor.admit_projection == pytest.approx(0.801)
    monitor.players = 850
    assert monitor.overloaded


def test_one_noisy_window_does_not_refuse_but_a_lasting_rise_does() -> None:
    """At a steady 800 players one window's lasting load swings by a tenth of a core: the
    projection averages the last SMOOTH_WINDOWS windows, so one high window does not refuse
    joins, and load that stays high does, within SMOOTH_WINDOWS windows."""
    assert SMOOTH_WINDOWS == 3
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=800)
    monitor.players = 800
    for lasting in (0.72, 0.74, 0.88):  # the last one alone would be over the budget
        feed.window(lasting=lasting, players=800)
    assert monitor.lasting == pytest.approx(0.88)
    assert monitor.admit_projection == pytest.approx(0.78 + 0.78 / 800)
    assert not monitor.overloaded
    feed.window(lasting=0.88, players=800)
    assert not monitor.overloaded  # (0.74 + 0.88 + 0.88) / 3 = 0.833
    feed.window(lasting=0.88, players=800)
    assert monitor.overloaded


def test_the_smoothed_projection_follows_a_ramp() -> None:
    """Windows during a ramp carried 400, 500 and 600 players at 0.001 each: the projection
    from their means is the same line."""
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor, players=400)
    for players in (400, 500, 600):
        feed.window(lasting=players * 0.001, players=players)
    # (each window's mean of players is a little under its players: they changed during it)
    assert monitor.players_smooth == pytest.approx(500, rel=0.02)
    assert monitor.lasting_smooth == pytest.approx(0.5)
    assert monitor.per_player == pytest.approx(0.5 / monitor.players_smooth)
    assert monitor.projected(800) == pytest.approx(0.8, rel=0.02)
    monitor.players = 850
    assert monitor.overloaded


def test_few_players_are_not_extrapolated() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor)
    feed.window(lasting=0.5, players=MIN_PLAYERS_PROJECTED - 1)
    assert monitor.per_player == 0.0
    monitor.players = 100
    assert monitor.admit_projection == pytest.approx(0.5)


def test_the_idle_baseline_is_not_charged_to_the_players() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    feed = Feed(monitor)
    feed.window(lasting=0.05, players=0)
    assert monitor.baseline == pytest.approx(0.05)
    feed.window(lasting=0.45, players=400)
    assert monitor.per_player == pytest.approx(0.40 / monitor.players_mean)  # not 0.45 / ...


def test_late_ticks_refuse_joins_and_slow_setups_to_the_minimum() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0, max_late=0.01)
    feed = Feed(monitor, players=300)
    feed.window(lasting=0.3, players=300, ticks=1000, late=10)  # 10 of 1010: under 1%
    assert not monitor.ticks_late and not monitor.overloaded
    feed.window(lasting=0.3, players=300, ticks=1000, late=20)  # 20 of 1020
    assert monitor.late_share == pytest.approx(20 / 1020)
    assert monitor.ticks_late and monitor.overloaded
    assert monitor.setup_rate() == MIN_SETUP_RATE
    feed.window(lasting=0.3, players=300, ticks=1000)
    assert not monitor.overloaded and monitor.setup_rate() > MIN_SETUP_RATE


def test_the_setup_rate_fills_the_headroom_under_the_ceiling() -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0, ceiling=0.95)
    assert monitor.setup_cost == DEFAULT_SETUP_COST  # nothing measured yet
    feed = Feed(monitor, players=600)
    feed.window(lasting=0.6, setup=0.3, setups=3, players=600)  # too few setups to measure
    assert monitor.setup_cost == DEFAULT_SETUP_COST
    feed.window(lasting=0.6, setup=0.25, setups=50, players=600)
    assert monitor.setup_cost == pytest.approx(0.01)
    monitor.players = 600
    assert monitor.setup_rate() == pytest.approx((0.95 - 0.6) / 0.01)
    monitor.players = 800  # seated since: less headroom
    assert monitor.setup_rate() == pytest.approx((0.95 - 0.8) / 0.01)
    monitor.players = 2000  # no headroom at all: a trickle still gets through
    assert monitor.setup_rate() == MIN_SETUP_RATE


def test_a_zero_budget_or_ceiling_turns_pacing_off() -> None:
    assert math.isinf(LoadMonitor(budget=0.85, window=2.0, ceiling=0.0).setup_rate())
    off = LoadMonitor(budget=0.0, window=2.0)
    off.late_share = 1.0
    assert math.isinf(off.setup_rate()) and not off.overloaded


def test_the_setup_share_never_exceeds_the_load() -> None:
    """Clocks read at slightly different moments: setup CPU a hair over the process's is
    clamped, so the lasting load is never negative."""
    monitor = LoadMonitor(budget=0.85, window=2.0)
    monitor.observe(0.0, 0.0, LoadCounters())
    monitor.observe(1.0, 2.0, LoadCounters(setup_cpu=1.1, setups=10))
    assert monitor.setup_share == pytest.approx(0.5) and monitor.lasting == 0.0


shares = st.floats(0.0, 2.0, allow_nan=False)


@given(
    windows=st.lists(
        st.tuples(shares, shares, st.integers(0, 400), st.integers(0, 3000), st.integers(0, 50)),
        min_size=1,
        max_size=12,
    ),
    now=st.integers(0, 5000),
    budget=st.floats(0.05, 1.0),
)
def test_verdicts_are_sane_for_any_samples(
    windows: list[tuple[float, float, int, int, int]], now: int, budget: float
) -> None:
    monitor = LoadMonitor(budget=budget, window=1.0)
    looser = LoadMonitor(budget=min(1.0, budget + 0.1), window=1.0)
    feeds = [Feed(monitor), Feed(looser)]
    for lasting, setup, setups, players, late in windows:
        for feed in feeds:
            feed.window(lasting=lasting, setup=setup, setups=setups, players=players, late=late)
    for m in (monitor, looser):
        m.players = now
        assert m.load >= 0 and 0 <= m.setup_share <= m.load + 1e-9
        assert m.lasting >= 0 and m.per_player >= 0 and m.setup_cost > 0
        assert 0 <= m.late_share <= 1
        assert m.projected(now + 1) >= m.projected(now) >= 0  # more players never cost less
        assert m.setup_rate() >= MIN_SETUP_RATE
    # a looser budget never refuses a join a tighter one admits
    assert not (looser.overloaded and not monitor.overloaded)


# ------------------------------------------------------------------ the token bucket


def test_the_pacer_lets_a_burst_through_then_paces() -> None:
    pacer = SetupPacer(burst=4.0)
    assert [pacer.take(0.0, 10.0) for _ in range(4)] == [0.0] * 4
    assert pacer.take(0.0, 10.0) == pytest.approx(0.1)
    assert pacer.take(0.05, 10.0) == pytest.approx(0.05)
    assert pacer.take(0.1, 10.0) == 0.0
    assert pacer.take(100.0, math.inf) == 0.0


@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.floats(MIN_SETUP_RATE, 500.0)), min_size=1, max_size=60
    ),
    burst=st.floats(1.0, 8.0),
)
def test_the_pacer_never_grants_more_than_burst_plus_rate_times_time(
    steps: list[tuple[float, float]], burst: float
) -> None:
    pacer = SetupPacer(burst=burst)
    now = 0.0
    granted = 0
    allowance = burst
    for gap, rate in steps:
        now += gap
        allowance += gap * rate
        wait = pacer.take(now, rate)
        if wait == 0.0:
            granted += 1
        else:
            assert 0 < wait <= 1.0 / rate + 1e-9
            # waiting as told gets a token at that rate
            probe = SetupPacer(burst=burst)
            probe._tokens, probe._at = pacer._tokens, pacer._at
            assert probe.take(now + wait + 1e-9, rate) == 0.0
        assert granted <= allowance + 1e-6
