"""The `gameserver serve` command as a user runs it: dev certificate, URL line, clean exit."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from shared.messages import Close, Leave
from shared.protocol import RESTART_REASON
from tests.integration.wsclient import connect


async def _token(state_dir: Path, *args: str) -> str:
    result = await trio.run_process(
        [sys.executable, "-m", "gameserver.cli", "token", "--state-dir", str(state_dir), *args],
        capture_stdout=True,
    )
    return result.stdout.decode().strip()


async def _start(state_dir: Path, *extra: str) -> tuple[trio.Process, list[str]]:
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "gameserver.cli",
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    buf = b""
    with trio.fail_after(30):
        while not any(line.startswith("listening on ") for line in lines):
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, "server exited before listening"
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [d.decode() for d in done]
    return proc, lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_serve_prints_url_makes_dev_cert_and_exits_cleanly(
    tmp_path: Path, nursery: trio.Nursery, sig: signal.Signals
) -> None:
    state = tmp_path / "state"
    proc, lines = await _start(state, "--metrics-port", "0", "--drain-timeout", "1")
    try:
        url = next(line for line in lines if line.startswith("listening on ")).split()[-1]
        assert url.startswith("wss://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
        # the dev CA made on first run verifies the server; the key is owner-only
        assert stat.S_IMODE(os.stat(state / "dev-key.pem").st_mode) == 0o600
        ctx = ssl.create_default_context(cafile=str(state / "dev-ca.pem"))
        # the server made a signing secret on first run; `gameserver token` mints from it
        assert stat.S_IMODE(os.stat(state / "secret.key").st_mode) == 0o600
        token = await _token(state, "--player", "alice-id", "--name", "Alice", "--room", "cli")
        client = await connect(nursery, url, ctx, "cli", "alice", token=token)
        assert client.joined.player == 1
        await client.wait_tick(client.replica.tick + 3)
        assert client.replica.checks >= 1
        # the metrics endpoint answers on loopback
        metrics_url = next(line for line in lines if line.startswith("metrics on ")).split()[-1]
        port = int(metrics_url.split(":")[2].split("/")[0])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                body += chunk
        assert b"gameserver_players 1.0" in body
        proc.send_signal(sig)
        # SIGINT stops at once; SIGTERM drains: the player may stay for --drain-timeout (1 s),
        # then gets CLOSE 1001 "come back later". Either way everyone gets 1001.
        close = None
        with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
            while True:
                msg = await client.pump()
                if isinstance(msg, Close):
                    close = msg
        assert closed.value.reason.code == 1001
        assert close is not None and close.code == 1001
        assert close.reason == (RESTART_REASON if sig == signal.SIGTERM else "server shutting down")
        with trio.fail_after(15):
            code = await proc.wait()
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()


async def test_insecure_warns_and_serves_plain_ws(tmp_path: Path, nursery: trio.Nursery) -> None:
    proc, lines = await _start(tmp_path, "--insecure", "--drain-timeout", "0.5")
    try:
        url = lines[-1].split()[-1]
        assert url.startswith("ws://127.0.0.1:")
        token = await _token(tmp_path, "--player", "bob")
        client = await connect(nursery, url, None, "plain", "bob", token=token)
        assert client.replica.tick >= 0
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        with trio.fail_after(15):
            assert await proc.wait() == 0
            err = b""
            while chunk := await proc.stderr.receive_some(4096):
                err += chunk
        assert b"WARNING: --insecure" in err
        assert not (tmp_path / "dev-key.pem").exists()  # no certificate made for plain ws
    finally:
        if proc.returncode is None:
            proc.kill()


async def test_bad_certificate_files_give_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "gameserver.cli",
            "serve",
            "--port",
            "0",
            "--cert",
            str(bad),
            "--key",
            str(bad),
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1  # a start-up error, not a wrong setting
    assert b"cannot use certificate" in result.stderr
    assert b"Traceback" not in result.stderr


async def _joined(nursery: trio.Nursery, state: Path, lines: list[str], player: str) -> Any:
    url = next(line for line in lines if line.startswith("listening on ")).split()[-1]
    ctx = ssl.create_default_context(cafile=str(state / "dev-ca.pem"))
    token = await _token(state, "--player", player)
    return url, ctx, await connect(nursery, url, ctx, "drain", player, token=token)


async def test_sigterm_drains_until_the_last_player_leaves_then_exits_0(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    proc, lines = await _start(tmp_path, "--drain-timeout", "30")
    try:
        url, ctx, client = await _joined(nursery, tmp_path, lines, "stayer")
        proc.send_signal(signal.SIGTERM)
        sent = trio.current_time()
        # the player keeps playing while the server drains
        with trio.fail_after(10):
            await client.wait_tick(client.replica.tick + 10)
        # nobody new gets in: the listener is closed
        token = await _token(tmp_path, "--player", "newcomer")
        with pytest.raises(OSError), trio.fail_after(10):
            await connect(nursery, url, ctx, "drain", "newcomer", token=token)
        assert proc.returncode is None
        await client.ws.send_message(Leave().to_bytes())
        with trio.fail_after(10):
            assert await proc.wait() == 0
        assert trio.current_time() - sent < 15  # the last player left: no 30 s wait
    finally:
        if proc.returncode is None:
            proc.kill()


async def test_a_second_sigterm_stops_at_once(tmp_path: Path, nursery: trio.Nursery) -> None:
    proc, lines = await _start(tmp_path, "--drain-timeout", "60")
    try:
        _, _, client = await _joined(nursery, tmp_path, lines, "p")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await client.wait_tick(client.replica.tick + 5)
        proc.send_signal(signal.SIGTERM)
        close = None
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            while True:
                msg = await client.pump()
                if isinstance(msg, Close):
                    close = msg
        assert closed.value.reason.code == 1001
        assert close == Close(1001, "server shutting down")
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
