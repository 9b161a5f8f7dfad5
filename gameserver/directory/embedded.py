"""The embedded directory: one machine, in process, no extra process. Pure (no trio, no I/O):
time comes from an injected clock, so tests drive it deterministically.

It follows the Redis directory's rules exactly (same leases, epochs, reclaim rules, seat and
limit semantics), so that one set of contract tests checks both. Its async methods never
await anything: a call is a few dict operations.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence

import attrs

from gameserver.directory.types import (
    PLACED_MAX,
    DirectoryLimits,
    DirectoryRefused,
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
from gameserver.limits import TokenBucket


class EmbeddedDirectory:
    """An in-process :class:`~gameserver.directory.base.Directory`."""

    def __init__(
        self, limits: DirectoryLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = limits or DirectoryLimits()
        self._clock = clock
        self._epoch = 0
        #: room -> (node id, expiry) of its recent placement (at most PLACED_MAX, the oldest
        #: first: insertion order, as the expiries are); counted on the node until it expires
        self._placed: dict[str, tuple[str, float]] = {}
        #: the placed rooms not created yet: the joins racing to create one go to its node
        self._placing: set[str] = set()
        self._placed_on: collections.Counter[str] = collections.Counter()  # node id -> rooms
        self._rooms: dict[str, RoomLease] = {}
        #: room -> (last epoch, forget at): to refuse a late reclaim of a room created since
        self._last_epoch: dict[str, tuple[int, float]] = {}
        self._seats: dict[str, Seat] = {}
        self._nodes: dict[str, tuple[NodeRecord, float]] = {}  # id -> (record, expires)
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def limits(self) -> DirectoryLimits:
        return self._limits

    # ------------------------------------------------------------ expiry (lazy, per key)
    def _room(self, room: str, now: float) -> RoomLease | None:
        lease = self._rooms.get(room)
        if lease is not None and lease.expires <= now:
            del self._rooms[room]
            return None
        return lease

    def _seat(self, player_id: str, now: float) -> Seat | None:
        seat = self._seats.get(player_id)
        if seat is not None and seat.expires <= now:
            del self._seats[player_id]
            return None
        return seat

    def _live_nodes(self, now: float) -> list[NodeRecord]:
        """The live nodes, least loaded first (ties by id): each with the load it reported
        plus the placements on it that have not run out (``DirectoryLimits.placement_hold``)."""
        for node_id in [k for k, (_, exp) in self._nodes.items() if exp <= now]:
            del self._nodes[node_id]  # bounded by the number of nodes, never by rooms
        placed = self._placed
        while placed:
            room, (_, until) = next(iter(placed.items()))
            if until > now:
                break
            self._unplace(room)
        counts = self._placed_on
        live = [
            attrs.evolve(rec, load=rec.load + counts[node_id]) if counts[node_id] else rec
            for node_id, (rec, _) in self._nodes.items()
        ]
        return sorted(live, key=lambda r: (r.load, r.node_id))

    def _remember(self, lease: RoomLease, now: float) -> None:
        memory = self._last_epoch
        if len(memory) > 10_000:
            for key in [k for k, (_, until) in memory.items() if until <= now]:
                del memory[key]
        memory[lease.room] = (lease.epoch, now + self._limits.epoch_memory)

    def _last(self, room: str, now: float) -> int | None:
        entry = self._last_epoch.get(room)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    # ------------------------------------------------------------ nodes
    async def heartbeat(self, node: NodeRecord) -> None:
        now = self._clock()
        self._nodes[node.node_id] = (node, now + self._limits.node_ttl)

    async def remove_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeRecord]:
        return self._live_nodes(self._clock())

    async def pick_node(self, room: str) -> NodeRecord:
        now = self._clock()
        live = self._live_nodes(now)
        if not live:
            raise DirectoryRefused(Refused.NO_NODE, "no live node")
        earlier = self._placed.get(room)
        if earlier is not None and room in self._placing:
            for node in live:
                if node.node_id == earlier[0]:
                    return node  # the joins racing to create one room go to one node
        best = live[0]
        self._unplace(room)
        self._placed[room] = (best.node_id, now + self._limits.placement_hold)
        self._placing.add(room)
        self._placed_on[best.node_id] += 1
        while len(self._placed) > PLACED_MAX:
            self._unplace(next(iter(self._placed)))
        return best

    def _unplace(self, room: str) -> None:
        self._placing.discard(room)
        entry = self._placed.pop(room, None)
        if entry is not None:
            counts = self._placed_on
            counts[entry[0]] -= 1
            if counts[entry[0]] <= 0:
                del counts[entry[0]]

    # ------------------------------------------------------------ rooms
    async def create_room(
        self, room: str, node: NodeRecord, creator: str, *, game: str = "", private: bool = False
    ) -> RoomLease:
        now = self._clock()
        current = self._room(room, now)
        if current is not None:
            raise RoomTaken(current)
        if not self._take_token(creator, now):
            raise DirectoryRefused(Refused.CREATE_RATE, "too many rooms created by this player")
        self._epoch += 1
        lease = RoomLease(
            room,
            node.node_id,
            self._epoch,
            now + self._limits.lease_ttl,
            url=node.url,
            game=game,
            private=private,
        )
        self._rooms[room] = lease
        self._remember(lease, now)
        self._placing.discard(room)  # created: its placement still counts, but steers no more
        return lease

    def _take_token(self, creator: str, now: float) -> bool:
        buckets = self._buckets
        if len(buckets) > 10_000:  # forget players whose buckets have refilled
            for key in [k for k, b in buckets.items() if b.full(now)]:
                del buckets[key]
        bucket = buckets.get(creator)
        if bucket is None:
            lim = self._limits
            bucket = buckets[creator] = TokenBucket(lim.create_rate, lim.create_burst, now)
        return bucket.take(now)

    async def lookup(self, room: str) -> RoomLease | None:
        return self._room(room, self._clock())

    async def renew(
        self, node_id: str, leases: Sequence[RoomLease], seats: Sequence[Seat]
    ) -> Renewal:
        now = self._clock()
        expires = now + self._limits.lease_ttl
        kept: list[RoomLease] = []
        kept_from: list[int] = []  # the epoch each kept lease was renewed from
        lost: list[LeaseLost] = []
        for lease in leases:
            current = self._room(lease.room, now)
            if current is not None:
                if current.fence() == (node_id, lease.generation, lease.epoch):
                    current = attrs.evolve(current, expires=expires)
                    self._rooms[lease.room] = current
                    self._remember(current, now)
                    kept.append(current)
                    kept_from.append(lease.epoch)
                else:
                    lost.append(LeaseLost(lease, LostReason.MOVED, current))
            elif lease.node_id == node_id and self._last(lease.room, now) == lease.epoch:
                # it lapsed (this node was paused or cut off) and nobody created it since
                current = attrs.evolve(lease, expires=expires)
                self._rooms[lease.room] = current
                self._remember(current, now)
                kept.append(current)
                kept_from.append(lease.epoch)
            else:
                lost.append(LeaseLost(lease, LostReason.LAPSED))
        by_room = {k.room: (lease_epoch, k) for k, lease_epoch in zip(kept, kept_from, strict=True)}
        seats_kept: list[Seat] = []
        seats_lost: list[Seat] = []
        for seat in seats:
            entry = by_room.get(seat.room)
            mine = self._seat(seat.player_id, now)
            if (
                entry is not None
                and entry[0] == seat.epoch
                and (mine is None or _seat_key(mine) == _seat_key(seat))
            ):
                renewed = Seat(seat.player_id, seat.room, node_id, entry[1].epoch, expires)
                self._seats[seat.player_id] = renewed
                seats_kept.append(renewed)
            else:
                seats_lost.append(seat)
        return Renewal(tuple(kept), tuple(lost), tuple(seats_kept), tuple(seats_lost))

    async def release_room(self, lease: RoomLease) -> bool:
        now = self._clock()
        current = self._room(lease.room, now)
        if current is None or current.fence() != lease.fence():
            return False
        del self._rooms[lease.room]
        # forget its epoch too: a released room is never reclaimed (its epoch cannot match
        # a new one, which is always larger)
        self._last_epoch.pop(lease.room, None)
        return True

    # ------------------------------------------------------------ seats
    async def claim_seat(
        self, player_id: str, lease: RoomLease, replace: Seat | None = None
    ) -> Seat:
        now = self._clock()
        current = self._room(lease.room, now)
        if current is None or current.fence() != lease.fence():
            raise DirectoryRefused(Refused.NOT_OWNER, "the lease does not hold the room")
        held = self._seat(player_id, now)
        if held is not None and not (
            held.room == lease.room
            or _seat_key(held) == (_seat_key(replace) if replace is not None else None)
            or not self._seat_room_alive(held, now)
        ):
            raise SeatTaken(held)
        seat = Seat(player_id, lease.room, lease.node_id, lease.epoch, current.expires)
        self._seats[player_id] = seat
        return seat

    def _seat_room_alive(self, seat: Seat, now: float) -> bool:
        room = self._room(seat.room, now)
        return room is not None and room.epoch == seat.epoch

    async def seat_of(self, player_id: str) -> Seat | None:
        return self._seat(player_id, self._clock())

    async def release_seat(self, seat: Seat) -> bool:
        held = self._seat(seat.player_id, self._clock())
        if held is None or _seat_key(held) != _seat_key(seat):
            return False
        del self._seats[seat.player_id]
        return True


def _seat_key(seat: Seat) -> tuple[str, str, str, int]:
    return (seat.player_id, seat.room, seat.node_id, seat.epoch)
