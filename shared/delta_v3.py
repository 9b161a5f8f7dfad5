"""gamesync.v3 state coding: the v3 DELTA layout and the motion section (docs/protocol.md,
"DELTA in v3").

v3 changes only how state travels; every other message is v2's. A v3 DELTA folds empty
sections into flag bits, sends the acks whose increment is 1 as a bitmask of player numbers,
lists patches in ascending id order with each id as the gap from the one before, and packs
each *predicted* field of a patch (:func:`shared.schema.predict_range`: U16, I16, U32, I32 and
FLOAT of two or more bytes) as the svarint residual against a prediction made on codes::

    predicted = code at the base tick + velocity
    velocity  = how much that code changed in the per-tick delta that produced the base state
                (0 when that delta did not patch it, the entity was new, or the base state came
                from a SNAPSHOT or a catch-up delta without it in their motion section)

A SNAPSHOT (v3) and a catch-up DELTA (v3) end with a *motion* section, the nonzero velocities
of the state they carry, so that the next per-tick delta, encoded once for the whole room,
decodes the same on every replica. A catch-up delta's own patches carry plain codes.

Everything here is pure: :mod:`shared.state` encodes the room's delta with the same rules in
its own loop; :func:`encode_delta` encodes a :class:`~shared.messages.Delta` value (vectors,
tests, the server's catch-up deltas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.protocol import Kind
from shared.schema import Code, EntityType, Schema
from shared.statemsg import (
    Delta,
    EntityPatch,
    EntityRecord,
    item_count,
    read_record,
)

#: the DELTA coding of gamesync.v3 (a connection's ``coding``; 2 = the v1/v2 layout)
CODING_V3 = 3

FLAG_CHECKSUM = 0x01
FLAG_BASE = 0x02
FLAG_ACK_BITS = 0x04
FLAG_ACK_PAIRS = 0x08
FLAG_CREATED = 0x10
FLAG_CHANGED = 0x20
FLAG_REMOVED = 0x40
KNOWN_FLAGS = 0x7F
#: the players an ack bitmask can name: ``ack_base`` .. ``ack_base + 63``
ACK_BITS_SPAN = 64

#: velocities: entity id -> {field index: velocity}, nonzero ones only
Motion = dict[int, dict[int, int]]
#: ``predict(entity_id, field_index)``: that field's code plus its velocity, in the receiver's
#: state at the delta's base tick
Predict = Callable[[int, int], int]


def coding_for(version: int, view: bool = False) -> int:
    """The DELTA/SNAPSHOT coding of a connection: 3 on gamesync.v3 except in a view room
    (JOINED flag VIEW), whose states keep the v2 layout; 2 otherwise (v1 and v2)."""
    return CODING_V3 if version >= 3 and not view else 2


# ------------------------------------------------------------------ writing


def encode_acks(acks: Iterable[tuple[int, int]]) -> tuple[int, bytes]:
    """The v3 ack section and its flag bits: the players with increment exactly 1 from the
    lowest of them up to 63 above it as a bitmask, every other (player, increment) as a pair."""
    items = list(acks)
    ones = sorted(p for p, inc in items if inc == 1)
    flags = 0
    parts: list[bytes] = []
    if ones:
        base = ones[0]
        bits = 0
        for p in ones:
            if p - base < ACK_BITS_SPAN:
                bits |= 1 << (p - base)
        flags |= FLAG_ACK_BITS
        parts += [wire.varint(base), wire.varint(bits)]
        pairs = [(p, inc) for p, inc in items if inc != 1 or p - base >= ACK_BITS_SPAN]
    else:
        pairs = items
    if pairs:
        flags |= FLAG_ACK_PAIRS
        parts.append(wire.varint(len(pairs)))
        parts += [wire.varint(p) + wire.varint(inc) for p, inc in pairs]
    return flags, b"".join(parts)


def encode_motion(
    motion: Mapping[int, Mapping[int, int]], type_of: Callable[[int], EntityType]
) -> bytes:
    """The motion section: count, then per entity in ascending id order its id gap, a field
    mask of its predicted fields with nonzero velocity, and those velocities as svarints."""
    items = sorted((eid, v) for eid, v in motion.items() if any(v.values()))
    out = [wire.varint(len(items))]
    last = 0
    for eid, vel in items:
        etype = type_of(eid)
        mask = 0
        for i, dv in vel.items():
            if dv:
                if etype.predict[i] is None:
                    raise LocalProtocolError(f"{etype.name} field {i} is not predicted")
                mask |= 1 << i
        out += [wire.varint(eid - last), mask.to_bytes(etype.mask_bytes, "little")]
        out += [wire.svarint(vel[i]) for i in range(len(etype)) if mask >> i & 1]
        last = eid
    return b"".join(out)


def encode_delta(
    delta: Delta,
    schema: Schema,
    type_of: Callable[[int], EntityType],
    predict: Predict | None = None,
    motion: Mapping[int, Mapping[int, int]] | None = None,
) -> bytes:
    """A :class:`Delta` value in the v3 layout. A per-tick delta (``base`` None) needs
    ``predict`` for its predicted fields; a catch-up delta (``base`` set) carries plain codes
    and ends with the ``motion`` section (empty when None)."""
    flags, acks = encode_acks(delta.acks)
    catch_up = delta.base is not None
    if delta.checksum is not None:
        flags |= FLAG_CHECKSUM
    if catch_up:
        flags |= FLAG_BASE
    body: list[bytes] = [acks]
    if delta.created:
        flags |= FLAG_CREATED
        body.append(wire.varint(len(delta.created)))
        for rec in delta.created:
            etype = schema.types[rec.type_id]
            body += [wire.varint(rec.id), wire.varint(rec.type_id), etype.encode_all(rec.codes)]
    if delta.changed:
        flags |= FLAG_CHANGED
        body.append(wire.varint(len(delta.changed)))
        last = 0
        for patch in sorted(delta.changed, key=lambda p: p.id):
            etype = type_of(patch.id)
            body += [wire.varint(patch.id - last), patch.mask.to_bytes(etype.mask_bytes, "little")]
            last = patch.id
            j = 0
            for i in range(len(etype)):
                if patch.mask >> i & 1:
                    code = patch.codes[j]
                    j += 1
                    if etype.predict[i] is not None and not catch_up:
                        if predict is None:
                            raise LocalProtocolError("a per-tick v3 delta needs predict()")
                        body.append(wire.svarint(int(code) - predict(patch.id, i)))
                    else:
                        body.append(etype.encoders[i](code))
    if delta.removed:
        flags |= FLAG_REMOVED
        body.append(wire.varint(len(delta.removed)))
        body += [wire.varint(eid) for eid in delta.removed]
    if catch_up:
        body.append(encode_motion(motion or {}, type_of))
    head = [bytes((Kind.DELTA, flags)), wire.varint(delta.tick)]
    if catch_up:
        assert delta.base is not None
        head.append(wire.varint(delta.base))
    if delta.checksum is not None:
        head.append(delta.checksum.to_bytes(4, "little"))
    return b"".join(head + body)


# ------------------------------------------------------------------ reading


def read_acks(r: wire.Reader, flags: int) -> tuple[tuple[int, int], ...]:
    """The v3 ack section as (player, increment) pairs: the bitmask's players in ascending
    order, then the explicit pairs. A player named twice is invalid."""
    acks: list[tuple[int, int]] = []
    if flags & FLAG_ACK_BITS:
        base = r.varint()
        bits = r.varint()
        if not bits:
            raise RemoteProtocolError("empty ack bitmask")
        p = base
        while bits:
            if bits & 1:
                acks.append((p, 1))
            bits >>= 1
            p += 1
    if flags & FLAG_ACK_PAIRS:
        acks += [(r.varint(), r.varint()) for _ in range(item_count(r))]
    if len({p for p, _ in acks}) != len(acks):
        raise RemoteProtocolError("delta acks name a player twice")
    return tuple(acks)


def read_motion(r: wire.Reader, type_of: Callable[[int], EntityType]) -> tuple[EntityPatch, ...]:
    """The motion section: (id, mask, velocities) per entity, as patches whose codes are the
    velocities. Ids ascend (a gap of 0 is invalid); masks name predicted fields only; no
    velocity is 0."""
    out = []
    eid = 0
    for _ in range(item_count(r)):
        gap = r.varint()
        if not gap:
            raise RemoteProtocolError("motion ids must ascend")
        eid += gap
        etype = type_of(eid)
        mask = r.fixed(etype.mask_bytes)
        vel = []
        m = mask
        i = 0
        while m:
            if m & 1:
                if i >= len(etype) or etype.predict[i] is None:
                    raise RemoteProtocolError(
                        f"motion mask 0x{mask:x} names a field {etype.name} does not predict"
                    )
                v = r.svarint()
                if not v:
                    raise RemoteProtocolError("motion lists a velocity of 0")
                vel.append(v)
            m >>= 1
            i += 1
        out.append(EntityPatch(eid, mask, tuple(vel)))
    return tuple(out)


def read_delta(
    r: wire.Reader,
    schema: Schema,
    type_of: Callable[[int], EntityType] | None,
    predict: Predict | None,
) -> Delta:
    """A v3 DELTA after its kind byte (see the module docstring)."""
    flags = r.u8()
    if flags & ~KNOWN_FLAGS:
        raise RemoteProtocolError(f"unknown delta flags 0x{flags:02x}")
    tick = r.varint()
    catch_up = bool(flags & FLAG_BASE)
    base = r.varint() if catch_up else None
    if base is not None and base >= tick:
        raise RemoteProtocolError(f"delta base tick {base} not before its tick {tick}")
    csum = r.fixed(4) if flags & FLAG_CHECKSUM else None
    acks = read_acks(r, flags)
    created: tuple[EntityRecord, ...] = ()
    if flags & FLAG_CREATED:
        created = tuple(read_record(r, schema) for _ in range(item_count(r)))
    known = {rec.id: schema.types[rec.type_id] for rec in created}

    def lookup(eid: int) -> EntityType:
        if eid in known:
            raise RemoteProtocolError(f"entity {eid} both created and patched")
        if type_of is None:
            raise RemoteProtocolError("delta patches need the receiver's entity types")
        return type_of(eid)

    changed: list[EntityPatch] = []
    if flags & FLAG_CHANGED:
        eid = 0
        for _ in range(item_count(r)):
            gap = r.varint()
            if not gap:
                raise RemoteProtocolError("delta patch ids must ascend")
            eid += gap
            etype = lookup(eid)
            mask = r.fixed(etype.mask_bytes)
            if mask >> len(etype.names):
                raise RemoteProtocolError(f"field mask 0x{mask:x} names fields {etype.name} lacks")
            codes: list[Code] = []
            m = mask
            i = 0
            ranges = etype.predict
            decoders = etype.decoders
            while m:
                if m & 1:
                    rng = ranges[i]
                    if rng is None or catch_up:
                        codes.append(decoders[i](r))
                    else:
                        if predict is None:
                            raise RemoteProtocolError("v3 delta patches need the receiver's state")
                        code = predict(eid, i) + r.svarint()
                        if not rng[0] <= code <= rng[1]:
                            raise RemoteProtocolError(
                                f"entity {eid} field {etype.names[i]}: predicted code {code} out of range"
                            )
                        codes.append(code)
                m >>= 1
                i += 1
            changed.append(EntityPatch(eid, mask, tuple(codes)))
    removed: tuple[int, ...] = ()
    if flags & FLAG_REMOVED:
        removed = tuple(r.varint() for _ in range(item_count(r)))
    motion: tuple[EntityPatch, ...] = ()
    if catch_up:
        alive = {**known}
        gone = set(removed)

        def after(eid: int) -> EntityType:
            if eid in gone:
                raise RemoteProtocolError(f"motion of entity {eid}, which the delta removes")
            etype = alive.get(eid)
            if etype is not None:
                return etype
            if type_of is None:
                raise RemoteProtocolError("delta motion needs the receiver's entity types")
            return type_of(eid)

        motion = read_motion(r, after)
    return Delta(tick, csum, acks, created, tuple(changed), removed, base, motion)
