"""The lean bot engine's message handling, without a server.

State bytes come from the pure :class:`gameserver.room.Room` running arena; the bot's inputs go
over a socketpair as real masked frames and are parsed the way the server parses them. Times
are passed in explicitly, so latency figures are exact.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import socket
from collections.abc import Iterator

import pytest

from clients.bots.behaviours import CHASE, CHATTY, IDLE, WANDER, Behaviour, steer_toward
from clients.bots.lean import (
    LATENCY_BUCKET_MS,
    Bot,
    BotFailed,
    InputEncoder,
    LatencyHistogram,
    LeanConnection,
    masked_frame,
)
from gameserver.game import Player
from gameserver.games.arena import INPUT, Arena
from gameserver.room import Room, RoomConfig
from shared import wire
from shared.messages import (
    Close,
    Error,
    Event,
    Input,
    RoomEvent,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import Kind
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    binary_frame,
    close_payload,
    frame,
)


def corrupt_checksum(delta: bytes) -> bytes:
    """Flip a bit of a DELTA's checksum (the delta must carry one)."""
    assert delta[0] == Kind.DELTA and delta[1] & 0x01
    pos = 2
    while delta[pos] & 0x80:
        pos += 1
    pos += 1
    return delta[:pos] + bytes((delta[pos] ^ 0x01,)) + delta[pos + 1 :]


class Harness:
    """A pure arena Room; a lean Bot seated in it; the bot's frames reach the room."""

    def __init__(
        self,
        *,
        verify: bool = False,
        behaviour: Behaviour = WANDER,
        others: int = 2,
        checksum_interval: int = 1,
        version: int = 2,
    ) -> None:
        self.version = version
        self.room = Room("r", Arena, RoomConfig(checksum_interval=checksum_interval, seed=7))
        if version >= 3:  # gamesync.v3: the room's state coding for v3 sessions
            self.room.codings = frozenset((3,))
        self.player = self.room.seat("bot", "bot")
        self.others = [self.room.seat(f"o{i}", f"o{i}") for i in range(others)]
        out = self.room.tick()
        assert self.player in out.joined
        self.bot = Bot(0, "r", verify=verify, rng=random.Random(5), behaviour=behaviour)
        self.client_sock, self.server_sock = socket.socketpair()
        self.client_sock.setblocking(False)
        self.bot.conn = LeanConnection(self.client_sock, None)
        self.reader = FrameReader(max_message_size=1 << 16, require_mask=True)
        joined = self.room.joined_message(self.player, version)
        self.bot.on_joined(parse_server_message(joined))  # type: ignore[arg-type]
        self.bot.on_message(self.room.snapshot(3 if version >= 3 else 2), 0.0)
        self.bot.behaviour.start(self.bot, 0.0)

    def close(self) -> None:
        self.client_sock.close()
        self.server_sock.close()

    def client_frames(self) -> list[tuple[int, bytes]]:
        """Frames the bot has sent since the last call (the server's view)."""
        self.server_sock.setblocking(False)
        try:
            self.reader.feed(self.server_sock.recv(1 << 16))
        except BlockingIOError:
            return []
        out = []
        while (item := self.reader.next()) is not None:
            out.append(item)
        return out

    def deliver_inputs(self) -> list[Input]:
        inputs = []
        for opcode, payload in self.client_frames():
            assert opcode == OP_BINARY
            msg = parse_client_message(payload, self.room.input_schema)
            if isinstance(msg, Input):
                assert self.room.push_input(self.player.number, msg.seq, msg.codes)
                inputs.append(msg)
        return inputs

    def tick(self, now: float) -> bytes:
        out = self.room.tick()
        delta = out.delta_v3 if self.version >= 3 else out.delta
        self.bot.on_message(delta, now)
        return delta


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


# ================================================================ state and acks


