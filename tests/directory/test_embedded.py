"""The embedded directory on an injected clock, and open_directory's renewal on trio's
MockClock (no I/O, no real time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gameserver.directory import (
    DirectoryLimits,
    EmbeddedDirectory,
    LeaseLost,
    LostReason,
    NodeRecord,
    RoomTaken,
    open_directory,
)
from tests.directory.conftest import make_embedded

A = NodeRecord("node-a", "wss://a", 0)
B = NodeRecord("node-b", "wss://b", 0)


async def test_lease_expires_exactly_at_ttl() -> None:
    d, clock = make_embedded(DirectoryLimits(lease_ttl=5.0))
    lease = await d.create_room("r", A, "p")
    assert lease.expires == clock.now + 5.0
    clock.now += 4.999
    assert await d.lookup("r") is not None
    clock.now += 0.001
    assert await d.lookup("r") is None


async def test_epochs_only_grow() -> None:
    d, _ = make_embedded()
    epochs = []
    for _ in range(5):
        lease = await d.create_room("r", A, f"p{len(epochs)}")
        epochs.append(lease.epoch)
        assert await d.release_room(lease)
    assert epochs == sorted(set(epochs))


async def test_epoch_memory_bounds_reclaim() -> None:
    d, clock = make_embedded(DirectoryLimits(lease_ttl=1.0, epoch_memory=10.0))
    lease = await d.create_room("r", A, "p")
    clock.now += 11.0  # past the lease and past the memory of its epoch
    result = await d.renew("node-a", [lease], [])
    assert not result.kept and result.lost[0].reason is LostReason.LAPSED


async def test_seat_follows_room_expiry() -> None:
    d, clock = make_embedded(DirectoryLimits(lease_ttl=2.0))
    lease = await d.create_room("r", A, "p")
    clock.now += 1.0
    seat = await d.claim_seat("x", lease)
    assert seat.expires == lease.expires  # the seat lives as long as its room's lease
    clock.now += 1.0
    assert await d.seat_of("x") is None


async def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        DirectoryLimits(lease_ttl=0)
    with pytest.raises(ValueError):
        DirectoryLimits(create_burst=0.5)


async def test_live_directory_renews_and_reports_fencing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    d = EmbeddedDirectory(DirectoryLimits(lease_ttl=3.0, node_ttl=3.0), clock=trio.current_time)
    lost: list[LeaseLost] = []
    async with open_directory(d, "node-a", "wss://a", load=lambda: 7, on_lost=lost.append) as na:
        assert (await d.nodes()) == [NodeRecord("node-a", "wss://a", 7.0)]
        lease = await na.create_room("r", "p")
        await na.claim_seat("alice", "r")
        await trio.sleep(30)  # ten TTLs: renewed all along
        assert na.renewals >= 30 and na.renewal_failures == 0
        assert na.owns("r") is not None and na.owns("r").epoch == lease.epoch  # type: ignore[union-attr]
        assert (await d.seat_of("alice")) is not None
        # the room is taken from under it (an operator, or a store that lost it): fenced
        assert await d.release_room(lease)
        other = await d.create_room("r", B, "q")
        await trio.sleep(1.01)
        assert na.owns("r") is None and na.seat("alice") is None
        assert [(x.reason, x.current) for x in lost] == [(LostReason.MOVED, other)]
        with pytest.raises(RoomTaken):
            await na.create_room("r", "p")
    assert await d.nodes() == []  # a clean exit removes the node record


async def test_release_room_frees_it_everywhere(autojump_clock: trio.testing.MockClock) -> None:
    d = EmbeddedDirectory(clock=trio.current_time)
    async with open_directory(d, "node-a", "wss://a") as na:
        await na.create_room("r", "p")
        await na.claim_seat("bob", "r")
        await na.release_room("r")
        assert na.owns("r") is None and na.seat("bob") is None
        assert await d.lookup("r") is None
        with pytest.raises(KeyError):
            await na.claim_seat("bob", "r")


async def test_many_rooms_renew_in_chunks(autojump_clock: trio.testing.MockClock) -> None:
    limits = DirectoryLimits(lease_ttl=3.0, create_rate=0, create_burst=1000)
    d = EmbeddedDirectory(limits, clock=trio.current_time)
    calls: list[int] = []
    renew = d.renew

    async def counting(node_id, leases, seats):  # type: ignore[no-untyped-def]
        calls.append(len(leases))
        return await renew(node_id, leases, seats)

    d.renew = counting  # type: ignore[method-assign]
    async with open_directory(d, "node-a", "wss://a") as na:
        for i in range(600):
            await na.create_room(f"r{i}", "p")
            await na.claim_seat(f"player{i}", f"r{i}")
        calls.clear()
        await trio.sleep(10)
        assert len(na.leases) == 600 and len(na.seats) == 600
        assert max(calls) == 256 and 600 in {sum(calls[i : i + 3]) for i in range(0, 9, 3)}
        for i in range(600):
            assert (await d.seat_of(f"player{i}")) is not None
