"""The Redis directory against a real redis-server: races, deaths, outages, restarts."""

from __future__ import annotations

import time

import pytest
import trio

from gameserver.directory import (
    DirectoryLimits,
    DirectoryUnavailable,
    LostReason,
    NodeRecord,
    RedisAddress,
    RedisClient,
    RedisDirectory,
    RoomTaken,
    open_directory,
)
from tests.directory.conftest import FAST, RedisServer, make_redis

A = NodeRecord("node-a", "wss://127.0.0.2:8443", 0)
B = NodeRecord("node-b", "wss://127.0.0.3:8443", 0)
MANY = DirectoryLimits(lease_ttl=2.0, node_ttl=2.0, create_rate=100.0, create_burst=1000.0)


def _pair(
    server: RedisServer, prefix: str, limits: DirectoryLimits = FAST
) -> tuple[RedisClient, RedisClient, RedisDirectory, RedisDirectory]:
    address = RedisAddress.from_url(server.url)
    ca, cb = RedisClient(address, timeout=0.5), RedisClient(address, timeout=0.5)
    return ca, cb, make_redis(ca, prefix, limits), make_redis(cb, prefix, limits)


async def test_same_name_from_two_nodes_at_once_has_one_owner(
    live_redis: RedisServer, prefix: str
) -> None:
    ca, cb, da, db = _pair(live_redis, prefix, MANY)
    owners: dict[str, int] = {"node-a": 0, "node-b": 0}
    try:
        for round_ in range(200):
            room = f"race-{round_}"
            results: dict[str, object] = {}
            go = trio.Event()

            async def create(
                d: RedisDirectory,
                node: NodeRecord,
                room: str = room,
                go: trio.Event = go,
                results: dict[str, object] = results,
            ) -> None:
                await go.wait()
                try:
                    results[node.node_id] = await d.create_room(room, node, f"p-{node.node_id}")
                except RoomTaken as exc:
                    results[node.node_id] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, da, A)
                nursery.start_soon(create, db, B)
                await trio.sleep(0)
                go.set()
            won = [n for n, r in results.items() if not isinstance(r, RoomTaken)]
            assert len(won) == 1, results
            loser = next(r for r in results.values() if isinstance(r, RoomTaken))
            assert loser.lease.node_id == won[0]
            owner = await da.lookup(room)
            assert owner is not None and owner.node_id == won[0]
            owners[won[0]] += 1
    finally:
        await ca.aclose()
        await cb.aclose()
    assert sum(owners.values()) == 200


async def test_dead_owner_leaves_within_ttl_plus_one_second(
    live_redis: RedisServer, prefix: str
) -> None:
    ca, cb, da, db = _pair(live_redis, prefix, DirectoryLimits(lease_ttl=1.0, node_ttl=1.0))
    lost: list[object] = []
    try:
        async with open_directory(da, "node-a", A.url) as node_a:
            lease = await node_a.create_room("doomed", "p1")
            await node_a.claim_seat("erin", "doomed")
            await trio.sleep(1.5)  # renewals keep it past its TTL
            assert await db.lookup("doomed") is not None
            assert await db.seat_of("erin") is not None
            assert [n.node_id for n in await db.nodes()] == ["node-a"]
            died = time.monotonic()
            # kill -9 stand-in: the renewal task stops with no goodbye (no release, no removal)
            node_a.leases.clear()
            node_a.seats.clear()
            node_a.directory = _Dead()  # type: ignore[assignment]
            while await db.lookup("doomed") is not None:
                assert time.monotonic() - died < 1.0 + 1.0
                await trio.sleep(0.05)
            assert await db.seat_of("erin") is None
            while [n.node_id for n in await db.nodes()] == ["node-a"]:
                assert time.monotonic() - died < 1.0 + 1.0
                await trio.sleep(0.05)
        # a new join re-creates it on the survivor
        async with open_directory(db, "node-b", B.url, on_lost=lost.append) as node_b:
            again = await node_b.create_room("doomed", "p2")
            assert again.node_id == "node-b" and again.epoch > lease.epoch
            assert (await da.lookup("doomed")).node_id == "node-b"  # type: ignore[union-attr]
        assert lost == []
    finally:
        await ca.aclose()
        await cb.aclose()


class _Dead:
    """A directory whose every call fails (the node's process is gone)."""

    def __getattr__(self, name: str) -> object:
        async def fail(*args: object, **kwargs: object) -> None:
            raise DirectoryUnavailable("dead")

        return fail