@pytest.mark.parametrize("verify", [False, True])
def test_bot_follows_the_room_and_measures_latency(verify: bool) -> None:
    h = Harness(verify=verify)
    bot = h.bot
    assert bot.tick == h.room.state_tick and bot.updates == 1 and bot.snapshots == 1
    for step in range(200):  # past tick 128 and seq 128: two-byte varints
        t = step * 0.05
        bot.send_input(t)
        inputs = h.deliver_inputs()
        assert [i.seq for i in inputs] == [step + 1]
        h.tick(t + 0.030)  # the state acking it arrives 30 ms later
    assert bot.tick == h.room.state_tick > 128
    assert bot.acked == h.room.acks[h.player.number] == 200
    assert bot.updates == 201
    hist = LatencyHistogram()
    hist.counts = bot.lat
    assert hist.total == 200
    assert hist.quantile(0.5) == pytest.approx(30.0, abs=LATENCY_BUCKET_MS)
    assert hist.quantile(0.99) == pytest.approx(30.0, abs=LATENCY_BUCKET_MS)
    if verify:
        assert bot.replica is not None and bot.replica.checks == 200 + 1
        assert bot.replica.checksum() == h.room.ctx.state.checksum()
    else:
        assert bot.replica is None
    h.close()


@pytest.mark.parametrize("verify", [False, True])
def test_a_v3_bot_reads_its_ack_from_the_bitmask_or_a_pair(verify: bool) -> None:
    """gamesync.v3: the others move too (their acks in the bitmask beside the bot's); every
    5th step the bot's two inputs make an increment of 2, which travels as a pair."""
    h = Harness(verify=verify, version=3, others=3)
    bot = h.bot
    assert bot.coding == 3
    seqs = dict.fromkeys((o.number for o in h.others), 0)
    for step in range(60):
        t = step * 0.05
        bot.send_input(t)
        if step % 5 == 4:
            bot.send_input(t + 0.001)
        h.deliver_inputs()
        for number in seqs:
            seqs[number] += 1
            assert h.room.push_input(number, seqs[number], (150, 60))
        delta = h.tick(t + 0.020)
        assert delta[0] == 0x12 and delta[1] & 0x04  # ACK_BITS
        assert bool(delta[1] & 0x08) == (step % 5 == 4)  # ACK_PAIRS: the bot's +2
    assert bot.acked == h.room.acks[h.player.number] == 72
    assert bot.tick == h.room.state_tick
    if verify:
        assert bot.replica is not None and bot.replica.coding == 3
        assert bot.replica.checksum() == h.room.ctx.state.checksum()
        assert bot.replica.checks == 61
    h.close()


def test_one_ack_covers_several_inputs(harness: Harness) -> None:
    bot = harness.bot
    for i in range(3):
        bot.send_input(1.0 + i * 0.01)  # 1.00, 1.01, 1.02
    harness.deliver_inputs()
    harness.tick(1.05)
    assert bot.acked == 3
    hist = LatencyHistogram()
    hist.counts = bot.lat
    assert hist.total == 3
    assert hist.quantile(0.0) == pytest.approx(30.0, abs=LATENCY_BUCKET_MS)
    assert hist.quantile(1.0) == pytest.approx(50.0, abs=LATENCY_BUCKET_MS)


def test_lost_input_is_measured_until_a_later_ack(harness: Harness) -> None:
    bot = harness.bot
    bot.send_input(1.0)
    harness.client_frames()  # input 1 is lost
    bot.send_input(1.05)
    harness.deliver_inputs()
    harness.tick(1.10)
    assert bot.acked == 2
    counts = {i: c for i, c in enumerate(bot.lat) if c}
    assert counts == {int(100 / LATENCY_BUCKET_MS): 1, int(50 / LATENCY_BUCKET_MS): 1}


def test_other_players_acks_are_ignored(harness: Harness) -> None:
    other = harness.others[0]
    harness.room.push_input(other.number, 1, (100, 100))
    harness.tick(1.0)
    assert harness.bot.acked == 0 and sum(harness.bot.lat) == 0


def test_acks_beyond_one_byte_take_the_slow_path() -> None:
    bot = Bot(0, "r", verify=False, rng=random.Random(1))
    bot.on_joined(parse_server_message(_joined(player=200)))  # type: ignore[arg-type]
    bot.sent_ring[300 & 255] = 1.0
    bot.seq = 300
    bot.acked = 299
    # DELTA, no checksum, tick 5, acks [(3, 1), (200, 1)], nothing created/changed/removed
    delta = bytes((Kind.DELTA, 0, 5, 2, 3, 1)) + wire.varint(200) + b"\x01\x00\x00\x00"
    bot.on_message(delta, 1.02)
    assert bot.acked == 300 and bot.tick == 5 and bot.updates == 1
    big = bytes((Kind.DELTA, 0, 6, 1)) + wire.varint(200) + wire.varint(130) + b"\x00\x00\x00"
    bot.on_message(big, 1.03)
    assert bot.acked == 430


