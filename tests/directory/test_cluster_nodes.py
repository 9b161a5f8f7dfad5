"""Two cluster nodes on 127.0.0.2 and 127.0.0.3 sharing a real Redis (one pytest process).

Each node is a real server (``open_gameserver(..., cluster=ClusterOptions(...))``, WSS with
trustme certificates for both addresses) with its own Redis connections, as two machines
would have. Clients are raw (``cluster_client``): they follow REDIRECT by hand. Real time, a
short lease TTL (1.5 s).
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from clients.client import open_game_client
from gameserver.auth import TokenVerifier, mint_token
from gameserver.cluster import ClusterOptions
from gameserver.directory import DirectoryLimits, RedisAddress, RedisClient, RedisDirectory
from gameserver.game import default_registry
from gameserver.resume import ResumeKey
from gameserver.server import GameServer, ServerConfig, open_gameserver
from shared.messages import Error, Join, Leave, Redirect, Resume
from shared.protocol import ROOM_MOVED_REASON, SUBPROTOCOL_V1, CloseCode
from tests.directory.cluster_client import Closed, RawClient, error_of, first_answer, join_following
from tests.directory.conftest import RedisServer

HOSTS = ("127.0.0.2", "127.0.0.3")
LIMITS = DirectoryLimits(lease_ttl=1.5, node_ttl=1.5, create_rate=50.0, create_burst=50.0)
SECRET = secrets.token_hex(32).encode()
RESUME_KEY = ResumeKey(secrets.token_bytes(32))


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing here is worth a traceback in the servers' logs."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*HOSTS).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def token(player: str) -> str:
    return mint_token(SECRET, player)


def join(player: str, room: str = "lobby") -> Join:
    return Join(room, "", player, token(player), version=2)


@asynccontextmanager
async def open_node(
    host: str, redis: RedisServer, prefix: str, server_ssl: ssl.SSLContext
) -> AsyncIterator[GameServer]:
    config = ServerConfig(host=host, port=0, cpu_budget=0, room_grace=1.0, close_timeout=1.0)
    client = RedisClient(RedisAddress.from_url(redis.url), timeout=0.5)
    directory = RedisDirectory(client, LIMITS, prefix=prefix)
    try:
        async with open_gameserver(
            config,
            default_registry(),
            server_ssl,
            auth=TokenVerifier([SECRET]),
            resume_key=RESUME_KEY,
            cluster=ClusterOptions(directory, node_id=f"node-{host}"),
        ) as server:
            yield server
    finally:
        await client.aclose()


@pytest.fixture
async def nodes(
    live_redis: RedisServer, prefix: str, server_ssl: ssl.SSLContext
) -> AsyncIterator[tuple[GameServer, GameServer]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_node(HOSTS[0], live_redis, prefix, server_ssl))
        b = await stack.enter_async_context(open_node(HOSTS[1], live_redis, prefix, server_ssl))
        yield a, b


def url_of(server: GameServer) -> str:
    assert server.cluster is not None
    return server.cluster.url


def owner_of(room: str, *servers: GameServer) -> GameServer:
    hosting = [s for s in servers if room in s.rooms.rooms]
    assert len(hosting) == 1, [s.config.host for s in hosting]
    return hosting[0]


async def test_players_dialling_either_node_land_in_the_same_room(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    assert url_of(a) == f"wss://127.0.0.2:{a.port}/" and a.live is not None
    with trio.fail_after(20):
        clients = []
        for i in range(6):
            entry = (a, b)[i % 2]
            client, dialled = await join_following(url_of(entry), client_ssl, join(f"p{i}"))
            clients.append((client, dialled))
        owner = owner_of("lobby", a, b)
        other = b if owner is a else a
        # every client ended at the owner; those that dialled the other node were redirected
        for _client, dialled in clients:
            assert dialled[-1] == url_of(owner)
            assert len(dialled) == (1 if dialled[0] == url_of(owner) else 2)
        assert other.stats.redirects == 3 and owner.stats.redirects == 0
        # one room, on one node, with every player, and the directory agrees
        host = owner.rooms.rooms["lobby"]
        assert {s.player.id for s in host.sessions.values()} == {f"p{i}" for i in range(6)}
        assert "lobby" not in other.rooms.rooms
        assert owner.live is not None and owner.live.owns("lobby") is not None
        lease = await owner.live.directory.lookup("lobby")
        assert lease is not None and lease.node_id == owner.live.node_id
        # each player's own replica lists the same six players (whichever node it dialled)
        numbers = {c.joined.player for c, _ in clients if c.joined is not None}
        assert len(numbers) == 6
        for client, _ in clients:
            await client.wait_tick(0)  # its snapshot
        tick = max(c.tick for c, _ in clients) + 2
        for client, _ in clients:
            await client.wait_tick(tick)
            assert client.replica is not None
            names = {e.name for e in client.replica.of_type("player")}
            assert names == {f"p{i}" for i in range(6)}
        for client, _ in clients:
            await client.aclose()


async def test_one_name_created_from_both_nodes_at_once_has_one_owner(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    rooms = [f"race-{i}" for i in range(12)]
    joined: dict[str, list[RawClient]] = {r: [] for r in rooms}

    async def one(entry: GameServer, player: str, room: str) -> None:
        client, _ = await join_following(url_of(entry), client_ssl, join(player, room))
        joined[room].append(client)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i, room in enumerate(rooms):
                nursery.start_soon(one, a, f"x{i}", room)
                nursery.start_soon(one, b, f"y{i}", room)
        on_a = 0
        for room in rooms:
            owner = owner_of(room, a, b)  # exactly one node runs it
            on_a += owner is a
            assert len(owner.rooms.rooms[room].sessions) == 2
            assert owner.live is not None
            lease = await owner.live.directory.lookup(room)
            assert lease is not None and lease.node_id == owner.live.node_id
        assert 0 < on_a < len(rooms)  # placement used both nodes
        for clients in joined.values():
            for client in clients:
                await client.aclose()


async def test_a_v1_client_gets_error_4015_naming_the_owner(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    with trio.fail_after(10):
        first, _ = await join_following(url_of(a), client_ssl, join("alice", "v1room"))
        owner = owner_of("v1room", a, b)
        other = b if owner is a else a
        v1 = await RawClient.open(url_of(other), client_ssl, [SUBPROTOCOL_V1])
        with pytest.raises(Closed) as closed:
            await first_answer(v1, Join("v1room", "", "bob", token("bob"), version=1))
        assert closed.value.code == CloseCode.REDIRECT
        assert error_of(closed.value) == Error(
            CloseCode.REDIRECT, f"room 'v1room' lives at {url_of(owner)}"
        )
        assert not [m for m in closed.value.told if isinstance(m, Redirect)]
        await first.aclose()


async def test_one_seat_per_player_across_nodes_the_newest_join_wins(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    with trio.fail_after(20):
        old, _ = await join_following(url_of(a), client_ssl, join("carol", "seat-1"))
        first_owner = owner_of("seat-1", a, b)
        # carol joins another room, on the other node (placed there by hand: it owns it)
        second_owner = b if first_owner is a else a
        assert second_owner.live is not None
        await second_owner.live.create_room("seat-2", creator="carol")
        new, dialled = await join_following(
            url_of(second_owner), client_ssl, join("carol", "seat-2")
        )
        assert dialled == [url_of(second_owner)]
        # the first node learns at its next renewal and closes the old seat with 4009
        told, code = await old.until_closed()
        assert code == CloseCode.REPLACED
        assert [m.code for m in told] == [CloseCode.REPLACED]  # CLOSE 4009, then the frame
        assert "carol" not in first_owner.by_player
        seat = await second_owner.live.directory.seat_of("carol")
        assert seat is not None and seat.room == "seat-2"
        await new.aclose()


async def test_a_resume_is_redirected_to_the_owner(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    with trio.fail_after(20):
        client, _ = await join_following(url_of(a), client_ssl, join("dave", "resumable"))
        assert client.joined is not None and client.joined.resume_token
        owner = owner_of("resumable", a, b)
        other = b if owner is a else a
        await client.wait_tick(client.tick + 1)
        resume_msg = Resume("resumable", client.joined.resume_token, client.tick, 2)
        await client.aclose()  # the connection is lost: the seat is held
        with pytest.raises(Closed) as closed:
            await first_answer(await RawClient.open(url_of(other), client_ssl), resume_msg)
        assert closed.value.code == CloseCode.REDIRECT
        back, dialled = await join_following(url_of(other), client_ssl, resume_msg)
        assert dialled == [url_of(other), url_of(owner)]
        assert back.joined is not None and back.joined.resumed
        # a genuine RESUME for a room that is nowhere: seat lost
        gone = Resume("nowhere", RESUME_KEY.mint("nowhere", bytes(8), 1, 1), 0, 2)
        with pytest.raises(Closed) as closed:
            await first_answer(await RawClient.open(url_of(other), client_ssl), gone)
        assert closed.value.code == CloseCode.SEAT_LOST
        await back.aclose()


async def test_redis_stopped_and_restarted_rooms_keep_ticking(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext, live_redis: RedisServer
) -> None:
    a, b = nodes
    assert a.live is not None and b.live is not None
    with trio.fail_after(40):
        alice, _ = await join_following(url_of(a), client_ssl, join("alice", "steady"))
        owner = owner_of("steady", a, b)
        other = b if owner is a else a
        host = owner.rooms.rooms["steady"]
        rate = host.room.config.tick_rate

        async def watch() -> None:  # every delta applied in order: Replica raises on a gap
            while True:
                await alice.recv()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            ticks0, t0 = host.ticks, trio.current_time()
            await trio.to_thread.run_sync(live_redis.stop)  # not on the event loop: it blocks
            # a join to the room running here works without Redis
            bob, dialled = await join_following(url_of(owner), client_ssl, join("bob", "steady"))
            assert dialled == [url_of(owner)]
            # joins that need the directory are refused with 4016, on either node
            for entry, room in ((other, "steady"), (owner, "elsewhere")):
                with pytest.raises(Closed) as closed:
                    await join_following(url_of(entry), client_ssl, join("eve", room))
                assert closed.value.code == CloseCode.DIRECTORY_UNAVAILABLE
                assert error_of(closed.value).code == CloseCode.DIRECTORY_UNAVAILABLE
            assert other.stats.refused["directory_unavailable"] >= 1
            await trio.sleep(LIMITS.lease_ttl * 1.5)  # longer than the lease TTL
            assert owner.stats.directory_reachable == 0  # the gauge says so
            assert owner.stats.directory_leases >= 1  # the cache is kept
            await trio.to_thread.run_sync(live_redis.start)  # back, empty (no persistence)
            assert owner.live is not None
            await owner.live.wait_renewed()
            await owner.live.wait_renewed()
            await other.live.wait_renewed()  # type: ignore[union-attr]
            # everything recovers: the room is back in the directory, joins route again
            lease = await owner.live.directory.lookup("steady")
            assert lease is not None and lease.node_id == owner.live.node_id
            assert owner.cluster is not None
            owner.cluster.publish()
            assert owner.stats.directory_reachable == 1
            carol, dialled = await join_following(
                url_of(other), client_ssl, join("carol", "steady")
            )
            assert dialled == [url_of(other), url_of(owner)]
            elapsed = trio.current_time() - t0
            await trio.sleep(0.1)  # a few more ticks, watched
            nursery.cancel_scope.cancel()
        # the room never missed a tick: none skipped, and as many as the time allowed
        assert host.skipped == 0
        assert host.ticks - ticks0 >= 0.8 * rate * elapsed
        assert alice.deltas >= 0.8 * rate * elapsed
        assert len(host.sessions) == 3
        for client in (alice, bob, carol):
            await client.aclose()


async def test_a_lost_lease_closes_the_room_with_1001_room_moved(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    with trio.fail_after(20):
        alice, _ = await join_following(url_of(a), client_ssl, join("alice", "moving"))
        owner = owner_of("moving", a, b)
        other = b if owner is a else a
        assert owner.live is not None and other.live is not None
        lease = owner.live.owns("moving")
        assert lease is not None
        # the room is taken over under another lease (as after a partition): fenced
        await owner.live.directory.release_room(lease)
        await other.live.create_room("moving", creator="zed")
        told, code = await alice.until_closed()
        assert code == CloseCode.GOING_AWAY  # the SDKs reconnect on it (4011 is final)
        assert [m.reason for m in told] == [ROOM_MOVED_REASON]
        # a new join goes where the directory says, and the name is not held closed here
        bob, dialled = await join_following(url_of(owner), client_ssl, join("bob", "moving"))
        assert dialled == [url_of(owner), url_of(other)]
        await bob.aclose()


async def test_a_disposed_room_leaves_the_directory(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    with trio.fail_after(20):
        alice, _ = await join_following(url_of(a), client_ssl, join("alice", "brief"))
        owner = owner_of("brief", a, b)
        assert owner.live is not None
        await alice.send(Leave().to_bytes())  # (a lost connection would hold the seat)
        await alice.until_closed()
        while "brief" in owner.rooms.rooms or owner.live.owns("brief") is not None:
            await trio.sleep(0.05)  # room_grace 1 s
        with trio.fail_after(2):
            while await owner.live.directory.lookup("brief") is not None:
                await trio.sleep(0.02)
        assert await owner.live.directory.seat_of("alice") is None


async def test_a_lease_whose_room_never_came_is_released_by_the_sweep(
    nodes: tuple[GameServer, GameServer],
) -> None:
    a, _ = nodes
    assert a.cluster is not None and a.live is not None
    await a.live.create_room("orphan", creator="x")  # as if its join were then refused
    a.cluster._taken["orphan"] = trio.current_time()
    a.cluster.sweep(trio.current_time())
    assert a.live.owns("orphan") is not None  # young: its join may still be on its way
    a.cluster.sweep(trio.current_time() + 10 * LIMITS.lease_ttl)
    assert a.live.owns("orphan") is None
    with trio.fail_after(2):
        while await a.live.directory.lookup("orphan") is not None:
            await trio.sleep(0.02)


async def test_a_draining_node_is_not_picked_for_new_rooms(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    a, b = nodes
    assert a.live is not None and b.live is not None
    a.begin_drain(30)
    await a.live.wait_renewed()
    await b.live.wait_renewed()
    with trio.fail_after(10):
        for i in range(4):  # via b: every new room is placed on b, never on the draining a
            client, dialled = await join_following(url_of(b), client_ssl, join(f"d{i}", f"dr{i}"))
            assert dialled == [url_of(b)]
            await client.aclose()


async def test_joins_refused_before_the_room_cost_no_directory_call(
    nodes: tuple[GameServer, GameServer],
    client_ssl: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = nodes
    assert a.live is not None
    calls: list[str] = []
    directory = a.live.directory
    for name in ("lookup", "pick_node", "create_room", "claim_seat"):
        real = getattr(directory, name)

        async def counted(
            *args: object, _real: Any = real, _name: str = name, **kw: object
        ) -> object:
            calls.append(_name)
            return await _real(*args, **kw)

        monkeypatch.setattr(directory, name, counted)
    cases = [
        (Join("far", "", "mallory", "not-a-token", version=2), CloseCode.UNAUTHORIZED),
        (Join("far", "nosuchgame", "eve", token("eve"), version=2), CloseCode.UNKNOWN_GAME),
        (Join("bad name!", "", "eve", token("eve"), version=2), CloseCode.BAD_JOIN),
        (Resume("far", "bad-token", 0, 2), CloseCode.UNAUTHORIZED),
    ]
    with trio.fail_after(10):
        for message, code in cases:
            with pytest.raises(Closed) as closed:
                await first_answer(await RawClient.open(url_of(a), client_ssl), message)
            assert closed.value.code == code
    assert calls == []
    # and a good one does ask
    client, _ = await join_following(url_of(a), client_ssl, join("eve", "far"))
    assert "lookup" in calls
    await client.aclose()


async def test_a_hung_redis_fails_directory_joins_within_the_timeout_and_spares_local_ones(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext, live_redis: RedisServer
) -> None:
    a, b = nodes
    with trio.fail_after(20):
        alice, _ = await join_following(url_of(a), client_ssl, join("alice", "hung"))
        owner = owner_of("hung", a, b)
        host = owner.rooms.rooms["hung"]
        live_redis.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            t0 = trio.current_time()
            with pytest.raises(Closed) as closed:  # needs the directory: 4016 within 0.5 s
                await join_following(url_of(owner), client_ssl, join("eve", "not-here"))
            assert closed.value.code == CloseCode.DIRECTORY_UNAVAILABLE
            assert trio.current_time() - t0 < 0.5 + 0.5
            t0 = trio.current_time()  # the room here: joined, without waiting on Redis
            bob, _ = await join_following(url_of(owner), client_ssl, join("bob", "hung"))
            assert trio.current_time() - t0 < 0.5
            assert len(host.sessions) == 2 and host.skipped == 0
        finally:
            live_redis.resume()
        for client in (alice, bob):
            await client.aclose()


async def test_the_python_sdk_follows_the_real_cluster(
    nodes: tuple[GameServer, GameServer], client_ssl: ssl.SSLContext
) -> None:
    """The SDK (clients.client) against the two real nodes: dialling either, the players
    meet in one room, and the one that dialled the other node was redirected once."""
    a, b = nodes
    with trio.fail_after(20):
        async with (
            open_game_client(url_of(a), "sdk", token=token("ann"), ssl_context=client_ssl) as ann,
            open_game_client(url_of(b), "sdk", token=token("ben"), ssl_context=client_ssl) as ben,
        ):
            owner = owner_of("sdk", a, b)
            assert {ann.redirects, ben.redirects} == {0, 1}
            assert ann.url.rstrip("/") == ben.url.rstrip("/") == url_of(owner).rstrip("/")
            await ben.wait_for_tick(ben.tick + 2)
            await ann.wait_for_tick(ben.tick)
            for client in (ann, ben):
                owners = {e.owner for e in client.replica.of_type("player")}
                assert owners == {ann.player, ben.player}


# ---------------------------------------------------------------- gamebots on both nodes
BOT_ROOMS, BOT_PLAYERS = 4, 4


async def test_bots_dialling_either_node_land_in_the_same_rooms(
    nodes: tuple[GameServer, GameServer],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    a, b = nodes
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cfg = LoadConfig(
        url=url_of(a),
        also_urls=(url_of(b),),
        rooms=BOT_ROOMS,
        players=BOT_PLAYERS,
        duration=2.0,
        settle=0.3,
        linger=0.5,
        verify_sample=-1,  # every bot keeps a replica and checks every checksum
        ca_file=str(ca_file),
        room_prefix="duo",
        secret_hex=SECRET.hex(),
    )
    seen: dict[str, dict[str, set[str]]] = {}

    async def watch() -> None:
        """While the bots play, read each node's rooms and the players seated in them."""
        while True:
            for node in (a, b):
                for name, host in node.rooms.rooms.items():
                    players = {s.player.id for s in host.sessions.values()}
                    if len(players) == BOT_PLAYERS:
                        seen.setdefault(name, {})[node.config.host] = players
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        with trio.fail_after(60):
            report = merge_reports([await run_load(cfg)])
        nursery.cancel_scope.cancel()

    players = BOT_ROOMS * BOT_PLAYERS
    assert report["players"] == {"target": players, "connected": players, "failed": 0}, report[
        "errors"
    ]
    assert report["errors"] == {} and report["desyncs"] == 0
    # half the players of each room dialled the node that did not own it: redirected once each
    assert report["redirects"] == players // 2 and report["redirected_bots"] == players // 2
    # each room was full on exactly one node, with its own four players
    rooms = {f"duo-{r}" for r in range(BOT_ROOMS)}
    assert set(seen) == rooms
    for name, by_node in seen.items():
        assert len(by_node) == 1, (name, by_node)
        (ids,) = by_node.values()
        assert ids == {f"{name}-{p}" for p in range(BOT_PLAYERS)}
    # the rooms are spread over both nodes (placement by load), and each node's redirects are
    # the players that dialled it for a room on the other
    owners = {next(iter(by_node)) for by_node in seen.values()}
    assert owners == set(HOSTS)
    assert a.stats.redirects + b.stats.redirects == players // 2
