"""Authentication and authorization over real WSS: tokens in JOIN, room and game claims,
private rooms, one seat per player id, and inputs bound to the connection."""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, connect_websocket_url

from gameserver.auth import AuthFailure, mint_token
from gameserver.room import PRIVATE_ROOM_RE
from gameserver.server import GameServer, ServerConfig
from shared.messages import Close, Error, Input, Join, parse_server_message
from shared.protocol import SUBPROTOCOL, CloseCode
from tests.integration.wsclient import JoinRefused, TestClient, connect

Mint = Callable[..., str]
OTHER_SECRET = b"another-servers-secret-0123456789abcdef"


@pytest.fixture
def server_config() -> ServerConfig:
    # cpu_budget=0: a busy test machine must not turn joins into 4006 refusals
    return ServerConfig(port=0, room_grace=1.0, join_timeout=5.0, cpu_budget=0.0)


async def join_refused(
    nursery: trio.Nursery, server: GameServer, client_ssl: ssl.SSLContext, join: Join
) -> tuple[Error | Close, int]:
    """Send ``join``; return the server's ERROR/CLOSE message and the WebSocket close code."""
    with trio.fail_after(10):
        ws = await connect_websocket_url(
            nursery, server.url, client_ssl, subprotocols=[SUBPROTOCOL]
        )
        await ws.send_message(join.to_bytes())
        data = await ws.get_message()
        assert isinstance(data, bytes)
        msg = parse_server_message(data)
        assert isinstance(msg, (Error, Close)), msg
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    return msg, close_code(closed.value)


def close_code(exc: ConnectionClosed) -> int:
    assert exc.reason is not None
    code: int = exc.reason.code
    return code


def tamper(token: str) -> str:
    header, payload, sig = token.split(".")
    i = len(payload) // 2
    flipped = "B" if payload[i] != "B" else "C"
    return ".".join([header, payload[:i] + flipped + payload[i + 1 :], sig])


def player_entities(client: TestClient) -> list[Any]:
    return client.replica.of_type("player")


# ---------------------------------------------------------------- authentication