async def test_fenced_owner_is_told_and_drops_the_room(
    live_redis: RedisServer, prefix: str
) -> None:
    ca, cb, da, db = _pair(live_redis, prefix)
    lost = []
    try:
        async with open_directory(da, "node-a", A.url, on_lost=lost.append, interval=0.1) as na:
            lease = await na.create_room("moving", "p1")
            await na.claim_seat("frank", "moving")
            # node-a is partitioned: its renewals stop reaching Redis; the lease lapses
            na.directory = _Dead()  # type: ignore[assignment]
            await trio.sleep(FAST.lease_ttl + 0.2)
            assert na.owns("moving") is not None  # still running here, unreachable store
            assert not na.reachable
            taken = await db.create_room("moving", B, "p2")
            na.directory = da  # the partition heals
            with trio.fail_after(2):
                await na.wait_renewed()
            assert na.owns("moving") is None and na.seat("frank") is None
            assert [(x.lease.epoch, x.reason, x.current.node_id) for x in lost] == [
                (lease.epoch, LostReason.MOVED, "node-b")
            ]
            assert (await db.lookup("moving")).epoch == taken.epoch  # type: ignore[union-attr]
    finally:
        await ca.aclose()
        await cb.aclose()


async def test_redis_hung_then_down_then_back(live_redis: RedisServer, prefix: str) -> None:
    client = RedisClient(RedisAddress.from_url(live_redis.url), timeout=0.3)
    d = make_redis(client, prefix, DirectoryLimits(lease_ttl=5.0, node_ttl=5.0))
    lost = []
    try:
        async with open_directory(d, "node-a", A.url, on_lost=lost.append, interval=0.2) as na:
            lease = await na.create_room("steady", "p1")
            live_redis.pause()  # hung: connections open, nothing answers
            for call in (d.lookup("steady"), na.create_room("new", "p1"), d.nodes()):
                started = trio.current_time()
                with pytest.raises(DirectoryUnavailable):
                    await call
                assert trio.current_time() - started < 0.3 + 0.2
            live_redis.stop()  # down: connections refused
            started = trio.current_time()
            with pytest.raises(DirectoryUnavailable):
                await d.lookup("steady")
            assert trio.current_time() - started < 0.3 + 0.2
            await trio.sleep(0.5)
            assert not na.reachable and na.owns("steady") is not None
            live_redis.start()  # back, empty (no persistence): the node claims its room again
            with trio.fail_after(3):
                while not na.reachable or (await d.lookup("steady")) is None:
                    await trio.sleep(0.05)
            back = await d.lookup("steady")
            assert back is not None and back.node_id == "node-a"
            assert back.generation != lease.generation  # a new generation: data was lost
            assert na.owns("steady") is not None and na.owns("steady").epoch == back.epoch  # type: ignore[union-attr]
            assert lost == []
            with pytest.raises(RoomTaken):
                await d.create_room("steady", B, "p2")
            assert (await na.create_room("new", "p1")).room == "new"
    finally:
        await client.aclose()


async def test_after_data_loss_the_latest_old_owner_wins(
    live_redis: RedisServer, prefix: str
) -> None:
    ca, cb, da, db = _pair(live_redis, prefix)
    try:
        old = await da.create_room("contested", A, "p1")
        await trio.sleep(FAST.lease_ttl + 0.1)
        newer = await db.create_room("contested", B, "p2")  # node-a's lease had lapsed
        live_redis.restart()  # Redis loses everything
        # node-a (stale) reaches Redis first and claims it; node-b (the real owner) follows
        first = await da.renew("node-a", [old], [])
        assert [k.room for k in first.kept] == ["contested"]
        second = await db.renew("node-b", [newer], [])
        assert [k.room for k in second.kept] == ["contested"]
        third = await da.renew("node-a", [first.kept[0]], [])
        assert not third.kept and third.lost[0].reason is LostReason.MOVED
        assert (await da.lookup("contested")).node_id == "node-b"  # type: ignore[union-attr]
    finally:
        await ca.aclose()
        await cb.aclose()


async def test_no_scan_commands_in_scripts() -> None:
    from gameserver.directory import scripts

    sources = [v.source for v in vars(scripts).values() if hasattr(v, "source")]
    assert len(sources) >= 10
    for source in sources:
        for banned in ("'KEYS'", "'SCAN'", "'HGETALL'", "'HSCAN'", "'SMEMBERS'"):
            assert banned not in source.upper()
