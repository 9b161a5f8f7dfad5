"""The admin API on the metrics port, against a real server: list rooms, kick, close a room."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from gameserver.admin import AdminAPI
from gameserver.auth import TokenVerifier, mint_token
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import GameServer, ServerConfig
from shared.messages import Close
from shared.protocol import CloseCode
from tests.integration.wsclient import TestClient, connect

Mint = Callable[..., str]


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(port=0, room_grace=1.0, cpu_budget=0.0)


@pytest.fixture
async def admin_port(
    nursery: trio.Nursery, auth_server: GameServer, verifier: TokenVerifier
) -> int:
    """serve_metrics with the admin API, as ``gameserver serve --metrics-port`` runs it."""
    registry = make_registry(auth_server.stats, auth_server.rooms)
    start = partial(serve_metrics, "127.0.0.1", 0, registry, admin=AdminAPI(auth_server, verifier))
    port: int = await nursery.start(start)
    return port


async def http(
    port: int, method: str, target: str, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
        await stream.aclose()
    status = int(response.split(b" ", 2)[1])
    body = response.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body)


async def closed_with(client: TestClient) -> tuple[int, Close | None]:
    """Read until the connection closes: the close code and the CLOSE message, if any."""
    close = None
    with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
        while True:
            msg = await client.pump()
            if isinstance(msg, Close):
                close = msg
    assert info.value.reason is not None
    return info.value.reason.code, close


async def test_listing_rooms_needs_an_admin_token(
    nursery: trio.Nursery,
    auth_server: GameServer,
    admin_port: int,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        alice = await connect(nursery, url, client_ssl, "public", token=mint("a", name="Alice"))
        secret_host = await connect(nursery, url, client_ssl, "", token=mint("b"), private=True)

    assert await http(admin_port, "GET", "/admin/rooms") == (
        401,
        {"error": "an admin token is required (Authorization: Bearer)"},
    )
    status, body = await http(admin_port, "GET", "/admin/rooms", mint("player"))
    assert (status, body) == (403, {"error": "this token has no admin claim"})
    status, _ = await http(
        admin_port, "GET", "/admin/rooms", mint_token(b"z" * 32, "x", admin=True)
    )
    assert status == 401  # an admin claim signed with another key counts for nothing
    status, _ = await http(admin_port, "GET", "/admin/rooms", "garbage")
    assert status == 401
    assert auth_server.stats.refused["admin_forbidden"] == 1
    assert auth_server.stats.refused["admin_auth_bad_signature"] == 1
    assert auth_server.stats.refused["admin_auth_malformed"] == 1

    status, body = await http(admin_port, "GET", "/admin/rooms", mint("ops", admin=True))
    assert status == 200
    rooms = {r["room"]: r for r in body["rooms"]}
    assert set(rooms) == {"public", secret_host.joined.room}  # private rooms are listed too
    assert rooms["public"]["private"] is False
    assert rooms["public"]["game"] == "arena"
    assert rooms["public"]["players"] == [
        {"number": alice.joined.player, "id": "a", "name": "Alice", "connected": True}
    ]
    assert rooms[secret_host.joined.room]["private"] is True
    assert [p["id"] for p in rooms[secret_host.joined.room]["players"]] == ["b"]
    # the listing is read-only: other methods are refused
    status, _ = await http(admin_port, "POST", "/admin/rooms", mint("ops", admin=True))
    assert status == 405


async def test_kick_closes_that_player_with_4010(
    nursery: trio.Nursery,
    auth_server: GameServer,
    admin_port: int,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        victim = await connect(nursery, url, client_ssl, "kick", token=mint("victim"))
        bystander = await connect(nursery, url, client_ssl, "kick", token=mint("bystander"))
        other = await connect(nursery, url, client_ssl, "kick2", token=mint("other"))
    admin = mint("ops", admin=True)
    n = victim.joined.player
    # a player token cannot kick
    assert (await http(admin_port, "POST", f"/admin/kick?room=kick&player={n}", mint("p")))[
        0
    ] == 403
    # GET is not a way to kick
    assert (await http(admin_port, "GET", f"/admin/kick?room=kick&player={n}", admin))[0] == 405
    status, body = await http(admin_port, "POST", f"/admin/kick?room=kick&player={n}", admin)
    assert (status, body) == (200, {"kicked": "victim"})
    code, close = await closed_with(victim)
    assert code == CloseCode.KICKED
    assert close is not None and close.code == CloseCode.KICKED
    # by player id, across rooms
    status, body = await http(admin_port, "POST", "/admin/kick?player_id=other", admin)
    assert (status, body) == (200, {"kicked": "other"})
    assert (await closed_with(other))[0] == CloseCode.KICKED
    # nobody else is touched
    with trio.fail_after(10):
        await bystander.wait_tick(bystander.replica.tick + 3)
    room = auth_server.rooms.rooms["kick"].room
    assert [p.id for p in room.players()] == ["bystander"]
    # unknown players and rooms, and missing parameters
    for target, expected in [
        (f"/admin/kick?room=kick&player={n}", 404),  # already gone
        ("/admin/kick?room=nope&player=1", 404),
        ("/admin/kick?room=kick&player=x", 404),
        ("/admin/kick?player_id=nobody", 404),
        ("/admin/kick", 400),
        ("/admin/unknown", 404),
    ]:
        assert (await http(admin_port, "POST", target, admin))[0] == expected, target


async def test_close_room_closes_everyone_with_4011(
    nursery: trio.Nursery,
    auth_server: GameServer,
    admin_port: int,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        players = [
            await connect(nursery, url, client_ssl, "doomed", token=mint(f"p{i}")) for i in range(3)
        ]
        elsewhere = await connect(nursery, url, client_ssl, "safe", token=mint("safe"))
        private = await connect(nursery, url, client_ssl, "", token=mint("priv"), private=True)
    admin = mint("ops", admin=True)
    status, body = await http(admin_port, "POST", "/admin/close?room=doomed", admin)
    assert (status, body) == (200, {"closed": "doomed", "players": 3})
    for p in players:
        code, close = await closed_with(p)
        assert code == CloseCode.ROOM_CLOSED
        assert close is not None and close.code == CloseCode.ROOM_CLOSED
    # a private room is closed by its id
    room_id = private.joined.room
    status, _ = await http(admin_port, "POST", f"/admin/close?room={room_id}", admin)
    assert status == 200
    assert (await closed_with(private))[0] == CloseCode.ROOM_CLOSED
    with trio.fail_after(10):
        await elsewhere.wait_tick(elsewhere.replica.tick + 3)
        while auth_server.stats.players != 1:
            await trio.sleep(0.01)
    assert (await http(admin_port, "POST", "/admin/close?room=nope", admin))[0] == 404
