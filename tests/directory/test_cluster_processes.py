"""Two real `gameserver serve --directory redis://...` processes on 127.0.0.2 and 127.0.0.3.

The machine-like case: separate processes sharing a token secret and a real Redis. One is
killed with SIGKILL: its rooms leave the directory within the lease TTL plus 1 s, and the
next join creates them again on the survivor. Processes are stopped by PID at the end.
Also: the command line's one-line refusals of bad cluster settings.
"""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from gameserver.auth import mint_token
from gameserver.cli import _resume_key, main
from gameserver.directory import DirectoryLimits, RedisAddress, RedisClient, RedisDirectory
from shared.messages import Join, Redirect, Resume
from shared.protocol import CloseCode
from tests.directory.cluster_client import Closed, RawClient, first_answer, join_following
from tests.directory.conftest import RedisServer

HOSTS = ("127.0.0.2", "127.0.0.3")
TTL = 1.0


class Node:
    def __init__(self, proc: trio.Process, lines: list[str], log: Path) -> None:
        self.proc = proc
        self.lines = lines
        self.log = log
        line = next(x for x in lines if x.startswith("cluster node "))
        # "cluster node ID at URL, directory redis://..."
        self.node_id = line.split()[2]
        self.url = line.split()[4].rstrip(",")

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


