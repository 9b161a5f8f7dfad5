"""``open_directory_url``: the three schemes, and bad URLs as one-line errors."""

from __future__ import annotations

import pytest

from gameserver.directory import DirectoryLimits, NodeRecord, RedisDirectory
from gameserver.directory.connect import (
    DirectoryModuleMissing,
    DirectoryURLError,
    open_directory_url,
    parse_directory_url,
)
from tests.directory.conftest import RedisServer


def test_urls_parse_and_never_show_a_password() -> None:
    url = parse_directory_url("redis://:s3cret@10.0.0.5:6380/2")
    assert url.scheme == "redis" and url.redis is not None
    assert (url.redis.host, url.redis.port, url.redis.db, url.redis.password) == (
        "10.0.0.5",
        6380,
        2,
        "s3cret",
    )
    assert "s3cret" not in str(url) and "s3cret" not in repr(url.redis.__str__())
    tls = parse_directory_url("rediss://redis.example")
    assert tls.redis is not None and tls.redis.tls and tls.redis.port == 6379
    sock = parse_directory_url("unix:/run/gs/directory.sock")
    assert (sock.scheme, sock.path) == ("unix", "/run/gs/directory.sock")
    for bad in ("", "http://x", "redis://h:port/0", "redis://h/x", "unix:", "tcp://h:1"):
        with pytest.raises(DirectoryURLError):
            parse_directory_url(bad)
    with pytest.raises(DirectoryURLError) as info:
        parse_directory_url("redis://:s3cret@h:nope/0")
    assert "s3cret" not in str(info.value)


async def test_a_redis_url_opens_a_redis_directory(live_redis: RedisServer) -> None:
    limits = DirectoryLimits(lease_ttl=2.0, create_rate=1.0, create_burst=2.0)
    async with open_directory_url(live_redis.url, limits) as directory:
        assert isinstance(directory, RedisDirectory) and directory.limits == limits
        node = NodeRecord("connect-test", "wss://x:1/")
        await directory.heartbeat(node)
        assert node.node_id in {n.node_id for n in await directory.nodes()}
        await directory.remove_node(node.node_id)


async def test_a_unix_url_needs_the_remote_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def missing(name: str, package: str | None = None) -> object:
        if name == "gameserver.directory.remote":
            raise ModuleNotFoundError(name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(DirectoryModuleMissing):
        async with open_directory_url("unix:/tmp/nothing.sock"):
            pass
