"""The Python SDK follows REDIRECT over real WSS: a test-only node (tests/redirector.py) that
hosts nothing sends every join to a real server, directly or through the fault proxy (the
owner's node, which can then be cut or taken away)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
import trio

import clients.connect
from clients.client import (
    Redirected,
    RedirectError,
    RedirectProblem,
    Resumed,
    ServerError,
    open_game_client,
)
from gameserver.server import GameServer
from shared.messages import Join, Resume
from tests.redirector import open_redirector
from tools.faultproxy import open_fault_proxy


async def test_a_join_is_redirected_to_the_real_server(
    auth_server: GameServer,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    mint: Callable[..., str],
) -> None:
    with trio.fail_after(20):
        async with (
            open_redirector(auth_server.url, server_ssl) as entry,
            open_game_client(entry.url, "redir", token=mint("ann"), ssl_context=client_ssl) as ann,
            open_game_client(
                auth_server.url, "redir", token=mint("ben"), ssl_context=client_ssl
            ) as ben,
        ):
            assert (ann.url, ann.entry_url, ann.redirects) == (auth_server.url, entry.url, 1)
            assert list(ann.iter_connection_events()) == [Redirected(auth_server.url, "redir", 1)]
            assert [type(m) for m in entry.received] == [Join] and entry.versions == [3]
            await ben.wait_for_tick(ben.tick + 2)
            owners = {e.owner for e in ben.replica.of_type("player")}
            assert owners == {ann.player, ben.player} and ann.player != ben.player
            assert ann.joined.room == "redir" == ben.joined.room


async def test_a_redirect_loop_ends_after_three_hops(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(20):
        async with open_redirector("", server_ssl) as loop:
            loop.target = loop.url  # it sends every join back to itself
            with pytest.raises(RedirectError) as caught:
                async with open_game_client(loop.url, "r", ssl_context=client_ssl):
                    pytest.fail("joined")  # pragma: no cover
    assert caught.value.problem is RedirectProblem.TOO_MANY
    assert len(loop.received) == 4


async def test_v1_gets_error_4015(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v1 client is told where the room lives; gamesync.v1 cannot follow (the SDK offers
    v2 first, so here a v1-only offer stands in for an old client)."""
    monkeypatch.setattr(clients.connect, "SUPPORTED_SUBPROTOCOLS", ("gamesync.v1",))
    with trio.fail_after(20):
        async with open_redirector("wss://127.0.0.1:1/", server_ssl) as entry:
            with pytest.raises(ServerError) as caught:
                async with open_game_client(entry.url, "lobby", ssl_context=client_ssl):
                    pytest.fail("joined")  # pragma: no cover
    assert caught.value.code == 4015 and entry.versions == [1]
    assert caught.value.message == "room 'lobby' lives at wss://127.0.0.1:1/"


async def test_resume_goes_to_the_owner_then_back_to_the_entry(
    auth_server: GameServer,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    mint: Callable[..., str],
) -> None:
    """The owner is the server behind the fault proxy. A cut: the RESUME goes straight to the
    owner. The owner's address gone (refused): the client goes back to the entry URL, which
    sends it to the room's node by another address, where the held seat is resumed."""
    async with open_fault_proxy("127.0.0.1", auth_server.port) as proxy:
        owner = f"wss://127.0.0.1:{proxy.port}"
        with trio.fail_after(30):
            async with (
                open_redirector(owner, server_ssl) as entry,
                open_game_client(
                    entry.url, "moved", token=mint("ann"), ssl_context=client_ssl
                ) as ann,
            ):
                assert ann.url == owner == ann.owner_url
                player = ann.player
                list(ann.iter_connection_events())
                proxy.cut()
                while not isinstance(event := await ann.next_connection_event(), Resumed):
                    assert not isinstance(event, Redirected)
                assert ann.player == player and ann.url == owner
                assert [type(m) for m in entry.received] == [Join]  # the resume skipped it
                # the owner's address goes away for good; the entry now names the server
                entry.target = auth_server.url
                proxy.down()
                proxy.cut()
                while not isinstance(event := await ann.next_connection_event(), Resumed):
                    pass
                assert ann.player == player and ann.url == auth_server.url
                assert ann.owner_url == auth_server.url and ann.redirects == 1
                assert [type(m) for m in entry.received] == [Join, Resume]
                assert ann.stats.resumes == 2 and ann.stats.redirects == 2
                seq = await ann.send_input(dx=1.0)
                await ann.wait_for_ack(seq)
