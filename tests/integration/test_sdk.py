"""The Python client SDK against the real server with tokens: play, private rooms, events."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
import trio

from clients.client import ServerError, open_game_client
from gameserver.server import GameServer


async def test_sdk_plays_and_converges(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        async with (
            open_game_client(url, "sdk", token=mint("ann"), ssl_context=client_ssl) as a,
            open_game_client(url, "sdk", token=mint("ben"), ssl_context=client_ssl) as b,
        ):
            seq = 0
            for _ in range(10):
                seq = await a.send_input(dx=1.0, dy=0.0)
                await a.next_update()
            await a.wait_for_ack(seq)
            room = auth_server.rooms.rooms["sdk"].room
            await a.send_event("chat", b"hello")
            event = await b.next_event()
            while event.name != "chat":
                event = await b.next_event()
            assert (event.sender, event.data) == (a.player, b"hello")
            await b.wait_for_tick(room.state_tick)
            await a.wait_for_tick(room.state_tick)
            assert a.tick == b.tick == room.state_tick
            assert a.replica.checksum() == b.replica.checksum() == room.ctx.state.checksum()
            assert a.last_acked == seq
            assert not a.desyncs and not b.desyncs


async def test_sdk_private_room_by_id(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        async with open_game_client(
            url, "", private=True, token=mint("host"), ssl_context=client_ssl
        ) as host:
            room_id = host.joined.room
            assert room_id.startswith("~") and len(room_id) == 23
            async with open_game_client(
                url, room_id, token=mint("guest"), ssl_context=client_ssl
            ) as guest:
                assert guest.joined.room == room_id
            # a made-up id is refused
            with pytest.raises(ServerError) as info:
                async with open_game_client(
                    url, "~" + "A" * 22, token=mint("lost"), ssl_context=client_ssl
                ):
                    pass  # pragma: no cover
            assert info.value.code == 4000
    assert auth_server.rooms.rooms[room_id].private