async def test_valid_token_joins_and_the_display_name_comes_from_the_token(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    token = mint("alice-id", name="Alice")
    with trio.fail_after(10):
        # the name in JOIN is ignored: a player cannot pose as someone else
        alice = await connect(nursery, auth_server.url, client_ssl, "lobby", "Mallory", token=token)
        await alice.wait_tick(alice.replica.tick + 2)
    room = auth_server.rooms.rooms["lobby"].room
    [player] = room.players()
    assert (player.number, player.id, player.name) == (alice.joined.player, "alice-id", "Alice")
    [avatar] = player_entities(alice)
    assert avatar.name == "Alice"  # type: ignore[attr-defined]
    assert avatar.owner == alice.joined.player  # type: ignore[attr-defined]
    assert auth_server.by_player["alice-id"].player is player
    assert not auth_server.stats.refused


@pytest.mark.parametrize(
    ("make_token", "failure"),
    [
        (lambda mint: "", AuthFailure.MISSING),
        (lambda mint: "not-a-token", AuthFailure.MALFORMED),
        (lambda mint: "x.y.z", AuthFailure.MALFORMED),
        (lambda mint: mint("p", ttl=60, now=time.time() - 3600), AuthFailure.EXPIRED),
        (lambda mint: tamper(mint("p", rooms=["lobby"])), AuthFailure.BAD_SIGNATURE),
        (lambda mint: mint_token(OTHER_SECRET, "p"), AuthFailure.BAD_SIGNATURE),
    ],
    ids=["missing", "malformed", "malformed-jwt", "expired", "tampered", "other-key"],
)
async def test_bad_tokens_get_4001_and_are_counted(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    make_token: Callable[[Mint], str],
    failure: AuthFailure,
) -> None:
    token = make_token(mint)
    msg, code = await join_refused(nursery, auth_server, client_ssl, Join("lobby", "", "p", token))
    assert isinstance(msg, Error) and msg.code == CloseCode.UNAUTHORIZED
    assert msg.message.startswith("unauthorized")
    assert code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.refused == Counter({failure.value: 1})
    assert not auth_server.by_player and not auth_server.rooms.rooms
    assert auth_server.stats.players == 0


async def test_open_server_ignores_tokens_but_the_auth_server_needs_one(
    nursery: trio.Nursery,
    server: GameServer,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
) -> None:
    with trio.fail_after(10):
        anon = await connect(nursery, server.url, client_ssl, "lobby", "anon")
    assert anon.joined.player == 1
    with pytest.raises(JoinRefused) as info:
        await connect(nursery, auth_server.url, client_ssl, "lobby", "anon")
    assert info.value.code == CloseCode.UNAUTHORIZED


# ---------------------------------------------------------------- authorization


async def test_token_not_allowing_the_room_gets_4003(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    token = mint("p", rooms=["lobby", "r2"])
    msg, code = await join_refused(
        nursery, auth_server, client_ssl, Join("elsewhere", "", "", token)
    )
    assert isinstance(msg, Error) and msg.code == code == CloseCode.FORBIDDEN
    assert "elsewhere" in msg.message
    assert auth_server.stats.refused["forbidden_room"] == 1
    assert "elsewhere" not in auth_server.rooms.rooms  # no room made for a refused join
    # the rooms it names are fine
    with trio.fail_after(10):
        ok = await connect(nursery, auth_server.url, client_ssl, "r2", token=token)
    assert ok.joined.room == "r2"


async def test_token_not_allowing_the_game_gets_4003(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    token = mint("p", games=["chess"])
    for game in ("", "arena"):  # the default game, and by name
        msg, code = await join_refused(
            nursery, auth_server, client_ssl, Join("lobby", game, "", token)
        )
        assert isinstance(msg, Error) and msg.code == code == CloseCode.FORBIDDEN
        assert "arena" in msg.message
    assert auth_server.stats.refused["forbidden_game"] == 2
    assert not auth_server.rooms.rooms


# ---------------------------------------------------------------- private rooms


async def test_private_rooms(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    with trio.fail_after(20):
        host = await connect(
            nursery, auth_server.url, client_ssl, "", token=mint("host"), private=True
        )
        room_id = host.joined.room
        assert PRIVATE_ROOM_RE.fullmatch(room_id) and len(room_id) == 23
        assert auth_server.rooms.rooms[room_id].private
        # a second player joins it by its id
        guest = await connect(nursery, auth_server.url, client_ssl, room_id, token=mint("guest"))
        assert guest.joined.room == room_id and guest.joined.player == host.joined.player + 1
        await guest.wait_tick(guest.replica.tick + 2)
        assert len(player_entities(guest)) == 2
        # every private JOIN makes a new room, whatever room it names
        other = await connect(
            nursery, auth_server.url, client_ssl, room_id, token=mint("third"), private=True
        )
        assert other.joined.room != room_id and PRIVATE_ROOM_RE.fullmatch(other.joined.room)

    # a made-up private id is no room at all: 4000, and nothing is created
    made_up = "~" + "A" * 22
    msg, code = await join_refused(
        nursery, auth_server, client_ssl, Join(made_up, "", "", mint("prober"))
    )
    assert isinstance(msg, Error) and msg.code == code == CloseCode.BAD_JOIN
    assert made_up not in auth_server.rooms.rooms
    assert auth_server.stats.refused["no_such_room"] == 1
    # private ids are not public room names either: one character off is refused the same way
    near = room_id[:-1] + ("A" if room_id[-1] != "A" else "B")
    msg, code = await join_refused(nursery, auth_server, client_ssl, Join(near, "", "", mint("x")))
    assert code == CloseCode.BAD_JOIN
    # nor can a public room be named like a private one
    msg, code = await join_refused(
        nursery, auth_server, client_ssl, Join("~short", "", "", mint("y"))
    )
    assert code == CloseCode.BAD_JOIN


async def test_private_rooms_need_a_token_for_any_room_or_for_that_id(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    with trio.fail_after(20):
        host = await connect(
            nursery, auth_server.url, client_ssl, "", token=mint("host"), private=True
        )
    room_id = host.joined.room
    # a token limited to named rooms may neither create private rooms ...
    limited = mint("limited", rooms=["lobby"])
    _, code = await join_refused(
        nursery, auth_server, client_ssl, Join("", "", "", limited, private=True)
    )
    assert code == CloseCode.FORBIDDEN
    # ... nor join one it does not name
    _, code = await join_refused(nursery, auth_server, client_ssl, Join(room_id, "", "", limited))
    assert code == CloseCode.FORBIDDEN
    # a token minted for that private room id may
    with trio.fail_after(10):
        invited = await connect(
            nursery, auth_server.url, client_ssl, room_id, token=mint("invited", rooms=[room_id])
        )
    assert invited.joined.room == room_id


# ---------------------------------------------------------------- one seat per player id


async def test_same_player_id_twice_the_newer_connection_takes_the_seat(
    nursery: trio.Nursery, auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        old = await connect(nursery, url, client_ssl, "seat", token=mint("dup", name="Dup"))
        watcher = await connect(nursery, url, client_ssl, "seat", token=mint("watcher"))
    room = auth_server.rooms.rooms["seat"].room
    owners: dict[int, str] = {}  # player number -> player id, as the server seated them
    seen: list[Counter[str]] = []

    async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await watcher.pump()
            owners.update((p.number, p.id) for p in room.players())
            seen.append(
                Counter(owners[e.owner] for e in player_entities(watcher))  # type: ignore[attr-defined]
            )

    async with trio.open_nursery() as inner:
        await inner.start(watch)
        with trio.fail_after(20):
            new = await connect(nursery, url, client_ssl, "seat", token=mint("dup", name="Dup"))
            # the older connection is told why, then closed with 4009
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = await old.pump()
                    if isinstance(msg, Close):
                        assert msg.code == CloseCode.REPLACED
            assert close_code(closed.value) == CloseCode.REPLACED
            # several more reconnects in quick succession: the last one wins each time
            more: list[TestClient | int] = []

            async def reconnect() -> None:
                try:
                    more.append(await connect(nursery, url, client_ssl, "seat", token=mint("dup")))
                except JoinRefused as exc:  # replaced before its JOINED went out
                    assert exc.code == CloseCode.REPLACED
                    more.append(exc.code)

            for _ in range(4):
                await reconnect()
            target = room.state_tick + 5
            while watcher.replica.tick < target:
                await trio.sleep(0.01)
        inner.cancel_scope.cancel()

    last = more[-1]
    assert isinstance(last, TestClient)
    # the newest connection has the seat, and it is the only one
    dup_seats = [p for p in room.players() if p.id == "dup"]
    assert [p.number for p in dup_seats] == [last.joined.player]
    assert auth_server.by_player["dup"].player.number == last.joined.player
    assert new.joined.player != old.joined.player
    # every state the watcher saw had at most one avatar per player id
    assert len(seen) >= 10
    assert all(max(c.values(), default=0) <= 1 for c in seen), seen
    assert seen[-1] == Counter({"dup": 1, "watcher": 1})
    avatars = [e for e in room.ctx.state.entities.values() if e.etype.name == "player"]
    assert sorted(owners[e.owner] for e in avatars) == ["dup", "watcher"]  # type: ignore[attr-defined]
    assert auth_server.stats.players == 2


# ---------------------------------------------------------------- inputs


async def test_inputs_only_ever_move_the_senders_own_avatar(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # INPUT carries a sequence number and the input values: nothing names a player
    assert [a.name for a in attrs.fields(Input)] == ["seq", "codes"]
    url = auth_server.url
    with trio.fail_after(30):
        mover = await connect(nursery, url, client_ssl, "inputs", token=mint("mover"))
        still = await connect(nursery, url, client_ssl, "inputs", token=mint("still"))
        await mover.wait_tick(mover.replica.tick + 1)
        await still.wait_tick(mover.replica.tick)
    room = auth_server.rooms.rooms["inputs"].room

    def avatar(number: int) -> tuple[float, float]:
        [ent] = [e for e in player_entities(still) if e.owner == number]  # type: ignore[attr-defined]
        return ent.x, ent.y  # type: ignore[attr-defined]

    before_mover = avatar(mover.joined.player)
    before_still = avatar(still.joined.player)
    with trio.fail_after(30):
        for _ in range(10):
            await mover.send_input(dx=1.0 if before_mover[0] < 500 else -1.0, dy=0.0)
            await mover.wait_tick(mover.replica.tick + 1)
        # an INPUT with a player number appended (as if to steer someone else) is refused
        schema = mover.joined.input_schema
        forged = Input(mover.seq + 1, schema.codes_for({"dx": 1.0, "dy": 1.0})).to_bytes(schema)
        await mover.ws.send_message(forged + bytes([still.joined.player]))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await mover.pump()
        assert close_code(closed.value) == CloseCode.INVALID_PAYLOAD
        await still.wait_tick(room.state_tick + 3)
    assert avatar(still.joined.player) == before_still
    assert mover.joined.player not in [p.number for p in room.players()]
    assert room.counters.inputs_applied == 10


# ---------------------------------------------------------------- logs


async def test_tokens_never_appear_in_logs(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, from every logger
    good = mint("logged", name="Logged")
    tokens = {
        "good": good,
        "expired": mint("logged", ttl=60, now=time.time() - 3600),
        "tampered": tamper(good),
        "other-key": mint_token(OTHER_SECRET, "logged"),
        "forbidden": mint("logged", rooms=["nowhere"]),
        "malformed": "tok3n-" + "q" * 40,
    }
    with trio.fail_after(20):
        client = await connect(nursery, auth_server.url, client_ssl, "logs", token=good)
        await client.wait_tick(client.replica.tick + 2)
        for name, token in tokens.items():
            if name != "good":
                _, code = await join_refused(
                    nursery, auth_server, client_ssl, Join("logs", "", "", token)
                )
                assert code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN)
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused a JOIN" in m for m in messages)  # the refusals were logged ...
    for name, token in tokens.items():
        for record, message in zip(caplog.records, messages, strict=True):
            text = " ".join([message, repr(record.args), record.exc_text or ""])
            assert token not in text, f"the {name} token is in a log record: {message!r}"
            # ... nor its signature, the secret part
            assert token.rsplit(".", 1)[-1] not in text


@pytest.mark.parametrize(
    "server_config",
    [ServerConfig(port=0, cpu_budget=0, room_create_rate=0.5, room_create_burst=3)],
)
async def test_one_player_cannot_fill_the_server_with_rooms(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Callable[..., str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    token = mint("hopper")
    codes = []
    for i in range(5):  # hop through new room names as fast as possible
        try:
            client = await connect(nursery, auth_server.url, client_ssl, f"hop-{i}", token=token)
            codes.append(0)
            await client.ws.aclose()
        except JoinRefused as exc:
            codes.append(exc.code)
    assert codes == [0, 0, 0, 1008, 1008]  # the burst of 3, then refused
    assert auth_server.stats.refused["room_create_rate"] == 2
    # joining an existing room is not creating one, and others can still create rooms
    await connect(nursery, auth_server.url, client_ssl, "hop-0", token=token)
    await connect(nursery, auth_server.url, client_ssl, "own", token=mint("other"))
    # the bucket refills: one more room after 2 s
    await trio.sleep(2.1)
    await connect(nursery, auth_server.url, client_ssl, "hop-9", token=mint("hopper"))
