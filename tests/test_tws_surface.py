"""The dependency surface of the WebSocket takeover, and the start-up check that guards it.

``test_the_installed_versions_pass_the_check`` is the test that fails the day trio or
trio-websocket changes what ``gameserver/_tws.py`` relies on. The other tests make such changes
by hand (a name removed, a signature changed, a behaviour changed) and show that the check
names each one, that the server then refuses to start, and that the command says so in one
line instead of a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection

from gameserver import _tws_surface
from gameserver._tws_surface import (
    TakeoverUnsupported,
    behaviour_problems,
    check_takeover,
    surface_problems,
)
from gameserver.game import default_registry
from gameserver.server import ServerConfig, open_gameserver


async def test_the_installed_versions_pass_the_check() -> None:
    assert surface_problems() == []
    assert await behaviour_problems() == []
    await check_takeover()


# ---------------------------------------------------------------- what a release might change
# Each breakage simulates a change a release of trio or trio-websocket could make; it may use
# their internals to do so (the server itself never does).


async def _wrap_without_max_message_size(nursery: trio.Nursery, stream: Any) -> Any:
    raise AssertionError("not called")


async def _accept_that_leaves_the_101_to_the_reader(
    self: Any, *, subprotocol: str | None = None, extra_headers: Any = None
) -> Any:
    return self._connection  # a library that writes the 101 from its reader task


async def _wrap_with_a_reader_of_its_own(
    nursery: trio.Nursery, stream: Any, message_queue_size: int = 1, max_message_size: int = 1024
) -> Any:
    # a library that runs its reader outside the nursery it is given
    conn = WebSocketConnection(
        stream,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    trio.lowlevel.spawn_system_task(conn._reader_task)
    return await conn._get_request()


_reader_task = WebSocketConnection._reader_task


async def _reader_that_closes_the_stream_when_cancelled(self: Any) -> None:
    try:
        await _reader_task(self)
    finally:
        self._stream.close()


async def _close_stream_that_never_returns(self: Any) -> None:
    await trio.sleep_forever()  # a refused handshake that keeps its reader waiting


def _delete(obj: object, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.delattr(obj, name)


def _replace(obj: object, name: str, value: object) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setattr(obj, name, value)


BREAKAGES = [
    pytest.param(
        _delete(trio_websocket, "wrap_server_stream"),
        "trio_websocket.wrap_server_stream is missing",
        id="wrap_server_stream-removed",
    ),
    pytest.param(
        _replace(trio_websocket, "wrap_server_stream", _wrap_without_max_message_size),
        "wrap_server_stream takes no max_message_size, message_queue_size",
        id="wrap_server_stream-signature",
    ),
    pytest.param(
        _delete(WebSocketRequest, "reject"),
        "WebSocketRequest.reject is missing",
        id="reject-removed",
    ),
    pytest.param(
        _replace(WebSocketRequest, "headers", lambda self: []),
        "WebSocketRequest.headers is not a property",
        id="headers-not-a-property",
    ),
    pytest.param(
        _delete(trio.socket.SocketType, "detach"),
        "trio.socket.SocketType.detach is missing",
        id="socket-detach-removed",
    ),
    pytest.param(
        _delete(trio.lowlevel, "notify_closing"),
        "trio.lowlevel.notify_closing is missing",
        id="notify_closing-removed",
    ),
    pytest.param(
        _replace(WebSocketRequest, "accept", _accept_that_leaves_the_101_to_the_reader),
        "did not finish",
        id="accept-needs-the-reader",
    ),
    pytest.param(
        _replace(trio_websocket, "wrap_server_stream", _wrap_with_a_reader_of_its_own),
        "reader outlived the nursery",
        id="reader-outside-our-nursery",
    ),
    pytest.param(
        _replace(
            WebSocketConnection, "_reader_task", _reader_that_closes_the_stream_when_cancelled
        ),
        "wrap_server_stream returned no request for a valid upgrade",
        id="reader-closes-the-stream-when-cancelled",
    ),
    pytest.param(
        _replace(WebSocketConnection, "_close_stream", _close_stream_that_never_returns),
        "a request trio-websocket refuses does not end its reader",
        id="refusal-keeps-the-reader",
    ),
]


@pytest.fixture
def quick_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stuck handshake counts as a finding after 0.3 s instead of 5 s."""
    monkeypatch.setattr(_tws_surface, "CHECK_TIMEOUT", 0.3)


@pytest.mark.parametrize(("breakage", "finding"), BREAKAGES)
async def test_the_check_names_each_breakage(
    monkeypatch: pytest.MonkeyPatch,
    quick_check: None,
    breakage: Callable[[pytest.MonkeyPatch], None],
    finding: str,
) -> None:
    breakage(monkeypatch)
    with pytest.raises(TakeoverUnsupported) as info:
        await check_takeover()
    message = str(info.value)
    assert finding in message
    assert message.startswith("cannot take WebSocket connections over with trio ")
    assert "tested with trio 0.35, trio-websocket 0.12.2" in message
    assert "\n" not in message


async def test_the_server_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(trio_websocket, "wrap_server_stream")
    entered = False
    with pytest.raises(TakeoverUnsupported):
        async with open_gameserver(ServerConfig(port=0), default_registry(), None):
            entered = True
    assert not entered


def test_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    """``gameserver serve`` on a trio-websocket without what the takeover needs: exit 1 (a
    start-up error) and one line on stderr, no traceback (and it never listens)."""
    script = (
        "import sys, trio_websocket\n"
        "del trio_websocket.WebSocketRequest.accept\n"
        "from gameserver.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = ["serve", "--port", "0", "--state-dir", str(tmp_path), "--log-level", "WARNING"]
    result = subprocess.run(
        [sys.executable, "-c", script, *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gameserver: cannot take WebSocket connections over with trio ")
    assert "WebSocketRequest.accept is missing" in lines[0]
