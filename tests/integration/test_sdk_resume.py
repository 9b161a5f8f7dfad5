"""The Python SDK's reconnects against the real server over real WSS, through the fault proxy:
a cut mid-game resumes the same seat, an expired hold falls back to a fresh join,
``reconnect=False`` ends the client as before, and a tolerated desync recovers by RESYNC."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trio

from clients.client import (
    ConnectionClosed,
    EndCause,
    GameClient,
    Lost,
    LostReason,
    Reconnecting,
    Rejoined,
    Resumed,
    open_game_client,
)
from gameserver.server import GameServer, ServerConfig
from tools.faultproxy import open_fault_proxy


@pytest.fixture
def server_config(request: pytest.FixtureRequest) -> ServerConfig:
    """The default seat hold (the game's 20 s), or ``indirect`` parametrization's seconds."""
    hold = getattr(request, "param", None)
    extra = {} if hold is None else {"seat_hold": hold}
    return ServerConfig(port=0, room_grace=1.0, join_timeout=5.0, cpu_budget=0, **extra)


def _avatar(c: GameClient) -> Any:
    return next(e for e in c.replica.of_type("player") if e.owner == c.player)


async def _next(c: GameClient, kind: type[Any]) -> Any:
    """The next connection event of ``kind`` (the others before it are skipped)."""
    while not isinstance(event := await c.next_connection_event(), kind):
        pass
    return event


async def test_cut_mid_game_resumes_the_same_seat(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    async with open_fault_proxy("127.0.0.1", auth_server.port) as proxy:
        via_proxy = f"wss://127.0.0.1:{proxy.port}"
        with trio.fail_after(30):
            async with (
                open_game_client(
                    via_proxy, "cut", token=mint("ann"), ssl_context=client_ssl
                ) as ann,
                open_game_client(
                    auth_server.url, "cut", token=mint("ben"), ssl_context=client_ssl
                ) as ben,
            ):
                assert ann.version == 3 and ann.resumable  # the newest, offered first
                seq = 0
                for _ in range(20):
                    seq = await ann.send_input(dx=1.0, dy=0.5)
                    await ann.next_update()
                await ann.wait_for_ack(seq)
                player, before = ann.player, _avatar(ann)
                # the network goes away: every connection reset, new ones refused for 3 s
                proxy.down(3)
                proxy.cut()
                cut_at = trio.current_time()
                assert isinstance(await ann.next_connection_event(), Reconnecting)
                during = await ann.send_input(dx=-1.0)  # buffered, sent after the resume
                ben_tick = ben.tick
                await ben.wait_for_tick(ben_tick + ben.joined.tick_rate)  # ben plays on
                resumed = await _next(ann, Resumed)
                back_at = cut_at + 3
                assert trio.current_time() - back_at < 1.0, "resumed within 1 s of the network"
                assert resumed.downtime >= 2.9
                assert ann.player == player and ann.connection_state == "connected"
                after = _avatar(ann)
                assert after.id == before.id and after.score >= before.score
                await ann.wait_for_ack(during)
                room = auth_server.rooms.rooms["cut"].room
                await ann.wait_for_tick(room.state_tick)
                await ben.wait_for_tick(room.state_tick)
                assert ann.tick == ben.tick
                assert ann.replica.checksum() == ben.replica.checksum()
                assert not ann.desyncs and not ben.desyncs
                assert ann.stats.resumes == 1 and ann.stats.rejoins == 0
                assert ben.stats.reconnect_attempts == 0 and ben.stats.snapshots == 1
                assert not [e for e in ann.connection_events if isinstance(e, Lost)]


async def test_stall_resumes_and_the_replaced_socket_cannot_close_us(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    """The path goes silent with every socket open: the client calls it dead after 2 s, drops
    that socket and resumes (if the server still had the old connection on the seat, it
    closes it with 4009; the resumed client never hears of it: the in-memory test
    test_old_connection_replaced_on_resume_never_reaches_the_new_one makes sure of that)."""
    async with open_fault_proxy("127.0.0.1", auth_server.port) as proxy:
        url = f"wss://127.0.0.1:{proxy.port}"
        with trio.fail_after(30):
            async with open_game_client(
                url, "stall", token=mint("ann"), ssl_context=client_ssl
            ) as ann:
                player = ann.player
                proxy.stall()
                stalled_at = trio.current_time()
                event = await ann.next_connection_event()
                assert isinstance(event, Reconnecting) and event.reason is EndCause.STALLED
                assert 1.9 <= trio.current_time() - stalled_at < 3
                proxy.resume()
                await _next(ann, Resumed)
                assert ann.player == player
                await ann.wait_for_tick(ann.tick + 2 * ann.joined.tick_rate)
                assert ann.connection_state == "connected" and ann.failure is None
                assert not ann.desyncs and ann.stats.resumes == 1


@pytest.mark.parametrize("server_config", [1.0], indirect=True)
async def test_expired_hold_is_lost_and_joined_afresh(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    tokens: list[str] = []

    def token() -> str:  # a fresh auth token for every JOIN
        tokens.append(mint("ann"))
        return tokens[-1]

    async with open_fault_proxy("127.0.0.1", auth_server.port) as proxy:
        url = f"wss://127.0.0.1:{proxy.port}"
        with trio.fail_after(30):
            async with (
                open_game_client(url, "hold", token=token, ssl_context=client_ssl) as ann,
                # ben keeps the room open while ann is away
                open_game_client(
                    auth_server.url, "hold", token=mint("ben"), ssl_context=client_ssl
                ) as ben,
            ):
                assert ann.joined.seat_hold_ms == 1000
                await ann.wait_for_ack(await ann.send_input(dx=1.0))
                old_player, old_entity = ann.player, _avatar(ann).id
                proxy.down(2.5)  # longer than the 1 s hold
                proxy.cut()
                rejoined = await _next(ann, Rejoined)
                lost = [e for e in ann.connection_events if isinstance(e, Lost)]
                assert [(e.reason, e.code, e.rejoining) for e in lost] == [
                    (LostReason.SEAT_LOST, 4013, True)
                ]
                assert rejoined.previous_player == old_player != ann.player == rejoined.player
                assert len(tokens) == 2
                room = auth_server.rooms.rooms["hold"].room
                # on_leave ran for the old seat: its avatar is gone, here and on the server
                assert old_entity not in {e.id for e in room.ctx.state}
                assert old_entity not in {e.id for e in ann.replica}
                assert await ann.send_input(dx=1.0) == 1  # seqs start over
                await ann.wait_for_ack(1)
                assert _avatar(ann).id != old_entity and not ann.desyncs
                await ben.wait_for_tick(ann.tick)
                assert old_entity not in {e.id for e in ben.replica}
                assert ben.stats.reconnect_attempts == 0 and not ben.desyncs


async def test_reconnect_off_ends_the_client_as_before(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    async with open_fault_proxy("127.0.0.1", auth_server.port) as proxy:
        url = f"wss://127.0.0.1:{proxy.port}"
        with trio.fail_after(20), pytest.raises(ConnectionClosed) as info:
            async with open_game_client(
                url, "off", token=mint("ann"), ssl_context=client_ssl, reconnect=False
            ) as ann:
                proxy.cut()
                while True:
                    await ann.next_update()
    assert info.value.code == 1006
    assert ann.stats.reconnect_attempts == 0 and ann.connection_state == "closed"


async def test_tolerated_desync_recovers_through_resync(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        async with open_game_client(
            url, "resync", token=mint("ann"), ssl_context=client_ssl, raise_on_desync=False
        ) as ann:
            await ann.wait_for_tick(ann.tick + 2)
            gem = ann.replica.of_type("gem")[0]
            del ann.replica.entities[gem.id]  # the replica goes wrong (a bug, a bit flip)
            while not ann.desyncs:
                await ann.next_update()
            assert not ann.in_sync
            while not ann.in_sync:
                await ann.next_update()
            assert ann.stats.resyncs >= 1 and ann.stats.snapshots == 2
            room = auth_server.rooms.rooms["resync"].room
            await ann.wait_for_tick(room.state_tick + 1)
            assert gem.id in ann.replica.entities and len(ann.desyncs) == 1
            assert ann.connection_state == "connected" and ann.stats.reconnect_attempts == 0
