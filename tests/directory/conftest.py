"""A real redis-server for the directory tests: one per session, on a free port on 127.0.0.1,
no persistence, in a temporary directory; stopped by PID at the end. The tests may stop,
pause and restart it (same port).

When redis-server is missing (``bash tools/ensure_redis.sh`` installs it): on CI (CI=true) a
test that needs it fails; elsewhere it skips, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gameserver.directory import (
    DirectoryLimits,
    EmbeddedDirectory,
    RedisAddress,
    RedisClient,
    RedisDirectory,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process that the tests control."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.exe = exe
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    "--protected-mode", "yes",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        os.kill(proc.pid, signal.SIGCONT)  # in case a test paused it
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung or partitioned Redis)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    exe = shutil.which("redis-server")
    if exe is None:
        reason = "redis-server is not installed (bash tools/ensure_redis.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="gs-redis-"))
    server = RedisServer(exe, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def live_redis(redis_server: RedisServer) -> RedisServer:
    """The session's server, running (a test before may have stopped or paused it)."""
    if redis_server.proc is None:
        redis_server.start()
    else:
        redis_server.resume()
    return redis_server


_prefixes = iter(range(1, 1_000_000))


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own (tests share one Redis database)."""
    return f"t{next(_prefixes)}:{os.getpid()}:"


FAST = DirectoryLimits(lease_ttl=0.6, node_ttl=0.6, create_rate=1.0, create_burst=3.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client(live_redis: RedisServer) -> AsyncIterator[RedisClient]:
    client = RedisClient(RedisAddress.from_url(live_redis.url), timeout=0.5)
    yield client
    await client.aclose()


def make_embedded(limits: DirectoryLimits = FAST) -> tuple[EmbeddedDirectory, FakeClock]:
    clock = FakeClock()
    return EmbeddedDirectory(limits, clock=clock), clock


def make_redis(client: RedisClient, prefix: str, limits: DirectoryLimits = FAST) -> RedisDirectory:
    return RedisDirectory(client, limits, prefix=prefix)
