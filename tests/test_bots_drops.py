"""``gamebots --drop-every``, without a server: the cut schedule, the cut itself (RST on real
loopback TCP), and a resumed bot's state and re-sent inputs against the pure arena Room (its
held seats and catch-up deltas)."""

from __future__ import annotations

import math
import random
import socket
import threading
from collections.abc import Iterator

import pytest

from clients.bots.behaviours import IDLE, WANDER
from clients.bots.drops import (
    ResumingBot,
    _resend,
    apply_resumed_state,
    drop_figures,
    input_message,
    state_head,
)
from clients.bots.lean import Bot, BotFailed, Engine, LeanConnection
from gameserver.games.arena import Arena
from gameserver.room import Room, RoomConfig
from shared.messages import Input, parse_client_message, parse_server_message
from shared.protocol import Kind
from shared.wsframe import OP_BINARY, FrameReader


def _bot(verify: bool, index: int = 0, behaviour: object = WANDER) -> ResumingBot:
    return ResumingBot(
        index,
        "r",
        verify=verify,
        rng=random.Random(5),
        drop_rng=random.Random(f"drop{index}"),
        behaviour=behaviour,  # type: ignore[arg-type]
    )


class HeldRoom:
    """A pure arena Room with held seats and a history; a ResumingBot seated in it, whose
    frames reach the room over a socketpair."""

    def __init__(self, *, verify: bool) -> None:
        config = RoomConfig(checksum_interval=1, seed=7, seat_hold_ticks=200, history_ticks=200)
        self.room = Room("r", Arena, config)
        self.player = self.room.seat("bot", "bot")
        self.others = [self.room.seat(f"o{i}", f"o{i}") for i in range(2)]
        self.room.tick()
        self.bot = _bot(verify)
        self.client_sock, self.server_sock = socket.socketpair()
        self.client_sock.setblocking(False)
        self.server_sock.setblocking(False)
        self.bot.conn = LeanConnection(self.client_sock, None)
        self.reader = FrameReader(max_message_size=1 << 16, require_mask=True)
        joined = parse_server_message(self.room.joined_message(self.player))
        self.bot.on_joined(joined)  # type: ignore[arg-type]
        self.bot.on_message(self.room.snapshot(), 0.0)
        self.bot.behaviour.start(self.bot, 0.0)

    def sent_inputs(self) -> list[Input]:
        try:
            self.reader.feed(self.server_sock.recv(1 << 16))
        except BlockingIOError:
            return []
        out = []
        while (item := self.reader.next()) is not None:
            opcode, payload = item
            assert opcode == OP_BINARY
            msg = parse_client_message(payload, self.room.input_schema)
            assert isinstance(msg, Input)
            out.append(msg)
        return out

    def tick(self, now: float, *, deliver: bool = True) -> None:
        delta = self.room.tick().delta
        if deliver:
            self.bot.on_message(delta, now)

    def close(self) -> None:
        self.client_sock.close()
        self.server_sock.close()


@pytest.fixture(params=[False, True], ids=["lean", "replica"])
def held(request: pytest.FixtureRequest) -> Iterator[HeldRoom]:
    h = HeldRoom(verify=request.param)
    yield h
    h.close()


def _play_then_cut(h: HeldRoom) -> tuple[list[Input], int]:
    """Inputs 1-3 reach the room, 4-5 are lost in the cut; the room plays on 6 ticks while
    the seat is held, then takes it back. Returns (every input sent, the bot's tick)."""
    bot, room = h.bot, h.room
    for k in range(3):
        bot.send_input(1.0 + k / 100)
    sent = h.sent_inputs()
    for msg in sent:
        assert room.push_input(h.player.number, msg.seq, msg.codes)
    h.tick(1.05)
    assert bot.acked == 3
    bot.send_input(1.06)
    bot.send_input(1.07)
    sent += h.sent_inputs()  # ... which the server never gets
    have_tick = bot.tick
    assert room.detach(h.player.number)
    for _ in range(6):
        h.tick(0.0, deliver=False)
    room.reattach(h.player.number)
    h.tick(0.0, deliver=False)
    return sent, have_tick


def test_a_resumed_bot_catches_up_and_sends_its_lost_inputs_again(held: HeldRoom) -> None:
    bot, room = held.bot, held.room
    sent, have_tick = _play_then_cut(held)
    updates = bot.updates
    catch_up = room.catch_up(have_tick)
    assert catch_up is not None
    kind, tick, base, _ = state_head(catch_up)
    assert (kind, tick, base) == (Kind.DELTA, room.state_tick, have_tick)
    apply_resumed_state(bot, catch_up, version=2)
    assert bot.tick == room.state_tick and bot.desyncs == 0
    assert bot.updates == updates + (room.state_tick - have_tick)  # the ticks it spans
    assert bot.acked == room.last_applied(held.player.number) == 3
    if bot.replica is not None:  # it verified the checksum, and holds the room's state
        assert bot.replica.checks >= 1
        assert bot.replica.checksum() == room.ctx.state.checksum()
    # inputs 4 and 5 go again, with their seq numbers and contents
    assert _resend(bot, room.last_applied(held.player.number), 2.0) == 2
    again = held.sent_inputs()
    assert again == sent[3:] and [m.seq for m in again] == [4, 5]
    for msg in again:  # the server takes them (its highest seq went back to 3)
        assert room.push_input(held.player.number, msg.seq, msg.codes)
    held.tick(2.05)
    assert bot.acked == 5 and bot.desyncs == 0


