"""Comparing a room's state with a client's replica, and readable reports of what differs."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gameserver.room import Room
from shared.replica import DesyncError, Replica
from shared.schema import Code, Entity, FieldType, Float

#: most differences listed in an :class:`OutOfSync` message (all are in ``.differences``)
MAX_LISTED = 25


class DiffKind(enum.Enum):
    """What kind of disagreement between the server and a client's replica."""

    #: the replica raised :class:`~shared.replica.DesyncError` (a checksum or structure mismatch)
    DESYNC = "desync"
    #: the replica is at another tick than the server
    TICK = "tick"
    #: an entity the server has and the replica lacks
    MISSING = "missing"
    #: an entity the replica has and the server lacks
    EXTRA = "extra"
    #: an entity of another type on each side
    TYPE = "type"
    #: a field with another value on each side
    FIELD = "field"
    #: a player's last applied input sequence number differs
    ACK = "ack"
    #: the state checksums differ
    CHECKSUM = "checksum"


@attrs.frozen
class Difference:
    """One disagreement between the server's state and the replica of player ``client``."""

    kind: DiffKind
    #: the player id whose replica disagrees
    client: str
    entity: int | None = None
    #: the entity type's name
    etype: str | None = None
    field: str | None = None
    #: the server's and the replica's value (for FIELD: the game value, dequantized)
    server: Any = None
    replica: Any = None
    #: for FIELD: the wire codes behind those values
    server_code: Code | None = None
    replica_code: Code | None = None
    detail: str = ""

    def __str__(self) -> str:
        who = f"{self.client}:"
        what = f"entity #{self.entity} ({self.etype})"
        kind = self.kind
        if kind is DiffKind.DESYNC:
            return f"{who} replica desync: {self.detail}"
        if kind is DiffKind.TICK:
            return f"{who} replica at tick {self.replica}, server at tick {self.server}"
        if kind is DiffKind.MISSING:
            return f"{who} {what} exists on the server but not in the replica: {self.server}"
        if kind is DiffKind.EXTRA:
            return f"{who} {what} is in the replica but not on the server: {self.replica}"
        if kind is DiffKind.TYPE:
            return f"{who} entity #{self.entity} is a {self.server} on the server, a {self.replica} in the replica"
        if kind is DiffKind.FIELD:
            server = _show(self.server, self.server_code)
            replica = _show(self.replica, self.replica_code)
            return f"{who} {what} field {self.field!r}: server {server}, replica {replica}"
        if kind is DiffKind.ACK:
            return (
                f"{who} last applied input of player {self.entity}: "
                f"server {self.server}, replica {self.replica}"
            )
        return f"{who} checksum: server {self.server:08x}, replica {self.replica:08x}"


def _show(value: Any, code: Code | None) -> str:
    if isinstance(value, float):
        return f"{value:g} (code {code})"
    return repr(value)


class OutOfSync(AssertionError):
    """:meth:`RoomHarness.assert_in_sync` found differences; they are in ``differences``."""

    def __init__(self, tick: int, differences: list[Difference]) -> None:
        self.tick = tick
        self.differences = differences
        lines = [str(d) for d in differences[:MAX_LISTED]]
        if len(differences) > MAX_LISTED:
            lines.append(f"... and {len(differences) - MAX_LISTED} more")
        super().__init__(
            f"{len(differences)} difference(s) between the server at tick {tick} and the "
            "players' replicas:\n  " + "\n  ".join(lines)
        )


def compare(
    client: str,
    room: Room,
    replica: Replica,
    desyncs: Sequence[DesyncError] = (),
    *,
    number: int | None = None,
) -> list[Difference]:
    """Every difference between ``room``'s state and ``replica`` (the replica of player
    ``client``): the desyncs it saw, its tick, each entity field by field, the input acks and
    the checksum. [] if they agree. In a view room (``room.views``) the replica is compared
    with player ``number``'s view: the entities it sees, its own ack, its view checksum."""
    me = client
    out = [Difference(DiffKind.DESYNC, me, detail=str(exc)) for exc in desyncs]
    if replica.tick != room.state_tick:
        out.append(Difference(DiffKind.TICK, me, server=room.state_tick, replica=replica.tick))
    views = room.views
    if views is not None:
        if number is None:
            raise ValueError("comparing a view room's replica needs the player's number")
        server_ents: Mapping[int, Entity] = views.visible(number)
        own = room.acks.get(number, 0)
        server_acks = {number: own} if own else {}
        server_sum = views.checksum_of(views.cells_of(number))
    else:
        server_ents = room.ctx.state.entities
        server_acks = {p: s for p, s in room.acks.items() if s}
        server_sum = room.ctx.state.checksum()
    mine = replica.entities
    for eid in sorted(server_ents.keys() | mine.keys()):
        ent = server_ents.get(eid)
        rep = mine.get(eid)
        if rep is None:
            assert ent is not None
            out.append(Difference(DiffKind.MISSING, me, eid, ent.etype.name, server=ent.as_dict()))
        elif ent is None:
            out.append(Difference(DiffKind.EXTRA, me, eid, rep.etype.name, replica=rep.as_dict()))
        elif ent.etype.name != rep.etype.name or ent.etype.type_id != rep.etype.type_id:
            out.append(
                Difference(DiffKind.TYPE, me, eid, server=ent.etype.name, replica=rep.etype.name)
            )
        else:
            out += _field_differences(me, ent, rep)
    replica_acks = {p: s for p, s in replica.acks.items() if s}
    for number in sorted(server_acks.keys() | replica_acks.keys()):
        if server_acks.get(number, 0) != replica_acks.get(number, 0):
            out.append(
                Difference(
                    DiffKind.ACK,
                    me,
                    number,
                    server=server_acks.get(number, 0),
                    replica=replica_acks.get(number, 0),
                )
            )
    replica_sum = replica.checksum()
    if server_sum != replica_sum:
        out.append(Difference(DiffKind.CHECKSUM, me, server=server_sum, replica=replica_sum))
    return out


def _field_differences(client: str, ent: Entity, rep: Entity) -> list[Difference]:
    out = []
    etype = ent.etype
    for i, (name, ftype) in enumerate(zip(etype.names, etype.types, strict=True)):
        server_code = ent.codes[i]
        replica_code = rep.codes[i] if i < len(rep.codes) else None
        if server_code != replica_code:
            out.append(
                Difference(
                    DiffKind.FIELD,
                    client,
                    ent.id,
                    etype.name,
                    name,
                    server=_value(ftype, server_code),
                    replica=_value(ftype, replica_code),
                    server_code=server_code,
                    replica_code=replica_code,
                )
            )
    return out


def _value(ftype: FieldType, code: Code | None) -> Any:
    if code is None:
        return None
    value = ftype.to_value(code)
    if isinstance(ftype, Float):  # 12.300000000000001 -> 12.3, to the field's precision
        digits = max(0, -math.floor(math.log10(ftype.precision)) + 1)
        value = round(value, digits)
    return value
