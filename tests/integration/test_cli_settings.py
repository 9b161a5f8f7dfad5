"""The command line as a user meets it: refusals of wrong settings (exit 2) and start-up
errors (exit 1), each one line with no traceback; --game, `games`, `config`, --version."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import sys
from pathlib import Path

import pytest
import trio

from clients.client import open_game_client
from gameserver.cli import main
from gameserver.tls import ensure_dev_certificate
from tests.integration.test_cli import _start, _token

PONG_SOURCE = Path(__file__).resolve().parents[2] / "gameserver" / "games" / "pong.py"


async def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GAMESERVER_")}
    environ.update(env or {})
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "gameserver.cli", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=environ,
            cwd=cwd,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def assert_one_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gameserver: "), stderr
    assert expected in lines[0], stderr


# ---------------------------------------------------------------- part 4: refused settings

REFUSALS = [
    (["--port", "99999"], "--port 99999: must be 0..65535"),
    (["--port", "-1"], "--port -1: must be 0..65535"),
    (["--port", "http"], "--port http: not an integer"),
    (["--metrics-port", "70000"], "--metrics-port 70000: must be 0..65535"),
    (["--max-players", "0"], "--max-players 0: must be 1..10000"),
    (["--max-players", "-3"], "--max-players -3: must be 1..10000"),
    (["--tick-rate", "0"], "--tick-rate 0: must be 1..120"),
    (["--input-rate", "-1"], "--input-rate -1: must be greater than 0"),
    (["--input-burst", "0"], "--input-burst 0: must be 1..100000"),
    (["--event-rate", "0"], "--event-rate 0: must be greater than 0"),
    (["--cpu-budget", "5"], "--cpu-budget 5: must be 0..1"),
    (["--cpu-budget", "-0.5"], "--cpu-budget -0.5: must be 0..1"),
    (["--room-grace", "-1"], "--room-grace -1: must be 0..86400"),
    (["--max-message-size", "10"], "--max-message-size 10: must be 2216..16777216"),
    (["--idle-timeout", "-1"], "--idle-timeout -1: must be greater than 0"),
    (["--idle-timeout", "10"], "--idle-timeout 10: must be longer than --ping-interval 15"),
    (["--ping-interval", "0"], "--ping-interval 0: must be greater than 0"),
    (["--max-rooms", "0"], "--max-rooms 0: must be 1..1000000"),
    (["--max-connections", "-1"], "--max-connections -1: must be 0..1000000"),
    (["--connect-timeout", "0"], "--connect-timeout 0: must be greater than 0"),
    (["--join-timeout", "nan"], "--join-timeout nan: must be a finite number"),
    (["--outbound-limit", "100"], "--outbound-limit 100: must be 4096.."),
    (["--room-create-rate", "0"], "--room-create-rate 0: must be greater than 0"),
    (["--cert", "c.pem"], "--cert and --key go together"),
    (["--insecure", "--cert", "c", "--key", "k"], "plain ws:// takes no certificate"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--game", "nosuch_module_q:Game"], "--game nosuch_module_q:Game: no module named"),
    (["--game", "gameserver.games.arena:WORLD"], "not a Game subclass or a GameRegistry"),
    (["--game", "pong"], "--game pong: expected MODULE:ATTR"),
]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gameserver ARGS`` in this process (fast), as the console script runs it."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_a_wrong_setting_is_refused_with_one_line_and_status_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("GAMESERVER_")]:
        monkeypatch.delenv(name)
    code, out, err = run_main(["serve", "--state-dir", str(tmp_path), *args], capsys)
    assert code == 2, (code, out, err)
    assert_one_line(err, message)
    assert not (tmp_path / "secret.key").exists()  # refused before anything started


async def test_a_refusal_as_the_installed_command_prints_it(tmp_path: Path) -> None:
    """The same, end to end in a process of its own, for one refusal of each layer."""
    for args, message in [REFUSALS[0], REFUSALS[-4], REFUSALS[-1]]:
        code, _, err = await run_cli("serve", "--state-dir", str(tmp_path), *args)
        assert code == 2
        assert_one_line(err, message)


async def test_wrong_values_from_the_environment_and_the_file(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", env={"GAMESERVER_MAX_PLAYERS": "0"})
    assert code == 2
    assert_one_line(err, "GAMESERVER_MAX_PLAYERS=0: must be 1..10000")
    cfg = tmp_path / "server.toml"
    cfg.write_text("idle-timeout = -1\n")
    code, _, err = await run_cli("serve", "--config", str(cfg))
    assert code == 2
    assert_one_line(err, f"{cfg}: idle-timeout = -1: must be greater than 0")
    cfg.write_text("max-player = 4\n")
    code, _, err = await run_cli("serve", env={"GAMESERVER_CONFIG": str(cfg)})
    assert code == 2
    assert_one_line(err, "unknown setting 'max-player'; did you mean 'max-players'?")


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("-5", "--ttl -5: must be greater than 0"),
        ("0", "--ttl 0: must be greater"),
        ("soon", "--ttl soon: not a number"),
    ],
)
def test_token_ttl_must_be_positive(
    ttl: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAMESERVER_SECRET", "s" * 40)
    code, out, err = run_main(["token", "--player", "p", "--ttl", ttl], capsys)
    assert (code, out) == (2, "")
    assert_one_line(err, message)


# ---------------------------------------------------------------- part 5: start-up errors


async def test_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        code, _, err = await run_cli(
            "serve", "--state-dir", str(tmp_path), "--port", port, "--log-level", "WARNING"
        )
        assert code == 1
        assert_one_line(err, f"cannot listen on 127.0.0.1:{port}: the address is already in use")
        assert "pick another --port" in err
        code, _, err = await run_cli(
            "serve",
            "--state-dir",
            str(tmp_path),
            "--port",
            "0",
            "--metrics-port",
            port,
            "--log-level",
            "WARNING",
        )
        assert code == 1
        assert_one_line(err, "already in use; stop what uses it or pick another --metrics-port")


async def test_address_that_cannot_be_assigned(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        "serve",
        "--state-dir",
        str(tmp_path),
        "--host",
        "192.0.2.1",
        "--port",
        "0",
        "--log-level",
        "WARNING",
    )
    assert code == 1
    assert_one_line(err, "--host 192.0.2.1: cannot listen on 192.0.2.1:0: no interface")


async def test_unresolvable_host(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        "serve",
        "--state-dir",
        str(tmp_path),
        "--host",
        "no-such-host.invalid",
        "--log-level",
        "WARNING",
    )
    assert code == 1
    assert_one_line(err, "--host no-such-host.invalid: cannot resolve this host name")


async def test_missing_and_mismatched_certificates(tmp_path: Path) -> None:
    one = ensure_dev_certificate(tmp_path / "one")
    two = ensure_dev_certificate(tmp_path / "two")
    code, _, err = await run_cli(
        "serve", "--cert", str(tmp_path / "none.pem"), "--key", str(one.key_file)
    )
    assert code == 1
    assert_one_line(err, f"TLS certificate file not found: {tmp_path / 'none.pem'}")
    code, _, err = await run_cli("serve", "--cert", str(one.cert_file), "--key", str(two.key_file))
    assert code == 1
    assert_one_line(err, f"cannot use certificate {one.cert_file} with key {two.key_file}")
    assert "give a PEM certificate chain as --cert and its private key as --key" in err


async def test_state_directory_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra in ([], ["--insecure"]):  # the dev certificate, then the signing secret
        code, _, err = await run_cli(
            "serve", "--state-dir", str(blocker / "state"), "--log-level", "WARNING", *extra
        )
        assert code == 1
        err = "\n".join(line for line in err.splitlines() if not line.startswith("WARNING: --in"))
        assert_one_line(err, f"--state-dir {blocker / 'state'}: cannot write the state directory")


async def test_bad_log_level(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", "--state-dir", str(tmp_path), "--log-level", "LOUD")
    assert code == 1
    assert_one_line(err, "--log-level LOUD: not a log level; use one of DEBUG, INFO")


# ---------------------------------------------------------------- version, games, config


async def test_version() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0 and out.startswith("gameserver ") and out.split()[1][0].isdigit()


async def test_games_lists_the_bundled_games_with_arena_first() -> None:
    code, out, err = await run_cli("games")
    assert code == 0, err
    blocks = out.split("\n\n") if "\n\n" in out else [out]
    assert out.startswith("arena  (default)")
    assert "tick rate: 20 Hz" in out and "room size: 8 players" in out
    assert "entity:    player(x, y, score, hp, owner, name)" in out
    assert "input:     dx, dy" in out
    assert "\npong\n" in out and blocks


async def test_games_with_a_game_file_makes_it_the_default(tmp_path: Path) -> None:
    shutil.copy(PONG_SOURCE, tmp_path / "mypong.py")
    code, out, err = await run_cli("games", "--game", "mypong.py:Pong", cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("pong  (default)\n  from:      --game mypong.py:Pong")
    assert "\narena\n" in out  # the bundled games are still offered


async def test_config_shows_each_value_and_where_it_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "server.toml"
    cfg.write_text("max-rooms = 50\nport = 9000\nroom-grace = 2\n")
    code, out, err = await run_cli(
        "config",
        "--config",
        str(cfg),
        "--room-grace",
        "3",
        env={"GAMESERVER_PORT": "9100", "GAMESERVER_SECRET": "topsecret" * 5},
    )
    assert code == 0, err
    assert f"max-rooms = 50  # file {cfg}" in out
    assert "port = 9100  # env GAMESERVER_PORT" in out
    assert "room-grace = 3.0  # flag --room-grace" in out
    assert "max-message-size = 4096  # default" in out
    assert "topsecret" not in out


# ---------------------------------------------------------------- serving your own game


@pytest.mark.parametrize("how", ["module", "file"])
async def test_serve_your_own_game(tmp_path: Path, nursery: trio.Nursery, how: str) -> None:
    if how == "module":
        spec = "gameserver.games.pong:Pong"
    else:
        shutil.copy(PONG_SOURCE, tmp_path / "mypong.py")
        spec = str(tmp_path / "mypong.py") + ":Pong"
    state = tmp_path / "state"
    proc, lines = await _start(state, "--game", spec)
    try:
        url = next(line for line in lines if line.startswith("listening on ")).split()[-1]
        token = await _token(state, "--player", "p1")
        ctx = ssl.create_default_context(cafile=str(state / "dev-ca.pem"))
        # a JOIN naming no game gets the first --game
        async with open_game_client(url, "own", token=token, ssl_context=ctx) as client:
            assert client.joined.game == "pong"
            await client.next_update()
            assert client.replica.of_type("paddle")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
