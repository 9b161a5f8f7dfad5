"""Everything that reaches below trio-websocket's public API lives here, and is tested.

- ``close_transport``: trio-websocket's ``reject()`` leaves the TCP connection open until the peer
  goes away (its ``aclose()`` returns early once a close reason is set), so after a rejected
  handshake we close the underlying stream ourselves.
"""

from __future__ import annotations

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest


async def close_transport(conn: WebSocketConnection | WebSocketRequest) -> None:
    """Close the TCP (or TLS) stream under a connection or request, bounded in time."""
    connection = conn._connection if isinstance(conn, WebSocketRequest) else conn
    stream = connection._stream
    with trio.move_on_after(1.0) as scope:
        scope.shield = True
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
