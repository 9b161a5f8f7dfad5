"""The rooms' shared tick timer (gameserver.ticker), on trio's MockClock."""

from __future__ import annotations

import pytest
import trio

from gameserver.ticker import TickClock


async def _wake_times(clock: TickClock, deadlines: list[float]) -> list[float]:
    woke: list[float] = [0.0] * len(deadlines)

    async def sleeper(i: int, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke[i] = trio.current_time()

    async with trio.open_nursery() as nursery:
        for i, deadline in enumerate(deadlines):
            nursery.start_soon(sleeper, i, deadline)
    return woke


async def test_wakes_at_the_deadline_never_early_within_one_slot(autojump_clock: object) -> None:
    clock = TickClock(slot=0.002)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        base = trio.current_time()
        deadlines = [base + d for d in (0.0101, 0.05, 0.0333, 0.2, 0.0011, 0.05)]
        woke = await _wake_times(clock, deadlines)
        nursery.cancel_scope.cancel()
    for deadline, at in zip(deadlines, woke, strict=True):
        assert deadline <= at <= deadline + 0.002 + 1e-9


async def test_tasks_due_in_one_slot_share_one_wakeup(autojump_clock: object) -> None:
    clock = TickClock(slot=0.005)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t = trio.current_time()
        slot_end = (int(t / 0.005) + 3) * 0.005
        deadlines = [slot_end - 0.004 + i * 0.0003 for i in range(10)]  # all in one slot
        await _wake_times(clock, deadlines)
        assert (clock.wakeups, clock.woken) == (1, 10)
        nursery.cancel_scope.cancel()


async def test_an_earlier_deadline_rearms_the_timer(autojump_clock: object) -> None:
    clock = TickClock()
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()
        late: list[float] = []

        async def far() -> None:
            await clock.sleep_until(t0 + 10.0)
            late.append(trio.current_time())

        nursery.start_soon(far)
        await trio.sleep(0.001)  # the timer now sleeps until t0 + 10
        woke = await _wake_times(clock, [t0 + 0.1])
        assert woke[0] == pytest.approx(t0 + 0.1, abs=0.0021)
        assert not late
        nursery.cancel_scope.cancel()


async def test_a_cancelled_wait_is_forgotten(autojump_clock: object) -> None:
    clock = TickClock()
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()
        with trio.move_on_at(t0 + 0.5) as scope:
            await clock.sleep_until(t0 + 1.0)
        assert scope.cancelled_caught
        assert trio.current_time() == pytest.approx(t0 + 0.5)
        woke = await _wake_times(clock, [t0 + 2.0])  # the dead entry is passed over
        assert woke[0] >= t0 + 2.0
        assert clock.woken == 1
        assert clock.waiting == 0
        nursery.cancel_scope.cancel()


async def test_without_a_timer_it_is_trio_sleep_until(autojump_clock: object) -> None:
    clock = TickClock()
    t0 = trio.current_time()
    woke = await _wake_times(clock, [t0 + 0.0123])
    assert woke[0] == pytest.approx(t0 + 0.0123)
    assert clock.wakeups == 0


async def test_waiters_sleep_on_when_the_timer_stops(autojump_clock: object) -> None:
    clock = TickClock()
    woke: list[float] = []
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as timer:
            await timer.start(clock.run)
            t0 = trio.current_time()

            async def sleeper() -> None:
                await clock.sleep_until(t0 + 1.0)
                woke.append(trio.current_time())

            outer.start_soon(sleeper)
            await trio.sleep(0.1)
            timer.cancel_scope.cancel()  # the timer stops while the sleeper waits
    assert woke and woke[0] >= t0 + 1.0


def test_slot_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TickClock(slot=0)
