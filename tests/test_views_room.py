"""Views (issue 12) at the room level: games without ``interest`` are byte for byte what
they were, the RoomHarness shows each player's view, and the Game API's defaults."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from gameserver.game import Game, GameRegistry
from gameserver.games.arena import INPUT as ARENA_INPUT
from gameserver.games.arena import Arena
from gameserver.interest import Interest
from gameserver.room import Room, RoomConfig
from gameserver.testing import OutOfSync, RoomHarness
from shared.messages import Joined, parse_server_message
from shared.schema import EntityType, Float, Schema
from tests.views_game import CLOCK, MOB, ViewsGame

#: the sha256 of every byte an arena room sent in the scripted run below, computed with the
#: code before views existed (commit ff94bcd): a game without ``interest`` must not change
ARENA_GOLDEN = "8cc5b4ce896ffd22c4bf9ee78c54842e93934f3b0b52a2e297858c1cf035c0f5"


def test_a_game_without_interest_sends_the_same_bytes_as_before_views() -> None:
    room = Room("golden", Arena, RoomConfig(max_players=8, seed=7, checksum_interval=5))
    assert room.views is None and not room.is_view
    h = hashlib.sha256()
    seated: list[int] = []
    encodes = 0
    for t in range(300):
        if t % 37 == 0 and room.player_count < 8:
            seated.append(room.seat(f"p{t}", f"n{t}").number)
        if t % 91 == 50 and seated:
            room.unseat(seated.pop(0))
        for i, n in enumerate(seated):
            dx = ((t * (i + 3)) % 7 - 3) / 3
            dy = ((t + i) % 5 - 2) / 2
            room.push_input(n, t + 1, ARENA_INPUT.codes_for({"dx": dx, "dy": dy}))
        out = room.tick()
        assert out.deltas is None
        encodes += out.encode_calls
        h.update(out.delta)
        for p in out.joined:
            joined = room.joined_message(p)
            msg = parse_server_message(joined)
            assert isinstance(msg, Joined) and not msg.view
            h.update(joined)
            h.update(room.snapshot())
            assert room.snapshot_for(p.number) == room.snapshot()
        for payload, _ in out.events:
            h.update(payload)
    assert h.hexdigest() == ARENA_GOLDEN
    assert encodes > 300 and room.counters.encode_calls >= encodes


def test_the_harness_shows_each_players_view() -> None:
    h = RoomHarness(ViewsGame, checksum_interval=1)
    a, b = h.join("a"), h.join("b")
    h.tick()
    assert a.joined is not None and a.joined.view and a.replica.view
    for _ in range(120):
        a.input(dx=0.8, dy=0.3)
        b.input(dx=-0.4, dy=0.9)
        h.tick()
        h.assert_in_sync()
    for c in (a, b):
        assert c.cells and set(c.replica.entities) == set(c.server_view())
        assert len(c.server_view()) < len(h.state.entities)
        assert c.replica.checks >= 120
        assert [e.etype.name for e in c.entities("clock")] == [CLOCK.name], "globals are seen"
    # a mob teleported into a's view appears in a's replica, not in b's (far away)
    game = h.game
    ax, ay = next(iter(a.cells))
    game.script.append(lambda g: g.state.spawn(MOB, x=ax * 100 + 50, y=ay * 100 + 50, hp=7))
    h.tick()
    new = max(h.state.entities)
    assert new in a.replica.entities
    assert (new in b.replica.entities) == ((ax, ay) in b.cells)
    h.assert_in_sync()
    # a resume in a view room: a view snapshot (no catch-up), in sync after it
    a.drop()
    h.tick(3)
    a.resume()
    h.tick()
    assert a.last_update is not None and type(a.last_update).__name__ == "Snapshot"
    h.assert_in_sync()


def test_the_harness_reports_a_view_out_of_sync() -> None:
    h = RoomHarness(ViewsGame)
    a = h.join("a")
    h.tick()
    h.assert_in_sync()
    # corrupt a's replica: an entity it should not hold
    far = next(e for e in h.state.of_type(MOB) if e.id not in a.server_view())
    a.replica.entities[far.id] = far.etype.cls(far.id, list(far.codes), None)
    with pytest.raises(OutOfSync, match=r"not on the server|in the replica"):
        h.assert_in_sync()


def test_view_hooks_defaults_and_registry_checks() -> None:
    thing = EntityType("thing", x=Float(0, 10, 1), y=Float(0, 10, 1))
    plain = Game.__new__(Game)
    assert Game.interest is None
    assert plain.focus(None) is None  # type: ignore[arg-type]
    assert list(plain.view(None, (1.0, 1.0))) == []  # type: ignore[arg-type]

    class Seeing(Game):
        name = "seeing"
        schema = Schema(thing)
        interest = Interest(cell_size=5.0, view_cells=0, positions={thing: ("x", "y")})

    seeing: Any = Seeing.__new__(Seeing)
    assert list(seeing.view(None, (7.0, 2.0))) == [(1, 0)]
    assert list(seeing.view(None, None)) == []

    class Wrong(Seeing):
        name = "wrong"
        schema = Schema(EntityType("other", x=Float(0, 1, 1)))

    registry = GameRegistry()
    registry.register(Seeing)
    with pytest.raises(ValueError, match=r"wrong: .*not in the schema"):
        registry.register(Wrong)


def test_held_seats_get_no_delta_and_joiners_get_a_snapshot_not_a_delta() -> None:
    room = Room("r", ViewsGame, RoomConfig(max_players=8, seat_hold_ticks=50))
    a = room.seat("a", "")
    b = room.seat("b", "")
    out = room.tick()
    assert out.deltas == {} and {p.number for p in out.joined} == {a.number, b.number}
    out = room.tick()
    assert out.deltas is not None and set(out.deltas) == {a.number, b.number}
    assert room.detach(b.number)
    out = room.tick()
    assert out.deltas is not None and set(out.deltas) == {a.number}
    room.reattach(b.number)
    out = room.tick()
    assert [p.number for p in out.resumed] == [b.number]
    assert out.deltas is not None and set(out.deltas) == {a.number}, "b gets a snapshot"
    assert room.catch_up(1) is None
    snap = room.snapshot_for(b.number)
    assert snap[0] == 0x11