def _joined(player: int) -> bytes:
    room = Room("r", Arena, RoomConfig())
    p = Player(player, "x", "x")
    return room.joined_message(p)


# ================================================================ failures


def test_verifying_bot_detects_a_checksum_desync() -> None:
    h = Harness(verify=True)
    h.tick(1.0)
    with pytest.raises(BotFailed) as info:
        h.bot.on_message(corrupt_checksum(h.room.tick().delta), 1.05)
    assert info.value.kind == "desync" and h.bot.desyncs == 1 and h.bot.failed == "desync"
    h.close()


def test_non_verifying_bot_ignores_checksums_but_sees_gaps(harness: Harness) -> None:
    bot = harness.bot
    bot.on_message(corrupt_checksum(harness.room.tick().delta), 1.0)  # not checked
    harness.room.tick()  # lost
    with pytest.raises(BotFailed) as info:
        harness.tick(1.1)
    assert info.value.kind == "desync" and bot.desyncs == 1


def test_verifying_bot_rejects_a_patch_of_an_unknown_entity() -> None:
    h = Harness(verify=True)
    h.bot.replica.entities.pop(h.player.data["avatar"].id)  # type: ignore[union-attr]
    h.room.push_input(h.player.number, 1, INPUT.codes_for({"dx": 1.0, "dy": 0.0}))
    with pytest.raises(BotFailed) as info:
        h.tick(1.0)
    assert info.value.kind == "desync" and h.bot.desyncs == 1
    h.close()


@pytest.mark.parametrize("verify", [False, True])
def test_error_close_and_events(verify: bool) -> None:
    h = Harness(verify=verify)
    h.bot.on_message(RoomEvent(2, "chat", b"hi").to_bytes(), 1.0)
    assert h.bot.events_received == 1
    with pytest.raises(BotFailed) as info:
        h.bot.on_message(Error(4005, "room full").to_bytes(), 1.0)
    assert info.value.kind == "ServerError:4005" and info.value.close_code == 4005
    with pytest.raises(BotFailed) as info:
        h.bot.on_message(Close(4011, "room closed").to_bytes(), 1.0)
    assert info.value.kind == "closed:4011" and info.value.close_code == 4011
    with pytest.raises(BotFailed) as info:
        h.bot.on_message(bytes((Kind.DELTA, 0)), 1.0)  # truncated
    assert info.value.kind == ("desync" if verify else "protocol")
    h.close()


# ================================================================ inputs and frames


def test_inputs_are_what_the_server_expects(harness: Harness) -> None:
    bot = harness.bot
    for seq, target in ((1, 1), (130, 130), (20000, 20000)):
        bot.seq = seq - 1
        bot.steer(0.5, -1.0)
        bot.send_input(1.0)
        [(opcode, payload)] = harness.client_frames()
        msg = parse_client_message(payload, INPUT)
        assert msg == Input(target, INPUT.codes_for({"dx": 0.5, "dy": -1.0}))
        assert opcode == OP_BINARY


def test_input_encoder_caches_per_code_pair() -> None:
    enc = InputEncoder.for_schema(INPUT)
    assert InputEncoder.for_schema(INPUT) is enc
    a = enc.encode(0.3, 0.7)
    assert a == INPUT.encode_all(INPUT.codes_for({"dx": 0.3, "dy": 0.7}))
    assert enc.encode(0.3001, 0.7001) is a  # the same wire codes: the same bytes
    assert enc.idle == INPUT.encode_all(INPUT.codes_for({"dx": 0.0, "dy": 0.0}))


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 9, 125, 126, 300, 70000])
@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT, OP_PONG])
def test_masked_frames_parse_as_sent(n: int, opcode: int) -> None:
    if opcode == OP_PONG and n > 125:
        return
    payload = random.Random(n).randbytes(n)
    reader = FrameReader(max_message_size=1 << 20, require_mask=True)
    for _ in range(3):  # fresh keys each time
        data = masked_frame(opcode, payload)
        reader.feed(data)
        assert reader.next() == (opcode, payload)


