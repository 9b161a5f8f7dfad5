"""The room directory: which node owns each room, which nodes are alive, who sits where.

One interface (:class:`Directory`), two implementations: :class:`EmbeddedDirectory` (one
machine, in process) and :class:`RedisDirectory` (a cluster); :class:`RemoteDirectory` is
a client of an embedded one served over a Unix socket (:func:`serve_directory`: the workers
of ``--workers N`` share the supervisor's). :func:`open_directory` is the
trio layer a node runs: background renewal and a local cache for tick-side checks. See
docs/directory.md.
"""

from typing import TYPE_CHECKING

from gameserver.directory.base import Directory
from gameserver.directory.embedded import EmbeddedDirectory
from gameserver.directory.live import LiveDirectory, open_directory
from gameserver.directory.redis import RedisDirectory
from gameserver.directory.redis_client import RedisAddress, RedisClient
from gameserver.directory.remote import RemoteDirectory, serve_directory
from gameserver.directory.types import (
    DirectoryError,
    DirectoryLimits,
    DirectoryRefused,
    DirectoryUnavailable,
    LeaseLost,
    LostReason,
    NodeRecord,
    Refused,
    Renewal,
    RoomLease,
    RoomTaken,
    Seat,
    SeatTaken,
)

if TYPE_CHECKING:  # both implementations are Directories (mypy checks it here)

    def _conforms(
        e: EmbeddedDirectory, r: RedisDirectory, m: RemoteDirectory
    ) -> tuple[Directory, Directory, Directory]:
        return e, r, m


__all__ = [
    "Directory",
    "DirectoryError",
    "DirectoryLimits",
    "DirectoryRefused",
    "DirectoryUnavailable",
    "EmbeddedDirectory",
    "LeaseLost",
    "LiveDirectory",
    "LostReason",
    "NodeRecord",
    "RedisAddress",
    "RedisClient",
    "RedisDirectory",
    "Refused",
    "RemoteDirectory",
    "Renewal",
    "RoomLease",
    "RoomTaken",
    "Seat",
    "SeatTaken",
    "open_directory",
    "serve_directory",
]
