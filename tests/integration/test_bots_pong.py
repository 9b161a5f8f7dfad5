"""gamebots and the Python client playing pong against a real server in this process (WSS on
127.0.0.1, port 0); gamebots' game checks and ``--version``."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trustme

from clients.bots import cli
from clients.client import open_game_client
from gameserver.game import GameRegistry, default_registry
from gameserver.games.pong import HEIGHT, WIDTH, Pong
from gameserver.server import GameServer, ServerConfig, serve_gameserver
from shared.errors import LocalProtocolError

ROOT = Path(__file__).resolve().parents[2]


def _ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _args(url: str, ca_file: str, *more: str) -> list[str]:
    return ["--url", url, "--ca-file", ca_file, "--game", "pong", *more]


async def _watch(server: GameServer, seen: dict[str, set[tuple[float, ...]]]) -> None:
    """Sample the server's pong rooms: paddle heights, ball positions, scores."""
    while True:
        for name, host in server.rooms.rooms.items():
            game = host.room.game
            assert isinstance(game, Pong)
            seen.setdefault(f"{name}:paddles", set()).add(
                tuple(p.y for _, p in sorted(game.paddles.items()))
            )
            seen.setdefault(f"{name}:ball", set()).add((game.ball.x, game.ball.y))
            seen.setdefault(f"{name}:score", set()).add(
                tuple(p.score for _, p in sorted(game.paddles.items()))
            )
        await trio.sleep(0.05)


async def test_gamebots_play_pong(
    nursery: trio.Nursery, server: GameServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """``gamebots --game pong`` picks the paddle behaviour, plays two full rooms with 0
    desyncs at the tick rate, and the paddles and the ball move on the server."""
    args = cli.build_parser().parse_args(
        [
            *_args(server.url, _ca_file(ca, tmp_path), "--rooms", "2", "--players", "2"),
            *("--duration", "2", "--settle", "0.5", "--room-prefix", "pong"),
        ]
    )
    opts = cli.options_from_args(args)
    assert opts.behaviour_spec == "paddle"
    seen: dict[str, set[tuple[float, ...]]] = {}
    nursery.start_soon(_watch, server, seen)
    with trio.fail_after(30):
        report = await cli.run(opts)
    assert report["players"] == {"target": 4, "connected": 4, "failed": 0}, report["errors"]
    assert report["errors"] == {} and report["disconnects"] == {}
    assert report["behaviours"] == {"paddle": 4}
    assert report["verifying"] == 4 and report["desyncs"] == 0
    assert report["tick_rate"] == Pong.tick_rate
    assert 0.95 * Pong.tick_rate <= report["updates_per_player_per_s_p5"] <= 1.1 * Pong.tick_rate
    assert report["inputs_sent"] >= 4 * 2 * 25 and report["latency_ms"]["samples"] > 0
    assert report["result"] == {"ok": True, "failures": []}
    for room in ("pong-0", "pong-1"):
        paddles = {ys for ys in seen[f"{room}:paddles"] if len(ys) == 2}
        assert len(paddles) > 10, paddles  # both paddles were there, and moved
        assert {ys[0] for ys in paddles} != {HEIGHT / 2}
        assert len(seen[f"{room}:ball"] - {(WIDTH / 2, HEIGHT / 2)}) > 10  # the ball moved


async def test_a_game_gamebots_does_not_know_is_checked_at_joined(
    nursery: trio.Nursery, server_ssl: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    """A game that isn't bundled gets the default behaviour (wander); pong's inputs don't fit
    it, so the bots fail at JOINED and the verdict says why."""

    class Squash(Pong):
        name = "squash"

    registry = GameRegistry()
    registry.register(Squash)
    config = ServerConfig(port=0, room_grace=1.0, cpu_budget=0)
    server: GameServer = await nursery.start(serve_gameserver, config, registry, server_ssl)
    args = cli.build_parser().parse_args(
        [
            *("--url", server.url, "--ca-file", _ca_file(ca, tmp_path), "--game", "squash"),
            *("--duration", "0.3", "--settle", "0"),
        ]
    )
    with trio.fail_after(20):
        report = await cli.run(cli.options_from_args(args))
    assert report["errors"] == {"misfit:wander": 1}
    failures = report["result"]["failures"]
    assert failures[0].startswith("stopped early: the only bot could not connect")
    [why] = [f for f in failures if "--behaviour" in f]
    assert "behaviour wander does not fit" in why


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--behaviour", "wander"], "behaviour wander sends the input fields dx, dy (Float); "),
        (["--behaviour", "paddle:1,chase:1"], "the game's input fields are dir"),
        (["--players", "3"], "--players 3 is more than a pong room seats (2)"),
    ],
)
def test_gamebots_refuses_what_pong_cannot_take(
    more: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", "ws://127.0.0.1:1", "--game", "pong", *more])
    assert info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()  # one line, no usage block or traceback
    assert line.startswith("gamebots: error: ") and message in line


def test_gamebots_defaults_fit_the_game() -> None:
    def spec(*more: str) -> str:
        args = cli.build_parser().parse_args(["--url", "ws://127.0.0.1:1", *more])
        return cli.options_from_args(args).behaviour_spec

    assert spec() == "wander" and spec("--game", "arena") == "wander"
    assert spec("--game", "pong") == "paddle"
    assert spec("--game", "pong", "--behaviour", "idle") == "idle"
    assert spec("--game", "mygame") == "wander"  # not bundled: checked at JOINED
    assert cli.bundled_game("pong") is default_registry().get("pong")


def test_gamebots_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clients.bots.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"gamebots {cli.version()}\n"
    assert cli.version().split(".")[0].isdigit()


async def test_the_readme_python_client_plays_pong(
    server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    """The README's Python client example, against pong (this server wants no token)."""
    async with open_game_client(
        server.url, room="table-1", game="pong", name="alice", ssl_context=client_ssl
    ) as c:
        assert c.joined.game == "pong" and c.joined.input_schema.names == ("dir",)
        [mine] = [p for p in c.replica.of_type("paddle") if p.owner == c.player]
        y0 = mine.y
        for _ in range(5):
            seq = await c.send_input(dir=-1.0)
            await c.wait_for_ack(seq)
        [mine] = [p for p in c.replica.of_type("paddle") if p.owner == c.player]
        assert mine.y < y0 and mine.name == "alice"
        [ball] = c.replica.of_type("ball")
        assert set(ball.as_dict()) == {"x", "y", "vx", "vy"}
        with pytest.raises(LocalProtocolError):
            await c.send_input(dx=1.0)  # arena's field: not pong's