async def start_node(
    host: str, tmp: Path, redis: RedisServer, cert: Path, secret: Path, *extra: str
) -> Node:
    log = tmp / f"{host}.log"
    with open(log, "wb") as err:
        proc = await trio.lowlevel.open_process(
            [
                sys.executable, "-m", "gameserver.cli", "serve",
                "--host", host, "--port", "0",
                "--state-dir", str(tmp / host),
                "--cert", str(cert), "--key", str(cert),
                "--secret-file", str(secret),
                "--directory", redis.url,
                "--lease-ttl", str(TTL),
                "--log-level", "INFO",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env={k: v for k, v in os.environ.items() if not k.startswith("GAMESERVER_")},
        )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    buf = b""
    try:
        with trio.fail_after(30):
            while not any(line.startswith("listening on ") for line in lines):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"server exited before listening: {log.read_text()[-2000:]}"
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [d.decode() for d in done]
    except BaseException:
        os.kill(proc.pid, signal.SIGKILL)
        raise
    return Node(proc, lines, log)


@pytest.fixture
async def cluster(
    tmp_path: Path, live_redis: RedisServer
) -> AsyncIterator[tuple[list[Node], ssl.SSLContext, bytes]]:
    ca = trustme.CA()
    cert = tmp_path / "node.pem"
    ca.issue_cert(*HOSTS).private_key_and_cert_chain_pem.write_to_path(str(cert))
    secret = secrets.token_hex(32).encode()
    secret_file = tmp_path / "secret.key"
    secret_file.write_bytes(secret + b"\n")
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    nodes: list[Node] = []
    try:
        for host in HOSTS:
            nodes.append(await start_node(host, tmp_path, live_redis, cert, secret_file))
        yield nodes, client_ssl, secret
    finally:
        for node in nodes:
            node.kill()
            with trio.move_on_after(5):
                await node.proc.wait()


async def test_kill_9_of_a_node_its_rooms_leave_and_are_made_again_on_the_survivor(
    cluster: tuple[list[Node], ssl.SSLContext, bytes], live_redis: RedisServer
) -> None:
    nodes, ctx, secret = cluster
    a, b = nodes
    redis = RedisClient(RedisAddress.from_url(live_redis.url), timeout=0.5)
    directory = RedisDirectory(redis, DirectoryLimits(lease_ttl=TTL, node_ttl=TTL))
    tag = secrets.token_hex(3)
    rooms = [f"k{tag}-{i}" for i in range(6)]
    clients = []
    try:
        with trio.fail_after(30):
            for i, room in enumerate(rooms):  # all dial node a; placement spreads them
                join = Join(room, "", f"p{i}", mint_token(secret, f"p{i}"), version=2)
                client, _ = await join_following(a.url, ctx, join)
                clients.append(client)
            owners = {}
            for room in rooms:
                lease = await directory.lookup(room)
                assert lease is not None
                owners[room] = lease.node_id
            assert set(owners.values()) == {a.node_id, b.node_id}, owners
            victim, survivor = (a, b) if owners[rooms[0]] == a.node_id else (b, a)
            # a resume token minted by one process verifies on the other (the key comes from
            # the shared token secret): the RESUME sent to the other node is redirected
            first = clients[0]
            assert first.joined is not None and first.joined.resume_token
            resume = Resume(rooms[0], first.joined.resume_token, 0, 2)
            with pytest.raises(Closed) as closed:
                await first_answer(await RawClient.open(survivor.url, ctx), resume)
            assert closed.value.code == CloseCode.REDIRECT
            assert [m.url for m in closed.value.told if isinstance(m, Redirect)] == [victim.url]
            doomed = [r for r in rooms if owners[r] == victim.node_id]
            victim.kill()
            killed = trio.current_time()
            await victim.proc.wait()
            # its rooms (and its node record) leave the directory within the TTL + 1 s
            while any([await directory.lookup(r) for r in doomed]):
                assert trio.current_time() - killed <= TTL + 1.0, "rooms outlived the TTL"
                await trio.sleep(0.05)
            gone_after = trio.current_time() - killed
            assert gone_after <= TTL + 1.0
            print(f"rooms of the killed node gone after {gone_after:.2f} s (TTL {TTL} s)")
            while victim.node_id in {n.node_id for n in await directory.nodes()}:
                assert trio.current_time() - killed <= TTL + 1.0
                await trio.sleep(0.05)
            # the survivor's rooms are untouched; a new join makes a doomed room again there
            for room in rooms:
                if room not in doomed:
                    lease = await directory.lookup(room)
                    assert lease is not None and lease.node_id == survivor.node_id
            join = Join(doomed[0], "", "late", mint_token(secret, "late"), version=2)
            client, dialled = await join_following(survivor.url, ctx, join)
            clients.append(client)
            assert dialled == [survivor.url]
            lease = await directory.lookup(doomed[0])
            assert lease is not None and lease.node_id == survivor.node_id
            # dialling the survivor for a room it does not host works too (it routes)
            assert survivor.proc.returncode is None
    finally:
        for client in clients:
            await client.aclose()
        await redis.aclose()
    assert "Traceback" not in survivor.log.read_text()


def test_the_resume_key_is_derived_from_the_token_secret() -> None:
    one, other = secrets.token_hex(32).encode(), secrets.token_hex(32).encode()
    assert _resume_key(one) == _resume_key(one)  # every node with the secret has it
    assert _resume_key(one) != _resume_key(other)
    assert _resume_key(one).key not in (one, one[:32])


# ---------------------------------------------------------------- one-line refusals

REFUSALS = [
    (["--directory", "http://x"], "--directory 'http://x': not a directory URL"),
    (["--directory", "redis://h:99999/0"], "--directory bad port"),
    (["--directory", "redis://:hunter2@h:x/0"], "redis://:***@h:x/0"),
    (["--directory", "redis://h/db"], "must be a number"),
    (["--directory", "unix:"], "give the socket's path"),
    (["--directory", "redis://h/0", "--public-url", "http://x/"], "--public-url 'http://x/'"),
    (["--directory", "redis://h/0", "--node-id", "a b"], "--node-id 'a b': 1-128 printable"),
    (["--directory", "redis://h/0", "--host", "0.0.0.0"], "--public-url: needed with"),
    (["--lease-ttl", "0"], "--lease-ttl 0: must be 0.3..600"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_bad_cluster_settings_are_one_line_and_status_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("GAMESERVER_")]:
        monkeypatch.delenv(name)
    code = main(["serve", "--state-dir", str(tmp_path), *args])
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gameserver: "), err
    assert message in lines[0], err
    assert "hunter2" not in err
    assert not (tmp_path / "secret.key").exists()  # refused before anything started
