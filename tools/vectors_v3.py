"""The gamesync.v3 golden vectors (tests/vectors/protocol_v3.json), built by make_vectors.py.

v3 differs from v2 only in its state coding (docs/protocol.md, "gamesync.v3: the state
coding") and in the version byte of JOIN, RESUME and JOINED; every other message is byte for
byte v2's. So the v3 file holds those differences: a v3 JOIN and JOINED, a v3 SNAPSHOT with its
motion section, a chain of per-tick v3 DELTAs a replica applies in order (prediction, ack
bitmask and pairs, folded sections, checksums), a v3 catch-up DELTA, and the v3 rejections. A
DELTA's ``fields`` are the decoded codes (after prediction); ``motion`` lists velocities.
"""

from __future__ import annotations

from typing import Any

from make_vectors import (
    GEM,
    INPUT,
    PLAYER,
    RESUME_TOKEN,
    SCHEMA,
    acks_meaning,
    case,
    joined_meaning,
    patch_meaning,
    record_meaning,
)

from shared import delta_v3, wire
from shared.messages import (
    Delta,
    EntityPatch,
    EntityRecord,
    Join,
    Joined,
    Snapshot,
    parse_server_message,
)
from shared.protocol import CloseCode
from shared.replica import Replica
from shared.schema import EntityType
from shared.state import State

JOINED_V3 = "server_joined_v3"


def motion_meaning(etype: EntityType, patch: EntityPatch) -> dict[str, Any]:
    return patch_meaning(etype, patch)


