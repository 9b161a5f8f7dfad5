"""Golden vectors: the codec against the committed tests/vectors/protocol_v1.json, both ways.

tests/test_vectors_v2.py runs these same tests on protocol_v2.json (it loads this module with
``VERSION = 2``).

For every case: encoding the JSON meaning gives exactly ``hex``, and decoding ``hex`` gives
exactly the JSON meaning. The JSON file is the source of truth (tools/make_vectors.py only helps
write it); this file reads it with its own code, independent of the generator.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from gameserver.games.arena import INPUT as ARENA_INPUT
from gameserver.games.arena import SCHEMA as ARENA_SCHEMA
from shared import wire
from shared.errors import RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    EntityPatch,
    EntityRecord,
    Error,
    Event,
    Input,
    Join,
    Joined,
    Leave,
    Redirect,
    Resume,
    Resync,
    RoomEvent,
    Snapshot,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import Kind
from shared.replica import Replica
from shared.schema import (
    Bool,
    EntityType,
    FieldKind,
    FieldList,
    FieldType,
    Float,
    InputSchema,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    UInt8,
    UInt16,
    UInt32,
    VarInt,
    VarUInt,
)
from shared.state import State, encode_acks, encode_masked, encode_record, view_checksum

#: the protocol version under test (tests/test_vectors_v2.py sets 2 before loading this module)
VERSION: int = globals().get("VERSION", 1)
VECTORS = Path(__file__).parent / "vectors" / f"protocol_v{VERSION}.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))
BY_NAME = {c["name"]: c for c in CASES}
BIG = 1 << 53
ARENA_JOINED = "server_joined_arena"

# ---------------------------------------------------------------- JSON meaning -> values


def big(value: int | str) -> int:
    """Integers of 2**53 or more are decimal strings in the JSON."""
    if isinstance(value, str):
        n = int(value)
        assert abs(n) >= BIG, f"{value!r} should be a JSON number"
        return n
    assert isinstance(value, int) and not isinstance(value, bool) and abs(value) < BIG
    return value


def as_json_int(value: int) -> int | str:
    return str(value) if abs(value) >= BIG else value


SIMPLE: dict[str, type[FieldType]] = {
    "BOOL": Bool,
    "U8": UInt8,
    "U16": UInt16,
    "U32": UInt32,
    "I8": Int8,
    "I16": Int16,
    "I32": Int32,
    "VARUINT": VarUInt,
    "VARINT": VarInt,
}


def field_type(meaning: dict[str, Any]) -> FieldType:
    kind = meaning["kind"]
    if kind in SIMPLE:
        assert set(meaning) <= {"name", "kind"}
        return SIMPLE[kind]()
    if kind == "FLOAT":
        assert set(meaning) <= {"name", "kind", "lo", "hi", "precision"}
        return Float(float(meaning["lo"]), float(meaning["hi"]), float(meaning["precision"]))
    assert kind == "STRING" and set(meaning) <= {"name", "kind", "max_bytes"}
    return String(meaning["max_bytes"])


def field_dict(fields: list[dict[str, Any]]) -> dict[str, FieldType]:
    return {f["name"]: field_type(f) for f in fields}


def schema_of(meaning: list[dict[str, Any]]) -> Schema:
    return Schema(*[EntityType(t["name"], **field_dict(t["fields"])) for t in meaning])


def code_of(ftype: FieldType, meaning: Any) -> Any:
    if isinstance(ftype, VarUInt | VarInt):
        return big(meaning)
    if isinstance(ftype, Bool):
        assert isinstance(meaning, bool)
    elif isinstance(ftype, String):
        assert isinstance(meaning, str)
    else:
        assert isinstance(meaning, int) and not isinstance(meaning, bool)
    return meaning


def codes_of(flist: FieldList, fields: dict[str, Any]) -> tuple[Any, ...]:
    assert list(fields) == list(flist.names), "every field, in schema order"
    return tuple(code_of(t, fields[n]) for n, t in flist.fields.items())


def is_view(d: dict[str, Any]) -> bool:
    """A SNAPSHOT/DELTA meaning describes a client's view: its JOINED has the VIEW flag."""
    joined = BY_NAME[d["schema_from"]]["decoded"]
    assert joined.get("view", True) is True, "the view key is present only when set"
    return bool(joined.get("view", False))


