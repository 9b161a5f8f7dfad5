"""A room's bounded history of deltas, and the catch-up deltas built from it. Pure: no trio.

Recording costs nothing beyond keeping a reference: each tick's DELTA is already encoded (it
goes to every player), so :meth:`DeltaHistory.record` appends those bytes to a deque bounded
by ticks and by total bytes. Only a resume pays: :meth:`DeltaHistory.catch_up` parses the
deltas since the client's tick and merges them into one DELTA with the BASE flag (gamesync.v2)
that takes a replica at that tick straight to the current state:

* created: the entities created since and still alive, in full, with their current values;
* changed: for the entities that existed at the base tick and still do, the union of their
  change masks since, with current values;
* removed: the entities that existed at the base tick and are gone;
* acks: per player the sum of its increments since, or 0 if it left in the meantime;
* always the current checksum.

Each list is in ascending id (player) order, and no patch names an entity the same delta
creates. To parse a patch of an entity removed later in the window the history needs the
entity's type, so it also keeps the types of the entities removed within the window (from
``State.removal_log``), dropped with the tick that removed them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from shared import wire
from shared.errors import LocalProtocolError
from shared.protocol import Kind
from shared.schema import Entity, EntityType
from shared.state import (
    FLAG_BASE,
    FLAG_CHECKSUM,
    State,
    encode_acks,
    encode_masked,
    encode_record,
)

_HEAD = bytes((Kind.DELTA, FLAG_CHECKSUM | FLAG_BASE))


class DeltaHistory:
    """The last ``max_ticks`` ticks' deltas (consecutive, ending at the room's last tick),
    at most ``max_bytes`` of them; older ones are dropped first."""

    def __init__(self, max_ticks: int, max_bytes: int) -> None:
        if max_ticks < 1 or max_bytes < 1:
            raise ValueError("a delta history needs max_ticks >= 1 and max_bytes >= 1")
        self.max_ticks = max_ticks
        self.max_bytes = max_bytes
        self.nbytes = 0
        # (tick, delta, ids of the entities it removes that an earlier delta carried)
        self._entries: deque[tuple[int, bytes, tuple[int, ...]]] = deque()
        self._removed_types: dict[int, EntityType] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def oldest_base(self) -> int | None:
        """The oldest tick a catch-up can start from (None while the history is empty)."""
        entries = self._entries
        return entries[0][0] - 1 if entries else None

    def record(self, tick: int, delta: bytes, removed: Iterable[Entity] | None = None) -> None:
        """Keep the DELTA of ``tick`` (the tick after the last one recorded) and the entities
        it removes (``State.removal_log``: needed for their types)."""
        entries = self._entries
        if entries and entries[-1][0] != tick - 1:
            self.clear()  # not consecutive (never in a room); start over rather than lie
        ids: tuple[int, ...] = ()
        if removed:
            types = self._removed_types
            for ent in removed:
                types[ent.id] = ent.etype
            ids = tuple(ent.id for ent in removed)
        entries.append((tick, delta, ids))
        self.nbytes += len(delta)
        while len(entries) > self.max_ticks or self.nbytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, delta, ids = self._entries.popleft()
        self.nbytes -= len(delta)
        types = self._removed_types
        for eid in ids:
            types.pop(eid, None)

    def clear(self) -> None:
        self._entries.clear()
        self._removed_types.clear()
        self.nbytes = 0

    def covers(self, have_tick: int, tick: int) -> bool:
        """Whether a catch-up from ``have_tick`` to ``tick`` (the last recorded) can be built:
        the history reaches back to ``have_tick``, and ``have_tick < tick`` (a delta's base is
        below its tick)."""
        entries = self._entries
        return bool(entries) and entries[-1][0] == tick and entries[0][0] - 1 <= have_tick < tick

    def catch_up(self, have_tick: int, tick: int, state: State) -> bytes | None:
        """The catch-up DELTA from ``have_tick`` to ``tick``, the tick ``state`` is at (the
        last recorded one); None if the history does not reach back to ``have_tick``."""
        if not self.covers(have_tick, tick):
            return None
        schema_types = state.schema.types
        entities = state.entities
        removed_types = self._removed_types
        created: dict[int, EntityType] = {}  # created since the base and alive so far
        masks: dict[int, int] = {}  # existed at the base: union of change masks
        removed: set[int] = set()  # existed at the base, gone
        acks: dict[int, int] = {}  # player -> summed increment; 0 = left

        def type_of(eid: int) -> EntityType:
            ent = entities.get(eid)
            if ent is not None:
                return ent.etype
            etype = removed_types.get(eid)
            if etype is None:
                raise LocalProtocolError(f"delta history lost the type of entity {eid}")
            return etype

        entries = self._entries
        for i in range(have_tick - entries[0][0] + 1, len(entries)):
            r = wire.Reader(entries[i][1], 1)
            flags = r.u8()
            r.varint()  # tick
            if flags & FLAG_CHECKSUM:
                r.fixed(4)
            for _ in range(r.varint()):
                player = r.varint()
                inc = r.varint()
                if inc == 0:
                    acks[player] = 0
                elif acks.get(player, -1) != 0:
                    acks[player] = acks.get(player, 0) + inc
            for _ in range(r.varint()):
                eid = r.varint()
                etype = schema_types[r.varint()]
                for dec in etype.decoders:
                    dec(r)
                created[eid] = etype
            for _ in range(r.varint()):
                eid = r.varint()
                known = created.get(eid)
                etype = type_of(eid) if known is None else known
                mask = r.fixed(etype.mask_bytes)
                if known is None:
                    masks[eid] = masks.get(eid, 0) | mask
                decoders = etype.decoders
                j = 0
                m = mask
                while m:
                    if m & 1:
                        decoders[j](r)
                    m >>= 1
                    j += 1
            for _ in range(r.varint()):
                eid = r.varint()
                if created.pop(eid, None) is None:
                    removed.add(eid)
                    masks.pop(eid, None)
        born = sorted(created)
        patched = sorted(masks)
        gone = sorted(removed)
        parts = [
            _HEAD,
            wire.varint(tick),
            wire.varint(have_tick),
            state.checksum().to_bytes(4, "little"),
            encode_acks(sorted(acks.items())),
            wire.varint(len(born)),
        ]
        parts += [encode_record(entities[eid]) for eid in born]
        parts.append(wire.varint(len(patched)))
        parts += [encode_masked(entities[eid], masks[eid]) for eid in patched]
        parts.append(wire.varint(len(gone)))
        parts += [wire.varint(eid) for eid in gone]
        return b"".join(parts)
