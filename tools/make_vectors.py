"""Write tests/vectors/protocol_v1.json, protocol_v2.json and protocol_v3.json: golden byte
vectors for the gamesync.v1, v2 and v3 wire protocols (the v3 file holds what v3 changes, the
state coding: tools/vectors_v3.py).

Usage (from the repository root)::

    .venv/bin/python tools/make_vectors.py           # (re)write both files
    .venv/bin/python tools/make_vectors.py --check   # exit 1 if a file differs

Each file is complete for its version (a client of one version needs only its file). v2 has
the v1 cases with the v2 version byte and JOINED layout, plus RESUME, RESYNC, a resumed JOINED,
a catch-up DELTA (the BASE flag), the v2 rejections, and a *view* chain (a JOINED with the
VIEW flag, then a SNAPSHOT and DELTAs of one client's view, whose checksums are view checksums).

The committed JSON is the source of truth; tests/test_vectors.py checks the codec against it in
both directions. This script is only a helper for adding cases: it builds each message with the
codec, so review every changed byte before committing a regenerated file.

JSON conventions (also in docs/protocol.md, "Golden test vectors"):

* ``hex`` is the whole binary WebSocket message (or the encoded primitive), lowercase.
* Field values are *wire codes*: Float fields hold the quantized step, not the float.
* Integers of 2**53 or more are written as decimal strings (JSON readers lose precision above).
* Byte strings are hex strings in keys ending in ``_hex``.
* SNAPSHOT/DELTA cases name the JOINED case whose schema decodes them (``schema_from``) and,
  for a DELTA, the case whose state it applies to (``follows``). A v2 JOINED with the VIEW flag
  has ``"view": true`` (the key is absent when the flag is clear); the SNAPSHOT/DELTA cases
  whose ``schema_from`` names it are a view, so a replica checks them with the view checksum. A patch's ``type`` is not on
  the wire: the receiver knows it from the entity it already holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gameserver.games.arena import GEM, INPUT, PLAYER, SCHEMA  # noqa: E402
from shared import wire  # noqa: E402
from shared.messages import (  # noqa: E402
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
    parse_server_message,
)
from shared.protocol import CloseCode  # noqa: E402
from shared.schema import (  # noqa: E402
    Bool,
    EntityType,
    FieldList,
    FieldType,
    Float,
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
from shared.state import (  # noqa: E402
    State,
    encode_acks,
    encode_masked,
    encode_patch,
    encode_record,
    view_checksum,
)

VECTORS = ROOT / "tests" / "vectors"
BIG = 1 << 53
JOINED_CASE = "server_joined_arena"


def num(value: int) -> int | str:
    return str(value) if abs(value) >= BIG else value


def field_meaning(ftype: FieldType) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": ftype.kind.name}
    if isinstance(ftype, Float):
        out.update(lo=ftype.lo, hi=ftype.hi, precision=ftype.precision)
    elif isinstance(ftype, String):
        out["max_bytes"] = ftype.max_bytes
    return out


def fields_meaning(flist: FieldList) -> list[dict[str, Any]]:
    return [{"name": n, **field_meaning(t)} for n, t in flist.fields.items()]


def schema_meaning(schema: Schema) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": fields_meaning(t)} for t in schema]


def code_meaning(ftype: FieldType, code: Any) -> Any:
    if isinstance(ftype, VarUInt | VarInt):
        return num(code)
    return code


def codes_meaning(flist: FieldList, codes: tuple[Any, ...]) -> dict[str, Any]:
    return {n: code_meaning(t, c) for n, t, c in zip(flist.names, flist.types, codes, strict=True)}


def record_meaning(schema: Schema, rec: EntityRecord) -> dict[str, Any]:
    etype = schema.types[rec.type_id]
    return {
        "id": rec.id,
        "type_id": rec.type_id,
        "type": etype.name,
        "fields": codes_meaning(etype, rec.codes),
    }


def patch_meaning(etype: EntityType, patch: EntityPatch) -> dict[str, Any]:
    bits = [i for i in range(len(etype.names)) if patch.mask >> i & 1]
    return {
        "id": patch.id,
        "type": etype.name,
        "mask": patch.mask,
        "fields": {
            etype.names[i]: code_meaning(etype.types[i], c)
            for i, c in zip(bits, patch.codes, strict=True)
        },
    }


def acks_meaning(acks: tuple[tuple[int, int], ...]) -> list[list[int | str]]:
    return [[num(p), num(s)] for p, s in acks]


def case(name: str, description: str, data: bytes, decoded: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description, "hex": data.hex(), "decoded": decoded}


# ---------------------------------------------------------------- primitives


def primitive_cases() -> list[dict[str, Any]]:
    cases = []
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1, 2**63, 2**64 - 1):
        cases.append(
            case(
                f"varint_{value}",
                f"unsigned LEB128 varint {value} ({len(wire.varint(value))} bytes)",
                wire.varint(value),
                {"type": "varint", "value": num(value)},
            )
        )
    for value in (0, -1, 1, -64, 63, -65, 64, -300, -(2**63), 2**63 - 1):
        label = f"m{-value}" if value < 0 else str(value)
        cases.append(
            case(
                f"svarint_{label}",
                f"zigzag varint {value}: zigzag {wire.zigzag(value)}, then LEB128",
                wire.svarint(value),
                {"type": "svarint", "value": num(value)},
            )
        )
    return cases


def field_cases() -> list[dict[str, Any]]:
    pos = Float(0.0, 1000.0, 0.05)
    axis = Float(-1.0, 1.0, 0.01)
    big = Float(0.0, 100000.0, 0.01)
    specs: list[tuple[str, str, FieldType, Any, float | None]] = [
        ("bool_true", "BOOL true: one byte 0x01", Bool(), True, None),
        ("bool_false", "BOOL false: one byte 0x00", Bool(), False, None),
        ("u8", "U8 200", UInt8(), 200, None),
        ("u16", "U16 0x1234, little-endian", UInt16(), 0x1234, None),
        ("u32", "U32 4000000000, little-endian", UInt32(), 4_000_000_000, None),
        ("i8", "I8 -5, two's complement", Int8(), -5, None),
        ("i16", "I16 -2, two's complement little-endian", Int16(), -2, None),
        ("i32", "I32 -100000, two's complement little-endian", Int32(), -100_000, None),
        ("varuint", "VARUINT 300: a LEB128 varint", VarUInt(), 300, None),
        ("varuint_max", "VARUINT 2**64-1", VarUInt(), 2**64 - 1, None),
        ("varint", "VARINT -300: zigzag 599, then LEB128", VarInt(), -300, None),
        (
            "float_pos",
            "FLOAT lo=0 hi=1000 precision=0.05 (20000 steps, 2 bytes): value 12.34 -> "
            "round(12.34 / 0.05) = 247",
            pos,
            247,
            12.34,
        ),
        (
            "float_axis",
            "FLOAT lo=-1 hi=1 precision=0.01 (200 steps, 1 byte): value 0.5 -> "
            "round((0.5 + 1) / 0.01) = 150",
            axis,
            150,
            0.5,
        ),
        (
            "float_clamped",
            "FLOAT lo=-1 hi=1 precision=0.01: value 1.7 is above hi, clamped to the top step 200",
            axis,
            200,
            1.7,
        ),
        (
            "float_3_bytes",
            "FLOAT lo=0 hi=100000 precision=0.01 (10000000 steps, 3 bytes): value 1234.56 -> "
            "123456",
            big,
            123456,
            1234.56,
        ),
        ("string", "STRING max_bytes=32: 'héllo' is 6 UTF-8 bytes", String(32), "héllo", None),
        ("string_empty", "STRING max_bytes=32: empty", String(32), "", None),
    ]
    cases = []
    for name, description, ftype, code, value in specs:
        if value is not None:
            assert ftype.to_code(value) == code, name
        else:
            assert ftype.to_code(code) == code, name
        decoded: dict[str, Any] = {"type": "field", "field": field_meaning(ftype)}
        if value is not None:
            decoded["value"] = value
        decoded["code"] = code_meaning(ftype, code)
        cases.append(case(f"field_{name}", description, ftype.encode(code), decoded))
    cases.append(
        case(
            "input_schema_arena",
            "the arena input schema descriptor: field count, then name, kind byte, parameters",
            INPUT.to_bytes(),
            {"type": "input_schema", "fields": fields_meaning(INPUT)},
        )
    )
    cases.append(
        case(
            "schema_arena",
            "the arena entity schema descriptor: type count, then each type's name and fields",
            SCHEMA.to_bytes(),
            {"type": "schema", "schema": schema_meaning(SCHEMA)},
        )
    )
    return cases


# ---------------------------------------------------------------- messages


def client_cases(version: int) -> list[dict[str, Any]]:
    def join(msg: Join) -> dict[str, Any]:
        return {
            "type": "client",
            "kind": "JOIN",
            "version": msg.version,
            "room": msg.room,
            "game": msg.game,
            "name": msg.name,
            "token": msg.token,
            "private": msg.private,
        }

    j1 = Join("lobby", "arena", "alice", version=version)
    j2 = Join("duel:7", "", "bøb", "reserved-token", version=version)
    j3 = Join("", "arena", "carol", "eyJ.x.y", version=version, private=True)
    i1 = Input(1, INPUT.codes_for({"dx": 0.5, "dy": -0.25}))
    i2 = Input(300, INPUT.codes_for({"dx": -1.0, "dy": 1.0}))
    e1 = Event("chat", b"hi!")
    e2 = Event("ping")
    cases = [
        case(
            "client_join",
            "JOIN room 'lobby', game 'arena', player name 'alice'",
            j1.to_bytes(),
            join(j1),
        ),
        case(
            "client_join_private",
            "JOIN with the private flag: create a new private room (room name empty)",
            j3.to_bytes(),
            join(j3),
        ),
        case(
            "client_join_default_game_token",
            "JOIN with an empty game name (the server's default game) and a token",
            j2.to_bytes(),
            join(j2),
        ),
        case(
            "client_leave",
            "LEAVE: the kind byte alone",
            Leave().to_bytes(),
            {"type": "client", "kind": "LEAVE"},
        ),
        case(
            "client_input_arena",
            "INPUT seq 1 with the arena input schema: dx 0.5 -> code 150, dy -0.25 -> code 75",
            i1.to_bytes(INPUT),
            {
                "type": "client",
                "kind": "INPUT",
                "input_schema_from": JOINED_CASE,
                "seq": 1,
                "fields": codes_meaning(INPUT, i1.codes),
            },
        ),
        case(
            "client_input_arena_seq_300",
            "INPUT seq 300 (a 2-byte varint): dx -1 -> code 0, dy 1 -> code 200",
            i2.to_bytes(INPUT),
            {
                "type": "client",
                "kind": "INPUT",
                "input_schema_from": JOINED_CASE,
                "seq": 300,
                "fields": codes_meaning(INPUT, i2.codes),
            },
        ),
        case(
            "client_event",
            "EVENT 'chat' with 3 bytes of data",
            e1.to_bytes(),
            {"type": "client", "kind": "EVENT", "name": "chat", "data_hex": e1.data.hex()},
        ),
        case(
            "client_event_no_data",
            "EVENT 'ping' with no data",
            e2.to_bytes(),
            {"type": "client", "kind": "EVENT", "name": "ping", "data_hex": ""},
        ),
    ]
    if version >= 2:
        r1 = Resume("lobby", RESUME_TOKEN, 10, version)
        r2 = Resume("lobby", RESUME_TOKEN, 0, version)
        cases += [
            case(
                "client_resume",
                "RESUME (v2): take back the seat in 'lobby' held for this resume token; the "
                "client's replica is at tick 10 (answered with a catch-up DELTA from tick 10)",
                r1.to_bytes(),
                resume(r1),
            ),
            case(
                "client_resume_no_state",
                "RESUME (v2) from a client that holds no state (have_tick 0): answered with a "
                "SNAPSHOT",
                r2.to_bytes(),
                resume(r2),
            ),
            case(
                "client_resync",
                "RESYNC (v2): the kind byte alone; ask for a fresh SNAPSHOT",
                Resync().to_bytes(),
                {"type": "client", "kind": "RESYNC"},
            ),
        ]
    return cases


#: the resume token in the v2 vectors: opaque to clients (made by the server)
RESUME_TOKEN = "q83vASNFZ4kBAnR5cGljYWwtcmVzdW1lLW1hYw"


def resume(msg: Resume) -> dict[str, Any]:
    return {
        "type": "client",
        "kind": "RESUME",
        "version": msg.version,
        "room": msg.room,
        "token": msg.token,
        "have_tick": msg.have_tick,
    }


def joined_meaning(joined: Joined) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "server",
        "kind": "JOINED",
        "version": joined.version,
        "player": joined.player,
        "room": joined.room,
        "game": joined.game,
        "tick_rate": joined.tick_rate,
        "schema": schema_meaning(SCHEMA),
        "input_schema": fields_meaning(INPUT),
    }
    if joined.version >= 2:
        out.update(
            resumed=joined.resumed,
            resume_token=joined.resume_token,
            seat_hold_ms=joined.seat_hold_ms,
            input_seq=joined.input_seq,
        )
        if joined.view:
            out["view"] = True
    return out


def state_cases(version: int) -> list[dict[str, Any]]:
    """JOINED, then a SNAPSHOT and a chain of DELTAs a replica can apply in order."""
    v2 = version >= 2
    joined = Joined(
        1,
        "lobby",
        "arena",
        20,
        SCHEMA,
        INPUT,
        version,
        resume_token=RESUME_TOKEN if v2 else "",
        seat_hold_ms=20000 if v2 else 0,
    )
    description = (
        "JOINED: player 1 in room 'lobby' running 'arena' at 20 ticks/s, with the entity "
        "schema and the input schema"
    )
    if v2:
        description += (
            "; v2: flags 0 (a fresh join), then the resume token, the seat hold (20000 ms) "
            "and the last applied input seq (0)"
        )
    cases = [case(JOINED_CASE, description, joined.to_bytes(), joined_meaning(joined))]
    if v2:
        resumed = Joined(
            1, "lobby", "arena", 20, SCHEMA, INPUT, version, True, RESUME_TOKEN[::-1], 20000, 5
        )
        cases.append(
            case(
                "server_joined_resumed",
                "JOINED (v2) answering a RESUME: flags 0x01 (resumed), the same player 1, a new "
                "resume token (the old one is dead now), seat hold 20000 ms, and input seq 5: "
                "the client re-sends its inputs after seq 5",
                resumed.to_bytes(),
                joined_meaning(resumed),
            )
        )
    state = State(SCHEMA)
    gems = [
        state.spawn(GEM, x=120.0, y=80.0, value=1),
        state.spawn(GEM, x=130.0, y=190.0, value=2),
        state.spawn(GEM, x=900.5, y=42.25, value=3),
    ]
    alice = state.spawn(PLAYER, x=100.0, y=200.0, hp=100, owner=1, name="alice")
    state.encode_delta(10, (), False)

    def type_of(eid: int) -> EntityType:
        return state.entities[eid].etype

    def delta_case(name: str, description: str, data: bytes, follows: str) -> dict[str, Any]:
        msg = parse_server_message(data, SCHEMA, type_of, version=version)
        assert isinstance(msg, Delta)
        decoded: dict[str, Any] = {
            "type": "server",
            "kind": "DELTA",
            "schema_from": JOINED_CASE,
            "follows": follows,
            "tick": msg.tick,
        }
        if msg.base is not None:
            decoded["base"] = msg.base
        decoded.update(
            checksum=msg.checksum,
            acks=acks_meaning(msg.acks),
            created=[record_meaning(SCHEMA, r) for r in msg.created],
            changed=[patch_meaning(type_of(p.id), p) for p in msg.changed],
            removed=list(msg.removed),
        )
        return case(name, description, data, decoded)

    data = state.encode_snapshot(10, {1: 5})
    snap = parse_server_message(data, SCHEMA, version=version)
    assert isinstance(snap, Snapshot)
    cases.append(
        case(
            "server_snapshot",
            "SNAPSHOT at tick 10: three gems and alice's avatar (entity 4); player 1's last "
            "applied input seq is 5",
            data,
            {
                "type": "server",
                "kind": "SNAPSHOT",
                "schema_from": JOINED_CASE,
                "tick": snap.tick,
                "checksum": snap.checksum,
                "acks": acks_meaning(snap.acks),
                "entities": [record_meaning(SCHEMA, r) for r in snap.entities],
            },
        )
    )
    # tick 11: alice moves (x and y change): the 6-byte patch 04 03 9808 460f
    alice.x = 110.0
    alice.y = 195.5
    cases.append(
        delta_case(
            "server_delta_move",
            "DELTA tick 11 without checksum: input seq 6 applied (ack +1); entity 4 moved, "
            "patch = id 04, mask 03 (fields 0 and 1), x 2200 as 9808, y 3910 as 460f",
            state.encode_delta(11, [(1, 1)], False),
            "server_snapshot",
        )
    )
    # tick 12: alice picks up gem 2 (removed, respawned as entity 5); bob's avatar appears
    alice.x = 128.0
    alice.y = 188.0
    alice.score += 2
    state.remove(gems[1])
    state.spawn(GEM, x=640.0, y=360.0, value=1)
    bob = state.spawn(PLAYER, x=500.0, y=500.0, hp=100, owner=2, name="bob")
    cases.append(
        delta_case(
            "server_delta_full",
            "DELTA tick 12 with checksum: acks for players 1 (+3, now 9) and 2 (+1); created gem "
            "5 and bob's avatar 6; changed alice (x, y, score: mask 0x07); removed gem 2",
            state.encode_delta(12, [(1, 3), (2, 1)], True),
            "server_delta_move",
        )
    )
    # tick 13: alice leaves (ack increment 0, avatar removed); bob is hurt and moves
    state.remove(alice)
    bob.hp = 90
    bob.y = 510.0
    cases.append(
        delta_case(
            "server_delta_leave",
            "DELTA tick 13 with checksum: player 1 left (ack increment 0) and its avatar 4 is "
            "removed; bob's y and hp changed (mask 0x0a)",
            state.encode_delta(13, [(1, 0)], True),
            "server_delta_full",
        )
    )
    cases.append(
        delta_case(
            "server_delta_empty",
            "DELTA tick 14: nothing changed; still sent, so the tick sequence has no gaps",
            state.encode_delta(14, (), False),
            "server_delta_leave",
        )
    )
    assert gems[0].id == 1 and bob.id == 6
    if v2:
        # what a client at tick 10 (server_snapshot) that was away gets after RESUME at tick
        # 14: all of ticks 11-14 merged. Created since and alive: gem 5 and bob (6) in full,
        # with their values now; removed since: gem 2 and alice (4); gems 1 and 3 did not
        # change; player 1 left (0), player 2's seq is 1 (+1 from nothing)
        parts = [
            bytes((0x12, 0x03)),  # DELTA, flags CHECKSUM | BASE
            wire.varint(14),
            wire.varint(10),  # the base tick
            state.checksum().to_bytes(4, "little"),
            encode_acks([(1, 0), (2, 1)]),
            wire.varint(2),
            encode_record(state.entities[5]),
            encode_record(state.entities[6]),
            wire.varint(0),
            wire.varint(2),
            wire.varint(2),
            wire.varint(4),
        ]
        cases.append(
            delta_case(
                "server_delta_catch_up",
                "a catch-up DELTA (v2, flags 0x03: checksum and base tick) from tick 10 to 14, "
                "sent after a RESUMED JOINED to a client whose replica is at tick 10: it applies "
                "to the state of server_snapshot and gives the state of server_delta_empty",
                b"".join(parts),
                "server_snapshot",
            )
        )
        # a catch-up with patches: from tick 12 to 14, bob's y and hp changed (mask 0x0a)
        patch_parts = [
            bytes((0x12, 0x03)),
            wire.varint(14),
            wire.varint(12),
            state.checksum().to_bytes(4, "little"),
            encode_acks([(1, 0)]),
            wire.varint(0),
            wire.varint(1),
            _patch(state.entities[6], 0x0A),
            wire.varint(1),
            wire.varint(4),
        ]
        cases.append(
            delta_case(
                "server_delta_catch_up_patch",
                "a catch-up DELTA (v2) from tick 12 to 14: alice (4) removed, player 1 left, "
                "bob's y and hp changed (mask 0x0a); it applies to the state of "
                "server_delta_full",
                b"".join(patch_parts),
                "server_delta_full",
            )
        )
    return cases


def _patch(entity: Any, mask: int) -> bytes:
    saved = entity.mask
    entity.mask = mask
    try:
        return encode_patch(entity)
    finally:
        entity.mask = saved


def event_cases() -> list[dict[str, Any]]:
    def room_event(name: str, description: str, msg: RoomEvent) -> dict[str, Any]:
        return case(
            name,
            description,
            msg.to_bytes(),
            {
                "type": "server",
                "kind": "ROOM_EVENT",
                "sender": msg.sender,
                "name": msg.name,
                "data_hex": msg.data.hex(),
            },
        )

    def text(name: str, description: str, msg: Error | Close) -> dict[str, Any]:
        kind, message = ("ERROR", msg.message) if isinstance(msg, Error) else ("CLOSE", msg.reason)
        key = "message" if kind == "ERROR" else "reason"
        return case(
            name,
            description,
            msg.to_bytes(),
            {"type": "server", "kind": kind, "code": msg.code, key: message},
        )

    return [
        room_event(
            "server_room_event_room",
            "ROOM_EVENT from the room itself (sender 0)",
            RoomEvent(0, "joined", b"alice"),
        ),
        room_event(
            "server_room_event_player",
            "ROOM_EVENT relayed from player 2",
            RoomEvent(2, "chat", b"gg"),
        ),
        text(
            "server_error",
            "ERROR 4005 (ROOM_FULL) with a message",
            Error(int(CloseCode.ROOM_FULL), "room 'lobby' is full"),
        ),
        text(
            "server_close",
            "CLOSE 4008 (TOO_SLOW) before the server closes the socket",
            Close(int(CloseCode.TOO_SLOW), "too slow"),
        ),
        text("server_close_normal", "CLOSE 1000 with an empty reason", Close(1000, "")),
    ]


def redirect_cases() -> list[dict[str, Any]]:
    msg = Redirect("wss://node-b.example:8443/", "lobby")
    return [
        case(
            "server_redirect",
            "REDIRECT (v2): room 'lobby' lives on node-b; join there (close 4015 follows)",
            msg.to_bytes(),
            {"type": "server", "kind": "REDIRECT", "url": msg.url, "room": msg.room},
        )
    ]


def reject_cases(version: int) -> list[dict[str, Any]]:
    def reject(name: str, description: str, data: bytes, side: str, code: int) -> dict[str, Any]:
        return case(name, description, data, {"type": f"{side}_reject", "close_code": code})

    pe, ip = int(CloseCode.PROTOCOL_ERROR), int(CloseCode.INVALID_PAYLOAD)
    other = 2 if version == 1 else 3
    unknown = 0x16 if version == 1 else 0x17
    cases = [
        reject("reject_client_unknown_kind", "unknown client kind 0x7f", b"\x7f", "client", pe),
        reject("reject_client_empty", "an empty message", b"", "client", pe),
        reject(
            "reject_client_bad_version",
            f"JOIN with protocol version {other}",
            Join("lobby", version=other).to_bytes(),
            "client",
            pe,
        ),
        reject(
            "reject_client_truncated_join",
            "JOIN cut inside the room name",
            Join("lobby", version=version).to_bytes()[:5],
            "client",
            ip,
        ),
        reject("reject_client_trailing", "LEAVE with a trailing byte", b"\x02\x00", "client", ip),
        reject(
            "reject_client_bad_utf8",
            "EVENT whose name is not UTF-8",
            b"\x04\x01\xff\x00",
            "client",
            ip,
        ),
        reject(
            "reject_client_input_float_range",
            "arena INPUT whose dx code 201 is above the field's 200 steps",
            b"\x03\x01\xc9\x64",
            "client",
            ip,
        ),
        reject(
            "reject_client_overlong_varint",
            "INPUT whose seq varint has 11 bytes",
            b"\x03" + b"\x80" * 10 + b"\x00\x64\x64",
            "client",
            ip,
        ),
        # 0x16 is REDIRECT in v2: v1 does not know it
        reject(
            "reject_server_unknown_kind",
            f"unknown server kind 0x{unknown:02x}",
            bytes((unknown,)),
            "server",
            pe,
        ),
        reject(
            "reject_server_delta_flags",
            "DELTA with an unknown flag bit 0x02"
            if version == 1
            else "DELTA with an unknown flag bit 0x04",
            b"\x12\x02\x01\x00\x00\x00\x00" if version == 1 else b"\x12\x04\x01\x00\x00\x00\x00",
            "server",
            ip,
        ),
        reject(
            "reject_server_unknown_type",
            "SNAPSHOT naming entity type 2 (arena has 2 types)",
            b"\x11\x01\x00\x00\x00\x00\x00\x01\x01\x02",
            "server",
            ip,
        ),
    ]
    if version == 1:
        return cases
    cases += [
        reject(
            "reject_client_truncated_resume",
            "RESUME (v2) cut inside the token",
            Resume("lobby", RESUME_TOKEN, 10, version).to_bytes()[:12],
            "client",
            ip,
        ),
        reject(
            "reject_client_resume_long_token",
            "RESUME (v2) whose token is 129 bytes (at most 128)",
            b"\x05\x02\x05lobby\x81\x01" + b"a" * 129 + b"\x00",
            "client",
            ip,
        ),
        reject(
            "reject_client_resync_trailing",
            "RESYNC (v2) with a trailing byte",
            b"\x06\x00",
            "client",
            ip,
        ),
        reject(
            "reject_server_joined_flags",
            "JOINED (v2) with an unknown flag bit 0x04 (0x01 is RESUMED, 0x02 VIEW)",
            b"\x10\x02\x04\x01",
            "server",
            pe,
        ),
        reject(
            "reject_server_delta_base",
            "catch-up DELTA (v2) whose base tick 5 is not before its tick 5",
            b"\x12\x02\x05\x05\x00\x00\x00\x00",
            "server",
            ip,
        ),
    ]
    return cases


VIEW_JOINED_CASE = "server_joined_view"


def view_cases() -> list[dict[str, Any]]:
    """v2: a JOINED with the VIEW flag, then one client's view: a SNAPSHOT (records not in id
    order) and DELTAs in which an entity enters the view, one leaves and one comes back.

    The world (arena's schema): cells of 100 x 100, a view of the 3 x 3 cells around alice
    (player 1, entity 4). Gem 1 is in cell (1,0), gem 2 in (3,1), gem 3 in (2,2), bob (5) far
    away in (8,8). Written by hand, not by the server's view encoder: the bytes are the
    contract."""
    joined = Joined(
        1,
        "wide",
        "viewdemo",
        20,
        SCHEMA,
        INPUT,
        2,
        resume_token=RESUME_TOKEN,
        seat_hold_ms=20000,
        view=True,
    )
    cases = [
        case(
            VIEW_JOINED_CASE,
            "JOINED (v2) with flags 0x02 (VIEW): room 'wide' sends this client its view, not "
            "the whole room; SNAPSHOT and DELTA carry view checksums (sum of the CRC-32 of the "
            "held records, mod 2**32)",
            joined.to_bytes(),
            joined_meaning(joined),
        )
    ]
    state = State(SCHEMA)
    gem1 = state.spawn(GEM, x=120.0, y=80.0, value=1)
    gem2 = state.spawn(GEM, x=380.0, y=150.0, value=2)
    gem3 = state.spawn(GEM, x=250.0, y=290.0, value=3)
    alice = state.spawn(PLAYER, x=150.0, y=150.0, hp=100, owner=1, name="alice")
    bob = state.spawn(PLAYER, x=850.0, y=850.0, hp=100, owner=2, name="bob")
    state.encode_delta(29, (), False)  # clear the tracking
    assert (gem1.id, gem2.id, gem3.id, alice.id, bob.id) == (1, 2, 3, 4, 5)
    held: dict[int, Any] = {}  # the client's view, in the order it came

    def checksum() -> bytes:
        return view_checksum(encode_record(e) for e in held.values()).to_bytes(4, "little")

    def view_delta(
        name: str,
        description: str,
        tick: int,
        follows: str,
        acks: list[tuple[int, int]],
        created: list[Any],
        changed: list[tuple[Any, int]],
        removed: list[Any],
    ) -> dict[str, Any]:
        for e in created:
            held[e.id] = e
        for e in removed:
            del held[e.id]
        data = b"".join(
            [
                bytes((0x12, 0x01)),  # DELTA, flags CHECKSUM
                wire.varint(tick),
                checksum(),
                encode_acks(acks),
                wire.varint(len(created)),
                *[encode_record(e) for e in created],
                wire.varint(len(changed)),
                *[encode_masked(e, mask) for e, mask in changed],
                wire.varint(len(removed)),
                *[wire.varint(e.id) for e in removed],
            ]
        )
        msg = parse_server_message(data, SCHEMA, lambda eid: state.entities[eid].etype, version=2)
        assert isinstance(msg, Delta)
        return case(
            name,
            description,
            data,
            {
                "type": "server",
                "kind": "DELTA",
                "schema_from": VIEW_JOINED_CASE,
                "follows": follows,
                "tick": msg.tick,
                "checksum": msg.checksum,
                "acks": acks_meaning(msg.acks),
                "created": [record_meaning(SCHEMA, r) for r in msg.created],
                "changed": [patch_meaning(state.entities[p.id].etype, p) for p in msg.changed],
                "removed": list(msg.removed),
            },
        )

    # tick 30: alice in cell (1,1) sees cells (0..2, 0..2): herself, gem 3, gem 1 (in the
    # order the server's cells list them, not by id); not gem 2 nor bob
    for e in (alice, gem3, gem1):
        held[e.id] = e
    data = b"".join(
        [
            bytes((0x11,)),
            wire.varint(30),
            checksum(),
            encode_acks([(1, 5)]),
            wire.varint(len(held)),
            *[encode_record(e) for e in held.values()],
        ]
    )
    snap = parse_server_message(data, SCHEMA, version=2)
    assert isinstance(snap, Snapshot)
    crcs = " + ".join(f"{zlib.crc32(encode_record(e)):08x}" for e in held.values())
    cases.append(
        case(
            "server_snapshot_view",
            "view SNAPSHOT at tick 30: alice (4), gem 3 and gem 1, not in id order; the acks "
            f"hold only the client's own player (1, seq 5); view checksum = ({crcs}) mod 2**32",
            data,
            {
                "type": "server",
                "kind": "SNAPSHOT",
                "schema_from": VIEW_JOINED_CASE,
                "tick": snap.tick,
                "checksum": snap.checksum,
                "acks": acks_meaning(snap.acks),
                "entities": [record_meaning(SCHEMA, r) for r in snap.entities],
            },
        )
    )
    # tick 31: alice walks to (250, 150), cell (2,1): gem 2's cell (3,1) comes into view
    alice.x = 250.0
    cases.append(
        view_delta(
            "server_delta_view_enter",
            "view DELTA tick 31: alice moved into cell (2,1) (input applied, own ack +1); gem 2 "
            "entered the view: created in full, though it exists since before tick 30",
            31,
            "server_snapshot_view",
            [(1, 1)],
            [gem2],
            [(alice, 0x01)],
            [],
        )
    )
    # tick 32: alice walks to (350, 150), cell (3,1): gem 1's cell (1,0) leaves the view; gem 1
    # then changes (value 1 -> 4) while out of view: nothing is sent for it
    alice.x = 350.0
    gem1.value = 4
    cases.append(
        view_delta(
            "server_delta_view_leave",
            "view DELTA tick 32: alice moved into cell (3,1); gem 1 left the view: removed, "
            "though it still exists; no input applied this tick, so no acks",
            32,
            "server_delta_view_enter",
            [],
            [],
            [(alice, 0x01)],
            [gem1],
        )
    )
    # tick 33: alice walks back to (250, 150): gem 1 comes back, with its current value
    alice.x = 250.0
    cases.append(
        view_delta(
            "server_delta_view_reenter",
            "view DELTA tick 33: alice back in cell (2,1); gem 1 re-entered the view: created "
            "again with the same id and its current values (value 4, changed while unseen); "
            "inputs applied, own ack +2",
            33,
            "server_delta_view_leave",
            [(1, 2)],
            [gem1],
            [(alice, 0x01)],
            [],
        )
    )
    return cases


def build(version: int) -> list[dict[str, Any]]:
    cases = primitive_cases() + field_cases() + client_cases(version)
    if version >= 2:
        # before the arena chain, so that the arena chain's last state is the file's last
        cases += view_cases()
    cases += state_cases(version)
    cases += event_cases()
    if version >= 2:
        cases += redirect_cases()
    cases += reject_cases(version)
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


def render(cases: list[dict[str, Any]]) -> str:
    return json.dumps(cases, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--dir", type=Path, default=VECTORS, help="where the files go")
    args = parser.parse_args()
    status = 0
    for version in (1, 2, 3):
        out = args.dir / f"protocol_v{version}.json"
        if version == 3:  # v3 differs from v2 in its state coding only: tools/vectors_v3.py
            from vectors_v3 import v3_cases

            text = render(v3_cases())
        else:
            text = render(build(version))
        if args.check:
            current = out.read_text(encoding="utf-8") if out.exists() else ""
            if current != text:
                print(f"{out} differs from the generator's output", file=sys.stderr)
                status = 1
            else:
                print(f"{out} is up to date")
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {len(json.loads(text))} cases to {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
