"""field over real WSS: players walking across the world, crossing cells and entering and
leaving each other's views, hold exactly their views and verify every view checksum."""

from __future__ import annotations

import math
import ssl
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trustme

from clients.bots.behaviours import default_behaviour, parse_mix
from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from clients.client import open_game_client
from gameserver.games.field import Field
from gameserver.server import GameServer, ServerConfig
from shared.state import encode_record, view_checksum

WALKERS = 6
ROOM = "field-wss"


@pytest.fixture
def server_config() -> ServerConfig:
    # rooms of 16 seats: a 1000 x 1000 world of 4 x 4 cells, so that 6 walkers keep meeting
    return ServerConfig(port=0, room_grace=1.0, join_timeout=5.0, cpu_budget=0, max_players=16)


async def test_walkers_cross_cells_and_converge_to_every_view_checksum(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    open_game_client(
                        server.url, ROOM, game="field", name=f"w{i}", ssl_context=client_ssl
                    )
                )
                for i in range(WALKERS)
            ]
            assert all(c.joined.view for c in clients)
            room = server.rooms.rooms[ROOM].room
            views = room.views
            assert views is not None
            seen_others: list[set[int]] = [set() for _ in clients]
            enters = leaves = crossings = 0
            cells = {c.player: views.cells_of(c.player) for c in clients}
            # 6 s of walking: straight legs, a new heading per walker every second
            for step in range(120):
                if step % 20 == 0:
                    for i, c in enumerate(clients):
                        a = 2 * math.pi * (i / WALKERS) + step / 7
                        await c.send_input(dx=math.cos(a), dy=math.sin(a))
                await clients[0].next_update()
                for i, c in enumerate(clients):
                    others = {e.id for e in c.replica.of_type("player") if e.owner != c.player}
                    enters += len(others - seen_others[i])
                    leaves += len(seen_others[i] - others)
                    seen_others[i] = others
                    now = views.cells_of(c.player)
                    if now != cells[c.player]:
                        crossings += 1
                        cells[c.player] = now
            for c in clients:
                await c.send_input(dx=0.0, dy=0.0)
            # converge: each client's replica is its server view at the same tick
            for c in clients:
                for _ in range(50):
                    tick = room.state_tick
                    await c.wait_for_tick(tick)
                    if c.tick == room.state_tick:
                        break
                assert c.tick == room.state_tick
                server_view = room.view_of(c.player)
                held = c.replica.entities
                assert set(held) == set(server_view)
                for eid, ent in server_view.items():
                    assert held[eid].codes == ent.codes
                mine = view_checksum(encode_record(e) for e in held.values())
                assert mine == views.checksum_of(views.cells_of(c.player)) == c.replica.checksum()
                # each client checked the server's view checksum every 5th tick, no desync
                assert c.replica.checks >= 20
                assert not c.desyncs
                # its own avatar is always in its view; the room holds more than it sees
                assert any(e.owner == c.player for e in c.replica.of_type("player"))
                assert len(held) < len(room.ctx.state.entities)
            assert crossings >= WALKERS  # every walker crossed cells (several times)
            assert enters > 0 and leaves > 0  # walkers came into and went out of views


async def test_gamebots_roam_field_and_verify_every_view_checksum(
    server: GameServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """The lean bots (gamebots' engine) play field by default with ``roam`` and, verifying,
    check view checksums (JOINED flag VIEW): none may desync while they cross cells."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cfg = LoadConfig(
        url=server.url,
        rooms=1,
        players=12,
        duration=2.0,
        settle=0.3,
        linger=0.0,
        ca_file=str(ca_file),
        game="field",
        room_prefix="field-bots",
        behaviour=parse_mix(default_behaviour(Field.input_schema, Field.schema, "field") or ""),
    )
    with trio.fail_after(30):
        raw = await run_load(cfg)
    report = merge_reports([raw])
    assert report["behaviours"] == {"roam": 12}
    assert report["players"] == {"target": 12, "connected": 12, "failed": 0}
    assert report["errors"] == {} and report["desyncs"] == 0 and report["verifying"] == 12
    assert report["updates_per_player_per_s_p5"] >= 15.0
    assert server.rooms.rooms["field-bots-0"].room.views is not None
