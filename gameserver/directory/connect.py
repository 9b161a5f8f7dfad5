"""Open a directory from its URL (``--directory``): Redis, Redis over TLS, or a Unix socket.

- ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``: :class:`RedisDirectory` (port 6379, db 0);
- ``rediss://...``: the same over TLS (the system's trusted CAs);
- ``unix:/path/to/socket``: the embedded directory a ``--workers`` supervisor serves
  (``gameserver.directory.remote.RemoteDirectory``).

:func:`parse_directory_url` checks a URL without opening anything (the CLI calls it before
starting, so a bad URL is one line); :func:`open_directory_url` opens it for a block.
"""

from __future__ import annotations

import importlib
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from gameserver.directory.base import Directory
from gameserver.directory.redis import RedisDirectory
from gameserver.directory.redis_client import RedisAddress, RedisClient
from gameserver.directory.types import DirectoryLimits


class DirectoryURLError(ValueError):
    """A ``--directory`` URL this server cannot use (the user's mistake: one line)."""


class DirectoryModuleMissing(DirectoryURLError):
    """``unix:`` needs ``gameserver.directory.remote``, which this installation lacks."""


@attrs.frozen
class DirectoryURL:
    """A parsed directory URL: Redis (``redis``) or a Unix socket path (``unix``)."""

    scheme: str
    redis: RedisAddress | None = None
    path: str = ""

    def __str__(self) -> str:  # never shows a password
        return f"unix:{self.path}" if self.scheme == "unix" else str(self.redis)


def parse_directory_url(url: str) -> DirectoryURL:
    """Check ``url``; raises :class:`DirectoryURLError` with a message fit for one line."""
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise DirectoryURLError(f"{url!r}: give the socket's path, e.g. unix:/run/gs.sock")
        return DirectoryURL("unix", path=path)
    if url.startswith(("redis://", "rediss://")):
        try:
            address = RedisAddress.from_url(url)
        except ValueError as exc:
            raise DirectoryURLError(_no_password(str(exc), url)) from None
        return DirectoryURL("redis", redis=address)
    raise DirectoryURLError(
        f"{_no_password(repr(url), url)}: not a directory URL; use "
        "redis://[:PASSWORD@]HOST:PORT/DB, rediss://... or unix:/path/to/socket"
    )


def _no_password(text: str, url: str) -> str:
    """``text`` with any password in ``url`` masked."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def _remote_directory(path: str, limits: DirectoryLimits) -> Directory:
    try:
        module: Any = importlib.import_module("gameserver.directory.remote")
    except ModuleNotFoundError as exc:
        if exc.name != "gameserver.directory.remote":
            raise
        raise DirectoryModuleMissing(
            f"unix:{path}: this installation has no Unix-socket directory client "
            "(gameserver.directory.remote); use redis:// or --workers"
        ) from None
    directory: Directory = module.RemoteDirectory(path, limits)
    return directory


@asynccontextmanager
async def open_directory_url(
    url: str | DirectoryURL, limits: DirectoryLimits | None = None, *, timeout: float = 1.0
) -> AsyncIterator[Directory]:
    """The directory at ``url`` for the duration of the block (its connections are closed
    at the end). Nothing is dialled here: a store that is down now is retried by each call
    (``DirectoryUnavailable`` within ``timeout`` seconds), so a node can start before it."""
    parsed = url if isinstance(url, DirectoryURL) else parse_directory_url(url)
    limits = limits or DirectoryLimits()
    if parsed.scheme == "unix":
        directory = _remote_directory(parsed.path, limits)
        try:
            yield directory
        finally:
            aclose = getattr(directory, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    assert parsed.redis is not None
    client = RedisClient(parsed.redis, timeout=timeout)
    try:
        yield RedisDirectory(client, limits)
    finally:
        await client.aclose()
