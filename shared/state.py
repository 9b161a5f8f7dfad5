"""Authoritative state with change tracking, and the snapshot/delta encoders.

The server mutates a :class:`State`; once per tick :meth:`State.encode_delta` turns what changed
into one DELTA message and clears the tracking. :class:`shared.replica.Replica` is the other end.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shared import wire
from shared.errors import LocalProtocolError
from shared.protocol import Kind
from shared.schema import Code, Entity, EntityType, Schema

FLAG_CHECKSUM = 0x01
#: gamesync.v2: the delta applies to ``base_tick`` (a varint after the tick), not to tick - 1
FLAG_BASE = 0x02
_KIND_DELTA = bytes((Kind.DELTA,))
_KIND_SNAPSHOT = bytes((Kind.SNAPSHOT,))


def encode_record(entity: Entity) -> bytes:
    """An entity in full: id, type id, then every field in order."""
    etype = entity.etype
    return b"".join(
        [wire.varint(entity.id), wire.varint(etype.type_id)]
        + [enc(c) for enc, c in zip(etype.encoders, entity.codes, strict=True)]
    )


def encode_patch(entity: Entity) -> bytes:
    """An entity's changed fields: id, field mask (``mask_bytes`` LE), the changed fields."""
    etype = entity.etype
    mask = entity.mask
    out = [wire.varint(entity.id), mask.to_bytes(etype.mask_bytes, "little")]
    encoders = etype.encoders
    codes = entity.codes
    i = 0
    while mask:
        if mask & 1:
            out.append(encoders[i](codes[i]))
        mask >>= 1
        i += 1
    return b"".join(out)


def encode_masked(entity: Entity, mask: int) -> bytes:
    """A patch of ``entity`` carrying the fields in ``mask`` with their current values (as
    :func:`encode_patch` writes the entity's own change mask)."""
    etype = entity.etype
    out = [wire.varint(entity.id), mask.to_bytes(etype.mask_bytes, "little")]
    encoders = etype.encoders
    codes = entity.codes
    i = 0
    while mask:
        if mask & 1:
            out.append(encoders[i](codes[i]))
        mask >>= 1
        i += 1
    return b"".join(out)


def records_checksum(records: Iterable[bytes]) -> int:
    """CRC-32 (IEEE, as zlib.crc32) over full entity records in ascending id order."""
    crc = 0
    for rec in records:
        crc = zlib.crc32(rec, crc)
    return crc


def record_crc(record: bytes) -> int:
    """CRC-32 (zlib.crc32) of one full entity record: a term of :func:`view_checksum`."""
    return zlib.crc32(record)


#: the modulus of view checksums: a sum of record CRCs kept in a u32
VIEW_CHECKSUM_MOD = 1 << 32


def view_checksum(records: Iterable[bytes]) -> int:
    """The checksum of a *view* (gamesync.v2, JOINED flag VIEW): the sum of the CRC-32 of
    each held entity's full record, mod 2**32. Order-free, so the server adds up per-cell
    sums instead of hashing once per client; an empty view is 0."""
    total = 0
    for rec in records:
        total += zlib.crc32(rec)
    return total % VIEW_CHECKSUM_MOD


def encode_acks(acks: Iterable[tuple[int, int]]) -> bytes:
    items = list(acks)
    return b"".join([wire.varint(len(items))] + [wire.varint(p) + wire.varint(s) for p, s in items])


