"""The trio part of admission (gameserver.setup_meter), on trio's MockClock: the setup meter
counts only the steps of connections being set up, the gate paces them in arrival order and
turns away the one that waited too long, and the monitor loop notes players between samples."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from gameserver.load import LoadCounters, LoadMonitor, SetupPacer
from gameserver.setup_meter import PLAYER_NOTES, SetupGate, SetupMeter, run_monitor


class FakeCPU:
    """A CPU clock the tasks advance by hand: ``spend(s)`` is s seconds of work."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


async def test_the_meter_counts_the_steps_of_setups_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cpu = FakeCPU()
    meter = SetupMeter(cpu)

    async def setup() -> None:
        cpu.spend(5.0)  # before begin: not setup
        meter.begin()
        cpu.spend(1.0)
        await trio.sleep(1)
        cpu.spend(2.0)
        await trio.sleep(1)
        cpu.spend(0.5)
        meter.end()
        cpu.spend(7.0)  # seated: lasting load from here
        await trio.sleep(1)
        cpu.spend(7.0)

    async def tick() -> None:
        for _ in range(6):
            await trio.sleep(0.4)
            cpu.spend(10.0)  # another task's steps, between the setup's: never counted

    async with trio.open_nursery() as nursery:
        nursery.start_soon(setup)
        nursery.start_soon(tick)
        await trio.sleep(0.1)
        assert meter.active == 1
    assert meter.cpu == pytest.approx(3.5)
    assert meter.finished == 1 and meter.active == 0
    meter.end()  # idempotent
    assert meter.finished == 1
    # no setup running: the instrument is gone (a server without joins pays nothing)
    assert not meter._installed


async def test_the_gate_paces_in_arrival_order_and_turns_the_late_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    monitor.setup_rate = lambda: 10.0  # type: ignore[method-assign]
    gate = SetupGate(monitor, wait=1.0, pacer=SetupPacer(burst=2.0))
    served: list[tuple[int, float]] = []
    refused: list[int] = []
    t0 = trio.current_time()

    async def connection(i: int) -> None:
        if await gate.turn():
            served.append((i, trio.current_time() - t0))
        else:
            refused.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(connection, i)
            await trio.sleep(0)  # arrival order
        await trio.sleep(0.5)
        assert monitor.waiting == 30 - len(served)
    # two at once (the burst), then one per 0.1 s until the waits of 1 s run out
    assert [i for i, _ in served] == list(range(len(served)))
    assert len(served) == 2 + 10
    for n, (_, at) in enumerate(served[2:], start=1):
        assert at == pytest.approx(n * 0.1, abs=0.06)
    assert sorted(refused) == list(range(12, 30))
    assert monitor.waiting == 0


async def test_a_drain_lets_the_waiting_through_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    monitor = LoadMonitor(budget=0.85, window=2.0)
    monitor.setup_rate = lambda: 0.01  # type: ignore[method-assign]
    gate = SetupGate(monitor, wait=5.0, pacer=SetupPacer(burst=1.0))
    draining = False
    results: list[bool] = []

    async def connection() -> None:
        results.append(await gate.turn(lambda: draining))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(connection)
        await trio.sleep(1.0)
        assert results == [True]
        draining = True
    assert results == [True] * 5


async def test_no_pacing_without_a_wait_or_with_an_infinite_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    monitor = LoadMonitor(budget=0.0, window=2.0)  # budget 0: pacing off
    assert math.isinf(monitor.setup_rate())
    gate = SetupGate(monitor, wait=1.0)
    t0 = trio.current_time()
    assert all([await gate.turn() for _ in range(100)])
    assert trio.current_time() == t0
    assert await SetupGate(LoadMonitor(0.85, 2.0), wait=0.0).turn()


async def test_the_monitor_loop_notes_players_between_samples(
    autojump_clock: trio.testing.MockClock,
) -> None:
    players = [0]
    cpu = [0.0]

    def sample() -> tuple[float, float]:
        return cpu[0], trio.current_time()

    monitor = LoadMonitor(budget=0.85, window=2.0, sample=sample)

    def counters() -> LoadCounters:
        players[0] += 100  # a ramp: 100 more at every look
        cpu[0] += 0.1
        return LoadCounters(players=players[0])

    with trio.move_on_after(2.0 + 1e-6):
        await run_monitor(monitor, counters)
    # the window ran from 100 to 100 * (PLAYER_NOTES + 1) players: its mean is in between
    assert monitor.players == 100 * (PLAYER_NOTES + 1)
    assert monitor.players_mean == pytest.approx(100 * (PLAYER_NOTES + 2) / 2)
    assert monitor.load == pytest.approx(0.1 * PLAYER_NOTES / 2.0)
