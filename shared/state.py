"""Authoritative state with change tracking, and the snapshot/delta encoders.

The server mutates a :class:`State`; once per tick :meth:`State.encode_delta` turns what changed
into one DELTA message and clears the tracking. :class:`shared.replica.Replica` is the other end.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shared import delta_v3, wire
from shared.errors import LocalProtocolError
from shared.messages import Delta, parse_server_message
from shared.protocol import Kind
from shared.schema import Code, Entity, EntityType, Schema

FLAG_CHECKSUM = 0x01
#: gamesync.v2: the delta applies to ``base_tick`` (a varint after the tick), not to tick - 1
FLAG_BASE = 0x02
_KIND_DELTA = bytes((Kind.DELTA,))
_KIND_SNAPSHOT = bytes((Kind.SNAPSHOT,))


def _id_len(eid: int) -> int:
    """The length of ``varint(eid)``."""
    return (max(eid.bit_length(), 1) + 6) // 7


def encode_record(entity: Entity) -> bytes:
    """An entity in full: id, type id, then every field in order."""
    etype = entity.etype
    codes = entity.codes
    out = [wire.varint(entity.id), wire.varint(etype.type_id)]
    i = 0
    # each field by its plan (wire.field: no Python-level call per field when compiled)
    for op, arg in etype.plan:
        out.append(wire.field(op, arg, codes[i]) if op >= 0 else etype.encoders[i](codes[i]))
        i += 1
    return b"".join(out)


def encode_patch(entity: Entity) -> bytes:
    """An entity's changed fields: id, field mask (``mask_bytes`` LE), the changed fields."""
    return encode_masked(entity, entity.mask)


def encode_masked(entity: Entity, mask: int) -> bytes:
    """A patch of ``entity`` carrying the fields in ``mask`` with their current values (as
    :func:`encode_patch` writes the entity's own change mask)."""
    etype = entity.etype
    out = [wire.varint(entity.id), mask.to_bytes(etype.mask_bytes, "little")]
    plan = etype.plan
    codes = entity.codes
    i = 0
    while mask:
        if mask & 1:
            op, arg = plan[i]
            out.append(wire.field(op, arg, codes[i]) if op >= 0 else etype.encoders[i](codes[i]))
        mask >>= 1
        i += 1
    return b"".join(out)


