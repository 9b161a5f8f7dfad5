"""Drain timing on trio's MockClock: the game's ``on_shutdown``, rooms ticking on, the deadline.

The room-level tests need no sockets. The server-level ones use plain ``ws://`` on 127.0.0.1
(port 0) under ``autojump_clock``, so 30 s of drain take a moment of real time.
"""

from __future__ import annotations

import trio
import trio.testing
from trio_websocket import ConnectionClosed

from gameserver.game import GameRegistry, RoomContext
from gameserver.games.arena import Arena
from gameserver.room import Room, RoomConfig
from gameserver.server import RoomHost, ServerConfig, open_gameserver
from gameserver.stats import ServerStats
from shared.messages import Close, Delta, Leave, RoomEvent
from shared.protocol import RESTART_REASON, CloseCode
from tests.integration.wsclient import TestClient, connect


class Ending(Arena):
    """Arena that ends its round when the server drains: it announces it to everyone."""

    name = "ending"

    def __init__(self, ctx: RoomContext) -> None:
        super().__init__(ctx)
        self.shutdowns: list[tuple[int, int]] = []  # (tick when called, deadline)

    def on_shutdown(self, deadline: int) -> None:
        self.shutdowns.append((self.ctx.tick, deadline))
        self.ctx.broadcast("round_over", str(deadline).encode())


def _host(grace: float = 1e9) -> tuple[RoomHost, list[RoomHost]]:
    room = Room("r", Ending, RoomConfig(tick_rate=20))
    disposed: list[RoomHost] = []
    host = RoomHost(room, ServerConfig(room_grace=grace), ServerStats(), disposed.append)
    return host, disposed


async def test_on_shutdown_runs_once_in_the_next_tick_with_the_deadline_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host, disposed = _host()
    player = host.room.seat("p", "p")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.run)
        await trio.sleep(1.01)  # 20 ticks
        host.drain(30.0)
        host.drain(5.0)  # a second call changes nothing
        game = host.room.game
        assert isinstance(game, Ending) and game.shutdowns == []  # not outside a tick
        await trio.sleep(0.05)
        assert game.shutdowns == [(21, 20 + 600)]  # 30 s at 20 Hz after tick 20
        assert host.room.ctx.shutdown_at == 620
        # the room keeps ticking for its player
        await trio.sleep(10.0)
        assert host.room.state_tick == 221 and not disposed
        assert game.shutdowns == [(21, 620)]
        # once empty, a draining room goes at its next tick (no room_grace)
        host.room.unseat(player.number)
        await trio.sleep(0.1)
        assert disposed == [host]


def _registry() -> GameRegistry:
    registry = GameRegistry()
    registry.register(Ending, default=True)
    return registry


async def _read_all(client: TestClient, seen: list[object]) -> None:
    try:
        while True:
            seen.append(await client.pump())
    except ConnectionClosed as exc:
        seen.append(exc.reason)


CONFIG = ServerConfig(port=0, cpu_budget=0, drain_timeout=30.0, room_grace=1.0)


async def test_drain_closes_stayers_with_1001_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_gameserver(CONFIG, _registry(), None) as server,
        trio.open_nursery() as nursery,
    ):
        client = await connect(nursery, server.url, None, "r", "stay")
        seen: list[object] = []
        nursery.start_soon(_read_all, client, seen)
        await trio.sleep(1.0)
        start = trio.current_time()
        tick0 = client.replica.tick
        mark = len(seen)
        assert server.begin_drain() is True
        assert server.begin_drain() is False  # once
        await server.drained.wait()
        took = trio.current_time() - start
        assert 30.0 <= took <= 30.0 + server.config.close_timeout + 1.0
        await trio.sleep(0.5)
        # the player got a delta every tick until the deadline, the game's announcement, and
        # then CLOSE 1001 "come back later" and the close frame
        deltas = sum(isinstance(m, Delta) for m in seen[mark:])
        assert abs(deltas - 30.0 * 20) <= 3, deltas
        assert client.replica.tick - tick0 >= 597
        events = [m for m in seen if isinstance(m, RoomEvent)]
        assert [e.name for e in events][-1] == "round_over"
        closes = [m for m in seen if isinstance(m, Close)]
        assert closes == [Close(CloseCode.GOING_AWAY, RESTART_REASON)]
        assert seen[-1].code == CloseCode.GOING_AWAY  # type: ignore[attr-defined]
        assert seen[-1].reason == RESTART_REASON  # type: ignore[attr-defined]
        assert server.stats.players == 0
        nursery.cancel_scope.cancel()


async def test_drain_ends_as_soon_as_the_last_player_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_gameserver(CONFIG, _registry(), None) as server,
        trio.open_nursery() as nursery,
    ):
        first = await connect(nursery, server.url, None, "r", "one")
        second = await connect(nursery, server.url, None, "r", "two")
        done_at: list[float] = []

        async def drain() -> None:
            await server.drain()
            done_at.append(trio.current_time())

        start = trio.current_time()
        nursery.start_soon(drain)
        await trio.sleep(5.0)
        await first.ws.send_message(Leave().to_bytes())
        await first.ws.aclose()
        await trio.sleep(5.0)
        assert not done_at  # one player is still there
        assert len(server.rooms.rooms["r"].sessions) == 1
        await second.ws.aclose()
        left = trio.current_time()
        with trio.fail_after(5):
            while not done_at:
                await trio.sleep(0.01)
        assert done_at[0] - left < 0.5
        assert done_at[0] - start < 11.0
        assert server.drained.is_set() and not server.rooms.rooms
        nursery.cancel_scope.cancel()


async def test_shutdown_runs_once_and_refuses_joins_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        async with open_gameserver(CONFIG, _registry(), None) as server:
            client = await connect(nursery, server.url, None, "r", "p")
            seen: list[object] = []
            nursery.start_soon(_read_all, client, seen)
            await server.shutdown()
            await server.shutdown()  # the block's exit calls it a third time: no-op
            assert server.draining
            assert [m for m in seen if isinstance(m, Close)] == [
                Close(CloseCode.GOING_AWAY, "server shutting down")
            ]
            # the listener is closed: nobody else gets in
            try:
                await trio.open_tcp_stream("127.0.0.1", server.port)
            except OSError:
                pass
            else:
                raise AssertionError("the listener is still open after shutdown")
        nursery.cancel_scope.cancel()
