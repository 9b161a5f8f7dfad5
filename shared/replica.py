"""The client's copy of a room's state, rebuilt from one SNAPSHOT and then DELTAs."""

from __future__ import annotations

from collections.abc import Iterator

from shared.errors import RemoteProtocolError
from shared.messages import Delta, EntityPatch, EntityRecord, Snapshot
from shared.schema import Entity, EntityType, Schema
from shared.state import encode_record, records_checksum, view_checksum


class DesyncError(RemoteProtocolError):
    """The replica no longer matches the server: a checksum or tick mismatch."""


class Replica:
    """Applies snapshots and deltas, tracks input acks, and checks the server's checksums.

    ``view``: the JOINED had the VIEW flag (gamesync.v2): the replica holds the client's
    view, not the whole room, and checksums are view checksums
    (:func:`shared.state.view_checksum`). Applying messages is the same either way."""

    def __init__(self, schema: Schema, view: bool = False, coding: int = 2) -> None:
        self.schema = schema
        self.view = view
        #: the state coding (:func:`shared.delta_v3.coding_for`): 3 keeps the velocities the
        #: v3 prediction needs (``predicted`` is the ``predict`` of ``parse_server_message``)
        self.coding = coding
        #: v3: entity id -> {field index: velocity}, nonzero only (see shared.delta_v3)
        self.motion: dict[int, dict[int, int]] = {}
        self.entities: dict[int, Entity] = {}
        self.tick = -1
        self.acks: dict[int, int] = {}
        self.checks = 0  # checksums verified

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def get(self, entity_id: int) -> Entity | None:
        return self.entities.get(entity_id)

    def of_type(self, etype: EntityType | str) -> list[Entity]:
        if isinstance(etype, str):
            etype = self.schema.by_name[etype]
        return [e for e in self.entities.values() if e.etype is etype]

    def type_of(self, entity_id: int) -> EntityType:
        ent = self.entities.get(entity_id)
        if ent is None:
            raise DesyncError(f"delta patches entity {entity_id}, which the replica lacks")
        return ent.etype

    def predicted(self, entity_id: int, index: int) -> int:
        """v3: the predicted code of a field: its code plus its velocity."""
        ent = self.entities.get(entity_id)
        if ent is None:
            raise DesyncError(f"delta patches entity {entity_id}, which the replica lacks")
        code = ent.codes[index]
        assert isinstance(code, int)
        vel = self.motion.get(entity_id)
        return code + vel.get(index, 0) if vel else code

    def _set_motion(self, motion: tuple[EntityPatch, ...]) -> None:
        self.motion = {}
        for p in motion:
            if p.id not in self.entities:
                raise DesyncError(f"motion of entity {p.id}, which the replica lacks")
            vel: dict[int, int] = {}
            m = p.mask
            i = j = 0
            while m:
                if m & 1:
                    vel[i] = int(p.codes[j])
                    j += 1
                m >>= 1
                i += 1
            self.motion[p.id] = vel

    def _make(self, rec: EntityRecord) -> Entity:
        return self.schema.types[rec.type_id].cls(rec.id, list(rec.codes), None)

    def checksum(self) -> int:
        if self.view:
            return view_checksum(encode_record(e) for e in self.entities.values())
        return records_checksum(encode_record(self.entities[i]) for i in sorted(self.entities))

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.entities = {rec.id: self._make(rec) for rec in snap.entities}
        if len(self.entities) != len(snap.entities):
            raise DesyncError(f"snapshot at tick {snap.tick} lists an entity twice")
        self.tick = snap.tick
        self.acks = dict(snap.acks)
        if self.coding == 3:
            self._set_motion(snap.motion)
        self._verify(snap.checksum)

    def apply_delta(self, delta: Delta, verify: bool = True) -> None:
        if self.tick < 0:
            raise DesyncError("delta before any snapshot")
        if delta.base_tick != self.tick:
            if delta.base is None:
                raise DesyncError(f"delta for tick {delta.tick} after tick {self.tick}")
            raise DesyncError(
                f"catch-up delta from tick {delta.base} to {delta.tick} after tick {self.tick}"
            )
        ents = self.entities
        track = self.coding == 3 and delta.base is None
        motion: dict[int, dict[int, int]] = {}
        for rec in delta.created:
            if rec.id in ents:
                raise DesyncError(f"delta creates entity {rec.id}, which exists")
            ents[rec.id] = self._make(rec)
        for patch in delta.changed:
            ent = ents.get(patch.id)
            if ent is None:
                raise DesyncError(f"delta patches entity {patch.id}, which the replica lacks")
            codes = ent.codes
            mask = patch.mask
            predict = ent.etype.predict
            moved: dict[int, int] = {}
            i = 0
            j = 0
            while mask:
                if mask & 1:
                    code = patch.codes[j]
                    if track and predict[i] is not None:
                        moved[i] = int(code) - int(codes[i])
                    codes[i] = code
                    j += 1
                mask >>= 1
                i += 1
            if moved:
                motion[patch.id] = {k: v for k, v in moved.items() if v}
        for eid in delta.removed:
            if ents.pop(eid, None) is None:
                raise DesyncError(f"delta removes entity {eid}, which the replica lacks")
        for player, inc in delta.acks:
            if inc == 0:
                self.acks.pop(player, None)
            else:
                self.acks[player] = self.acks.get(player, 0) + inc
        if self.coding == 3:
            if track:
                self.motion = {eid: v for eid, v in motion.items() if v and eid in ents}
            else:
                self._set_motion(delta.motion)
        self.tick = delta.tick
        if verify and delta.checksum is not None:
            self._verify(delta.checksum)

    def _verify(self, expected: int) -> None:
        got = self.checksum()
        self.checks += 1
        if got != expected:
            raise DesyncError(f"checksum mismatch at tick {self.tick}: {got:08x} != {expected:08x}")