def own_view_checksum(records: list[bytes]) -> int:
    """The view checksum, written here independently of shared.state: the sum of the
    records' CRC-32, mod 2**32."""
    return sum(zlib.crc32(r) for r in records) & 0xFFFFFFFF


def joined_schemas(name: str) -> tuple[Schema, InputSchema]:
    d = BY_NAME[name]["decoded"]
    assert d["kind"] == "JOINED"
    return schema_of(d["schema"]), InputSchema(**field_dict(d["input_schema"]))


def record_of(schema: Schema, m: dict[str, Any]) -> EntityRecord:
    etype = schema.types[m["type_id"]]
    assert etype.name == m["type"]
    return EntityRecord(m["id"], m["type_id"], codes_of(etype, m["fields"]))


def patch_of(schema: Schema, m: dict[str, Any]) -> EntityPatch:
    etype = schema.by_name[m["type"]]
    bits = [etype.index[n] for n in m["fields"]]
    assert bits == sorted(bits), "patched fields in schema order"
    assert m["mask"] == sum(1 << i for i in bits)
    codes = tuple(code_of(etype.types[i], m["fields"][etype.names[i]]) for i in bits)
    return EntityPatch(m["id"], m["mask"], codes)


def acks_of(m: list[list[int | str]]) -> tuple[tuple[int, int], ...]:
    return tuple((big(p), big(s)) for p, s in m)


# ---------------------------------------------------------------- values -> JSON meaning


def field_meaning(ftype: FieldType) -> dict[str, Any]:
    m: dict[str, Any] = {"kind": FieldKind(ftype.kind).name}
    if isinstance(ftype, Float):
        m |= {"lo": ftype.lo, "hi": ftype.hi, "precision": ftype.precision}
    if isinstance(ftype, String):
        m["max_bytes"] = ftype.max_bytes
    return m


def fields_meaning(flist: FieldList) -> list[dict[str, Any]]:
    return [{"name": n} | field_meaning(t) for n, t in flist.fields.items()]


def schema_meaning(schema: Schema) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": fields_meaning(t)} for t in schema]


def code_meaning(ftype: FieldType, code: Any) -> Any:
    return as_json_int(code) if isinstance(ftype, VarUInt | VarInt) else code


def record_meaning(schema: Schema, r: EntityRecord) -> dict[str, Any]:
    etype = schema.types[r.type_id]
    fields = {
        n: code_meaning(t, c) for n, t, c in zip(etype.names, etype.types, r.codes, strict=True)
    }
    return {"id": r.id, "type_id": r.type_id, "type": etype.name, "fields": fields}


def patch_meaning(etype: EntityType, p: EntityPatch) -> dict[str, Any]:
    bits = [i for i in range(len(etype)) if p.mask >> i & 1]
    fields = {
        etype.names[i]: code_meaning(etype.types[i], c) for i, c in zip(bits, p.codes, strict=True)
    }
    return {"id": p.id, "type": etype.name, "mask": p.mask, "fields": fields}


def acks_meaning(acks: tuple[tuple[int, int], ...]) -> list[list[int | str]]:
    return [[as_json_int(p), as_json_int(s)] for p, s in acks]


def client_meaning(msg: Any, d: dict[str, Any]) -> dict[str, Any]:
    base = {"type": "client", "kind": d["kind"]}
    if isinstance(msg, Join):
        return base | {
            "version": msg.version,
            "room": msg.room,
            "game": msg.game,
            "name": msg.name,
            "token": msg.token,
            "private": msg.private,
        }
    if isinstance(msg, Resume):
        return base | {
            "version": msg.version,
            "room": msg.room,
            "token": msg.token,
            "have_tick": msg.have_tick,
        }
    if isinstance(msg, Leave | Resync):
        return base
    if isinstance(msg, Input):
        _, inp = joined_schemas(d["input_schema_from"])
        fields = {
            n: code_meaning(t, c) for n, t, c in zip(inp.names, inp.types, msg.codes, strict=True)
        }
        return base | {
            "input_schema_from": d["input_schema_from"],
            "seq": as_json_int(msg.seq),
            "fields": fields,
        }
    assert isinstance(msg, Event)
    return base | {"name": msg.name, "data_hex": msg.data.hex()}


