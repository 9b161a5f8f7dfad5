"""The directory interface that the embedded and the Redis directories implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gameserver.directory.types import DirectoryLimits, NodeRecord, Renewal, RoomLease, Seat


class Directory(Protocol):
    """Where every room of the cluster lives, which nodes are alive, and who sits where.

    Every method may raise :class:`~gameserver.directory.types.DirectoryUnavailable` (the
    Redis directory, within its call timeout); the embedded one never does. None of them scans
    all rooms: each touches the keys it names, plus the node set (one entry per live node).
    """

    @property
    def limits(self) -> DirectoryLimits: ...

    async def heartbeat(self, node: NodeRecord) -> None:
        """Publish (or refresh) ``node``'s record; it expires ``node_ttl`` after the last one."""

    async def remove_node(self, node_id: str) -> None:
        """Forget a node at once (a clean shutdown)."""

    async def nodes(self) -> list[NodeRecord]:
        """The live nodes, least loaded first."""

    async def pick_node(self, room: str) -> NodeRecord:
        """The node for a new room ``room``: the one a placement of it within
        ``placement_hold`` chose, if that node is alive (so the joins racing to create one room
        are all sent to the same node); else the least-loaded live node (the load it reported
        plus its placements that have not run out, ties by id), and the room's placement counts
        on it for ``placement_hold`` whatever heartbeats come between (so a burst of new rooms
        spreads out, and a heartbeat the node sent before the room reached it undoes nothing).
        Raises DirectoryRefused(NO_NODE) if none is alive."""

    async def create_room(
        self, room: str, node: NodeRecord, creator: str, *, game: str = "", private: bool = False
    ) -> RoomLease:
        """Atomically: if ``room`` is free, spend one of ``creator``'s creation tokens and make
        ``node`` its owner under a fresh epoch. Raises RoomTaken (nothing spent) or
        DirectoryRefused(CREATE_RATE)."""

    async def lookup(self, room: str) -> RoomLease | None:
        """The room's current lease, or None if it is not in the directory."""

    async def renew(
        self, node_id: str, leases: Sequence[RoomLease], seats: Sequence[Seat]
    ) -> Renewal:
        """Renew ``node_id``'s leases and the seats in them, in one round trip. A lease is kept
        only if the directory still holds it with the same owner and epoch, or if it lapsed
        and nobody has created the room since (then it is put back, same epoch), or if the
        store lost its data (then it is put back under a new generation and epoch unless
        another node got there first)."""

    async def release_room(self, lease: RoomLease) -> bool:
        """Remove the room if ``lease`` still holds it (the room was disposed of)."""

    async def claim_seat(
        self, player_id: str, lease: RoomLease, replace: Seat | None = None
    ) -> Seat:
        """Seat ``player_id`` in ``lease.room`` (one seat per player, cluster-wide). A seat
        the player holds in the same room, a seat whose room lease is gone, or exactly
        ``replace`` (an eviction the caller decided on) gives way; any other raises SeatTaken.
        Raises DirectoryRefused(NOT_OWNER) if ``lease`` does not hold the room."""

    async def seat_of(self, player_id: str) -> Seat | None:
        """Where the player is seated, if anywhere."""

    async def release_seat(self, seat: Seat) -> bool:
        """Free ``seat`` if it is still the player's seat."""
