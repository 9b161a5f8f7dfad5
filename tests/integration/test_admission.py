"""CPU-budget admission control over real WSS, with an injected load monitor.

Every other fixture turns the CPU budget off (the test process runs clients and server, so its
own CPU share says nothing). Here the server runs its real :class:`LoadMonitor` loop, with a
sampler that reports whatever load the test sets.
"""

from __future__ import annotations

import math
import ssl
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from gameserver.game import GameRegistry
from gameserver.load import LoadMonitor, SetupPacer
from gameserver.server import GameServer, ServerConfig, serve_gameserver
from shared.protocol import SUBPROTOCOL, CloseCode
from tests.integration.wsclient import JoinRefused, connect


class FakeLoad:
    """A sampler: the process's CPU time advances at ``busy`` cores per (real) second."""

    def __init__(self) -> None:
        self.busy = 0.0
        self._cpu = 0.0
        self._wall = trio.current_time()

    def __call__(self) -> tuple[float, float]:
        now = trio.current_time()
        self._cpu += (now - self._wall) * self.busy
        self._wall = now
        return self._cpu, now


WINDOW = 0.1


@pytest.fixture
async def loaded(
    nursery: trio.Nursery, registry: GameRegistry, server_ssl: ssl.SSLContext
) -> tuple[GameServer, FakeLoad]:
    sampler = FakeLoad()
    monitor = LoadMonitor(budget=0.85, window=WINDOW, sample=sampler)
    config = ServerConfig(port=0, room_grace=1.0, cpu_budget=0.85, load_window=WINDOW)
    start = partial(serve_gameserver, load=monitor)
    server: GameServer = await nursery.start(start, config, registry, server_ssl)
    assert server.load is monitor
    return server, sampler


async def _until(predicate: object) -> None:
    with trio.fail_after(5):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(WINDOW / 4)


async def test_cpu_budget_refuses_new_joins_and_keeps_seated_players(
    nursery: trio.Nursery, loaded: tuple[GameServer, FakeLoad], client_ssl: ssl.SSLContext
) -> None:
    server, load = loaded
    url = server.url
    with trio.fail_after(20):
        early = await connect(nursery, url, client_ssl, "busy", "early")
    # the monitor's own loop measures 1.5 cores: over the 0.85 budget
    load.busy = 1.5
    await _until(lambda: server.load.overloaded)
    assert not server.healthy() and not server.ready()
    with trio.fail_after(10), pytest.raises(JoinRefused) as refused:
        await connect(nursery, url, client_ssl, "busy", "late")
    assert refused.value.code == CloseCode.SERVER_FULL
    assert "CPU budget" in refused.value.msg.message
    with trio.fail_after(10), pytest.raises(JoinRefused):
        await connect(nursery, url, client_ssl, "elsewhere", "late2")  # any room
    assert server.stats.refused["server_full"] == 2
    assert server.stats.overload_refusals == 2
    assert "elsewhere" not in server.rooms.rooms
    # the seated player is never dropped for load
    with trio.fail_after(10):
        await early.wait_tick(early.replica.tick + 10)
    assert [p.id for p in server.rooms.rooms["busy"].room.players()] == ["anon-1"]
    # the load falls under the budget: joins are admitted again
    load.busy = 0.5
    await _until(lambda: not server.load.overloaded)
    assert server.healthy() and server.ready()
    with trio.fail_after(10):
        again = await connect(nursery, url, client_ssl, "busy", "again")
    assert again.joined.player > early.joined.player
    assert server.stats.overload_refusals == 2


async def test_a_connection_that_waits_too_long_for_its_handshake_turn_gets_503(
    nursery: trio.Nursery,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
) -> None:
    """While the core is busy, handshakes are paced: one connection gets its turn, the next
    waits ``--setup-wait`` in vain and is told "server full" (HTTP 503), never left hanging;
    once the pacer has room again, connections are set up and join as ever."""
    monitor = LoadMonitor(budget=0.85, window=WINDOW, sample=FakeLoad())
    rate = [1e-3]  # setups per second: as if the lasting load left no headroom at all
    monitor.setup_rate = lambda: rate[0]  # type: ignore[method-assign]
    config = ServerConfig(
        port=0, room_grace=1.0, cpu_budget=0.85, load_window=WINDOW, setup_wait=0.3
    )
    start = partial(serve_gameserver, load=monitor)
    server: GameServer = await nursery.start(start, config, registry, server_ssl)
    server.setup_gate.pacer = SetupPacer(burst=1.0)
    with trio.fail_after(20):
        first = await connect(nursery, server.url, client_ssl, "paced", "first")
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.url, client_ssl, subprotocols=[SUBPROTOCOL]):
                pass  # pragma: no cover
    assert rejected.value.status_code == 503
    assert rejected.value.body == b"server full; try again in a moment\n"
    assert server.stats.refused["setup_busy"] == 1
    assert monitor.waiting == 0
    rate[0] = math.inf  # headroom again
    with trio.fail_after(20):
        second = await connect(nursery, server.url, client_ssl, "paced", "second")
    assert second.joined.player > first.joined.player
    assert server.setup_meter.finished >= 3 and server.setup_meter.active == 0
    assert server.setup_meter.cpu > 0  # the handshakes' own CPU was seen
