"""The room directory's values and errors (pure: no trio, no I/O).

A *lease* is a node's claim on a room: it names the owner node, carries a fencing *epoch* and
lapses at ``expires`` unless renewed. Times are seconds on the clock of the process that holds
the value (``trio.current_time()`` or an injected clock), never wall-clock time of another
machine.
"""

from __future__ import annotations

import enum

import attrs


@attrs.frozen
class NodeRecord:
    """A live node of the cluster: its id, the address clients dial, and its load (players, or
    whatever the node measures; lower is better for placement)."""

    node_id: str
    url: str
    load: float = 0.0


@attrs.frozen
class RoomLease:
    """``node_id`` owns ``room`` under fencing token (``generation``, ``epoch``) until
    ``expires`` (local clock). ``url`` is the owner's public URL, for routing a join there."""

    room: str
    node_id: str
    epoch: int
    expires: float
    url: str = ""
    game: str = ""
    private: bool = False
    #: the directory's data generation the epoch belongs to (Redis: changes when its data was
    #: lost, e.g. a restart without persistence); "" for the embedded directory
    generation: str = ""

    def fence(self) -> tuple[str, str, int]:
        """What must match for this lease to be renewed: owner, generation, epoch."""
        return (self.node_id, self.generation, self.epoch)


@attrs.frozen
class Seat:
    """Player ``player_id`` holds a seat in ``room``, under that room's lease ``epoch``."""

    player_id: str
    room: str
    node_id: str
    epoch: int
    expires: float = 0.0


#: placements (``pick_node``) the directory keeps at most (the oldest go first), so what it
#: keeps for them is bounded however many rooms are placed
PLACED_MAX = 10_000


@attrs.frozen
class DirectoryLimits:
    """The directory's timing and cluster-wide limits.

    ``lease_ttl``: a room (and its seats) leaves the directory this long after its owner's last
    renewal; the owner renews every ``lease_ttl / 3``. ``node_ttl``: a node record's lifetime
    without a heartbeat. ``create_rate`` / ``create_burst``: the per-player room-creation
    token bucket (the same numbers as ``ServerConfig.room_create_rate`` / ``_burst``), held
    cluster-wide. ``epoch_memory``: how long the directory remembers a room's last epoch after
    the room left it (to refuse a late owner's reclaim).
    """

    lease_ttl: float = 5.0
    node_ttl: float = 5.0
    create_rate: float = 0.2
    create_burst: float = 5.0
    epoch_memory: float = 3600.0

    def __attrs_post_init__(self) -> None:
        if not (self.lease_ttl > 0 and self.node_ttl > 0 and self.epoch_memory > 0):
            raise ValueError("lease_ttl, node_ttl and epoch_memory must be positive")
        if self.create_rate < 0 or self.create_burst < 1:
            raise ValueError("create_rate must be >= 0 and create_burst >= 1")

    @property
    def renew_interval(self) -> float:
        return self.lease_ttl / 3

    @property
    def placement_hold(self) -> float:
        """How long a placement (``pick_node``) counts on the node picked, on top of the load
        it reports: long enough for the room to be created there and reported by its next
        heartbeat (nodes beat every ``node_ttl / 3``), short enough not to skew later picks."""
        return self.node_ttl / 2


class LostReason(enum.Enum):
    """Why a renewal refused a lease (the owner must stop serving the room)."""

    MOVED = "moved"  # another lease (another node, or a newer epoch) holds the room
    LAPSED = "lapsed"  # the lease ran out and the room was created again since (or forgotten)
    RELEASED = "released"  # the room is no longer in the directory and cannot be reclaimed


class Refused(enum.Enum):
    """Why the directory refused a creation or a seat (the player's doing, not a fault)."""

    ROOM_TAKEN = "room_taken"
    CREATE_RATE = "create_rate"  # the player's room-creation tokens are spent, cluster-wide
    SEAT_TAKEN = "seat_taken"  # the player is seated in another room
    NO_NODE = "no_node"  # no live node to place a room on
    NOT_OWNER = "not_owner"  # a seat was claimed under a lease that is not (or no longer) valid


class DirectoryError(Exception):
    """Base of the directory's errors."""


class DirectoryUnavailable(DirectoryError):
    """The directory's store (Redis) did not answer within the call's timeout, or refused the
    connection. Transient: the next call tries again."""


class DirectoryRefused(DirectoryError):
    """The directory said no (a limit or a rule). ``kind`` says which; never match the text."""

    def __init__(self, kind: Refused, message: str = "") -> None:
        super().__init__(message or kind.value)
        self.kind = kind


class RoomTaken(DirectoryRefused):
    """The room exists: ``lease`` is its current owner's lease."""

    def __init__(self, lease: RoomLease) -> None:
        super().__init__(Refused.ROOM_TAKEN, f"room {lease.room!r} is owned by {lease.node_id}")
        self.lease = lease


class SeatTaken(DirectoryRefused):
    """The player holds ``seat`` elsewhere (one seat per player, cluster-wide)."""

    def __init__(self, seat: Seat) -> None:
        super().__init__(Refused.SEAT_TAKEN, f"player is seated in room {seat.room!r}")
        self.seat = seat


class LeaseLost(DirectoryError):
    """A lease was fenced: its holder no longer owns the room (``current``: the lease that does,
    if any)."""

    def __init__(
        self, lease: RoomLease, reason: LostReason, current: RoomLease | None = None
    ) -> None:
        super().__init__(f"lease on room {lease.room!r} lost: {reason.value}")
        self.lease = lease
        self.reason = reason
        self.current = current


@attrs.frozen
class Renewal:
    """What one renewal round found: the leases still held (possibly with a new epoch or
    generation after the store lost its data) and the ones fenced."""

    kept: tuple[RoomLease, ...] = ()
    lost: tuple[LeaseLost, ...] = ()
    seats_kept: tuple[Seat, ...] = ()
    seats_lost: tuple[Seat, ...] = ()
