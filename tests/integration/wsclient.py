"""A minimal test client on trio-websocket: join, then read and apply state messages."""

from __future__ import annotations

import ssl
from typing import Any

import trio
from trio_websocket import WebSocketConnection, connect_websocket_url

from shared.delta_v3 import coding_for
from shared.messages import (
    Delta,
    Input,
    Join,
    Joined,
    RoomEvent,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL, version_of_subprotocol
from shared.replica import Replica


class JoinRefused(Exception):
    """The server answered JOIN with something other than JOINED (an ERROR, usually)."""

    def __init__(self, msg: Any) -> None:
        super().__init__(repr(msg))
        self.msg = msg
        self.code = getattr(msg, "code", None)


class TestClient:
    __test__ = False

    def __init__(self, ws: WebSocketConnection, joined: Joined) -> None:
        self.ws = ws
        self.joined = joined
        # a view game: its view; gamesync.v3: the v3 state coding
        self.replica = Replica(
            joined.schema, view=joined.view, coding=coding_for(joined.version, joined.view)
        )
        self.deltas = 0
        self.snapshots = 0
        self.events: list[RoomEvent] = []
        self.seq = 0

    async def pump(self) -> Any:
        """Read and apply one message; returns it."""
        msg = parse_server_message(
            await self.ws.get_message(),
            self.joined.schema,
            self.replica.type_of,
            coding=self.replica.coding,
            predict=self.replica.predicted,
        )
        if isinstance(msg, Snapshot):
            self.replica.apply_snapshot(msg)
            self.snapshots += 1
        elif isinstance(msg, Delta):
            self.replica.apply_delta(msg)
            self.deltas += 1
        elif isinstance(msg, RoomEvent):
            self.events.append(msg)
        return msg

    async def wait_tick(self, tick: int) -> None:
        while self.replica.tick < tick:
            await self.pump()

    async def send_input(self, **values: float) -> int:
        self.seq += 1
        schema = self.joined.input_schema
        await self.ws.send_message(Input(self.seq, schema.codes_for(values)).to_bytes(schema))
        return self.seq


async def connect(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None,
    room: str,
    name: str = "",
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
    message_queue_size: int = 1,
    token: str = "",
    private: bool = False,
) -> TestClient:
    ws = await connect_websocket_url(
        nursery,
        url,
        ssl_context,
        subprotocols=list(subprotocols),
        message_queue_size=message_queue_size,
    )
    # trio-websocket (wsproto) checks Upgrade, Connection, the accept value and that a chosen
    # subprotocol was offered; a server that chose none is refused here
    if subprotocols and ws.subprotocol not in subprotocols:
        await ws.aclose()
        raise JoinRefused(f"the server chose the subprotocol {ws.subprotocol!r}")
    version = version_of_subprotocol(ws.subprotocol) or 1
    await ws.send_message(Join(room, "", name, token, version, private).to_bytes())
    joined = parse_server_message(await ws.get_message())
    if not isinstance(joined, Joined):
        raise JoinRefused(joined)
    client = TestClient(ws, joined)
    while client.replica.tick < 0:
        await client.pump()
    return client