def server_meaning(msg: Any, d: dict[str, Any], types: dict[int, EntityType]) -> dict[str, Any]:
    base = {"type": "server", "kind": d["kind"]}
    if isinstance(msg, Joined):
        joined = base | {
            "version": msg.version,
            "player": msg.player,
            "room": msg.room,
            "game": msg.game,
            "tick_rate": msg.tick_rate,
            "schema": schema_meaning(msg.schema),
            "input_schema": fields_meaning(msg.input_schema),
        }
        if msg.version >= 2:
            joined |= {
                "resumed": msg.resumed,
                "resume_token": msg.resume_token,
                "seat_hold_ms": msg.seat_hold_ms,
                "input_seq": msg.input_seq,
            }
            if msg.view:
                joined["view"] = True
        return joined
    if isinstance(msg, Snapshot):
        schema, _ = joined_schemas(d["schema_from"])
        return base | {
            "schema_from": d["schema_from"],
            "tick": msg.tick,
            "checksum": msg.checksum,
            "acks": acks_meaning(msg.acks),
            "entities": [record_meaning(schema, r) for r in msg.entities],
        }
    if isinstance(msg, Delta):
        schema, _ = joined_schemas(d["schema_from"])
        delta = base | {"schema_from": d["schema_from"], "follows": d["follows"], "tick": msg.tick}
        if msg.base is not None:
            delta["base"] = msg.base
        return delta | {
            "checksum": msg.checksum,
            "acks": acks_meaning(msg.acks),
            "created": [record_meaning(schema, r) for r in msg.created],
            "changed": [patch_meaning(types[p.id], p) for p in msg.changed],
            "removed": list(msg.removed),
        }
    if isinstance(msg, RoomEvent):
        return base | {"sender": msg.sender, "name": msg.name, "data_hex": msg.data.hex()}
    if isinstance(msg, Redirect):
        return base | {"url": msg.url, "room": msg.room}
    if isinstance(msg, Error):
        return base | {"code": msg.code, "message": msg.message}
    assert isinstance(msg, Close)
    return base | {"code": msg.code, "reason": msg.reason}


# ---------------------------------------------------------------- the replayed server state


def states() -> dict[str, dict[int, tuple[str, tuple[Any, ...]]]]:
    """The full entity state (id -> type name, codes) after each SNAPSHOT/DELTA case,
    computed from the JSON meanings alone."""
    out: dict[str, dict[int, tuple[str, tuple[Any, ...]]]] = {}
    for c in CASES:
        d = c["decoded"]
        if d["type"] != "server" or d["kind"] not in ("SNAPSHOT", "DELTA"):
            continue
        schema, _ = joined_schemas(d["schema_from"])
        if d["kind"] == "SNAPSHOT":
            ents = {}
            for m in d["entities"]:
                r = record_of(schema, m)
                ents[r.id] = (m["type"], r.codes)
        else:
            ents = dict(out[d["follows"]])
            for m in d["created"]:
                r = record_of(schema, m)
                assert r.id not in ents
                ents[r.id] = (m["type"], r.codes)
            for m in d["changed"]:
                p = patch_of(schema, m)
                name, codes = ents[p.id]
                assert name == m["type"]
                new = list(codes)
                for i, c2 in zip(
                    [i for i in range(len(codes)) if p.mask >> i & 1], p.codes, strict=True
                ):
                    new[i] = c2
                ents[p.id] = (name, tuple(new))
            for eid in d["removed"]:
                del ents[eid]
        out[c["name"]] = dict(sorted(ents.items()))
    return out


STATES = states()


def state_with(schema: Schema, ents: dict[int, tuple[str, tuple[Any, ...]]]) -> State:
    """A State holding exactly these entities (ids kept), nothing pending."""
    state = State(schema)
    for eid, (name, codes) in ents.items():
        etype = schema.by_name[name]
        state.entities[eid] = etype.cls(eid, list(codes), None)
    return state


