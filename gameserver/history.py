"""A room's bounded history of deltas, and the catch-up deltas built from it. Pure: no trio.

Recording costs nothing beyond keeping a reference: each tick's DELTA is already encoded (it
goes to every player), so :meth:`DeltaHistory.record` appends those bytes, in whichever coding
the room made them (gamesync.v3's where any session needs it, else the v1/v2 layout), to a
deque bounded by ticks and by total bytes. A room never encodes a second coding for its
history. Only a resume pays: :meth:`DeltaHistory.catch_up` parses the deltas since the
client's tick (either coding; only their structure is read: which entities were created,
which fields changed, which entities went, the ack increments) and merges them into one DELTA
with the BASE flag (gamesync.v2) that takes a replica at that tick straight to the current
state, with current values:

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

from shared import delta_v3, wire
from shared.errors import LocalProtocolError
from shared.protocol import Kind
from shared.schema import Entity, EntityType, FieldKind
from shared.state import (
    FLAG_BASE,
    FLAG_CHECKSUM,
    State,
    encode_acks,
    encode_masked,
    encode_record,
)

_HEAD = bytes((Kind.DELTA, FLAG_CHECKSUM | FLAG_BASE))
#: how to step over one field's bytes without decoding it: a width, or one of these
_VARINT = 0
_STRING = -1
_WIDTHS = {
    FieldKind.BOOL: 1,
    FieldKind.U8: 1,
    FieldKind.I8: 1,
    FieldKind.U16: 2,
    FieldKind.I16: 2,
    FieldKind.U32: 4,
    FieldKind.I32: 4,
    FieldKind.VARUINT: _VARINT,
    FieldKind.VARINT: _VARINT,
    FieldKind.STRING: _STRING,
}
_MAX_PLANS = 4096

#: a skip plan: the total width when every field is fixed-width, else one step per field
Plan = int | tuple[int, ...]


def field_steps(etype: EntityType, coding: int = 2) -> tuple[int, ...]:
    """For each field of ``etype``, how to step over its encoded bytes in a per-tick patch of
    ``coding`` (3: gamesync.v3, whose predicted fields are svarint residuals)."""
    steps = []
    for i, ftype in enumerate(etype.types):
        if coding == delta_v3.CODING_V3 and etype.predict[i] is not None:
            steps.append(_VARINT)
        elif ftype.kind == FieldKind.FLOAT:
            steps.append(int(ftype.width))  # type: ignore[attr-defined]
        elif ftype.kind in _WIDTHS:
            steps.append(_WIDTHS[ftype.kind])
        else:  # pragma: no cover - a new field kind needs a line above
            raise LocalProtocolError(f"delta history cannot skip a {ftype.kind.name} field")
    return tuple(steps)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(data: bytes, pos: int, plan: Plan) -> int:
    if isinstance(plan, int):
        return pos + plan
    for step in plan:
        if step > 0:
            pos += step
        elif step == _VARINT:
            while data[pos] >= 0x80:
                pos += 1
            pos += 1
        else:
            n, pos = _varint(data, pos)
            pos += n
    return pos


class DeltaHistory:
    """The last ``max_ticks`` ticks' deltas (consecutive, ending at the room's last tick),
    at most ``max_bytes`` of them; older ones are dropped first."""

    def __init__(self, max_ticks: int, max_bytes: int) -> None:
        if max_ticks < 1 or max_bytes < 1:
            raise ValueError("a delta history needs max_ticks >= 1 and max_bytes >= 1")
        self.max_ticks = max_ticks
        self.max_bytes = max_bytes
        self.nbytes = 0
        # (tick, delta, its coding, ids of the entities it removes that an earlier delta
        # carried)
        self._entries: deque[tuple[int, bytes, int, tuple[int, ...]]] = deque()
        self._removed_types: dict[int, EntityType] = {}
        self._steps: dict[tuple[int, int], tuple[int, ...]] = {}  # (type id, coding) -> steps
        self._plans: dict[tuple[int, int, int], Plan] = {}  # (type id, mask, coding) -> plan

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def oldest_base(self) -> int | None:
        """The oldest tick a catch-up can start from (None while the history is empty)."""
        entries = self._entries
        return entries[0][0] - 1 if entries else None

    def record(
        self,
        tick: int,
        delta: bytes,
        removed: Iterable[Entity] | None = None,
        coding: int = 2,
    ) -> None:
        """Keep the DELTA of ``tick`` (the tick after the last one recorded), a per-tick delta
        in ``coding`` (2: the v1/v2 layout, 3: gamesync.v3's), and the entities it removes
        (``State.removal_log``: needed for their types)."""
        entries = self._entries
        if entries and entries[-1][0] != tick - 1:
            self.clear()  # not consecutive (never in a room); start over rather than lie
        ids: tuple[int, ...] = ()
        if removed:
            types = self._removed_types
            for ent in removed:
                types[ent.id] = ent.etype
            ids = tuple(ent.id for ent in removed)
        entries.append((tick, delta, coding, ids))
        self.nbytes += len(delta)
        while len(entries) > self.max_ticks or self.nbytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, delta, _, ids = self._entries.popleft()
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

    def _plan(self, etype: EntityType, mask: int, coding: int) -> Plan:
        key = (etype.type_id, mask, coding)
        plan = self._plans.get(key)
        if plan is None:
            skey = (etype.type_id, coding)
            steps = self._steps.get(skey)
            if steps is None:
                steps = self._steps[skey] = field_steps(etype, coding)
            chosen = tuple(step for i, step in enumerate(steps) if mask >> i & 1)
            plan = sum(chosen) if all(step > 0 for step in chosen) else chosen
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def catch_up(self, have_tick: int, tick: int, state: State) -> bytes | None:
        """The catch-up DELTA from ``have_tick`` to ``tick``, the tick ``state`` is at (the
        last recorded one); None if the history does not reach back to ``have_tick``."""
        if not self.covers(have_tick, tick):
            return None
        merge = _Merge(self, state)
        entries = self._entries
        for i in range(have_tick - entries[0][0] + 1, len(entries)):
            at, data, coding, _ = entries[i]
            if coding == delta_v3.CODING_V3:
                end = merge.delta_v3(data)
            else:
                end = merge.delta_v2(data)
            if end != len(data):  # pragma: no cover - our own bytes
                raise LocalProtocolError(f"delta history misread tick {at}")
        entities = state.entities
        born = sorted(merge.created)
        patched = sorted(merge.masks)
        gone = sorted(merge.removed)
        masks = merge.masks
        parts = [
            _HEAD,
            wire.varint(tick),
            wire.varint(have_tick),
            state.checksum().to_bytes(4, "little"),
            encode_acks(sorted(merge.acks.items())),
            wire.varint(len(born)),
        ]
        parts += [encode_record(entities[eid]) for eid in born]
        parts.append(wire.varint(len(patched)))
        parts += [encode_masked(entities[eid], masks[eid]) for eid in patched]
        parts.append(wire.varint(len(gone)))
        parts += [wire.varint(eid) for eid in gone]
        return b"".join(parts)


class _Merge:
    """What the per-tick deltas of a catch-up window add up to, read delta by delta (oldest
    first): only their structure, never their values."""

    def __init__(self, history: DeltaHistory, state: State) -> None:
        self.history = history
        self.state = state
        self.created: dict[int, EntityType] = {}  # created since the base and alive so far
        self.masks: dict[int, int] = {}  # existed at the base: union of change masks
        self.removed: set[int] = set()  # existed at the base, gone
        self.acks: dict[int, int] = {}  # player -> summed increment; 0 = left

    def ack(self, player: int, inc: int) -> None:
        acks = self.acks
        prev = acks.get(player)
        if inc == 0 or prev is None:
            acks[player] = inc
        elif prev:  # else the player left: it has no later increments
            acks[player] = prev + inc

    def delta_v2(self, data: bytes) -> int:
        """Merge one per-tick DELTA in the v1/v2 layout; returns where it ended."""
        # kind, flags, tick, [checksum]: the recorded deltas never have the BASE flag
        pos = 2
        while data[pos] >= 0x80:
            pos += 1
        pos += 1
        if data[1] & FLAG_CHECKSUM:
            pos += 4
        n, pos = _varint(data, pos)
        for _ in range(n):
            player, pos = _varint(data, pos)
            inc, pos = _varint(data, pos)
            self.ack(player, inc)
        n, pos = _varint(data, pos)
        pos = self.created_section(data, pos, n)
        n, pos = _varint(data, pos)
        pos = self.changed_section(data, pos, n, 2)
        n, pos = _varint(data, pos)
        return self.removed_section(data, pos, n)

    def delta_v3(self, data: bytes) -> int:
        """Merge one per-tick DELTA in gamesync.v3's layout; returns where it ended."""
        flags = data[1]
        pos = 2
        while data[pos] >= 0x80:
            pos += 1
        pos += 1
        if flags & delta_v3.FLAG_CHECKSUM:
            pos += 4
        if flags & delta_v3.FLAG_ACK_BITS:
            base, pos = _varint(data, pos)
            bits, pos = _varint(data, pos)
            player = base
            while bits:
                if bits & 1:
                    self.ack(player, 1)
                bits >>= 1
                player += 1
        if flags & delta_v3.FLAG_ACK_PAIRS:
            n, pos = _varint(data, pos)
            for _ in range(n):
                player, pos = _varint(data, pos)
                inc, pos = _varint(data, pos)
                self.ack(player, inc)
        if flags & delta_v3.FLAG_CREATED:
            n, pos = _varint(data, pos)
            pos = self.created_section(data, pos, n)
        if flags & delta_v3.FLAG_CHANGED:
            n, pos = _varint(data, pos)
            pos = self.changed_section(data, pos, n, delta_v3.CODING_V3)
        if flags & delta_v3.FLAG_REMOVED:
            n, pos = _varint(data, pos)
            pos = self.removed_section(data, pos, n)
        return pos

    def created_section(self, data: bytes, pos: int, n: int) -> int:
        """Records (the same in both codings): id, type id, every field."""
        schema_types = self.state.schema.types
        created = self.created
        history = self.history
        plans = history._plans
        for _ in range(n):
            eid, pos = _varint(data, pos)
            type_id, pos = _varint(data, pos)
            etype = schema_types[type_id]
            created[eid] = etype
            full = (1 << len(etype)) - 1
            plan = plans.get((type_id, full, 2))
            pos = _skip(data, pos, history._plan(etype, full, 2) if plan is None else plan)
        return pos

    def changed_section(self, data: bytes, pos: int, n: int, coding: int) -> int:
        """Patches: id (v3: the gap from the one before), change mask, the changed fields."""
        entities = self.state.entities
        created = self.created
        masks = self.masks
        history = self.history
        removed_types = history._removed_types
        plans = history._plans
        plan_for = history._plan
        gaps = coding == delta_v3.CODING_V3
        last = 0
        for _ in range(n):
            eid, pos = _varint(data, pos)
            if gaps:
                eid += last
                last = eid
            known = created.get(eid)
            if known is not None:
                etype = known
            elif (ent := entities.get(eid)) is not None:
                etype = ent.etype
            elif (gone_type := removed_types.get(eid)) is not None:
                etype = gone_type
            else:  # pragma: no cover - State.removal_log missed one
                raise LocalProtocolError(f"delta history lost entity {eid}'s type")
            width = etype.mask_bytes
            mask = data[pos] if width == 1 else int.from_bytes(data[pos : pos + width], "little")
            pos += width
            if known is None:
                masks[eid] = masks.get(eid, 0) | mask
            plan = plans.get((etype.type_id, mask, coding))
            if plan is None:
                plan = plan_for(etype, mask, coding)
            if type(plan) is int:
                pos += plan
            else:
                pos = _skip(data, pos, plan)
        return pos

    def removed_section(self, data: bytes, pos: int, n: int) -> int:
        created = self.created
        for _ in range(n):
            eid, pos = _varint(data, pos)
            if created.pop(eid, None) is None:
                self.removed.add(eid)
                self.masks.pop(eid, None)
        return pos
