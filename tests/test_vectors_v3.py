"""Golden vectors of gamesync.v3 (tests/vectors/protocol_v3.json), both ways: each case decodes
to its meaning, state cases apply in their ``follows`` chain with every checksum verified, and
the encoders give back the exact bytes. The JS SDK checks the same file
(clients/web/test/vectors_v3.test.js)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gameserver.games.arena import SCHEMA
from shared import delta_v3, wire
from shared.errors import RemoteProtocolError
from shared.messages import (
    Delta,
    EntityPatch,
    Join,
    Joined,
    Snapshot,
    parse_client_message,
    parse_server_message,
)
from shared.replica import Replica
from shared.state import encode_acks

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "protocol_v3.json").read_text(encoding="utf-8")
)
BY_NAME = {c["name"]: c for c in CASES}


def fields_of(etype: Any, mask: int, codes: tuple[Any, ...]) -> dict[str, Any]:
    bits = [i for i in range(len(etype)) if mask >> i & 1]
    return {etype.names[i]: c for i, c in zip(bits, codes, strict=True)}


def patches_meaning(replica: Replica, patches: tuple[EntityPatch, ...]) -> list[dict[str, Any]]:
    out = []
    for p in patches:
        etype = replica.type_of(p.id)
        out.append(
            {
                "id": p.id,
                "type": etype.name,
                "mask": p.mask,
                "fields": fields_of(etype, p.mask, p.codes),
            }
        )
    return out


def records_meaning(recs: Any) -> list[dict[str, Any]]:
    out = []
    for r in recs:
        etype = SCHEMA.types[r.type_id]
        full = (1 << len(etype)) - 1
        out.append(
            {
                "id": r.id,
                "type_id": r.type_id,
                "type": etype.name,
                "fields": fields_of(etype, full, r.codes),
            }
        )
    return out


def replica_after(name: str) -> Replica:
    """The replica holding the state after case ``name`` (its chain applied from the snapshot)."""
    d = BY_NAME[name]["decoded"]
    if d["kind"] == "SNAPSHOT":
        rep = Replica(SCHEMA, coding=3)
        msg = parse_server_message(bytes.fromhex(BY_NAME[name]["hex"]), SCHEMA, version=3)
        assert isinstance(msg, Snapshot)
        rep.apply_snapshot(msg)
        return rep
    rep = replica_after(d["follows"])
    msg = parse_server_message(
        bytes.fromhex(BY_NAME[name]["hex"]), SCHEMA, rep.type_of, version=3, predict=rep.predicted
    )
    assert isinstance(msg, Delta)
    rep.apply_delta(msg)
    return rep


def test_the_file_has_every_v3_state_feature() -> None:
    flags = 0
    for c in CASES:
        if c["decoded"].get("kind") == "DELTA":
            flags |= bytes.fromhex(c["hex"])[1]
    assert flags == delta_v3.KNOWN_FLAGS
    assert {c["decoded"]["type"] for c in CASES} == {"client", "server", "server_reject"}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["decoded"]["type"] == "client"], ids=lambda c: c["name"]
)
def test_client_cases(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    msg = parse_client_message(data, version=3)
    d = case["decoded"]
    assert isinstance(msg, Join)
    assert msg == Join(d["room"], d["game"], d["name"], d["token"], d["version"], d["private"])
    assert msg.to_bytes() == data


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["decoded"]["type"] == "server"], ids=lambda c: c["name"]
)
def test_server_cases(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    d = case["decoded"]
    if d["kind"] == "JOINED":
        msg = parse_server_message(data, version=3)
        assert isinstance(msg, Joined) and msg.version == 3 == d["version"]
        assert msg.player == d["player"] and msg.resume_token == d["resume_token"]
        assert msg.to_bytes() == data
        return
    if d["kind"] == "SNAPSHOT":
        snap = parse_server_message(data, SCHEMA, version=3)
        assert isinstance(snap, Snapshot)
        rep = Replica(SCHEMA, coding=3)
        rep.apply_snapshot(snap)  # verifies the checksum
        assert (snap.tick, snap.checksum) == (d["tick"], d["checksum"])
        assert [list(a) for a in snap.acks] == d["acks"]
        assert records_meaning(snap.entities) == d["entities"]
        assert patches_meaning(rep, snap.motion) == d["motion"]
        again = b"".join(
            [
                b"\x11",
                wire.varint(snap.tick),
                snap.checksum.to_bytes(4, "little"),
                encode_acks(snap.acks),
                wire.varint(len(snap.entities)),
            ]
            + [
                wire.varint(r.id)
                + wire.varint(r.type_id)
                + SCHEMA.types[r.type_id].encode_all(r.codes)
                for r in snap.entities
            ]
            + [delta_v3.encode_motion(rep.motion, rep.type_of)]
        )
        assert again == data
        return
    before = replica_after(d["follows"])
    frozen = copy.deepcopy(before)
    msg = parse_server_message(data, SCHEMA, before.type_of, version=3, predict=before.predicted)
    assert isinstance(msg, Delta)
    assert msg.tick == d["tick"] and msg.base == d.get("base") and msg.checksum == d["checksum"]
    assert sorted(map(list, msg.acks)) == sorted(d["acks"])
    assert records_meaning(msg.created) == d["created"]
    assert patches_meaning(before, msg.changed) == d["changed"]
    assert list(msg.removed) == d["removed"]
    # the encoder, predicting from the state before, gives the same bytes
    motion = None
    if msg.base is not None:
        motion = {
            p.id: dict(zip([i for i in range(8) if p.mask >> i & 1], p.codes, strict=True))
            for p in msg.motion
        }  # type: ignore[misc]
    assert delta_v3.encode_delta(msg, SCHEMA, frozen.type_of, frozen.predicted, motion) == data
    checks = before.checks
    before.apply_delta(msg)  # verifies the checksum when there is one
    assert before.checks == checks + (msg.checksum is not None)
    if msg.base is not None:
        ent = {e.id: list(e.codes) for e in before}
        assert ent == {e.id: list(e.codes) for e in replica_after("server_delta_v3_after_empty")}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["decoded"]["type"] == "server_reject"], ids=lambda c: c["name"]
)
def test_reject_cases(case: dict[str, Any]) -> None:
    rep = replica_after(case["decoded"]["follows"])
    with pytest.raises(RemoteProtocolError) as info:
        parse_server_message(
            bytes.fromhex(case["hex"]), SCHEMA, rep.type_of, version=3, predict=rep.predicted
        )
    assert info.value.close_code == case["decoded"]["close_code"]
