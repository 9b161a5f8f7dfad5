"""gamebots in a cluster: a test-only node (tests/redirector.py) that hosts nothing sends every
join to a real server; the bots follow, count it, resume at their node, go back to the entry
when their node is gone, and give up on a redirect loop. Real WSS on 127.0.0.1."""

from __future__ import annotations

import random
import ssl
import time
from pathlib import Path

import trio
import trustme

from clients.bots import cli
from clients.bots.drops import ResumingBot, recover
from clients.bots.errors import hints
from clients.bots.loadtest import LoadConfig, merge_reports, run_load
from gameserver.server import GameServer
from shared.messages import Join, Resume
from tests.redirector import open_redirector
from tools.faultproxy import open_fault_proxy


def _ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_bots_follow_redirects_and_resume_at_their_node(
    server: GameServer, server_ssl: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    async with open_redirector(server.url, server_ssl) as entry:
        cfg = LoadConfig(
            url=entry.url,
            rooms=2,
            players=2,
            duration=2.0,
            settle=0.2,
            linger=0.0,
            ca_file=_ca_file(ca, tmp_path),
            room_prefix="redir",
            drop_every=0.7,
        )
        with trio.fail_after(40):
            report = merge_reports([await run_load(cfg)])
    assert report["players"] == {"target": 4, "connected": 4, "failed": 0}, report["errors"]
    assert report["redirects"] == 4 and report["redirected_bots"] == 4
    assert report["errors"] == {} and report["desyncs"] == 0
    assert sorted(server.rooms.rooms) == ["redir-0", "redir-1"]
    # every resume went straight to the bots' node: the entry saw only the first JOINs
    assert report["resumes"] >= 2 and report["seats_lost"] == 0
    assert [type(m) for m in entry.received] == [Join] * 4
    report["config"] = {"rooms": 2, "players": 2}
    assert "4 redirects followed by 4 bots" in cli.format_table(report)


async def test_bots_try_a_join_again_after_4016(
    server: GameServer, server_ssl: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    async with open_redirector(server.url, server_ssl) as entry:
        entry.unavailable = 3
        cfg = LoadConfig(
            url=entry.url,
            rooms=1,
            players=2,
            duration=0.5,
            settle=0.1,
            linger=0.0,
            ca_file=_ca_file(ca, tmp_path),
            room_prefix="dir",
        )
        with trio.fail_after(30):
            report = merge_reports([await run_load(cfg)])
    assert report["players"] == {"target": 2, "connected": 2, "failed": 0}, report["errors"]
    assert report["directory_retries"] == 3 and report["redirects"] == 2
    assert [type(m) for m in entry.received] == [Join] * 5


async def test_a_bot_goes_back_to_the_entry_when_its_node_is_gone(
    server: GameServer, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with open_fault_proxy("127.0.0.1", server.port) as proxy:
        node = f"wss://127.0.0.1:{proxy.port}"
        async with open_redirector(node, server_ssl) as entry:
            bot = ResumingBot(
                0, "moved", verify=True, rng=random.Random(1), drop_rng=random.Random(2)
            )
            with trio.fail_after(20):
                await bot.start(entry.url, client_ssl, "arena")
                assert bot.url == node and bot.redirects == 1
                player = bot.player
                # the node's address is gone; the directory now names the server itself
                proxy.down()
                proxy.cut()
                entry.target = server.url
                assert bot.conn is not None
                bot.conn.reset()
                bot.cut_at = time.perf_counter()
                await recover(bot, entry.url, client_ssl, "arena")
            assert bot.resumes == 1 and bot.seats_lost == 0 and bot.player == player
            assert bot.url == server.url and bot.redirects == 2
            assert [type(m) for m in entry.received] == [Join, Resume]
            assert bot.conn is not None
            bot.conn.close()


async def test_a_redirect_loop_fails_the_bots_with_a_hint(
    server_ssl: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    async with open_redirector("", server_ssl) as loop:
        loop.target = loop.url
        cfg = LoadConfig(
            url=loop.url,
            rooms=1,
            players=2,
            duration=0.5,
            settle=0.1,
            linger=0.0,
            ca_file=_ca_file(ca, tmp_path),
            early_stop=2,
        )
        with trio.fail_after(20):
            report = merge_reports([await run_load(cfg)])
    assert report["players"]["connected"] == 0
    assert report["errors"] == {"redirect_loop": 2}
    assert len(loop.received) == 2 * 4  # each bot: the entry and 3 redirects
    assert "more than 3 redirects" in report["errors_first"]["redirect_loop"][0]
    assert any("kept redirecting" in h for h in hints(report))
    assert report["early_stop"] is not None