def test_connection_reads_single_frames_split_frames_and_control_frames() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    conn = LeanConnection(a, None)
    try:
        b.send(binary_frame(b"one"))
        assert conn.read_messages() == [b"one"]
        big = bytes(range(256)) * 2
        b.send(binary_frame(big))  # 126-length form
        assert conn.read_messages() == [big]
        two = binary_frame(b"x" * 10) + binary_frame(b"y" * 20)
        b.send(two[:15])
        assert conn.read_messages() == [b"x" * 10]
        assert conn.partial
        b.send(two[15:])
        assert conn.read_messages() == [b"y" * 20]
        assert not conn.partial
        b.send(frame(OP_PING, b"p") + frame(OP_TEXT, b'{"a": 1}'))
        assert conn.read_messages() == [b'{"a": 1}']
        reader = FrameReader(max_message_size=1 << 16, require_mask=True)
        reader.feed(b.recv(100))
        assert reader.next() == (OP_PONG, b"p")
        assert conn.bytes_down == 3 + 512 + 30 + 8
        b.send(frame(OP_CLOSE, close_payload(4008, "too slow")))
        assert conn.read_messages() == []
        assert conn.closed_by_peer == (4008, "too slow")
        assert conn.read_messages() == []
    finally:
        a.close()
        b.close()


def test_masking_keys_are_fresh_and_come_from_the_os_pool() -> None:
    from clients.bots import lean

    keys = {masked_frame(OP_BINARY, b"")[2:6] for _ in range(3000)}  # crosses a refill
    assert len(keys) >= 2990  # 32 random bits each: a repeat or two at most
    lean._mask_pool.clear()
    before = masked_frame(OP_BINARY, b"")  # refills the pool from os.urandom
    assert len(lean._mask_pool) == 1023 and before[2:6] not in keys


def test_a_length_in_more_bytes_than_needed_is_refused_on_the_fast_path() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    conn = LeanConnection(a, None)
    try:
        b.send(b"\x82\x7e\x00\x05hello")  # 5 bytes in the 16-bit length form
        with pytest.raises(FrameError) as info:
            conn.read_messages()
        assert info.value.close_code == 1002
    finally:
        a.close()
        b.close()


def test_on_readable_reports_the_close_code() -> None:
    h = Harness()
    h.server_sock.send(binary_frame(h.room.tick().delta) + frame(OP_CLOSE, close_payload(4010)))
    with pytest.raises(BotFailed) as info:
        h.bot.on_readable(1.0)
    assert info.value.kind == "closed:4010" and h.bot.close_code == 4010
    assert h.bot.updates == 2  # the delta before the close was read
    h.close()


def test_on_readable_reports_eof_as_1006() -> None:
    h = Harness()
    h.server_sock.close()
    with pytest.raises(BotFailed) as info:
        h.bot.on_readable(1.0)
    assert info.value.kind == "eof" and info.value.close_code == 1006
    h.client_sock.close()


# ================================================================ behaviours


def test_steer_toward_the_nearest() -> None:
    assert steer_toward((0, 0), [(10, 0), (0, 5)]) == (0.0, 1.0)
    dx, dy = steer_toward((1, 1), [(4, 5)])
    assert (dx, dy) == pytest.approx((0.6, 0.8))
    assert steer_toward((1, 1), []) == (0.0, 0.0)
    assert steer_toward((1, 1), [(1, 1)]) == (0.0, 0.0)


def _place(h: Harness, player: Player, x: float, y: float) -> None:
    avatar = player.data["avatar"]
    avatar.x = x
    avatar.y = y


def test_chase_steers_toward_the_nearest_other_player() -> None:
    h = Harness(behaviour=CHASE, others=2)
    assert h.bot.replica is not None and not h.bot.verify  # chase keeps a replica anyway
    _place(h, h.player, 100.0, 100.0)
    _place(h, h.others[0], 400.0, 500.0)  # 500 away
    _place(h, h.others[1], 100.0, 40.0)  # 60 away: the target
    h.tick(1.0)
    CHASE.step(h.bot, 1.0)
    assert (h.bot.dx, h.bot.dy) == pytest.approx((0.0, -1.0))
    assert h.bot.replica.get(h.bot.own_id).owner == h.player.number  # type: ignore[union-attr]
    h.bot.send_input(1.0)
    [inp] = h.deliver_inputs()
    assert INPUT.values_for(inp.codes).as_dict() == pytest.approx({"dx": 0.0, "dy": -1.0})
    # once the target moves, so does the steer
    h.room.push_input(h.player.number, 2, INPUT.codes_for({"dx": 0.0, "dy": 0.0}))
    _place(h, h.player, 100.0, 100.0)
    _place(h, h.others[1], 130.0, 140.0)
    h.tick(1.05)
    CHASE.step(h.bot, 1.05)
    assert (h.bot.dx, h.bot.dy) == pytest.approx((0.6, 0.8))
    h.close()


