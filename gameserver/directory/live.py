"""The trio layer: a node's view of the directory, with its leases renewed in the background.

``open_directory`` owns a nursery with one task that heartbeats the node record and renews
every lease and seat this node holds (one round trip per ``renew_interval``). What the node
owns is cached locally, so the tick's check is a dict lookup (:meth:`LiveDirectory.owns`),
never a call to Redis. When Redis is unreachable the cache stays as it is: rooms keep running,
joins to them keep working; when Redis returns, the next renewal puts the leases back (or
reports them lost, if another node took a room meanwhile: then ``on_lost`` runs).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from gameserver.directory.base import Directory
from gameserver.directory.types import (
    DirectoryUnavailable,
    LeaseLost,
    NodeRecord,
    RoomLease,
    RoomTaken,
    Seat,
)

log = logging.getLogger("gameserver.directory")

#: leases renewed per script call (a round of more makes several calls)
RENEW_CHUNK = 256


class LiveDirectory:
    """This node's side of a :class:`Directory` (made by :func:`open_directory`)."""

    def __init__(
        self,
        directory: Directory,
        node_id: str,
        url: str,
        load: Callable[[], float],
        on_lost: Callable[[LeaseLost], None],
        on_seat_lost: Callable[[Seat], None] = lambda seat: None,
    ) -> None:
        self.directory = directory
        self.node_id = node_id
        self.url = url
        self._load = load
        self._on_lost = on_lost
        self._on_seat_lost = on_seat_lost
        #: the leases this node holds, by room: the tick-side check reads this dict only
        self.leases: dict[str, RoomLease] = {}
        #: the seats this node holds, by player id
        self.seats: dict[str, Seat] = {}
        #: whether the last call to the directory's store succeeded
        self.reachable = True
        #: renewal rounds done, and those that failed (the store was unreachable)
        self.renewals = 0
        self.renewal_failures = 0
        self._renewed = trio.Event()

    @property
    def node(self) -> NodeRecord:
        return NodeRecord(self.node_id, self.url, float(self._load()))

    # ------------------------------------------------------------ tick side (no I/O)
    def owns(self, room: str) -> RoomLease | None:
        """This node's lease on ``room``, if it holds one (a dict lookup). A lease whose
        renewals could not reach the store is still held: the room keeps running."""
        return self.leases.get(room)

    def seat(self, player_id: str) -> Seat | None:
        return self.seats.get(player_id)

    def adopt(self, lease: RoomLease) -> None:
        """Hold ``lease`` from now on (renewed with the others): a lease naming this node that
        another node placed here, or one left from before a restart under the same node id."""
        if lease.node_id != self.node_id:
            raise ValueError(f"lease on {lease.room!r} names node {lease.node_id!r}, not this one")
        self.leases.setdefault(lease.room, lease)

    def forget(self, room: str) -> RoomLease | None:
        """Stop holding ``room`` (and its seats) at once, without a call; returns the lease,
        for :meth:`release_lease`."""
        lease = self.leases.pop(room, None)
        for player, seat in list(self.seats.items()):
            if seat.room == room:
                del self.seats[player]
        return lease

    async def release_lease(self, lease: RoomLease) -> None:
        """Remove a forgotten lease from the store (best effort: if the store is unreachable,
        it lapses by itself within its TTL)."""
        try:
            await self.directory.release_room(lease)
        except DirectoryUnavailable:
            self.reachable = False

    # ------------------------------------------------------------ calls (may raise)
    async def create_room(
        self, room: str, creator: str, *, game: str = "", private: bool = False
    ) -> RoomLease:
        """Create ``room`` on this node (RoomTaken: it lives elsewhere, or here already)."""
        try:
            lease = await self.directory.create_room(
                room, self.node, creator, game=game, private=private
            )
        except DirectoryUnavailable:
            self.reachable = False
            raise
        except RoomTaken:
            self.reachable = True
            raise
        self.reachable = True
        self.leases[room] = lease
        return lease

    async def release_room(self, room: str) -> None:
        """This node disposed of ``room``: forget it here, and in the store (best effort: if
        the store is unreachable, the lease lapses by itself within its TTL)."""
        lease = self.forget(room)
        if lease is not None:
            await self.release_lease(lease)

    async def claim_seat(self, player_id: str, room: str, replace: Seat | None = None) -> Seat:
        """Seat ``player_id`` in ``room`` (which this node must own)."""
        lease = self.leases.get(room)
        if lease is None:
            raise KeyError(f"this node does not own room {room!r}")
        try:
            seat = await self.directory.claim_seat(player_id, lease, replace)
        except DirectoryUnavailable:
            self.reachable = False
            raise
        self.seats[player_id] = seat
        return seat

    async def release_seat(self, player_id: str) -> None:
        seat = self.seats.pop(player_id, None)
        if seat is None:
            return
        try:
            await self.directory.release_seat(seat)
        except DirectoryUnavailable:
            self.reachable = False

    # ------------------------------------------------------------ background
    async def renew_once(self) -> bool:
        """One heartbeat and renewal round. False if the store was unreachable."""
        leases = list(self.leases.values())
        by_room: dict[str, list[Seat]] = {}
        for seat in self.seats.values():
            by_room.setdefault(seat.room, []).append(seat)
        kept: list[RoomLease] = []
        lost: list[LeaseLost] = []
        seats_kept: list[Seat] = []
        seats_lost: list[Seat] = []
        try:
            await self.directory.heartbeat(self.node)
            # in chunks, so that one script never holds Redis for long (and one empty round
            # still runs: it notices a store that lost its data)
            for start in range(0, max(1, len(leases)), RENEW_CHUNK):
                chunk = leases[start : start + RENEW_CHUNK]
                chunk_seats = [s for lease in chunk for s in by_room.get(lease.room, ())]
                part = await self.directory.renew(self.node_id, chunk, chunk_seats)
                kept += part.kept
                lost += part.lost
                seats_kept += part.seats_kept
                seats_lost += part.seats_lost
        except DirectoryUnavailable as exc:
            if self.reachable:
                log.warning("directory unreachable: %s", exc)
            self.reachable = False
            self.renewal_failures += 1
            return False
        if not self.reachable:
            log.info("directory reachable again")
        self.reachable = True
        self.renewals += 1
        for lease in kept:
            # a room released while the call was in flight stays released
            if self.leases.get(lease.room) is not None:
                self.leases[lease.room] = lease
        for seat in seats_kept:
            if self.seats.get(seat.player_id) is not None:
                self.seats[seat.player_id] = seat
        rooms_kept = {lease.room for lease in kept}
        for seat in seats_lost:
            held = self.seats.get(seat.player_id)
            if held is not None and held.room == seat.room and held.epoch == seat.epoch:
                del self.seats[seat.player_id]
                if seat.room in rooms_kept:  # the player took a seat elsewhere (newest wins)
                    self._on_seat_lost(seat)
        for gone in lost:
            held_lease = self.leases.get(gone.lease.room)
            if held_lease is not None and held_lease.epoch == gone.lease.epoch:
                del self.leases[gone.lease.room]
                for player, seat in list(self.seats.items()):
                    if seat.room == gone.lease.room:
                        del self.seats[player]
                log.warning("room %s: lease lost (%s)", gone.lease.room, gone.reason.value)
                self._on_lost(gone)
        self._renewed.set()
        self._renewed = trio.Event()
        return True

    async def wait_renewed(self) -> None:
        """Wait for the next successful renewal round (for tests and start-up)."""
        await self._renewed.wait()

    async def run(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.renew_once()
        task_status.started()
        while True:
            await trio.sleep(interval)
            await self.renew_once()


@asynccontextmanager
async def open_directory(
    directory: Directory,
    node_id: str,
    url: str,
    *,
    load: Callable[[], float] = lambda: 0.0,
    on_lost: Callable[[LeaseLost], None] = lambda lost: None,
    on_seat_lost: Callable[[Seat], None] = lambda seat: None,
    interval: float | None = None,
) -> AsyncIterator[LiveDirectory]:
    """This node in ``directory``, heartbeating and renewing in the background until the
    block exits (then its node record is removed, best effort). The first heartbeat is done
    (or has failed: the store may come later) when the block starts. ``on_lost`` runs when a
    lease is fenced (the room moved), ``on_seat_lost`` when a seat in a room still held here
    was taken by the player elsewhere (one seat per player: the newest wins)."""
    live = LiveDirectory(directory, node_id, url, load, on_lost, on_seat_lost)
    every = interval if interval is not None else directory.limits.renew_interval
    async with trio.open_nursery() as nursery:
        await nursery.start(live.run, every)
        try:
            yield live
        finally:
            nursery.cancel_scope.cancel()
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                try:
                    await directory.remove_node(node_id)
                except DirectoryUnavailable:
                    pass
