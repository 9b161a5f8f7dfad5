"""What the ``gameserver`` process does on SIGTERM and SIGINT: drain, or stop at once."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from gameserver.server import GameServer

log = logging.getLogger("gameserver")


async def run_until_stopped(
    server: GameServer, signals: AsyncIterable[int], drain_timeout: float | None = None
) -> None:
    """Return when the server should stop.

    The first SIGTERM drains the server (:meth:`GameServer.begin_drain`: no new joins, the
    players get ``drain_timeout`` seconds to leave), and this returns once the drain is over.
    A drain begun another way (``POST /admin/drain``) ends it the same way. A second SIGTERM,
    or a SIGINT at any time, returns at once; the caller's ``open_gameserver`` block then
    closes everyone still connected (1001) as it exits.
    """
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            terms = 0
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGTERM and terms == 0:
                    terms += 1
                    log.info("received %s; draining (a second one stops at once)", name)
                    server.begin_drain(drain_timeout)
                    continue
                log.info("received %s; stopping now", name)
                break
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await server.drained.wait()
        nursery.cancel_scope.cancel()