def records_checksum(records: Iterable[bytes]) -> int:
    """CRC-32 (IEEE, as zlib.crc32) over full entity records in ascending id order: the CRC of
    their concatenation (one call, the same value as chaining a call per record)."""
    return zlib.crc32(b"".join(records))


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
        #: gamesync.v3 prediction: the codes of every entity with predicted fields as of the
        #: last delta, and the velocities (nonzero changes of predicted fields) in that delta.
        #: Kept by :meth:`encode_deltas` whether or not v3 bytes are asked for: a v3 SNAPSHOT
        #: between ticks carries ``motion``
        self._shadow: dict[int, list[Code]] = {}
        self.motion: dict[int, dict[int, int]] = {}

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
        self._shadow.pop(eid, None)
        self.motion.pop(eid, None)
        if self._created.pop(eid, None) is None:
            self._removed.append(eid)
            if self.removal_log is not None:
                self.removal_log.append(ent)

    def checksum(self) -> int:
        return records_checksum([encode_record(e) for e in self.entities.values()])

    def snapshot_body(self) -> bytes:
        """Entity count and every entity in full, ascending id order."""
        ents = self.entities.values()
        return wire.varint(len(ents)) + b"".join([encode_record(e) for e in ents])

    def encode_snapshot(self, tick: int, acks: Mapping[int, int], coding: int = 2) -> bytes:
        """The SNAPSHOT; ``coding`` 3 (gamesync.v3) appends the motion section."""
        body = self.snapshot_body()
        self.encode_calls += 2 * len(self.entities)  # the records, and again for the checksum
        parts = [
            _KIND_SNAPSHOT,
            wire.varint(tick),
            self.checksum().to_bytes(4, "little"),
            encode_acks(acks.items()),
            body,
        ]
        if coding == 3:
            parts.append(self.encode_motion())
        return b"".join(parts)

    def encode_motion(self) -> bytes:
        """The v3 motion section of the state now (after the last delta)."""
        entities = self.entities
        return delta_v3.encode_motion(self.motion, lambda eid: entities[eid].etype)

    def encode_delta(
        self, tick: int, acks: Iterable[tuple[int, int]], with_checksum: bool
    ) -> bytes:
        """One DELTA (v1/v2 layout) for everything that changed since the last call, then reset
        tracking. ``acks`` holds (player, increment) pairs; an increment of 0 means the player
        left."""
        data = self.encode_deltas(tick, acks, with_checksum)[0]
        assert data is not None
        return data

    def encode_deltas(
        self,
        tick: int,
        acks: Iterable[tuple[int, int]],
        with_checksum: bool,
        v2: bool = True,
        v3: bool = False,
    ) -> tuple[bytes | None, bytes | None]:
        """The tick's DELTA in the v1/v2 layout (if ``v2``) and in the gamesync.v3 layout (if
        ``v3``), from one pass over the changes, then reset tracking. The v3 prediction state
        (``motion``) moves on either way."""
        created = self._created
        changed = self._changed
        removed = self._removed
        acks = list(acks)
        csum = b""
        if with_checksum:
            csum = self.checksum().to_bytes(4, "little")
            self.encode_calls += len(self.entities)
        self.encode_calls += len(created) + len(changed)
        records = [encode_record(e) for e in created.values()]
        shadow = self._shadow
        for e in created.values():
            e._tracker = changed
            e.mask = 0
            if e.etype.predicted:
                shadow[e.id] = list(e.codes)
        # the v3 patches (ascending ids, id gaps, predicted fields as residuals) and the new
        # velocities; the v2 patches as they always were
        old_motion = self.motion
        motion: dict[int, dict[int, int]] = {}
        patches2: list[bytes] = []
        patches3: list[bytes] = []
        last = 0
        for e in [changed[k] for k in sorted(changed)] if v3 else changed.values():
            etype = e.etype
            mask = e.mask
            if v2:
                patches2.append(encode_patch(e))
            if not etype.predicted:
                if v3:
                    patches3.append(wire.varint(e.id - last) + encode_patch(e)[_id_len(e.id) :])
                    last = e.id
                e.mask = 0
                continue
            prev = shadow.get(e.id)
            if prev is None:  # tracked from outside spawn() (a test's state): no velocity yet
                if v3:
                    raise LocalProtocolError(f"entity {e.id} has no v3 prediction state")
                shadow[e.id] = list(e.codes)
                e.mask = 0
                continue
            vel = old_motion.get(e.id)
            codes = e.codes
            predict = etype.predict
            plan = etype.plan
            out = []
            if v3:
                out += [wire.varint(e.id - last), mask.to_bytes(etype.mask_bytes, "little")]
                last = e.id
            moved: dict[int, int] = {}
            m = mask
            i = 0
            while m:
                if m & 1:
                    code = codes[i]
                    if predict[i] is not None:
                        old = prev[i]
                        assert isinstance(code, int) and isinstance(old, int)
                        if v3:
                            guess = old + vel.get(i, 0) if vel else old
                            out.append(wire.svarint(code - guess))
                        if code != old:
                            moved[i] = code - old
                            prev[i] = code
                    elif v3:
                        op, arg = plan[i]
                        out.append(
                            wire.field(op, arg, code) if op >= 0 else etype.encoders[i](code)
                        )
                m >>= 1
                i += 1
            if moved:
                motion[e.id] = moved
            if v3:
                patches3.append(b"".join(out))
            e.mask = 0
        self.motion = motion
        self._created = {}
        changed.clear()
        self._removed = []
        ids = [wire.varint(i) for i in removed]
        data2 = data3 = None
        if v2:
            parts = [_KIND_DELTA, b"\x01" if with_checksum else b"\x00", wire.varint(tick), csum]
            parts.append(encode_acks(acks))
            parts.append(wire.varint(len(records)))
            parts += records
            parts.append(wire.varint(len(patches2)))
            parts += patches2
            parts.append(wire.varint(len(ids)))
            parts += ids
            data2 = b"".join(parts)
        if v3:
            flags, ack_bytes = delta_v3.encode_acks(acks)
            body = [ack_bytes]
            if records:
                flags |= delta_v3.FLAG_CREATED
                body.append(wire.varint(len(records)))
                body += records
            if patches3:
                flags |= delta_v3.FLAG_CHANGED
                body.append(wire.varint(len(patches3)))
                body += patches3
            if ids:
                flags |= delta_v3.FLAG_REMOVED
                body.append(wire.varint(len(ids)))
                body += ids
            if with_checksum:
                flags |= delta_v3.FLAG_CHECKSUM
            data3 = b"".join([_KIND_DELTA, bytes((flags,)), wire.varint(tick), csum, *body])
        return data2, data3

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


def catch_up_v3(data: bytes, state: State) -> bytes:
    """A catch-up DELTA (v2 layout, from the server's history, taking a replica to the tick
    ``state`` is at) in gamesync.v3's layout, ending with the state's motion section."""
    entities = state.entities

    def type_of(eid: int) -> EntityType:
        return entities[eid].etype

    msg = parse_server_message(data, state.schema, type_of, version=2)
    assert isinstance(msg, Delta) and msg.base is not None
    return delta_v3.encode_delta(msg, state.schema, type_of, motion=state.motion)