def encode_view_message(d: dict[str, Any], name: str) -> bytes:
    """Encode a view SNAPSHOT/DELTA meaning: records in the listed order, and the view
    checksum of the state after it (computed here, then compared with the meaning's)."""
    schema, _ = joined_schemas(d["schema_from"])
    state = state_with(schema, STATES[name])
    checksum = own_view_checksum([encode_record(e) for e in state])
    if d["checksum"] is not None:
        assert d["checksum"] == checksum, "the view checksum of the state after the message"
    if d["kind"] == "SNAPSHOT":
        ents = [state.entities[m["id"]] for m in d["entities"]]
        return b"".join(
            [
                bytes((Kind.SNAPSHOT,)),
                wire.varint(d["tick"]),
                checksum.to_bytes(4, "little"),
                encode_acks(acks_of(d["acks"])),
                wire.varint(len(ents)),
                *[encode_record(e) for e in ents],
            ]
        )
    assert "base" not in d, "view rooms send no catch-up deltas"
    parts = [
        bytes((Kind.DELTA, 0 if d["checksum"] is None else 1)),
        wire.varint(d["tick"]),
        b"" if d["checksum"] is None else checksum.to_bytes(4, "little"),
        encode_acks(acks_of(d["acks"])),
        wire.varint(len(d["created"])),
        *[encode_record(state.entities[m["id"]]) for m in d["created"]],
        wire.varint(len(d["changed"])),
        *[encode_masked(state.entities[m["id"]], patch_of(schema, m).mask) for m in d["changed"]],
        wire.varint(len(d["removed"])),
        *[wire.varint(i) for i in d["removed"]],
    ]
    return b"".join(parts)


def encode_state_message(d: dict[str, Any], name: str) -> bytes:
    """Encode a SNAPSHOT/DELTA meaning with the real encoders of shared.state."""
    if is_view(d):
        return encode_view_message(d, name)
    schema, _ = joined_schemas(d["schema_from"])
    if d["kind"] == "SNAPSHOT":
        state = state_with(schema, STATES[name])
        return state.encode_snapshot(d["tick"], dict(acks_of(d["acks"])))
    # the state after this delta, with this delta's changes marked as pending
    state = state_with(schema, STATES[name])
    for m in d["created"]:
        state._created[m["id"]] = state.entities[m["id"]]
    for m in d["changed"]:
        ent = state.entities[m["id"]]
        ent.mask = patch_of(schema, m).mask
        state._changed[m["id"]] = ent
    state._removed = list(d["removed"])
    data = state.encode_delta(d["tick"], acks_of(d["acks"]), d["checksum"] is not None)
    if "base" not in d:
        return data
    # a catch-up delta (v2): the BASE flag, and the base tick right after the tick
    tick = wire.varint(d["tick"])
    assert data[2 : 2 + len(tick)] == tick
    return b"".join(
        [bytes((data[0], data[1] | 0x02)), tick, wire.varint(d["base"]), data[2 + len(tick) :]]
    )


# ---------------------------------------------------------------- the tests


def cases_of(*types: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in CASES if c["decoded"]["type"] in types]


def test_vector_file_shape() -> None:
    assert isinstance(CASES, list) and len(CASES) >= 40
    assert len(BY_NAME) == len(CASES), "case names are unique"
    for c in CASES:
        assert set(c) == {"name", "description", "hex", "decoded"}
        assert c["description"]
        assert c["hex"] == bytes.fromhex(c["hex"]).hex(), "lowercase hex, no spaces"


def test_vectors_cover_every_message_kind() -> None:
    seen = {(c["decoded"]["type"], c["decoded"].get("kind")) for c in CASES}
    for kind in ("JOIN", "LEAVE", "INPUT", "EVENT") + (("RESUME", "RESYNC") if VERSION > 1 else ()):
        assert ("client", kind) in seen
    for kind in ("JOINED", "SNAPSHOT", "DELTA", "ROOM_EVENT", "ERROR", "CLOSE"):
        assert ("server", kind) in seen
    deltas = [c["decoded"] for c in CASES if c["decoded"].get("kind") == "DELTA"]
    assert any(d["checksum"] is None for d in deltas)
    assert any(d["checksum"] is not None for d in deltas)
    for part in ("created", "changed", "removed", "acks"):
        assert any(d[part] for d in deltas), part
    assert any(s == 0 for d in deltas for _, s in d["acks"]), "an ack increment 0 (player left)"
    kinds = {c["decoded"]["field"]["kind"] for c in CASES if c["decoded"]["type"] == "field"}
    assert kinds == {k.name for k in FieldKind}
    assert {"varint", "svarint", "schema", "input_schema"} <= {c["decoded"]["type"] for c in CASES}


