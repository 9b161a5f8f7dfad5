"""Tick-loop timing on trio's MockClock: rate, drift, overruns and skips, room disposal."""

from __future__ import annotations

import itertools
import math

import pytest
import trio
import trio.testing

from gameserver.game import Game, GameRegistry
from gameserver.room import Room, RoomConfig
from gameserver.server import RoomHost, ServerConfig
from gameserver.stats import ServerStats
from gameserver.ticker import TickClock
from shared.schema import EntityType, InputSchema, Schema, VarUInt

THING = EntityType("thing", n=VarUInt())


class Recorder(Game):
    """Records the virtual time of every update; can be told to overrun."""

    name = "recorder"
    schema = Schema(THING)
    input_schema = InputSchema(n=VarUInt())
    clock: trio.testing.MockClock | None = None
    stall_at: dict[int, float] = {}  # tick -> seconds the update "takes"

    def __init__(self, ctx):  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self.times: list[float] = []

    def update(self, dt: float) -> None:
        self.times.append(trio.current_time())
        stall = self.stall_at.get(self.ctx.tick)
        if stall and self.clock is not None:
            self.clock.jump(stall)  # the tick's work takes this long in virtual time


def make_host(
    rate: int,
    grace: float = 1e9,
    stall_at: dict[int, float] | None = None,
    clock: TickClock | None = None,
):  # type: ignore[no-untyped-def]
    game_cls = type("G", (Recorder,), {"stall_at": stall_at or {}})
    room = Room("r", game_cls, RoomConfig(tick_rate=rate))
    disposed: list[RoomHost] = []
    host = RoomHost(
        room, ServerConfig(room_grace=grace), ServerStats(), disposed.append, clock=clock
    )
    return host, disposed


