"""gamesync.v3 over real WSS: v3, v2 and v1 clients in one room, each verifying every checksum
of its own coding; and a v3 seat resumed with a catch-up delta (its motion included)."""

from __future__ import annotations

import ssl
from typing import Any

import trio

from gameserver.server import GameServer
from shared.messages import Delta, Snapshot
from shared.protocol import SUBPROTOCOL_V1, SUBPROTOCOL_V2, SUBPROTOCOL_V3
from tests.integration.test_resume import (
    Client,
    Mint,
    host_of,
    joined_client,
    server_config,
    until,
)

__all__ = ["server_config"]  # the fixture: seats held, catch-up history on

V3_FIRST = (SUBPROTOCOL_V3, SUBPROTOCOL_V2, SUBPROTOCOL_V1)


async def test_v3_v2_and_v1_clients_share_a_room(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        v3 = await joined_client(auth_server, client_ssl, mint("three"), subprotocols=V3_FIRST)
        v2 = await joined_client(auth_server, client_ssl, mint("two"), subprotocols=V3_FIRST[1:])
        v1 = await joined_client(auth_server, client_ssl, mint("one"), subprotocols=V3_FIRST[2:])
        assert (v3.version, v2.version, v1.version) == (3, 2, 1)
        assert v3.replica is not None and v3.replica.coding == 3
        host = host_of(auth_server)
        room = host.room
        for step in range(40):  # everyone moves, turning now and then
            for c, (dx, dy) in ((v3, (1.0, 0.3)), (v2, (-0.5, 1.0)), (v1, (0.2, -1.0))):
                await c.send_input(dx=dx if step % 13 else -dx, dy=dy)
            await trio.sleep(0.05)
        target = room.state_tick
        for c in (v3, v2, v1):
            await c.wait_tick(target)
        assert room.codings == frozenset((2, 3))
        state = room.ctx.state
        for c in (v3, v2, v1):
            assert c.replica is not None and c.replica.tick == target
            assert c.replica.checksum() == state.checksum()
            # every 5th tick carries a checksum, verified by apply_delta
            assert c.replica.checks >= 1 + (target - 10) // 5
            deltas = [m for m in c.received if isinstance(m, Delta)]
            assert len(deltas) >= 30
        # the v3 replica's codes are the server's, bit for bit
        assert {e.id: list(e.codes) for e in v3.replica} == {  # type: ignore[union-attr]
            e.id: list(e.codes) for e in state
        }
        assert v3.replica.motion == state.motion  # type: ignore[union-attr]


async def test_a_v3_seat_resumes_with_a_v3_catch_up(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    token_me = mint("me")
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, token_me, subprotocols=V3_FIRST)
        other = await joined_client(auth_server, client_ssl, mint("other"), subprotocols=V3_FIRST)
        host = host_of(auth_server)
        room = host.room
        for _ in range(5):
            await me.send_input(dx=1.0, dy=0.0)
            await other.send_input(dx=0.0, dy=1.0)
            await trio.sleep(0.05)
        await me.wait_tick(room.state_tick)
        assert me.joined is not None
        token = me.joined.resume_token
        number = me.joined.player
        have_tick = me.tick
        me.cut()
        await until(lambda: number in host.held_seats)
        for _ in range(10):  # the other one keeps moving: it has a velocity at the resume
            await other.send_input(dx=0.0, dy=1.0)
            await trio.sleep(0.05)
        back = await Client.open(auth_server, client_ssl, V3_FIRST)
        back.joined, back.replica, back.seq = me.joined, me.replica, me.seq
        joined = await back.resume(token, have_tick)
        assert joined.resumed and joined.version == 3
        catch_up = back.received[1]
        assert isinstance(catch_up, Delta) and catch_up.base == have_tick
        assert catch_up.motion, "the other player was moving: the catch-up says how"
        for _ in range(10):
            await other.send_input(dx=0.0, dy=1.0)
            await back.send_input(dx=-1.0, dy=0.0)
            await trio.sleep(0.05)
        await back.wait_tick(room.state_tick)
        assert back.replica is not None
        assert back.replica.checksum() == room.ctx.state.checksum()
        assert not any(isinstance(m, Snapshot) for m in back.received)
