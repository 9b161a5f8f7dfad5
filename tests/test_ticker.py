"""The rooms' shared tick timer (gameserver.ticker), on trio's MockClock."""

from __future__ import annotations

import pytest
import trio

from gameserver.ticker import TickClock


async def _call_times(clock: TickClock, deadlines: list[float]) -> list[float]:
    """Schedule one call at each deadline (a repeat that ends after it); when each ran."""
    called: list[float] = [0.0] * len(deadlines)
    handles = []
    for i, deadline in enumerate(deadlines):

        def call(i: int = i) -> float | None:
            called[i] = trio.current_time()
            return None

        handle = clock.repeat(deadline, call)
        assert handle is not None
        handles.append(handle)
    for handle in handles:
        await handle.done.wait()
    return called


async def test_calls_at_the_deadline_never_early_within_one_slot(autojump_clock: object) -> None:
    clock = TickClock(slot=0.002)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        base = trio.current_time()
        deadlines = [base + d for d in (0.0101, 0.05, 0.0333, 0.2, 0.0011, 0.05)]
        called = await _call_times(clock, deadlines)
        nursery.cancel_scope.cancel()
    for deadline, at in zip(deadlines, called, strict=True):
        assert deadline <= at <= deadline + 0.002 + 1e-9


async def test_calls_due_in_one_slot_share_one_wakeup(autojump_clock: object) -> None:
    clock = TickClock(slot=0.005)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t = trio.current_time()
        slot_end = (int(t / 0.005) + 3) * 0.005
        deadlines = [slot_end - 0.004 + i * 0.0003 for i in range(10)]  # all in one slot
        await _call_times(clock, deadlines)
        assert (clock.wakeups, clock.woken) == (1, 10)
        nursery.cancel_scope.cancel()


async def test_an_earlier_deadline_rearms_the_timer(autojump_clock: object) -> None:
    clock = TickClock()
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()
        late: list[float] = []

        def far() -> float | None:
            late.append(trio.current_time())
            return None

        assert clock.repeat(t0 + 10.0, far) is not None
        await trio.sleep(0.001)  # the timer now sleeps until t0 + 10
        called = await _call_times(clock, [t0 + 0.1])
        assert called[0] == pytest.approx(t0 + 0.1, abs=0.0021)
        assert not late
        nursery.cancel_scope.cancel()


def test_slot_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TickClock(slot=0)


# ---------------------------------------------------------------- repeat: calls in the timer


async def test_a_repeat_is_called_at_each_deadline_it_returns(autojump_clock: object) -> None:
    clock = TickClock(slot=0.002)
    calls: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        start = trio.current_time()

        def call() -> float | None:
            calls.append(trio.current_time())
            return start + 0.05 * (len(calls) + 1) if len(calls) < 20 else None

        handle = clock.repeat(start + 0.05, call)
        assert handle is not None
        await handle.done.wait()
        assert not handle.stopped and handle.call is None
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert len(calls) == 20  # and never again once it returned None
    for n, at in enumerate(calls, start=1):
        assert start + 0.05 * n <= at <= start + 0.05 * n + 0.002 + 1e-9
    assert clock.woken == 20


async def test_a_late_repeat_waits_for_the_next_pass(autojump_clock: object) -> None:
    """A call whose next deadline has already passed is not run again in the same pass of the
    timer: the timer checkpoints first, so other tasks get their turn between its calls."""
    clock = TickClock(slot=0.002)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        start = trio.current_time()

        def call() -> float | None:
            order.append("call")
            return start if order.count("call") < 3 else None  # always behind

        handle = clock.repeat(start - 1.0, call)  # already due: no time needs to pass
        assert handle is not None

        async def other() -> None:
            while not handle.done.is_set():
                order.append("other")
                await trio.lowlevel.checkpoint()

        nursery.start_soon(other)
        await handle.done.wait()
        nursery.cancel_scope.cancel()
    assert order.count("call") == 3
    assert (clock.wakeups, clock.woken) == (3, 3)  # one pass (and a checkpoint) per call
    assert order.count("other") >= 2  # the other task was not starved


async def test_a_cancelled_repeat_is_not_called_again(autojump_clock: object) -> None:
    clock = TickClock()
    calls: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        start = trio.current_time()

        def call() -> float | None:
            calls.append(trio.current_time())
            return trio.current_time() + 0.1

        handle = clock.repeat(start + 0.1, call)
        assert handle is not None
        await trio.sleep(0.35)
        clock.cancel(handle)
        assert handle.done.is_set() and not handle.stopped
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert len(calls) == 3


async def test_a_repeat_ends_stopped_when_the_timer_stops(autojump_clock: object) -> None:
    clock = TickClock()
    assert clock.repeat(1.0, lambda: None) is None  # no timer running: nothing scheduled
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as timer:
            await timer.start(clock.run)
            handle = clock.repeat(trio.current_time() + 5.0, lambda: trio.current_time() + 5.0)
            assert handle is not None
            await trio.sleep(1.0)
            timer.cancel_scope.cancel()
        assert handle.done.is_set() and handle.stopped and handle.call is None
        outer.cancel_scope.cancel()
