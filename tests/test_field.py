"""The bundled big-world game ``field``, with the pure RoomHarness (no trio, no sockets)."""

from __future__ import annotations

import math
import random

import pytest

from gameserver.game import default_registry
from gameserver.games.field import (
    BOARD,
    CELL,
    CREATURE,
    PICKUP,
    PLAYER,
    POS,
    SPEED,
    Field,
    cells_per_side,
    npc_count,
    world_side,
)
from gameserver.testing import RoomHarness


def test_world_and_population_scale_with_the_room() -> None:
    assert [world_side(n) for n in (16, 64, 256)] == [1000.0, 2000.0, 4000.0]
    assert [npc_count(n) for n in (16, 64, 256)] == [64, 256, 1024]
    # density: seats and NPCs per cell are the same at every bundled size
    for n in (16, 64, 256):
        assert (n + npc_count(n)) / cells_per_side(n) ** 2 == 5.0
    # tiny rooms get the smallest world (3 x 3 views must be 9 distinct cells), huge ones the
    # largest the position fields hold
    assert world_side(1) == 1000.0 and world_side(5000) == POS.hi
    assert default_registry().get("field") is Field
    assert Field.max_players == 256


@pytest.mark.parametrize("players", [16, 256])
def test_a_room_holds_creatures_pickups_and_one_board(players: int) -> None:
    h = RoomHarness(Field, max_players=players)
    creatures = h.entities(CREATURE)
    pickups = h.entities(PICKUP)
    assert len(creatures) + len(pickups) == npc_count(players)
    assert len(creatures) == round(0.6 * npc_count(players))
    assert len(h.entities(BOARD)) == 1
    side = world_side(players)
    for e in creatures + pickups:
        assert 0 <= e.x < side and 0 <= e.y < side


def test_some_creatures_rest_so_not_everything_changes_every_tick() -> None:
    h = RoomHarness(Field, max_players=256)
    h.tick(2)
    before = {e.id: (e.x, e.y) for e in h.entities(CREATURE)}
    pickups = {e.id: (e.x, e.y) for e in h.entities(PICKUP)}
    moved_share = []
    for _ in range(40):
        h.tick()
        now = {e.id: (e.x, e.y) for e in h.entities(CREATURE)}
        moved_share.append(sum(now[i] != before[i] for i in now) / len(now))
        before = now
    # about half walk at any time; over 2 s some start and some stop
    assert all(0.25 < s < 0.75 for s in moved_share), moved_share
    assert {e.id: (e.x, e.y) for e in h.entities(PICKUP)} == pickups  # nobody collected any


def test_inputs_move_the_avatar_and_the_world_wraps() -> None:
    h = RoomHarness(Field, max_players=16)
    alice = h.join("alice")
    h.tick()
    avatar = alice.entities(PLAYER)[0]
    assert avatar.owner == alice.number
    server_avatar = alice.player.data["avatar"]
    x0, y0 = server_avatar.x, server_avatar.y
    alice.input(dx=1.0, dy=0.0)
    h.advance(1.0)
    # one second at SPEED to the right, wrapping at the side (1000 units for 16 seats)
    assert server_avatar.x == pytest.approx((x0 + SPEED * 1.0) % 1000.0, abs=1.0)
    assert server_avatar.y == y0
    alice.input(dx=-1.0, dy=-1.0)  # clamped to length 1
    x1, y1 = server_avatar.x, server_avatar.y
    h.advance(1.0)
    step = SPEED / math.sqrt(2)
    assert server_avatar.x == pytest.approx((x1 - step) % 1000.0, abs=1.0)
    assert server_avatar.y == pytest.approx((y1 - step) % 1000.0, abs=1.0)
    h.assert_in_sync()


def test_touching_a_pickup_scores_and_respawns_it_elsewhere() -> None:
    h = RoomHarness(Field, max_players=16)
    alice = h.join("alice")
    h.tick()
    game = h.game
    pickup = h.entities(PICKUP)[0]
    count = len(h.entities(PICKUP))
    # put the avatar just left of the pickup and walk into it
    motion = game.motion[alice.number]
    motion[0] = (pickup.x - 5.0) / POS.precision
    motion[1] = pickup.y / POS.precision
    alice.input(dx=1.0, dy=0.0)
    h.tick(2)
    avatar = alice.player.data["avatar"]
    assert avatar.score == pickup.value
    assert h.entity(pickup.id) is None
    assert len(h.entities(PICKUP)) == count
    board = h.entities(BOARD)[0]
    assert (board.record, board.holder) == (pickup.value, "alice")
    h.assert_in_sync()


