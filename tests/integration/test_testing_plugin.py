"""gameserver.testing's live server and its ``game_server`` fixture, over real WSS."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest
import trio

from clients.client import ConnectError, GameClient, ServerError, open_game_client
from gameserver.game import GameRegistry
from gameserver.games.arena import Arena
from gameserver.games.pong import Pong
from gameserver.testing import LiveServer, ThrowawayTLS, open_live_server
from gameserver.testing.live import as_registry
from shared.protocol import CloseCode

if TYPE_CHECKING:  # the plugin module is imported by pytest_plugins (and assert-rewritten)
    from gameserver.testing.pytest_plugin import GameServerFactory

pytest_plugins = ["gameserver.testing.pytest_plugin"]


async def caught_up(srv: LiveServer, room: str, *clients: GameClient) -> int:
    """Wait until every client holds the tick the server's room is at now; returns it."""
    tick = srv.room(room).state_tick
    for client in clients:
        await client.wait_for_tick(tick)
    return tick


async def test_pong_over_wss_with_two_players(game_server: GameServerFactory) -> None:
    srv = await game_server(Pong)
    assert srv.url.startswith("wss://127.0.0.1:") and srv.server.port != 0
    assert srv.server.auth is not None  # token auth is on
    with trio.fail_after(20):
        async with srv.clients("table", ["alice", "bob"]) as (alice, bob):
            assert (alice.joined.game, alice.player, bob.player) == ("pong", 1, 2)
            room = srv.room("table")
            await caught_up(srv, "table", alice, bob)
            start = {p.side: p.y for p in bob.replica.of_type("paddle")}
            seq = await alice.send_input(dir=1.0)  # the left paddle moves down
            await alice.wait_for_ack(seq)
            await bob.wait_for_tick(alice.tick + 3)
            moved = {p.side: p.y for p in bob.replica.of_type("paddle")}
            assert moved[0] > start[0] and moved[1] == start[1]
            await alice.send_event("gg", b"!")
            event = await bob.next_event()
            assert (event.sender, event.name, event.data) == (alice.player, "gg", b"!")
            tick = await caught_up(srv, "table", alice, bob)
            assert alice.tick >= tick and bob.tick >= tick
            assert alice.replica.checks > 0 and not alice.desyncs and not bob.desyncs
            assert [p.name for p in room.players()] == ["alice", "bob"]
    assert game_server.servers == [srv]


async def test_tokens_are_required_and_checked(game_server: GameServerFactory) -> None:
    srv = await game_server(Pong)
    with trio.fail_after(20):
        with pytest.raises(ServerError) as info:
            async with srv.client("r", player="mallory", token="not-a-token"):
                pass  # pragma: no cover
        assert info.value.code == CloseCode.UNAUTHORIZED
        only_lobby = srv.token("eve", rooms=["lobby"])
        with pytest.raises(ServerError) as info:
            async with srv.client("r", player="eve", token=only_lobby):
                pass  # pragma: no cover
        assert info.value.code == CloseCode.FORBIDDEN
        async with srv.client("lobby", player="eve", token=only_lobby, name="Eve") as eve:
            assert eve.joined.room == "lobby"
        assert srv.room("lobby").game_cls is Pong


async def test_config_overrides_reach_the_server(game_server: GameServerFactory) -> None:
    srv = await game_server(Pong, max_players=1, tick_rate=60)
    assert srv.server.config.cpu_budget == 0 and srv.server.config.port == 0
    with trio.fail_after(20):
        async with srv.client("solo", player="ann") as ann:
            assert ann.joined.tick_rate == 60
            with pytest.raises(ServerError) as info:
                async with srv.client("solo", player="ben"):
                    pass  # pragma: no cover
            assert info.value.code == CloseCode.ROOM_FULL
    with pytest.raises(KeyError, match="no room 'nowhere'"):
        srv.room("nowhere")


async def test_a_registry_serves_several_games(game_server: GameServerFactory) -> None:
    registry = GameRegistry()
    registry.register(Arena, default=True)
    registry.register(Pong)
    srv = await game_server(registry)
    with trio.fail_after(20):
        async with (
            srv.client("a", player="p1") as default,
            srv.client("p", player="p2", game="pong") as pong,
            srv.client("", player="p3", private=True) as private,
        ):
            assert (default.joined.game, pong.joined.game) == ("arena", "pong")
            assert private.joined.room.startswith("~")
            assert set(srv.rooms) == {"a", "p", private.joined.room}
            assert srv.room(private.joined.room).game_cls is Arena


async def test_the_throwaway_ca_is_the_only_one_trusted(game_server: GameServerFactory) -> None:
    srv = await game_server(Arena)
    with trio.fail_after(20):
        with pytest.raises(ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            async with open_game_client(
                srv.url, "r", token=srv.token("x"), ssl_context=ssl.create_default_context()
            ):
                pass  # pragma: no cover
        async with open_game_client(
            srv.url, "r", token=srv.token("x"), ca_file=srv.tls.ca_file
        ) as client:
            assert client.ready


async def test_open_live_server_without_the_fixture() -> None:
    with trio.fail_after(20):
        async with open_live_server(Pong, room_grace=0.5) as srv:
            assert isinstance(srv.tls, ThrowawayTLS) and srv.tls.ca_file.is_file()
            assert srv.server.config.room_grace == 0.5
            async with srv.client("r", player="solo") as client:
                assert client.joined.game == "pong"
        assert not srv.tls.ca_file.exists()  # its temporary directory is gone
    with pytest.raises(TypeError, match="Game subclass or a GameRegistry"):
        as_registry(object)  # type: ignore[arg-type]
