"""Graceful drain over real WSS: refusals, probes, players ticking on, the deadline, admin."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed, connect_websocket_url

from gameserver.admin import AdminAPI
from gameserver.auth import TokenVerifier
from gameserver.game import GameRegistry, RoomContext
from gameserver.games.arena import Arena
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import GameServer, ServerConfig
from shared.messages import Close, Delta, Error, Join, Leave, RoomEvent, parse_server_message
from shared.protocol import DRAINING_MESSAGE, RESTART_REASON, SUBPROTOCOL, CloseCode
from tests.integration.wsclient import TestClient, connect

Mint = Callable[..., str]


class Rounds(Arena):
    name = "rounds"

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.deadline: int | None = None

    def on_shutdown(self, deadline: int) -> None:
        self.deadline = deadline
        self.ctx.broadcast("round_over")


@pytest.fixture
def registry() -> GameRegistry:
    registry = GameRegistry()
    registry.register(Rounds, default=True)
    return registry


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(port=0, room_grace=1.0, cpu_budget=0, drain_timeout=20.0)


@pytest.fixture
async def probes(nursery: trio.Nursery, auth_server: GameServer, verifier: TokenVerifier) -> int:
    """The metrics port as ``gameserver serve --metrics-port`` runs it."""
    start = partial(
        serve_metrics,
        "127.0.0.1",
        0,
        make_registry(auth_server.stats, auth_server.rooms),
        healthy=auth_server.healthy,
        ready=auth_server.ready,
        admin=AdminAPI(auth_server, verifier),
    )
    port: int = await nursery.start(start)
    return port


async def http(port: int, method: str, target: str, token: str = "") -> tuple[int, bytes]:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
        await stream.aclose()
    return int(response.split(b" ", 2)[1]), response.split(b"\r\n\r\n", 1)[1]


class Reader:
    """Reads a seated client in the background, noting the (real) time of every delta."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.deltas: list[float] = []
        self.events: list[str] = []
        self.close: Close | None = None
        self.closed_code: int | None = None
        self.closed_reason: str | None = None
        self.done = trio.Event()

    async def run(self) -> None:
        try:
            while True:
                msg = await self.client.pump()
                if isinstance(msg, Delta):
                    self.deltas.append(trio.current_time())
                elif isinstance(msg, RoomEvent):
                    self.events.append(msg.name)
                elif isinstance(msg, Close):
                    self.close = msg
        except ConnectionClosed as exc:
            self.closed_code = exc.reason.code
            self.closed_reason = exc.reason.reason
        finally:
            self.done.set()

    def rate(self, since: float, until: float) -> float:
        return sum(since <= t < until for t in self.deltas) / (until - since)


async def _refused_without_join(ws: object) -> Error:
    msg = parse_server_message(await ws.get_message())  # type: ignore[attr-defined]
    assert isinstance(msg, Error)
    with pytest.raises(ConnectionClosed) as closed:
        await ws.get_message()  # type: ignore[attr-defined]
    assert closed.value.reason.code == CloseCode.DRAINING
    return msg


