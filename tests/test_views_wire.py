"""gamesync.v2 views on the wire: the JOINED VIEW flag, the view checksum, view replicas."""

from __future__ import annotations

import zlib

import pytest

from gameserver.games.arena import GEM, INPUT, PLAYER, SCHEMA
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.messages import (
    JOINED_RESUMED,
    JOINED_VIEW,
    Delta,
    EntityRecord,
    Joined,
    Snapshot,
    parse_server_message,
)
from shared.protocol import CloseCode
from shared.replica import DesyncError, Replica
from shared.state import State, encode_record, record_crc, view_checksum


def test_joined_view_flag_round_trips_with_resumed() -> None:
    for resumed in (False, True):
        msg = Joined(3, "wide", "field", 20, SCHEMA, INPUT, 2, resumed, "tok", 1000, 9, view=True)
        data = msg.to_bytes()
        assert data[2] == JOINED_VIEW | (JOINED_RESUMED if resumed else 0)
        back = parse_server_message(data, version=2)
        assert isinstance(back, Joined)
        assert back.view and back.resumed == resumed and back == msg
        assert back.to_bytes() == data
    plain = Joined(3, "wide", "arena", 20, SCHEMA, INPUT, 2).to_bytes()
    assert plain[2] == 0
    back = parse_server_message(plain, version=2)
    assert isinstance(back, Joined) and not back.view


def test_joined_unknown_flag_bits_are_refused() -> None:
    data = Joined(3, "wide", "field", 20, SCHEMA, INPUT, 2, view=True).to_bytes()
    for bit in (0x04, 0x08, 0x80):
        with pytest.raises(RemoteProtocolError, match="JOINED flags") as info:
            parse_server_message(data[:2] + bytes((data[2] | bit,)) + data[3:], version=2)
        assert info.value.close_code == CloseCode.PROTOCOL_ERROR


def test_a_view_joined_cannot_be_written_in_v1() -> None:
    with pytest.raises(LocalProtocolError, match="version 2"):
        Joined(3, "wide", "field", 20, SCHEMA, INPUT, 1, view=True).to_bytes()
    assert CloseCode.VERSION_REQUIRED == 4014


def test_record_crc_and_view_checksum() -> None:
    state = State(SCHEMA)
    ents = [state.spawn(GEM, x=10.0 * i, y=5.0, value=i) for i in range(1, 30)]
    ents.append(state.spawn(PLAYER, x=1.0, y=2.0, name="z"))
    recs = [encode_record(e) for e in ents]
    assert [record_crc(r) for r in recs] == [zlib.crc32(r) for r in recs]
    total = sum(zlib.crc32(r) for r in recs) % 2**32
    assert view_checksum(recs) == total == view_checksum(reversed(recs))
    assert view_checksum([]) == 0


def _snapshot(state: State, ids: list[int], tick: int = 5) -> Snapshot:
    recs = [state.entities[i] for i in ids]
    checksum = view_checksum(encode_record(e) for e in recs)
    entities = tuple(EntityRecord(e.id, e.etype.type_id, tuple(e.codes)) for e in recs)
    return Snapshot(tick, checksum, ((1, 0),), entities)


def test_view_replica_checks_view_checksums_in_any_order() -> None:
    state = State(SCHEMA)
    for i in range(5):
        state.spawn(GEM, x=float(i), y=1.0, value=i)
    replica = Replica(SCHEMA, view=True)
    replica.apply_snapshot(_snapshot(state, [5, 2, 3]))
    assert sorted(e.id for e in replica) == [2, 3, 5] and replica.checks == 1
    # entity 1 enters, 5 leaves: the checksum after is that of {1, 2, 3}
    csum = view_checksum(encode_record(state.entities[i]) for i in (1, 2, 3))
    rec1 = state.entities[1]
    delta = Delta(6, csum, (), (EntityRecord(1, 1, tuple(rec1.codes)),), (), (5,))
    replica.apply_delta(delta)
    assert replica.checks == 2 and sorted(e.id for e in replica) == [1, 2, 3]
    # a whole-room replica computes the ordered CRC instead: a mismatch
    with pytest.raises(DesyncError, match="checksum"):
        Replica(SCHEMA).apply_snapshot(_snapshot(state, [5, 2, 3]))
    with pytest.raises(DesyncError, match="checksum"):
        Replica(SCHEMA, view=True).apply_snapshot(
            Snapshot(5, csum ^ 1, (), _snapshot(state, [1, 2, 3]).entities)
        )


def test_a_snapshot_listing_an_entity_twice_is_a_desync() -> None:
    state = State(SCHEMA)
    state.spawn(GEM, x=1.0, y=1.0, value=1)
    snap = _snapshot(state, [1, 1])
    with pytest.raises(DesyncError, match="twice"):
        Replica(SCHEMA, view=True).apply_snapshot(snap)