def test_chase_wanders_when_alone() -> None:
    h = Harness(behaviour=CHASE, others=0)
    h.tick(1.0)
    for i in range(50):
        CHASE.step(h.bot, 1.0 + i)
    assert math.hypot(h.bot.dx, h.bot.dy) == pytest.approx(1.0)
    h.close()


def test_wander_is_a_seeded_random_walk() -> None:
    def walk(seed: int) -> list[tuple[float, float]]:
        bot = Bot(0, "r", verify=False, rng=random.Random(seed))
        WANDER.start(bot, 0.0)
        out = []
        for i in range(300):
            WANDER.step(bot, i * 0.05)
            out.append((bot.dx, bot.dy))
        return out

    a = walk(1)
    assert a == walk(1) and a != walk(2)
    assert all(math.hypot(dx, dy) == pytest.approx(1.0) for dx, dy in a)
    turns = sum(1 for p, q in itertools.pairwise(a) if p != q)
    assert 10 < turns < 60  # ~10% of inputs turn


def test_idle_sends_nothing_and_chatty_chats() -> None:
    assert not IDLE.sends_inputs and WANDER.sends_inputs and CHATTY.sends_inputs
    h = Harness(behaviour=CHATTY)
    for i in range(200):  # 10 s of inputs at 20 Hz
        h.bot.send_input(i * 0.05)
    frames = h.client_frames()
    events = [parse_client_message(p, INPUT) for _, p in frames]
    chats = [e for e in events if isinstance(e, Event)]
    assert 3 <= len(chats) <= 7  # one every ~2 s
    assert chats[0] == Event("chat", b"hello from bot0")
    assert h.bot.events_sent == len(chats) and h.bot.inputs_sent == 200
    h.close()


# ================================================================ the JSON baseline


def _json_state(tick: int, acks: dict[str, int], players: list[tuple[int, float, float]]) -> bytes:
    ents = [{"id": o, "type": "player", "x": x, "y": y, "owner": o} for o, x, y in players]
    return json.dumps({"tick": tick, "acks": acks, "entities": ents}).encode()


def test_json_bot_reads_tick_and_its_ack() -> None:
    bot = Bot(0, "r", verify=False, rng=random.Random(1), protocol="json")
    bot.player = 2
    bot.sent_ring[1] = 1.0
    bot.seq = 1
    bot.on_message(_json_state(7, {"1": 4, "2": 1}, []), 1.02)
    assert bot.updates == 1 and bot.acked == 1 and sum(bot.lat) == 1
    with pytest.raises(BotFailed) as info:
        bot.on_message(b'{"type": "error", "code": 4005, "message": "full"}', 1.0)
    assert info.value.kind == "ServerError:4005"


def test_json_chase_uses_the_entities() -> None:
    bot = Bot(0, "r", verify=False, rng=random.Random(1), protocol="json", behaviour=CHASE)
    bot.player = 1
    bot.on_message(_json_state(1, {}, [(1, 10.0, 10.0), (2, 10.0, 30.0), (3, 90.0, 10.0)]), 1.0)
    CHASE.step(bot, 1.0)
    assert (bot.dx, bot.dy) == pytest.approx((0.0, 1.0))


# ================================================================ histogram


def test_latency_histogram() -> None:
    hist = LatencyHistogram()
    assert hist.quantile(0.5) is None
    for ms in range(1, 101):
        hist.add(float(ms))
    hist.add(10_000.0)  # beyond the last bucket: counted there
    assert hist.total == 101
    assert hist.quantile(0.5) == pytest.approx(51.0, abs=LATENCY_BUCKET_MS)
    assert hist.quantile(0.99) == pytest.approx(100.0, abs=LATENCY_BUCKET_MS)
    other = LatencyHistogram()
    other.merge(hist.sparse())
    other.merge(hist.counts)
    assert other.total == 202 and other.sparse() == {k: 2 * v for k, v in hist.sparse().items()}
    other.reset()
    assert other.total == 0
