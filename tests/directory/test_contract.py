"""The directory's rules, checked against every implementation: embedded on a fake clock,
Redis on a real server with short TTLs, and remote (the embedded one on a fake clock, served
over a Unix socket, as the workers of ``--workers N`` use it)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from gameserver.directory import (
    Directory,
    DirectoryRefused,
    LostReason,
    NodeRecord,
    RedisAddress,
    RedisClient,
    Refused,
    RoomTaken,
    SeatTaken,
)
from gameserver.directory import embedded as embedded_mod
from gameserver.directory import redis as redis_mod
from gameserver.directory.remote import RemoteDirectory, serve_directory
from tests.directory.conftest import FAST, make_embedded, make_redis

A = NodeRecord("node-a", "wss://127.0.0.2:8443", 0)
B = NodeRecord("node-b", "wss://127.0.0.3:8443", 0)


@attrs.define
class Cluster:
    """Two nodes' handles on one directory, and a way to let time pass."""

    a: Directory
    b: Directory
    advance: Callable[[float], object]

    async def wait(self, seconds: float) -> None:
        await self.advance(seconds)  # type: ignore[misc]


@pytest.fixture(params=["embedded", "redis", "remote"])
async def cluster(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Cluster]:
    if request.param in ("embedded", "remote"):
        directory, clock = make_embedded()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        if request.param == "embedded":
            yield Cluster(directory, directory, advance)
            return
        # a short path: a Unix socket's must fit in 108 bytes
        where = Path(tempfile.mkdtemp(prefix="gs-dir-"))
        path = str(where / "d.sock")
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve_directory, directory, path, clock=clock))
                async with RemoteDirectory(path, FAST) as ra, RemoteDirectory(path, FAST) as rb:
                    yield Cluster(ra, rb, advance)
                nursery.cancel_scope.cancel()
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return
    server = request.getfixturevalue("live_redis")
    address = RedisAddress.from_url(server.url)
    ca, cb = RedisClient(address, timeout=0.5), RedisClient(address, timeout=0.5)
    try:
        yield Cluster(make_redis(ca, prefix), make_redis(cb, prefix), trio.sleep)
    finally:
        await ca.aclose()
        await cb.aclose()