def test_the_board_counts_players_and_keeps_the_clock() -> None:
    h = RoomHarness(Field, max_players=16)
    alice, bob = h.join("alice"), h.join("bob")
    h.tick()
    board = h.entities(BOARD)[0]
    assert board.players == 2
    h.advance(3.0)
    assert h.entities(BOARD)[0].clock == h.current_tick // Field.tick_rate
    bob.leave()
    h.tick()
    assert h.entities(BOARD)[0].players == 1
    assert alice.entities(BOARD)[0].players == 1


def test_focus_and_wrapping_view() -> None:
    h = RoomHarness(Field, max_players=16)
    alice = h.join("alice")
    game = h.game
    assert game.focus(alice.player) is None  # before on_join
    h.tick()
    assert game.focus(alice.player) is not None
    cells = list(game.view(alice.player, (10.0, 990.0)))  # the corner cell (0, 3)
    assert len(set(cells)) == 9
    assert set(cells) == {(x, y) for x in (3, 0, 1) for y in (2, 3, 0)}
    inner = set(game.view(alice.player, (CELL * 1.5, CELL * 1.5)))
    assert inner == {(x, y) for x in (0, 1, 2) for y in (0, 1, 2)}


def test_many_players_walking_stay_in_sync() -> None:
    h = RoomHarness(Field, max_players=64)
    rng = random.Random(7)
    clients = [h.join(f"p{i}") for i in range(12)]
    h.tick()
    for t in range(120):
        if t % 10 == 0:
            for c in clients:
                a = rng.uniform(0, 2 * math.pi)
                c.input(dx=math.cos(a), dy=math.sin(a))
        h.tick()
    h.assert_in_sync()
    assert all(not c.desyncs for c in clients)


def test_update_is_cheap_enough_to_count_its_work() -> None:
    """Not a timing test: the per-tick work is bounded by what moves, not by the room."""
    h = RoomHarness(Field, max_players=256)
    h.tick()
    game = h.game
    assert 0.3 * len(h.entities(CREATURE)) < len(game.walking) < 0.7 * len(h.entities(CREATURE))
    # pickups sit in buckets: an avatar tests at most a handful, not all 410
    biggest = max(len(b) for b in game.buckets.values())
    assert biggest < 12


def test_gamebots_default_for_field_is_roam_which_keeps_long_legs() -> None:
    from clients.bots.behaviours import ROAM, default_behaviour
    from clients.bots.lean import Bot
    from gameserver.games.arena import Arena

    assert default_behaviour(Field.input_schema, Field.schema, "field") == "roam"
    assert default_behaviour(Arena.input_schema, Arena.schema, "arena") == "wander"
    assert ROAM.misfit(Field.input_schema, Field.schema) is None
    bot = Bot(0, "r", verify=False, rng=random.Random(3), behaviour=ROAM)
    ROAM.start(bot, 0.0)
    first = bot.steering
    assert math.hypot(*first) == pytest.approx(1.0, abs=0.02)
    turns = 0
    for i in range(1, 20 * 20):  # 20 s of inputs at 20 Hz
        before = bot.steering
        ROAM.step(bot, i / 20)
        turns += bot.steering != before
    # a new heading every 2-4 s: 5..10 legs in 20 s, never a turn on every input
    assert 4 <= turns <= 10


def test_players_see_a_few_dozen_entities_of_their_wrapped_view_and_stay_in_sync() -> None:
    h = RoomHarness(Field, max_players=256)
    rng = random.Random(11)
    clients = [h.join(f"p{i}") for i in range(32)]
    h.tick()
    assert all(c.joined is not None and c.joined.view for c in clients)
    crossings = 0
    cells_before = {c.number: c.cells for c in clients}
    for t in range(200):
        if t % 20 == 0:
            for c in clients:
                a = rng.uniform(0, 2 * math.pi)
                c.input(dx=math.cos(a), dy=math.sin(a))
        h.tick()
        for c in clients:
            if c.cells != cells_before[c.number]:
                crossings += 1
                cells_before[c.number] = c.cells
        if t % 25 == 0:
            h.assert_in_sync()
    h.assert_in_sync()
    assert crossings > 50  # 32 players x 10 s at 200 units/s over 250-unit cells
    for c in clients:
        assert len(c.cells) == 9
        held = c.replica.entities
        # the board is global; everything else lies in the player's 9 cells
        assert len(c.entities(BOARD)) == 1
        assert any(e.owner == c.number for e in c.entities(PLAYER))
        assert len(held) < 200  # not the room's 1,057 entities
        assert c.replica.checks > 0 and not c.desyncs
    # with 32 of 256 seats taken: 9 cells x 4 NPCs per cell, about 36 (+ a few players)
    mean = sum(len(c.replica.entities) for c in clients) / len(clients)
    assert 20 < mean < 60, mean