async def test_the_shared_timer_keeps_every_room_on_its_own_grid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Rooms started at different times, waiting on one TickClock: each ticks exactly
    rate x seconds times, each tick within one slot after start + n * period (no drift), and
    rooms due in the same slot share a wake-up of the timer."""
    clock = TickClock(slot=0.002)
    hosts = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        starts = []
        for i in range(6):
            host, _ = make_host(20, clock=clock)
            host.room.seat("p", "p")
            hosts.append(host)
            starts.append(trio.current_time())
            nursery.start_soon(host.run)
            await trio.sleep(0.0007 * (i + 1))  # a different phase each
        await trio.sleep(50.0)
        nursery.cancel_scope.cancel()
    for host, start in zip(hosts, starts, strict=True):
        times = host.room.game.times  # type: ignore[attr-defined]
        assert len(times) >= 999
        for n, t in enumerate(times, start=1):
            assert start + n * 0.05 - 1e-9 <= t <= start + n * 0.05 + 0.002 + 1e-9
        assert host.late == 0 and host.skipped == 0
    assert clock.woken == sum(host.ticks for host in hosts)
    assert clock.wakeups < clock.woken  # some rooms shared a wake-up


async def test_ticks_at_fixed_rate_without_drift(autojump_clock: trio.testing.MockClock) -> None:
    host, _ = make_host(20)
    host.room.seat("p", "p")  # keep the room alive
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(host.run)
        await trio.sleep(100.01)
        nursery.cancel_scope.cancel()
    times = host.room.game.times  # type: ignore[attr-defined]
    assert len(times) == 2000  # 100 s at 20 Hz, exactly
    for n, t in enumerate(times, start=1):
        assert abs(t - (start + n * 0.05)) < 1e-9  # deadline = start + n * period
    assert host.late == 0 and host.skipped == 0


async def test_rate_is_configurable_up_to_120(autojump_clock: trio.testing.MockClock) -> None:
    host, _ = make_host(120)
    host.room.seat("p", "p")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.run)
        await trio.sleep(10.001)
        nursery.cancel_scope.cancel()
    assert host.ticks == 1200


async def test_overrun_is_counted_and_skips_instead_of_spiralling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    Recorder.clock = autojump_clock
    # tick 10 takes 0.26 s: five periods and a bit. The loop must count it late, skip the slots
    # it missed rather than running them back to back, and then keep the original schedule.
    host, _ = make_host(20, stall_at={10: 0.26})
    host.room.seat("p", "p")
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(host.run)
        await trio.sleep(10.01)
        nursery.cancel_scope.cancel()
    Recorder.clock = None
    times = host.room.game.times  # type: ignore[attr-defined]
    assert host.late == 1
    assert host.skipped == 4  # slots 11-14 dropped; slot 15 runs at once
    assert host.ticks == 200 - 4
    # after the overrun, ticks are back on the start + n * period grid
    for t in times[11:]:
        slot = (t - start) / 0.05
        assert abs(slot - round(slot)) < 1e-6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.0  # never two ticks at the same instant (no catch-up burst)
    assert times[-1] <= start + 10.01


@pytest.mark.parametrize("shared_timer", [False, True])
async def test_empty_room_is_disposed_after_grace(
    autojump_clock: trio.testing.MockClock, shared_timer: bool
) -> None:
    clock = TickClock() if shared_timer else None
    host, disposed = make_host(20, grace=3.0, clock=clock)
    player = host.room.seat("p", "p")
    async with trio.open_nursery() as nursery:
        if clock is not None:
            await nursery.start(clock.run)
        nursery.start_soon(host.run)
        await trio.sleep(5.0)
        assert not disposed  # occupied: keeps running
        host.room.unseat(player.number)
        left_at = trio.current_time()
        with trio.fail_after(10):
            while not disposed:
                await trio.sleep(0.05)
        gone_after = trio.current_time() - left_at
        nursery.cancel_scope.cancel()  # the timer
    assert disposed == [host]
    assert 3.0 <= gone_after <= 3.2
    if clock is not None:
        assert clock.woken == host.ticks  # every tick was called by the timer


async def test_the_shared_timer_skips_an_overrun_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under the shared timer (each tick called in the timer's task) an overrun is counted
    late and its missed slots dropped, as with trio's own sleep; the grid is kept."""
    Recorder.clock = autojump_clock
    clock = TickClock(slot=0.002)
    host, _ = make_host(20, stall_at={10: 0.26}, clock=clock)
    host.room.seat("p", "p")
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        start = trio.current_time()
        nursery.start_soon(host.run)
        await trio.sleep(10.01)
        nursery.cancel_scope.cancel()
    Recorder.clock = None
    times = host.room.game.times  # type: ignore[attr-defined]
    assert (host.late, host.skipped, host.ticks) == (1, 4, 196)
    for t in times[11:]:  # back on the grid, within one slot after each deadline
        n = math.floor((t - start) / 0.05 + 1e-9)
        assert 0 <= t - (start + n * 0.05) <= 0.002 + 1e-9
    assert min(b - a for a, b in itertools.pairwise(times)) > 0.04  # no catch-up burst


class Crasher(Recorder):
    crash_at = 5

    def update(self, dt: float) -> None:
        super().update(dt)
        if self.ctx.tick == self.crash_at:
            raise RuntimeError("the game's own bug")


@pytest.mark.parametrize("shared_timer", [False, True])
async def test_a_game_crash_closes_the_room_and_not_the_timer(
    autojump_clock: trio.testing.MockClock, shared_timer: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = TickClock() if shared_timer else None
    room = Room("c", Crasher, RoomConfig(tick_rate=20))
    disposed: list[RoomHost] = []
    host = RoomHost(room, ServerConfig(), ServerStats(), disposed.append, clock=clock)
    other, _ = make_host(20, clock=clock)
    room.seat("p", "p")
    other.room.seat("q", "q")
    async with trio.open_nursery() as nursery:
        if clock is not None:
            await nursery.start(clock.run)
        nursery.start_soon(host.run)
        nursery.start_soon(other.run)
        await trio.sleep(1.001)
        nursery.cancel_scope.cancel()
    assert disposed == [host] and host.closed and host.ticks == 4
    assert other.ticks == 20  # the other room (and the shared timer) carried on
    assert "room 'c' crashed" in caplog.text


async def test_registry_is_not_global() -> None:
    a, b = GameRegistry(), GameRegistry()
    a.register(Recorder)
    assert a.get("recorder") is Recorder
    assert b.get("recorder") is None
