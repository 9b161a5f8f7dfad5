"""Views (issue 12) end to end over real WSS: the Python SDK in a small view game (tests/
views_game.py) holds exactly its view and verifies every view checksum; a v1 connection is
refused with 4014; a resumed seat gets JOINED(RESUMED | VIEW) and a view SNAPSHOT."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio

from clients.client import GameClient, Reconnecting, Resumed, open_game_client
from gameserver.game import GameRegistry, default_registry
from gameserver.server import GameServer, ServerConfig
from shared.messages import Error, Join
from shared.protocol import SUBPROTOCOL_V1, CloseCode
from tests.integration.test_resume import Client
from tests.integration.wsclient import connect
from tests.views_game import MOB, ViewsGame
from tools.faultproxy import open_fault_proxy


@pytest.fixture
def registry() -> GameRegistry:
    registry = default_registry()
    registry.register(ViewsGame, default=True)  # JOIN's empty game name means "views"
    return registry


async def _same_as_server(c: GameClient, server: GameServer, room: str) -> None:
    """The client's replica is the server's view of it, entity by entity (compared at a
    moment when the client has applied the room's latest tick)."""
    r = server.rooms.rooms[room].room
    while c.tick != r.state_tick:
        await c.wait_for_tick(r.state_tick)
    view = {i: (e.etype.name, list(e.codes)) for i, e in r.view_of(c.player).items()}
    mine = {i: (e.etype.name, list(e.codes)) for i, e in c.replica.entities.items()}
    assert mine == view
    assert r.views is not None
    assert c.replica.checksum() == r.views.checksum_of(r.views.cells_of(c.player))


async def _walk(c: GameClient, ticks: int, dx: float, dy: float) -> None:
    for _ in range(ticks):
        await c.send_input(dx=dx, dy=dy)
        await c.next_update()


async def test_sdk_players_walk_and_hold_exactly_their_views(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(40):
        async with (
            open_game_client(server.url, "meadow", game="views", ssl_context=client_ssl) as a,
            open_game_client(server.url, "meadow", game="views", ssl_context=client_ssl) as b,
        ):
            assert a.joined.view and b.joined.view and a.replica.view
            room = server.rooms.rooms["meadow"].room
            assert room.is_view
            total = len(room.ctx.state.entities)
            async with trio.open_nursery() as n:
                n.start_soon(_walk, a, 60, 1.0, 0.4)
                n.start_soon(_walk, b, 60, -0.3, 1.0)
            for c in (a, b):
                await _same_as_server(c, server, "meadow")
                assert 0 < len(c.replica.entities) < total, "a view, not the whole room"
                assert c.replica.checks >= 10 and not c.desyncs
            assert server.stats.encode_calls > 0


async def test_a_v1_connection_is_refused_with_4014(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(20):
        v1 = await Client.open(server, client_ssl, (SUBPROTOCOL_V1,))
        await v1.send(Join("meadow", "views", "", "", version=1).to_bytes())
        told, code = await v1.until_closed()
    assert code == CloseCode.VERSION_REQUIRED == 4014
    assert told == [Error(4014, "game 'views' needs gamesync.v2")]
    assert server.stats.refused["version_required"] == 1
    assert "meadow" not in server.rooms.rooms, "a refused JOIN creates no room"


async def test_a_resumed_view_seat_gets_a_view_snapshot(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    async with open_fault_proxy("127.0.0.1", server.port) as proxy:
        with trio.fail_after(40):
            async with open_game_client(
                f"wss://127.0.0.1:{proxy.port}", "glade", game="views", ssl_context=client_ssl
            ) as c:
                await _walk(c, 10, 1.0, 0.0)
                player, snapshots = c.player, c.stats.snapshots
                proxy.down(1)
                proxy.cut()
                event: Any = await c.next_connection_event()
                assert isinstance(event, Reconnecting)
                while not isinstance(event := await c.next_connection_event(), Resumed):
                    pass
                assert c.player == player and c.joined.resumed and c.joined.view
                room = server.rooms.rooms["glade"].room
                await c.wait_for_tick(room.state_tick)
                assert c.stats.snapshots == snapshots + 1, "no catch-up delta: a snapshot"
                await _walk(c, 10, 0.0, 1.0)
                await _same_as_server(c, server, "glade")
                assert not c.desyncs and c.stats.resumes == 1


# the stuck client neither reads nor answers pings; keep the idle timeout out of this test
@pytest.mark.parametrize(
    "server_config", [ServerConfig(port=0, room_grace=1.0, idle_timeout=1e6, ping_interval=1e6)]
)
async def test_a_slow_reader_of_a_view_skips_deltas_then_gets_its_view_snapshot(
    nursery: trio.Nursery,
    server: GameServer,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    good = await connect(nursery, server.url, client_ssl, "slowview", "good")
    stuck = await connect(nursery, server.url, client_ssl, "slowview", "stuck")
    assert good.joined.view and stuck.replica.view
    host = server.rooms.rooms["slowview"]
    room = host.room
    # bulk up both views (the avatars are near (137, 71) and (274, 142)) so that the stuck
    # client's socket buffers fill within the test
    bulk = [room.ctx.state.spawn(MOB, x=200.0, y=100.0, hp=1) for _ in range(200)]
    start = room.state_tick
    with trio.fail_after(600):
        for t in range(1, 601):  # 30 s of virtual time at 20 Hz
            for i, mob in enumerate(bulk):
                mob.x = 150.0 + (t * 7 + i) % 100
                mob.hp = (t + i) % 200
            await good.wait_tick(start + t)
    assert good.replica.tick == start + 600 and good.replica.checks >= 100
    assert host.late == 0 and server.stats.deltas_skipped > 0
    assert host.sessions[stuck.joined.player].outbound.conn.backlog > 0
    # once it reads again: a fresh snapshot of its view, then deltas; it converges
    snaps = stuck.snapshots
    with trio.fail_after(60):
        while stuck.snapshots == snaps or stuck.replica.tick < room.state_tick:
            await stuck.pump()
    assert stuck.replica.tick == room.state_tick
    view = {i: list(e.codes) for i, e in room.view_of(stuck.joined.player).items()}
    assert {i: list(e.codes) for i, e in stuck.replica.entities.items()} == view
    assert len(view) > 200