class State:
    """The entities of one room. Entity ids start at 1 and are never reused."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.entities: dict[int, Entity] = {}
        self._next_id = 1
        self._created: dict[int, Entity] = {}
        self._changed: dict[int, Entity] = {}
        self._removed: list[int] = []
        #: when a list, :meth:`remove` appends every entity it removes that a delta already
        #: carried (the ones in the next delta's removed list); its owner empties it (the
        #: room's catch-up history needs the types of entities removed since a past tick)
        self.removal_log: list[Entity] | None = None
        #: records and patches encoded by :meth:`encode_delta` and :meth:`encode_snapshot`
        #: (counted per section with len(), not per entity), for the server's metrics
        self.encode_calls = 0

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def get(self, entity_id: int) -> Entity | None:
        return self.entities.get(entity_id)

    def of_type(self, etype: EntityType) -> Iterator[Entity]:
        return (e for e in self.entities.values() if e.etype is etype)

    def spawn(self, etype: EntityType, **values: Any) -> Any:
        """Create an entity; unset fields take their type's default. Returns the entity."""
        types = self.schema.types
        if not 0 <= etype.type_id < len(types) or types[etype.type_id] is not etype:
            raise LocalProtocolError(f"{etype!r} is not part of this state's schema")
        codes: list[Code] = list(etype.defaults)
        index = etype.index
        for name, value in values.items():
            try:
                i = index[name]
            except KeyError:
                raise LocalProtocolError(f"{etype.name} has no field {name!r}") from None
            codes[i] = etype.types[i].to_code(value)
        eid = self._next_id
        self._next_id += 1
        entity = etype.cls(eid, codes, None)
        self.entities[eid] = entity
        self._created[eid] = entity
        return entity

    def remove(self, entity: Entity | int) -> None:
        eid = entity if isinstance(entity, int) else entity.id
        ent = self.entities.pop(eid, None)
        if ent is None:
            return
        ent._tracker = None
        self._changed.pop(eid, None)
        if self._created.pop(eid, None) is None:
            self._removed.append(eid)
            if self.removal_log is not None:
                self.removal_log.append(ent)

    def checksum(self) -> int:
        return records_checksum(encode_record(e) for e in self.entities.values())

    def snapshot_body(self) -> bytes:
        """Entity count and every entity in full, ascending id order."""
        ents = self.entities.values()
        return wire.varint(len(ents)) + b"".join([encode_record(e) for e in ents])

    def encode_snapshot(self, tick: int, acks: Mapping[int, int]) -> bytes:
        body = self.snapshot_body()
        self.encode_calls += 2 * len(self.entities)  # the records, and again for the checksum
        return b"".join(
            [
                _KIND_SNAPSHOT,
                wire.varint(tick),
                self.checksum().to_bytes(4, "little"),
                encode_acks(acks.items()),
                body,
            ]
        )

    def encode_delta(
        self, tick: int, acks: Iterable[tuple[int, int]], with_checksum: bool
    ) -> bytes:
        """One DELTA for everything that changed since the last call, then reset tracking.

        ``acks`` holds (player, increment) pairs; an increment of 0 means the player left.
        """
        created = self._created
        changed = self._changed
        removed = self._removed
        parts = [_KIND_DELTA, b"\x01" if with_checksum else b"\x00", wire.varint(tick)]
        if with_checksum:
            parts.append(self.checksum().to_bytes(4, "little"))
            self.encode_calls += len(self.entities)
        self.encode_calls += len(created) + len(changed)
        parts.append(encode_acks(acks))
        parts.append(wire.varint(len(created)))
        parts += [encode_record(e) for e in created.values()]
        for e in created.values():
            e._tracker = changed
            e.mask = 0
        parts.append(wire.varint(len(changed)))
        for e in changed.values():
            parts.append(encode_patch(e))
            e.mask = 0
        parts.append(wire.varint(len(removed)))
        parts += [wire.varint(i) for i in removed]
        self._created = {}
        changed.clear()
        self._removed = []
        return b"".join(parts)

    def take_changes(self) -> tuple[list[Entity], list[tuple[Entity, int]], list[int]]:
        """Hand over the change tracking and reset it, as :meth:`encode_delta` does, for an
        encoder of its own (the server's views): the entities created, the changed ones with
        their change masks (the masks are cleared on the entities), and the removed ids."""
        created = list(self._created.values())
        changed = self._changed
        for e in created:
            e._tracker = changed
            e.mask = 0
        masks = [(e, e.mask) for e in changed.values()]
        for e in changed.values():
            e.mask = 0
        removed = self._removed
        self._created = {}
        changed.clear()
        self._removed = []
        return created, masks, removed

    def has_pending_changes(self) -> bool:
        return bool(self._created or self._changed or self._removed)
