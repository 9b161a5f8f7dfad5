"""The state messages' value types (SNAPSHOT, DELTA and their records and patches) and the
readers both state codings share (:mod:`shared.messages` re-exports them)."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from shared import wire
from shared.errors import RemoteProtocolError
from shared.schema import Code, EntityType, Schema


@attrs.frozen
class EntityRecord:
    """An entity in full: its id, type id and one wire code per field."""

    id: int
    type_id: int
    codes: tuple[Code, ...]


@attrs.frozen
class EntityPatch:
    """Changed fields of an entity: ``mask`` bit i set means field i is in ``codes``."""

    id: int
    mask: int
    codes: tuple[Code, ...]


@attrs.frozen
class Snapshot:
    tick: int
    checksum: int
    acks: tuple[tuple[int, int], ...]  # (player, last applied input seq)
    entities: tuple[EntityRecord, ...]
    #: gamesync.v3: the nonzero velocities of predicted fields (a patch whose codes are the
    #: velocities, see shared.delta_v3); () in v1/v2
    motion: tuple[EntityPatch, ...] = ()


@attrs.frozen
class Delta:
    """The changes from the state at ``base`` to the state at ``tick``. ``base`` is None for
    the per-tick delta (base ``tick - 1``); a v2 catch-up delta after a RESUME names it."""

    tick: int
    checksum: int | None
    acks: tuple[tuple[int, int], ...]  # (player, increment of last applied seq; 0 = player left)
    created: tuple[EntityRecord, ...]
    changed: tuple[EntityPatch, ...]
    removed: tuple[int, ...]
    base: int | None = None
    #: gamesync.v3 catch-up deltas: the velocities of the state at ``tick`` (as in Snapshot)
    motion: tuple[EntityPatch, ...] = ()

    @property
    def base_tick(self) -> int:
        """The tick of the state this delta applies to."""
        return self.tick - 1 if self.base is None else self.base


def read_record(r: wire.Reader, schema: Schema) -> EntityRecord:
    eid = r.varint()
    etype = schema.type_for(r.varint())
    return EntityRecord(eid, etype.type_id, tuple(etype.decode_all(r)))


def read_patch(r: wire.Reader, type_of: Callable[[int], EntityType]) -> EntityPatch:
    eid = r.varint()
    etype = type_of(eid)
    mask = r.fixed(etype.mask_bytes)
    if mask >> len(etype.names):
        raise RemoteProtocolError(f"field mask 0x{mask:x} names fields {etype.name} lacks")
    codes = []
    m = mask
    i = 0
    decoders = etype.decoders
    while m:
        if m & 1:
            codes.append(decoders[i](r))
        m >>= 1
        i += 1
    return EntityPatch(eid, mask, tuple(codes))


def item_count(r: wire.Reader) -> int:
    n = r.varint()
    if n > len(r.data):  # every item takes at least one byte
        raise RemoteProtocolError("item count exceeds message size")
    return n
