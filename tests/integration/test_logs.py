"""The server's log as an operator reads it: `--log-format json` lines parse one by one, the
INFO events carry room and player, no token is ever written, and a flood of bad input is
rate-limited."""

from __future__ import annotations

import json
import logging
import secrets
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from gameserver.auth import mint_token
from gameserver.game import default_registry
from gameserver.server import GameServer, ServerConfig, serve_gameserver
from shared.messages import Leave
from tests.integration.wsclient import JoinRefused, connect

_SERVE = (sys.executable, "-m", "gameserver.cli", "serve")


async def _token(state_dir: Path, *args: str) -> str:
    result = await trio.run_process(
        [sys.executable, "-m", "gameserver.cli", "token", "--state-dir", str(state_dir), *args],
        capture_stdout=True,
    )
    return result.stdout.decode().strip()


async def _serve(state_dir: Path, *extra: str) -> tuple[trio.Process, str]:
    """`gameserver serve` on a free port; its URL once it listens (stderr is left unread
    until it exits: a short run writes far less than a pipe holds)."""
    proc = await trio.lowlevel.open_process(
        [*_SERVE, "--port", "0", "--state-dir", str(state_dir), "--drain-timeout", "0.5", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(30):
        while b"listening on " not in out or not out.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, "server exited before listening"
            out += chunk
    line = next(x for x in out.decode().splitlines() if x.startswith("listening on "))
    return proc, line.split()[-1]


async def _stop(proc: trio.Process) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    err = b""
    with trio.fail_after(20):
        while chunk := await proc.stderr.receive_some(65536):
            err += chunk
        assert await proc.wait() == 0
    return err.decode()


def _events(lines: list[dict[str, Any]], msg: str) -> list[dict[str, Any]]:
    return [obj for obj in lines if obj["msg"] == msg]


async def test_json_log_lines_parse_one_by_one_with_events_and_no_token(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    proc, url = await _serve(state, "--log-format", "json", "--log-level", "DEBUG")
    try:
        ctx = ssl.create_default_context(cafile=str(state / "dev-ca.pem"))
        good = await _token(state, "--player", "alice-id", "--name", "Alice", "--room", "logs")
        # signed with another server's secret: a well-formed token that is refused (4001)
        bad = mint_token(secrets.token_hex(32).encode(), "mallory-id", rooms=["logs"])
        with pytest.raises(JoinRefused):
            await connect(nursery, url, ctx, "logs", "mallory", token=bad)
        client = await connect(nursery, url, ctx, "logs", "alice", token=good)
        await client.wait_tick(client.replica.tick + 3)
        await client.ws.send_message(Leave().to_bytes())
        with trio.fail_after(10):
            await client.ws.aclose()
            await trio.sleep(0.3)  # the server's tick notices the LEAVE
    finally:
        err = await _stop(proc) if proc.returncode is None else ""
    raw = err.splitlines()
    assert len(raw) >= 5
    lines = []
    for text in raw:
        obj = json.loads(text)  # every line is one JSON object
        assert isinstance(obj, dict), text
        assert {"ts", "level", "logger", "msg"} <= obj.keys(), text
        assert obj["ts"].endswith("Z") and obj["level"] in ("DEBUG", "INFO", "WARNING")
        lines.append(obj)
    for token in (good, bad):
        assert token not in err
        assert token.rsplit(".", 1)[-1] not in err  # nor its signature
    (refused,) = _events(lines, "refused a JOIN")
    assert refused["room"] == "logs" and refused["reason"] == "auth_bad_signature"
    assert refused["code"] == 4001 and refused["level"] == "INFO"
    (created,) = _events(lines, "room created")
    assert created["room"] == "logs" and created["game"] and created["private"] is False
    (joined,) = _events(lines, "player joined")
    assert joined == joined | {"room": "logs", "player": 1, "player_id": "alice-id"}
    (left,) = _events(lines, "player left")
    assert left == left | {"room": "logs", "player": 1, "player_id": "alice-id", "code": 1000}
    assert left["reason"] == "left" and left["cause"] == "left"
    (disposed,) = _events(lines, "room disposed")  # emptied, then stopped by SIGINT
    assert disposed["room"] == "logs" and disposed["ticks"] > 0


async def test_text_format_is_unchanged_and_carries_the_fields(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    proc, url = await _serve(state)  # the default: text
    try:
        ctx = ssl.create_default_context(cafile=str(state / "dev-ca.pem"))
        token = await _token(state, "--player", "bob-id", "--room", "plain")
        client = await connect(nursery, url, ctx, "plain", "bob", token=token)
        await client.wait_tick(client.replica.tick + 2)
        await client.ws.aclose()  # no LEAVE: a disconnect
        await trio.sleep(0.3)
    finally:
        err = await _stop(proc) if proc.returncode is None else ""
    assert token not in err
    # "<date> <time> LEVEL message", as before
    joined = [x for x in err.splitlines() if " INFO player joined " in x]
    assert len(joined) == 1
    assert joined[0].endswith(" INFO player joined room=plain player=1 player_id=bob-id")
    (gone,) = [x for x in err.splitlines() if " INFO player disconnected " in x]
    assert "room=plain player=1 player_id=bob-id code=1000" in gone
    assert 'reason="peer closed" cause=peer_closed_normal' in gone
    for line in err.splitlines():
        assert not line.startswith("{")


async def test_bad_log_format_is_one_line(tmp_path: Path) -> None:
    result = await trio.run_process(
        [*_SERVE, "--state-dir", str(tmp_path), "--log-format", "xml"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode != 0
    err = result.stderr.decode().strip()
    assert "--log-format xml" in err and "text, json" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


async def test_a_flood_of_refusals_is_rate_limited(
    nursery: trio.Nursery,
    server_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hostile peer opening connection after connection past the per-IP cap: every one is
    refused and counted, but the log gets ~10 lines a second of it, plus a summary of the
    rest."""
    caplog.set_level(logging.INFO, logger="gameserver")
    config = ServerConfig(port=0, cpu_budget=0, max_connections_per_ip=1, connect_timeout=20)
    server: GameServer = await nursery.start(
        serve_gameserver, config, default_registry(), server_ssl
    )
    holder = await trio.open_tcp_stream("127.0.0.1", server.port)  # takes the one slot
    flood = 300
    start = trio.current_time()
    with trio.fail_after(30):
        await trio.sleep(0.05)
        for _ in range(flood):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.receive_some(10)  # closed by the server at once
            await stream.aclose()
    elapsed = trio.current_time() - start
    assert server.stats.refused["connection_limit"] == flood
    lines = [r for r in caplog.records if r.getMessage().startswith("refused a connection")]
    allowed = 10 + 10 * elapsed + 1  # the burst, then the rate
    assert 10 <= len(lines) <= allowed, (len(lines), elapsed)
    peer_log = server.stats.peer_log
    assert peer_log.suppressed_total["connection_limit"] == flood - len(lines)
    peer_log.flush()  # what the periodic summary writes
    summaries = [r for r in caplog.records if "similar lines" in r.getMessage()]
    assert sum(r.fields["suppressed"] for r in summaries) == flood - len(lines)  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO and not r.exc_info for r in caplog.records)
    await holder.aclose()


async def test_the_tick_path_logs_nothing(
    nursery: trio.Nursery,
    server: GameServer,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even at DEBUG, a room ticking with a player in it writes no line per tick."""
    caplog.set_level(logging.DEBUG)
    client = await connect(nursery, server.url, client_ssl, "quiet", "q")
    assert any(r.getMessage().startswith("player joined") for r in caplog.records)
    caplog.clear()
    ticks = server.stats.ticks
    with trio.fail_after(10):
        await client.wait_tick(client.replica.tick + 30)
    assert server.stats.ticks >= ticks + 30
    assert [r.getMessage() for r in caplog.records if r.name.startswith("gameserver")] == []
