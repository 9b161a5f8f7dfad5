"""End to end over real WSS: convergence, slow readers, refusals, malformed input."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, connect_websocket_url

from gameserver.server import GameServer, ServerConfig
from shared.messages import Error, parse_server_message
from shared.protocol import SUBPROTOCOL
from tests.integration.wsclient import JoinRefused, TestClient, connect


async def test_clients_in_one_room_converge_to_server_checksum(
    nursery: trio.Nursery, server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    clients = [await connect(nursery, server.url, client_ssl, "conv", f"p{i}") for i in range(4)]
    room = server.rooms.rooms["conv"].room
    with trio.fail_after(20):
        for step in range(30):
            for i, c in enumerate(clients):
                await c.send_input(dx=(-1) ** i * 0.7, dy=0.3 * (step % 3 - 1))
            target = room.state_tick + 1
            for c in clients:
                await c.wait_tick(target)
        # let every input be applied, then compare every replica with the server at one tick
        seqs = [c.seq for c in clients]
        target = room.state_tick + 2
        for c in clients:
            await c.wait_tick(target)
    server_tick = room.state_tick
    server_sum = room.ctx.state.checksum()
    for c in clients:
        await c.wait_tick(server_tick)
        assert c.replica.tick == server_tick
        assert c.replica.checksum() == server_sum
        assert c.replica.checks > 0  # the server's own checksums were verified on the way
    # every client sees every player's last applied input
    for c in clients:
        assert [c.replica.acks[x.joined.player] for x in clients] == seqs
    players = clients[0].replica.of_type("player")
    assert len(players) == 4


async def test_subprotocol_refused_with_http_error_and_tcp_closed(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(10):
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", server.port, ssl_context=client_ssl
        )
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: chat.v2\r\n\r\n"
        )
        response = b""
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break  # the server closed the TCP connection
            response += chunk
    assert response.startswith(b"HTTP/1.1 400")
    assert b"gamesync.v1" in response.split(b"\r\n\r\n", 1)[1]
    assert server.stats.refused["subprotocol"] == 1


async def test_no_subprotocol_refused(server: GameServer, client_ssl: ssl.SSLContext) -> None:
    from trio_websocket import ConnectionRejected, open_websocket_url

    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(server.url, client_ssl, subprotocols=[]):
            pass  # pragma: no cover
    assert info.value.status_code == 400
    assert b"gamesync.v1" in (info.value.body or b"")


@pytest.mark.parametrize(
    ("payload", "code", "kind"),
    [
        ("a text frame", 1003, "text_frame"),
        (b"\x7f", 1002, "close_1002"),  # unknown kind
        (b"\x03", 1007, "close_1007"),  # INPUT truncated before its seq
        (b"\x03\x01\xff", 1007, "close_1007"),  # INPUT with a field code beyond its range
        (b"\x03\x01\x10\x10\x00", 1007, "close_1007"),  # trailing byte
        (b"\x01\x03\x00\x01a\x00\x00\x00", 1002, "join_twice"),  # JOIN (v3) again
        (b"\x04" + b"\x01e" + b"\xff\x7f" + b"x" * 100, 1007, "close_1007"),  # event too big
        (b"\x03" + b"\x00" * 5000, 1009, None),  # over max_message_size
    ],
)
async def test_malformed_message_closes_that_client_only(
    nursery: trio.Nursery,
    server: GameServer,
    client_ssl: ssl.SSLContext,
    payload: bytes | str,
    code: int,
    kind: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = await connect(nursery, server.url, client_ssl, "mal", "good")
    bad = await connect(nursery, server.url, client_ssl, "mal", "bad")
    room = server.rooms.rooms["mal"].room
    with trio.fail_after(10):
        await bad.ws.send_message(payload)
        error = None
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                msg = await bad.pump()
                if isinstance(msg, Error):
                    error = msg
        assert closed.value.reason.code == code
        if code != 1009:  # trio-websocket itself closes oversized messages, before we see them
            assert error is not None and error.code == code and error.message
        if kind is not None:
            assert server.stats.protocol_errors[kind] == 1
        # the room runs on for the good client, every tick, no desync
        start = good.replica.tick
        deltas = good.deltas
        await good.wait_tick(start + 20)
    assert good.deltas - deltas == 20
    assert (
        good.replica.checksum() == room.ctx.state.checksum() or good.replica.tick != room.state_tick
    )
    assert bad.joined.player not in [p.number for p in room.players()]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback for a peer's mistake


# the stuck client neither reads nor answers pings; keep the idle timeout out of this test
@pytest.mark.parametrize(
    "server_config", [ServerConfig(port=0, room_grace=1.0, idle_timeout=1e6, ping_interval=1e6)]
)
async def test_slow_reader_does_not_slow_the_room(
    nursery: trio.Nursery,
    server: GameServer,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    good = await connect(nursery, server.url, client_ssl, "slow", "good")
    stuck = await connect(nursery, server.url, client_ssl, "slow", "stuck")
    host = server.rooms.rooms["slow"]
    room = host.room
    stuck_out = host.sessions[stuck.joined.player].outbound
    # bulk up every delta so the stuck client's socket buffers fill within the test
    bulk = [room.ctx.state.spawn(room.game_cls.schema.types[1], value=0) for _ in range(200)]
    start_tick = room.state_tick
    max_queue = 0
    with trio.fail_after(600):
        for t in range(1, 601):  # 30 s of virtual time at 20 Hz
            for i, gem in enumerate(bulk):
                gem.x = float((t * 7 + i) % 1000)
                gem.y = float((t * 13 + i) % 1000)
            await good.wait_tick(start_tick + t)
            max_queue = max(max_queue, stuck_out.queue_length)
    # the good client got every tick's delta, in order, with verified checksums
    assert good.replica.tick == start_tick + 600
    assert good.deltas >= 600 and good.replica.checks >= 100
    assert good.replica.checksum() == room.ctx.state.checksum()
    # the room never fell behind while the stuck client's socket was full
    assert host.late == 0 and host.skipped == 0
    assert server.stats.deltas_skipped > 0  # the stuck client was skipping deltas
    # its outbound path stayed bounded: at most a snapshot marker and a few reliable messages
    assert max_queue <= 3
    assert stuck_out.queued_bytes <= server.config.outbound_limit
    assert stuck_out.conn.backlog > 0  # its socket really was full

    # once the stuck client reads again, it catches up with a fresh snapshot and converges
    snaps = stuck.snapshots
    with trio.fail_after(60):
        while stuck.snapshots == snaps or stuck.replica.tick < room.state_tick:
            await stuck.pump()
    assert stuck.replica.checksum() == room.ctx.state.checksum()


async def test_room_full_is_atomic(
    nursery: trio.Nursery, server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    results: list[object] = []

    async def try_join(i: int) -> None:
        try:
            results.append(await connect(nursery, server.url, client_ssl, "full", f"p{i}"))
        except JoinRefused as exc:
            results.append(exc.code)

    with trio.fail_after(30):
        async with trio.open_nursery() as joiners:
            for i in range(20):
                joiners.start_soon(try_join, i)
    joined = [r for r in results if isinstance(r, TestClient)]
    refused = [r for r in results if not isinstance(r, TestClient)]
    assert len(joined) == 8
    assert len(refused) == 12
    assert len(server.rooms.rooms["full"].room.ctx.players) == 8
    assert server.stats.refused["room_full"] == 12


async def test_join_refusals(
    nursery: trio.Nursery, server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    from shared.messages import Join

    for join, code in [
        (Join("ok", "no-such-game"), 4004),
        (Join("bad room name!"), 4000),
    ]:
        ws = await connect_websocket_url(
            nursery, server.url, client_ssl, subprotocols=[SUBPROTOCOL]
        )
        await ws.send_message(join.to_bytes())
        msg = parse_server_message(await ws.get_message())
        assert isinstance(msg, Error) and msg.code == code
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == code


@pytest.mark.parametrize("server_config", [ServerConfig(port=0, cpu_budget=0.85, load_window=1e6)])
async def test_joins_refused_when_cpu_budget_is_used_up(
    nursery: trio.Nursery, server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    seated = await connect(nursery, server.url, client_ssl, "busy", "early")
    server.load.load = 2.0  # as if the last window had used two cores' worth of CPU
    ws = await connect_websocket_url(nursery, server.url, client_ssl, subprotocols=[SUBPROTOCOL])
    from shared.messages import Join

    await ws.send_message(Join("busy", "", "late").to_bytes())
    msg = parse_server_message(await ws.get_message())
    assert isinstance(msg, Error) and msg.code == 4006 and "server full" in msg.message
    assert server.stats.overload_refusals == 1
    # the player already seated keeps playing
    tick = seated.replica.tick
    await seated.wait_tick(tick + 5)
    server.load.load = 0.0
    again = await connect(nursery, server.url, client_ssl, "busy", "later")
    assert again.joined.player > seated.joined.player