async def test_drain_refuses_joins_keeps_players_ticking_and_ends_when_they_leave(
    nursery: trio.Nursery,
    auth_server: GameServer,
    probes: int,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    url = auth_server.url
    with trio.fail_after(20):
        players = [
            await connect(nursery, url, client_ssl, "match", token=mint(f"p{i}")) for i in range(2)
        ]
        # a connection that finished its handshake but has not sent JOIN yet
        waiting = await connect_websocket_url(nursery, url, client_ssl, subprotocols=[SUBPROTOCOL])
    readers = [Reader(p) for p in players]
    for reader in readers:
        nursery.start_soon(reader.run)
    assert await http(probes, "GET", "/readyz") == (200, b"ok\n")
    assert await http(probes, "GET", "/healthz") == (200, b"ok\n")

    start = trio.current_time()
    assert auth_server.begin_drain()
    # the waiting connection is refused at once (well before its 5 s join deadline), with
    # 4012 and the reason "draining"
    with trio.fail_after(2.0):
        error = await _refused_without_join(waiting)
    assert error == Error(CloseCode.DRAINING, DRAINING_MESSAGE)
    assert auth_server.stats.refused["draining"] == 1
    # the listener is closed: a new connection does not get in
    with pytest.raises(OSError):
        with trio.fail_after(5):
            await connect(nursery, url, client_ssl, "match", token=mint("late"))
    # load balancers see it draining
    assert await http(probes, "GET", "/readyz") == (503, b"not ready\n")
    assert (await http(probes, "GET", "/healthz"))[0] == 503

    # the seated players keep their 20 updates per second, and the game heard of the drain
    await trio.sleep(2.0)
    for reader in readers:
        assert reader.rate(start + 0.2, start + 2.0) >= 0.85 * 20, reader.deltas[-40:]
        assert "round_over" in reader.events
    game = auth_server.rooms.rooms["match"].room.game
    assert isinstance(game, Rounds) and game.deadline is not None
    assert auth_server.rooms.rooms["match"].skipped == 0
    # one leaves; the other still plays; when the last one leaves, the drain is over soon
    await players[0].ws.send_message(Leave().to_bytes())
    await readers[0].done.wait()
    assert readers[0].closed_code == CloseCode.NORMAL
    assert not auth_server.drained.is_set()
    tick = players[1].replica.tick
    await trio.sleep(0.5)
    assert players[1].replica.tick >= tick + 8
    await players[1].ws.send_message(Leave().to_bytes())
    left = trio.current_time()
    with trio.fail_after(3):
        await auth_server.drained.wait()
    assert trio.current_time() - left < 1.0
    assert trio.current_time() - start < auth_server.config.drain_timeout
    assert readers[1].close is None  # it left by itself: nobody was closed with 1001


@pytest.mark.parametrize(
    "server_config",
    [ServerConfig(port=0, room_grace=1.0, cpu_budget=0, drain_timeout=1.5)],
)
async def test_players_who_stay_get_1001_come_back_later_at_the_deadline(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    with trio.fail_after(20):
        client = await connect(nursery, auth_server.url, client_ssl, "stay", token=mint("s"))
    reader = Reader(client)
    nursery.start_soon(reader.run)
    start = trio.current_time()
    with trio.fail_after(10):
        await auth_server.drain()
    took = trio.current_time() - start
    assert 1.5 <= took < 1.5 + auth_server.config.close_timeout + 1.0
    with trio.fail_after(5):
        await reader.done.wait()
    assert reader.close == Close(CloseCode.GOING_AWAY, RESTART_REASON)
    assert reader.closed_code == CloseCode.GOING_AWAY
    assert reader.closed_reason == RESTART_REASON
    # it had its updates right up to the deadline
    assert reader.rate(start + 0.2, start + 1.4) >= 0.85 * 20
    assert auth_server.stats.players == 0


async def test_admin_drain(
    nursery: trio.Nursery,
    auth_server: GameServer,
    probes: int,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    with trio.fail_after(20):
        client = await connect(nursery, auth_server.url, client_ssl, "a", token=mint("p"))
        waiting = await connect_websocket_url(
            nursery, auth_server.url, client_ssl, subprotocols=[SUBPROTOCOL]
        )
    admin = mint("ops", admin=True)
    assert (await http(probes, "POST", "/admin/drain", mint("p2")))[0] == 403
    assert (await http(probes, "GET", "/admin/drain", admin))[0] == 405
    assert (await http(probes, "POST", "/admin/drain?timeout=soon", admin))[0] == 400
    assert (await http(probes, "POST", "/admin/drain?timeout=-1", admin))[0] == 400
    assert not auth_server.draining
    status, body = await http(probes, "POST", "/admin/drain?timeout=5", admin)
    assert status == 202
    reply = json.loads(body)
    assert reply["draining"] is True and reply["players"] == 1
    assert 4.0 < reply["closing_in"] <= 5.0
    status, body = await http(probes, "POST", "/admin/drain", admin)
    assert status == 200 and json.loads(body)["draining"] is True
    with trio.fail_after(2):
        await _refused_without_join(waiting)
    assert (await http(probes, "GET", "/readyz"))[0] == 503
    # the player plays on until it leaves; then the drain is over
    await client.wait_tick(client.replica.tick + 5)
    await client.ws.send_message(Leave().to_bytes())
    with trio.fail_after(3):
        await auth_server.drained.wait()


async def test_a_join_that_races_the_drain_is_refused_with_4012(
    nursery: trio.Nursery,
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    """JOIN sent just as the drain begins: whichever the server sees first, it is refused."""
    with trio.fail_after(20):
        ws = await connect_websocket_url(
            nursery, auth_server.url, client_ssl, subprotocols=[SUBPROTOCOL]
        )
    auth_server.begin_drain()
    try:
        await ws.send_message(Join("r", token=mint("racer")).to_bytes())
    except ConnectionClosed:
        pass
    with trio.fail_after(5):
        error = await _refused_without_join(ws)
    assert error.code == CloseCode.DRAINING
    assert not auth_server.rooms.rooms and auth_server.stats.players == 0