def test_vectors_use_the_bundled_arena_schema() -> None:
    schema, inp = joined_schemas("server_joined_arena")
    assert schema.to_bytes() == ARENA_SCHEMA.to_bytes()
    assert inp.to_bytes() == ARENA_INPUT.to_bytes()


@pytest.mark.parametrize("case", cases_of("varint", "svarint"))
def test_varint_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    value = big(d["value"])
    signed = d["type"] == "svarint"
    assert (wire.svarint(value) if signed else wire.varint(value)).hex() == case["hex"]
    r = wire.Reader(bytes.fromhex(case["hex"]))
    assert (r.svarint() if signed else r.varint()) == value
    r.expect_end()


@pytest.mark.parametrize("case", cases_of("field"))
def test_field_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    ftype = field_type(d["field"])
    code = code_of(ftype, d["code"])
    if "value" in d:
        assert isinstance(ftype, Float)
        assert ftype.to_code(d["value"]) == code  # the quantization
    else:
        assert ftype.to_code(code) == code
    assert ftype.encode(code).hex() == case["hex"]
    r = wire.Reader(bytes.fromhex(case["hex"]))
    back = ftype.decode(r)
    r.expect_end()
    assert code_meaning(ftype, back) == d["code"]
    assert type(back) is type(code)
    if isinstance(ftype, Float):
        assert len(case["hex"]) == 2 * ftype.width


@pytest.mark.parametrize("case", cases_of("schema", "input_schema"))
def test_schema_descriptor_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    data = bytes.fromhex(case["hex"])
    r = wire.Reader(data)
    if d["type"] == "schema":
        assert schema_of(d["schema"]).to_bytes() == data
        assert schema_meaning(Schema.read(r)) == d["schema"]
    else:
        assert InputSchema(**field_dict(d["fields"])).to_bytes() == data
        assert fields_meaning(InputSchema.read(r)) == d["fields"]
    r.expect_end()


@pytest.mark.parametrize("case", cases_of("client"))
def test_client_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    kind = d["kind"]
    data = bytes.fromhex(case["hex"])
    assert data[0] == Kind[kind]
    inp = None
    if kind == "JOIN":
        msg: Any = Join(d["room"], d["game"], d["name"], d["token"], d["version"], d["private"])
        assert msg.version == VERSION
        encoded = msg.to_bytes()
    elif kind == "RESUME":
        msg = Resume(d["room"], d["token"], d["have_tick"], d["version"])
        encoded = msg.to_bytes()
    elif kind == "RESYNC":
        msg = Resync()
        encoded = msg.to_bytes()
    elif kind == "LEAVE":
        msg = Leave()
        encoded = msg.to_bytes()
    elif kind == "INPUT":
        _, inp = joined_schemas(d["input_schema_from"])
        msg = Input(big(d["seq"]), codes_of(inp, d["fields"]))
        encoded = msg.to_bytes(inp)
    else:
        assert kind == "EVENT"
        msg = Event(d["name"], bytes.fromhex(d["data_hex"]))
        encoded = msg.to_bytes()
    assert encoded.hex() == case["hex"]
    parsed = parse_client_message(data, inp, version=VERSION)
    assert parsed == msg
    assert client_meaning(parsed, d) == d