async def test_create_then_taken(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("arena", A, "p1", game="pong")
    assert (lease.room, lease.node_id, lease.url, lease.game) == ("arena", "node-a", A.url, "pong")
    with pytest.raises(RoomTaken) as info:
        await cluster.b.create_room("arena", B, "p2")
    assert info.value.kind is Refused.ROOM_TAKEN
    assert info.value.lease.node_id == "node-a" and info.value.lease.epoch == lease.epoch
    found = await cluster.b.lookup("arena")
    assert found is not None and found.fence() == lease.fence() and found.url == A.url
    assert await cluster.b.lookup("elsewhere") is None


async def test_lease_lapses_without_renewal_and_moves(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    await cluster.wait(FAST.lease_ttl / 2)
    kept = await cluster.a.renew("node-a", [lease], [])
    assert [k.room for k in kept.kept] == ["r"] and not kept.lost
    await cluster.wait(FAST.lease_ttl / 2)
    assert await cluster.b.lookup("r") is not None  # renewed: still there past the first TTL
    await cluster.wait(FAST.lease_ttl + 0.1)
    assert await cluster.b.lookup("r") is None  # no renewal: gone
    moved = await cluster.b.create_room("r", B, "p2")
    assert moved.epoch > lease.epoch
    # the old owner comes back: fenced, and told who owns it now
    late = await cluster.a.renew("node-a", [lease], [])
    assert not late.kept and len(late.lost) == 1
    assert late.lost[0].reason is LostReason.MOVED
    assert late.lost[0].current is not None and late.lost[0].current.node_id == "node-b"
    assert (await cluster.b.lookup("r")).node_id == "node-b"  # type: ignore[union-attr]


async def test_lapsed_lease_is_reclaimed_only_if_nobody_created_since(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    await cluster.wait(FAST.lease_ttl + 0.1)  # paused past its TTL; nobody took the room
    back = await cluster.a.renew("node-a", [lease], [])
    assert [k.epoch for k in back.kept] == [lease.epoch]
    # it moves away and dies there too: the first owner may not reclaim it
    await cluster.wait(FAST.lease_ttl + 0.1)
    other = await cluster.b.create_room("r", B, "p2")
    await cluster.wait(FAST.lease_ttl + 0.1)
    assert await cluster.a.lookup("r") is None
    late = await cluster.a.renew("node-a", [lease], [])
    assert not late.kept and late.lost[0].reason is LostReason.LAPSED
    assert other.epoch > lease.epoch
    assert await cluster.a.lookup("r") is None


async def test_released_room_is_free_and_not_reclaimable(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    assert not await cluster.b.release_room(attrs.evolve(lease, epoch=lease.epoch + 99))
    assert await cluster.a.release_room(lease)
    assert await cluster.b.lookup("r") is None
    late = await cluster.a.renew("node-a", [lease], [])
    assert not late.kept and late.lost[0].reason is LostReason.LAPSED
    again = await cluster.b.create_room("r", B, "p1")
    assert again.epoch > lease.epoch


async def test_renew_by_wrong_node_is_fenced(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    result = await cluster.b.renew("node-b", [attrs.evolve(lease, node_id="node-b")], [])
    assert not result.kept and result.lost[0].reason is LostReason.MOVED


async def test_creation_limit_is_per_player_and_shared(cluster: Cluster) -> None:
    # burst 3, 1 per second: three creations from either node, then refused
    await cluster.a.create_room("r1", A, "greedy")
    await cluster.b.create_room("r2", B, "greedy")
    await cluster.a.create_room("r3", A, "greedy")
    with pytest.raises(DirectoryRefused) as info:
        await cluster.b.create_room("r4", B, "greedy")
    assert info.value.kind is Refused.CREATE_RATE
    await cluster.a.create_room("r5", A, "someone-else")  # another player is not limited
    with pytest.raises(RoomTaken):  # a taken name costs no token and says taken
        await cluster.b.create_room("r1", B, "greedy")
    await cluster.wait(1.1)  # one token back
    await cluster.b.create_room("r4", B, "greedy")
    with pytest.raises(DirectoryRefused):
        await cluster.a.create_room("r6", A, "greedy")


async def test_one_seat_per_player(cluster: Cluster) -> None:
    ra = await cluster.a.create_room("ra", A, "p1")
    rb = await cluster.b.create_room("rb", B, "p1")
    seat = await cluster.a.claim_seat("alice", ra)
    assert (seat.room, seat.node_id, seat.epoch) == ("ra", "node-a", ra.epoch)
    again = await cluster.a.claim_seat("alice", ra)  # the same room again: fine
    assert (again.room, again.epoch) == (seat.room, seat.epoch)
    with pytest.raises(SeatTaken) as info:
        await cluster.b.claim_seat("alice", rb)
    assert info.value.seat.room == "ra" and info.value.kind is Refused.SEAT_TAKEN
    moved = await cluster.b.claim_seat("alice", rb, replace=info.value.seat)  # an eviction
    assert moved.room == "rb"
    held = await cluster.a.seat_of("alice")
    assert held is not None and held.room == "rb"
    assert not await cluster.a.release_seat(seat)  # no longer that seat
    assert await cluster.b.release_seat(moved)
    assert await cluster.a.seat_of("alice") is None


async def test_seat_needs_a_valid_lease(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    with pytest.raises(DirectoryRefused) as info:
        await cluster.b.claim_seat("bob", attrs.evolve(lease, node_id="node-b"))
    assert info.value.kind is Refused.NOT_OWNER


async def test_seats_of_a_dead_node_free_themselves(cluster: Cluster) -> None:
    lease = await cluster.a.create_room("r", A, "p1")
    seat = await cluster.a.claim_seat("carol", lease)
    await cluster.wait(FAST.lease_ttl / 2)
    renewal = await cluster.a.renew("node-a", [lease], [seat])
    assert [s.player_id for s in renewal.seats_kept] == ["carol"]
    await cluster.wait(FAST.lease_ttl / 2)
    assert await cluster.b.seat_of("carol") is not None  # renewed with its room
    await cluster.wait(FAST.lease_ttl + 0.1)  # node-a died
    assert await cluster.b.seat_of("carol") is None
    other = await cluster.b.create_room("r2", B, "p2")
    assert (await cluster.b.claim_seat("carol", other)).room == "r2"


async def test_seat_in_a_lapsed_room_gives_way(cluster: Cluster) -> None:
    ra = await cluster.a.create_room("ra", A, "p1")
    await cluster.a.claim_seat("dave", ra)
    await cluster.wait(FAST.lease_ttl + 0.1)
    rb = await cluster.b.create_room("rb", B, "p1")
    assert (await cluster.b.claim_seat("dave", rb)).room == "rb"


async def test_placements_on_a_node_are_bounded(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of new rooms counts on the node, but no more than PLACED_MAX of them."""
    monkeypatch.setattr(embedded_mod, "PLACED_MAX", 3)
    monkeypatch.setattr(redis_mod, "PLACED_MAX", 3)
    await cluster.a.heartbeat(attrs.evolve(A, load=1))
    for i in range(5):
        assert (await cluster.b.pick_node(f"r{i}")).node_id == "node-a"
    assert await cluster.b.nodes() == [attrs.evolve(A, load=4)]
    await cluster.wait(FAST.placement_hold + 0.05)
    assert await cluster.b.nodes() == [attrs.evolve(A, load=1)]


async def test_joins_racing_to_create_rooms_spread_them_one_node_each(cluster: Cluster) -> None:
    """Four joins for each of four new rooms, all picking before any room exists (and a
    heartbeat in between): each room's joins are sent to one node, and the rooms spread."""
    await cluster.a.heartbeat(A)
    await cluster.b.heartbeat(B)
    chosen: dict[str, set[str]] = {}
    for room in ("duo-0", "duo-1", "duo-2", "duo-3"):
        for player in range(4):
            handle = (cluster.a, cluster.b)[player % 2]
            chosen.setdefault(room, set()).add((await handle.pick_node(room)).node_id)
            await cluster.b.heartbeat(B)  # B still reports no room: placements stay counted
    assert chosen == {
        "duo-0": {"node-a"}, "duo-1": {"node-b"}, "duo-2": {"node-a"}, "duo-3": {"node-b"},
    }  # fmt: skip
    assert [(n.node_id, n.load) for n in await cluster.a.nodes()] == [
        ("node-a", 2), ("node-b", 2),
    ]  # fmt: skip
    # a room placed on a node that is gone is placed again, on a live one
    await cluster.a.remove_node("node-b")
    assert (await cluster.a.pick_node("duo-1")).node_id == "node-a"
    assert await cluster.a.nodes() == [attrs.evolve(A, load=3)]


async def test_a_room_once_created_steers_no_more_picks(cluster: Cluster) -> None:
    """The placement steers the joins racing to create the room; once it is created (and,
    say, moved or gone), a new pick for the name goes by load again."""
    await cluster.a.heartbeat(A)
    await cluster.b.heartbeat(attrs.evolve(B, load=1))
    assert (await cluster.a.pick_node("x")).node_id == "node-a"
    await cluster.a.create_room("x", A, "p1")
    await cluster.a.heartbeat(attrs.evolve(A, load=5))
    assert (await cluster.b.pick_node("x")).node_id == "node-b"


async def test_nodes_expire_and_placement_picks_least_loaded(cluster: Cluster) -> None:
    await cluster.a.heartbeat(attrs.evolve(A, load=5))
    await cluster.b.heartbeat(attrs.evolve(B, load=2))
    assert [n.node_id for n in await cluster.a.nodes()] == ["node-b", "node-a"]
    assert (await cluster.a.nodes())[0] == attrs.evolve(B, load=2)
    picks = [(await cluster.a.pick_node(f"r{i}")).node_id for i in range(5)]
    # each new room counts on its node (for placement_hold): they spread out
    assert picks == ["node-b", "node-b", "node-b", "node-a", "node-b"]
    assert [(n.node_id, n.load) for n in await cluster.a.nodes()] == [
        ("node-a", 6), ("node-b", 6),
    ]  # fmt: skip
    # a room placed already goes where it went, and counts once
    assert (await cluster.b.pick_node("r3")).node_id == "node-a"
    assert (await cluster.b.pick_node("r0")).node_id == "node-b"
    # a heartbeat sent before the placed rooms reached the node does not undo the placements
    await cluster.b.heartbeat(attrs.evolve(B, load=2))
    assert (await cluster.a.pick_node("r5")).node_id == "node-a"  # 6 each: ties go by id
    await cluster.wait(FAST.placement_hold + 0.05)  # they run out: the reported loads again
    await cluster.a.heartbeat(attrs.evolve(A, load=5))
    await cluster.b.heartbeat(attrs.evolve(B, load=2))
    assert [(n.node_id, n.load) for n in await cluster.a.nodes()] == [
        ("node-b", 2), ("node-a", 5),
    ]  # fmt: skip
    assert (await cluster.a.pick_node("r3")).node_id == "node-b"  # its placement ran out
    await cluster.wait(FAST.node_ttl / 2)
    await cluster.a.heartbeat(attrs.evolve(A, load=5))
    await cluster.wait(FAST.node_ttl / 2 + 0.1)
    assert [n.node_id for n in await cluster.b.nodes()] == ["node-a"]  # b stopped beating
    await cluster.a.remove_node("node-a")
    assert await cluster.b.nodes() == []
    with pytest.raises(DirectoryRefused) as info:
        await cluster.b.pick_node("r6")
    assert info.value.kind is Refused.NO_NODE