def test_a_resume_answered_with_a_snapshot(held: HeldRoom) -> None:
    bot, room = held.bot, held.room
    _play_then_cut(held)
    snapshots = bot.snapshots
    apply_resumed_state(bot, room.snapshot(), version=2)
    assert bot.tick == room.state_tick and bot.snapshots == snapshots + 1
    assert bot.acked == 3
    held.tick(3.0)  # the per-tick deltas follow on
    assert bot.tick == room.state_tick and bot.desyncs == 0


def test_a_catch_up_from_another_tick_is_a_desync(held: HeldRoom) -> None:
    bot, room = held.bot, held.room
    _, have_tick = _play_then_cut(held)
    catch_up = room.catch_up(have_tick - 1)
    assert catch_up is not None
    with pytest.raises(BotFailed) as info:
        apply_resumed_state(bot, catch_up, version=2)
    assert info.value.kind == "desync" and bot.desyncs == 1 and bot.failed == "desync"


def test_state_head_and_input_message() -> None:
    h = HeldRoom(verify=False)
    kind, tick, base, acks = state_head(h.room.snapshot())
    assert (kind, tick, base) == (Kind.SNAPSHOT, h.room.state_tick, None)
    assert dict(acks).keys() == {p.number for p in [h.player, *h.others]}
    kind, tick, base, _ = state_head(h.room.tick().delta)
    assert (kind, tick, base) == (Kind.DELTA, h.room.state_tick, None)
    with pytest.raises(Exception, match="expected state"):
        state_head(bytes((Kind.ROOM_EVENT, 0, 0, 0)))
    msg = parse_client_message(input_message(300, h.bot.codes), h.room.input_schema)
    assert isinstance(msg, Input) and msg.seq == 300
    assert h.room.input_schema.encode_all(msg.codes) == h.bot.codes
    h.close()


def test_drop_intervals_are_exponential_and_independent_per_bot() -> None:
    a, b = _bot(False, 0), _bot(False, 1)
    draws = [a.drop_delay(3.0) for _ in range(20_000)]
    mean = sum(draws) / len(draws)
    assert mean == pytest.approx(3.0, rel=0.03)
    assert sum(d > 3.0 for d in draws) / len(draws) == pytest.approx(math.exp(-1), abs=0.015)
    assert [b.drop_delay(3.0) for _ in range(5)] != draws[:5]
    # the same bot in another run with the same seed cuts at the same times
    again = _bot(False, 0)
    assert [again.drop_delay(3.0) for _ in range(5)] == draws[:5]


def test_only_resuming_bots_keep_their_inputs() -> None:
    assert "sent_codes" not in Bot.__slots__  # the bench's bots pay nothing for drops
    h = HeldRoom(verify=False)
    for k in range(300):
        h.bot.send_input(k / 20)
    assert h.bot.sent_codes[300 & 255] == h.bot.codes
    h.close()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    client.setblocking(False)
    return client, server


def test_the_engine_cuts_with_a_reset_and_hands_the_bot_over() -> None:
    cut = threading.Event()
    cuts: list[tuple[Bot, float]] = []
    errors: list[BotFailed] = []

    def on_cut(bot: Bot, now: float) -> None:
        cuts.append((bot, now))
        cut.set()

    engine = Engine(lambda b, e: errors.append(e), input_hz=20, drop_every=0.2, on_cut=on_cut)
    bot = _bot(False, behaviour=IDLE)
    client, server = _tcp_pair()
    bot.conn = LeanConnection(client, None)
    room = Room("r", Arena, RoomConfig())
    bot.on_joined(parse_server_message(room.joined_message(room.seat("b", "b"))))  # type: ignore[arg-type]
    engine.start()
    try:
        engine.add(bot)
        assert cut.wait(30)
        assert cuts[0][0] is bot and engine.cut_count == 1 and not errors
        assert not engine.bots  # out of the engine until it is added again
        server.settimeout(10)
        with pytest.raises(ConnectionResetError):  # RST: no close frame, no FIN
            server.recv(100)
        # back in the engine (resumed, say): it gets another cut later
        cut.clear()
        client2, server2 = _tcp_pair()
        bot.conn = LeanConnection(client2, None)
        bot.keep_behaviour = True
        engine.add(bot)
        assert cut.wait(30)
        assert engine.cut_count == 2 and cuts[1][1] > cuts[0][1]
        server2.close()
        # once the window has closed, no more cuts
        client3, server3 = _tcp_pair()
        bot.conn = LeanConnection(client3, None)
        engine.close_window_now()
        engine.window_closed.wait(10)
        engine.add(bot)
        cut.clear()
        assert not cut.wait(1.0)  # 5 mean intervals
        assert engine.cut_count == 2 and engine.bots
        server3.close()
    finally:
        engine.close()
        server.close()


def test_engine_without_drops_schedules_no_cuts() -> None:
    engine = Engine(lambda b, e: None)
    assert engine.next_cut == math.inf and engine.cuts == [] and engine.drop_every == 0.0
    engine.close()


def test_drop_figures_sum_the_resuming_bots() -> None:
    a, b = _bot(False, 0), _bot(False, 1)
    a.drops, a.resumes, a.resume_ms = 3, 2, [10.0, 20.0]
    b.drops, b.resume_failures, b.seats_lost = 2, 1, 1
    plain = Bot(2, "r", verify=False, rng=random.Random(1))
    assert drop_figures([a, b, plain]) == {
        "drops": 5,
        "resumes": 2,
        "resume_failures": 1,
        "seats_lost": 1,
        "resume_ms": [10.0, 20.0],
    }