@pytest.mark.parametrize("case", cases_of("server"))
def test_server_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    kind = d["kind"]
    data = bytes.fromhex(case["hex"])
    assert data[0] == Kind[kind]
    schema = None
    types: dict[int, EntityType] = {}
    if kind == "JOINED":
        assert d["version"] == VERSION
        v2 = {k: d[k] for k in ("resumed", "resume_token", "seat_hold_ms", "input_seq") if k in d}
        assert bool(v2) == (VERSION >= 2)
        if "view" in d:
            assert VERSION >= 2 and d["view"] is True
            v2["view"] = True
        encoded = Joined(
            d["player"],
            d["room"],
            d["game"],
            d["tick_rate"],
            schema_of(d["schema"]),
            InputSchema(**field_dict(d["input_schema"])),
            d["version"],
            **v2,
        ).to_bytes()
    elif kind in ("SNAPSHOT", "DELTA"):
        schema, _ = joined_schemas(d["schema_from"])
        encoded = encode_state_message(d, case["name"])
        if kind == "DELTA":
            # the receiver knows the types of the entities it already holds
            types = {eid: schema.by_name[n] for eid, (n, _) in STATES[d["follows"]].items()}
    elif kind == "ROOM_EVENT":
        encoded = RoomEvent(d["sender"], d["name"], bytes.fromhex(d["data_hex"])).to_bytes()
    elif kind == "ERROR":
        encoded = Error(d["code"], d["message"]).to_bytes()
    elif kind == "REDIRECT":
        assert VERSION >= 2
        encoded = Redirect(d["url"], d["room"]).to_bytes()
    else:
        assert kind == "CLOSE"
        encoded = Close(d["code"], d["reason"]).to_bytes()
    assert encoded.hex() == case["hex"]

    def type_of(eid: int) -> EntityType:
        try:
            return types[eid]
        except KeyError:
            raise RemoteProtocolError(f"no entity {eid}") from None

    parsed = parse_server_message(data, schema, type_of, version=VERSION)
    assert server_meaning(parsed, d, types) == d


def test_state_vectors_replay_on_a_replica() -> None:
    """SNAPSHOT then each DELTA in its ``follows`` chain applies cleanly; checksums verify."""
    snapshot = BY_NAME["server_snapshot"]
    schema, _ = joined_schemas(snapshot["decoded"]["schema_from"])
    replica = Replica(schema)
    msg = parse_server_message(bytes.fromhex(snapshot["hex"]), schema)
    assert isinstance(msg, Snapshot)
    replica.apply_snapshot(msg)
    previous = snapshot["name"]
    applied = 0
    for c in CASES:
        d = c["decoded"]
        if d.get("kind") != "DELTA" or "base" in d or d["schema_from"] != ARENA_JOINED:
            continue
        assert d["follows"] == previous
        delta = parse_server_message(bytes.fromhex(c["hex"]), schema, replica.type_of)
        assert isinstance(delta, Delta)
        replica.apply_delta(delta)
        view = {e.id: (e.etype.name, tuple(e.codes)) for e in replica}
        assert view == STATES[c["name"]]
        previous = c["name"]
        applied += 1
    assert applied >= 3
    assert replica.checks == 1 + sum(
        c["decoded"]["checksum"] is not None
        for c in CASES
        if c["decoded"].get("kind") == "DELTA"
        and "base" not in c["decoded"]
        and c["decoded"]["schema_from"] == ARENA_JOINED
    )
    assert replica.checks >= 3


def test_catch_up_vectors_apply_to_their_base_state() -> None:
    """A catch-up DELTA (v2) takes a replica at its base tick (the state of the case it
    ``follows``) to the state after it, with a checksum that verifies."""
    catch_ups = [c for c in CASES if "base" in c["decoded"]]
    assert bool(catch_ups) == (VERSION >= 2)
    snapshot = BY_NAME["server_snapshot"]
    schema, _ = joined_schemas(snapshot["decoded"]["schema_from"])
    for c in catch_ups:
        d = c["decoded"]
        replica = Replica(schema)
        replica.entities = {
            eid: schema.by_name[name].cls(eid, list(codes), None)
            for eid, (name, codes) in STATES[d["follows"]].items()
        }
        replica.tick = d["base"]
        delta = parse_server_message(bytes.fromhex(c["hex"]), schema, replica.type_of)
        assert isinstance(delta, Delta) and delta.base == d["base"]
        assert d["checksum"] is not None, "a catch-up delta always carries the checksum"
        replica.apply_delta(delta)
        assert replica.checks == 1 and replica.tick == d["tick"]
        view = {e.id: (e.etype.name, tuple(e.codes)) for e in replica}
        assert view == STATES[c["name"]]
        # applied to any other tick, it is a desync
        stale = Replica(schema)
        stale.entities = dict(replica.entities)
        stale.tick = d["base"] - 1
        with pytest.raises(RemoteProtocolError):
            stale.apply_delta(delta)