def v3_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    join = Join("lobby", "arena", "alice", version=3)
    cases.append(
        case(
            "client_join_v3",
            "JOIN on a gamesync.v3 connection: version byte 3, otherwise v2's layout",
            join.to_bytes(),
            {
                "type": "client",
                "kind": "JOIN",
                "version": 3,
                "room": "lobby",
                "game": "arena",
                "name": "alice",
                "token": "",
                "private": False,
            },
        )
    )
    joined = Joined(
        1, "lobby", "arena", 20, SCHEMA, INPUT, 3, resume_token=RESUME_TOKEN, seat_hold_ms=20000
    )
    cases.append(
        case(
            JOINED_V3,
            "JOINED (v3): version byte 3, otherwise v2's layout; its schema decodes the v3 "
            "states below",
            joined.to_bytes(),
            joined_meaning(joined),
        )
    )

    state = State(SCHEMA)
    state.spawn(GEM, x=120.0, y=80.0, value=1)
    gem2 = state.spawn(GEM, x=130.0, y=190.0, value=2)
    state.spawn(GEM, x=900.5, y=42.25, value=3)
    alice = state.spawn(PLAYER, x=100.0, y=200.0, hp=100, owner=1, name="alice")
    state.encode_deltas(9, (), False, v3=True)
    alice.x, alice.y = 110.0, 195.0  # codes 2000 -> 2200 and 4000 -> 3900
    state.encode_deltas(10, [(1, 1)], False, v3=True)
    entities = state.entities

    def type_of(eid: int) -> EntityType:
        return entities[eid].etype

    data = state.encode_snapshot(10, {1: 5, 2: 3}, 3)
    snap = parse_server_message(data, SCHEMA, version=3)
    assert isinstance(snap, Snapshot)
    replica = Replica(SCHEMA, coding=3)
    replica.apply_snapshot(snap)
    at_snapshot = Replica(SCHEMA, coding=3)
    at_snapshot.apply_snapshot(snap)
    cases.append(
        case(
            "server_snapshot_v3",
            "SNAPSHOT (v3) at tick 10: three gems and alice's avatar (entity 4), acks of players "
            "1 and 2, then the motion section: 1 entity, gap 4 (entity 4), mask 03, velocities "
            "+200 (x) and -100 (y) as svarints 9003 c701: how x and y changed in tick 10",
            data,
            {
                "type": "server",
                "kind": "SNAPSHOT",
                "schema_from": JOINED_V3,
                "tick": snap.tick,
                "checksum": snap.checksum,
                "acks": acks_meaning(snap.acks),
                "entities": [record_meaning(SCHEMA, r) for r in snap.entities],
                "motion": [motion_meaning(type_of(p.id), p) for p in snap.motion],
            },
        )
    )

    def delta_case(name: str, description: str, data: bytes, follows: str, rep: Replica) -> None:
        msg = parse_server_message(data, SCHEMA, rep.type_of, version=3, predict=rep.predicted)
        assert isinstance(msg, Delta)
        decoded: dict[str, Any] = {
            "type": "server",
            "kind": "DELTA",
            "schema_from": JOINED_V3,
            "follows": follows,
            "tick": msg.tick,
        }
        if msg.base is not None:
            decoded["base"] = msg.base
        decoded.update(
            checksum=msg.checksum,
            acks=acks_meaning(msg.acks),
            created=[record_meaning(SCHEMA, r) for r in msg.created],
            changed=[patch_meaning(rep.type_of(p.id), p) for p in msg.changed],
            removed=list(msg.removed),
        )
        if msg.base is not None:
            decoded["motion"] = [motion_meaning(type_of(p.id), p) for p in msg.motion]
        rep.apply_delta(msg)
        assert rep.checksum() == state.checksum()
        cases.append(case(name, description, data, decoded))

    alice.x, alice.y = 120.0, 190.0  # moved as in tick 10: residuals 0
    _, d11 = state.encode_deltas(11, [(1, 1), (2, 1)], False, v3=True)
    assert d11 is not None
    delta_case(
        "server_delta_v3_move",
        "DELTA (v3) tick 11: flags 0x24 (ACK_BITS, CHANGED); acks base 1 bits 03 (players 1 "
        "and 2, +1 each); 1 patch: gap 4 (entity 4), mask 03, residuals 00 00: x = 2200 + 200 + "
        "0 = 2400 and y = 3900 - 100 + 0 = 3800, as predicted from the motion",
        d11,
        "server_snapshot_v3",
        replica,
    )
    alice.x = 125.0  # 2400 -> 2500: velocity 200, so the residual is -100 (svarint c701)
    state.remove(gem2)
    state.spawn(GEM, x=500.0, y=500.0, value=2)
    _, d12 = state.encode_deltas(12, [(1, 2), (2, 1), (3, 0)], True, v3=True)
    assert d12 is not None
    delta_case(
        "server_delta_v3_turn",
        "DELTA (v3) tick 12 with checksum: flags 0x7d (CHECKSUM, ACK_BITS, ACK_PAIRS, CREATED, "
        "CHANGED, REMOVED); acks: bits base 2 bits 01 (player 2 +1), pairs (1, +2) and (3, 0: "
        "left); gem 5 created (a full record); alice's x slows down: mask 01, residual -100 "
        "(c701), x = 2400 + 200 - 100 = 2500 (y is not patched: its velocity becomes 0); gem "
        "2 removed",
        d12,
        "server_delta_v3_move",
        replica,
    )
    alice.x = 130.0  # 2500 -> 2600: as in tick 12 (+100)
    _, d13 = state.encode_deltas(13, [], True, v3=True)
    assert d13 is not None
    delta_case(
        "server_delta_v3_steady",
        "DELTA (v3) tick 13 with checksum, no acks: flags 0x21; 1 patch: entity 4, mask 01, "
        "residual 00: x = 2500 + 100 = 2600",
        d13,
        "server_delta_v3_turn",
        replica,
    )
    _, d14 = state.encode_deltas(14, [], True, v3=True)
    assert d14 is not None
    delta_case(
        "server_delta_v3_empty",
        "DELTA (v3) tick 14, nothing changed: flags 0x01 (CHECKSUM), the tick and the checksum; "
        "no section at all (v2 spends 4 bytes on empty counts)",
        d14,
        "server_delta_v3_steady",
        replica,
    )
    # a catch-up delta from the snapshot's tick 10 to 14, with the motion of the state at 14
    # (none: nothing moved in tick 14)
    alice.x = 135.0
    _, d15 = state.encode_deltas(15, [(1, 1)], False, v3=True)
    assert d15 is not None
    delta_case(
        "server_delta_v3_after_empty",
        "DELTA (v3) tick 15: entity 4's x moves again; after tick 14 (which did not patch it) "
        "its velocity is 0, so the residual is the whole change, +100 (svarint c801)",
        d15,
        "server_delta_v3_empty",
        replica,
    )
    catch = Delta(
        15,
        state.checksum(),
        ((1, 4), (2, 2), (3, 0)),
        tuple(
            EntityRecord(e.id, e.etype.type_id, tuple(e.codes))
            for e in state.entities.values()
            if e.id > alice.id
        ),
        (EntityPatch(alice.id, 0b11, (alice.codes[0], alice.codes[1])),),
        (gem2.id,),
        10,
    )
    data = delta_v3.encode_delta(catch, SCHEMA, type_of, motion=state.motion)
    delta_case(
        "server_delta_v3_catch_up",
        "catch-up DELTA (v3) from the snapshot's tick 10 to tick 15: flags 0x7b (no ACK_BITS: no "
        "increment is 1); base 10; acks summed (1, +4), (2, +2), (3, 0); "
        "its patch carries plain codes (x 2700 as 8c0a, y 3800 as d80e), as v2's; then the "
        "motion of the state at 15: entity 4, mask 01, +100 (c801)",
        data,
        "server_snapshot_v3",
        at_snapshot,
    )

    def reject(name: str, description: str, data: bytes) -> None:
        cases.append(
            case(
                name,
                description,
                data,
                {
                    "type": "server_reject",
                    "close_code": int(CloseCode.INVALID_PAYLOAD),
                    "schema_from": JOINED_V3,
                    "follows": "server_snapshot_v3",
                },
            )
        )

    reject("reject_v3_delta_flags", "v3 DELTA with the unknown flag bit 0x80", b"\x12\x80\x0b")
    reject("reject_v3_empty_ack_bits", "ACK_BITS with a bitmask of 0", b"\x12\x04\x0b\x01\x00")
    reject(
        "reject_v3_ack_twice",
        "player 1 both in the bitmask and in a pair",
        b"\x12\x0c\x0b\x01\x01\x01\x01\x01",
    )
    reject(
        "reject_v3_patch_gap_zero", "a patch id gap of 0 (ids must ascend)", b"\x12\x20\x0b\x01\x00"
    )
    reject(
        "reject_v3_prediction_range",
        "entity 4's x predicted 2400, residual -2401: code -1, below the field's range",
        b"\x12\x20\x0b\x01\x04\x01" + wire.svarint(-2401),
    )
    reject(
        "reject_v3_snapshot_motion_zero",
        "a v3 SNAPSHOT whose motion lists a velocity of 0",
        state.encode_snapshot(15, {}, 2) + b"\x01" + wire.varint(alice.id) + b"\x01\x00",
    )
    return cases