@pytest.mark.parametrize("case", cases_of("client_reject", "server_reject"))
def test_reject_vectors(case: dict[str, Any]) -> None:
    d = case["decoded"]
    data = bytes.fromhex(case["hex"])
    with pytest.raises(RemoteProtocolError) as info:
        if d["type"] == "client_reject":
            parse_client_message(data, ARENA_INPUT, version=VERSION)
        else:
            parse_server_message(
                data, ARENA_SCHEMA, lambda eid: ARENA_SCHEMA.types[0], version=VERSION
            )
    assert info.value.close_code == d["close_code"]


def test_moving_player_patch_in_the_vectors_is_six_bytes() -> None:
    d = BY_NAME["server_delta_move"]["decoded"]
    assert d["changed"] == [
        {"id": 4, "type": "player", "mask": 3, "fields": {"x": 2200, "y": 3910}}
    ]
    assert "04039808460f" in BY_NAME["server_delta_move"]["hex"]


VIEW_CASES = [c for c in CASES if c["decoded"].get("schema_from") and is_view(c["decoded"])]


def test_view_vectors_exist_in_v2_only() -> None:
    joined = [c for c in CASES if c["decoded"].get("kind") == "JOINED" and "view" in c["decoded"]]
    if VERSION == 1:
        assert not joined and not VIEW_CASES
        return
    assert [c["name"] for c in joined] == ["server_joined_view"]
    assert bytes.fromhex(joined[0]["hex"])[2] == 0x02, "JOINED flags: VIEW"
    kinds = [c["decoded"]["kind"] for c in VIEW_CASES]
    assert kinds[0] == "SNAPSHOT" and kinds.count("DELTA") >= 3
    snap = VIEW_CASES[0]["decoded"]
    ids = [m["id"] for m in snap["entities"]]
    assert ids != sorted(ids), "a view snapshot's records need not be in id order"
    assert all(len(d["decoded"]["acks"]) <= 1 for d in VIEW_CASES), "acks: only the own player"
    deltas = [c["decoded"] for c in VIEW_CASES[1:]]
    # an entity enters (created though it existed), one leaves (removed though it still
    # exists) and one re-enters with the same id
    created = [m["id"] for d in deltas for m in d["created"]]
    removed = [i for d in deltas for i in d["removed"]]
    assert set(created) & set(removed), "an entity leaves and comes back"
    assert all(d["checksum"] is not None for d in deltas)


def test_view_vectors_replay_on_a_view_replica() -> None:
    """The view chain applies on a view-mode replica with every checksum verified, states
    as the JSON says; a whole-room replica rejects the same bytes (another checksum)."""
    if VERSION == 1:
        return
    schema, _ = joined_schemas("server_joined_view")
    joined = parse_server_message(bytes.fromhex(BY_NAME["server_joined_view"]["hex"]), version=2)
    assert isinstance(joined, Joined) and joined.view and not joined.resumed
    replica = Replica(schema, view=joined.view)
    plain = Replica(schema)
    mismatches = 0
    for c in VIEW_CASES:
        d = c["decoded"]
        msg = parse_server_message(bytes.fromhex(c["hex"]), schema, replica.type_of, version=2)
        if isinstance(msg, Snapshot):
            replica.apply_snapshot(msg)
        else:
            assert isinstance(msg, Delta) and d["follows"] in STATES
            replica.apply_delta(msg)
        assert {e.id: (e.etype.name, tuple(e.codes)) for e in replica} == STATES[c["name"]]
        records = [encode_record(e) for e in replica]
        assert replica.checksum() == own_view_checksum(records) == view_checksum(records)
        try:
            if isinstance(msg, Snapshot):
                plain.apply_snapshot(msg)
            else:
                plain.apply_delta(msg)
        except RemoteProtocolError:
            mismatches += 1
    assert replica.checks == len(VIEW_CASES)
    assert mismatches == len(VIEW_CASES), "the whole-room checksum differs"
    assert replica.acks == {1: 8}


def test_view_checksum_is_order_free_and_empty_is_zero() -> None:
    assert view_checksum([]) == own_view_checksum([]) == 0
    recs = [bytes([i, i * 7 % 256, 3]) for i in range(1, 40)]
    assert view_checksum(recs) == view_checksum(recs[::-1]) == own_view_checksum(recs)
    big = [b"\xff" * 40] * 300  # the sum wraps past 2**32
    assert view_checksum(big) == own_view_checksum(big) < 2**32
