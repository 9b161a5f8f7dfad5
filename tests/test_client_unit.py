"""The client SDK without the real server (gamebots has its own tests: tests/test_bots_*.py).

Most tests drive :class:`GameClient.handle_message` with real JOINED/SNAPSHOT/DELTA bytes from
the pure :class:`gameserver.room.Room`. The rest run the I/O layer (``open_game_client``)
against a small fake server in this file (trio-websocket on 127.0.0.1 port 0).
"""

from __future__ import annotations

import random
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from clients.client import (
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    GameClient,
    ServerError,
    make_ssl_context,
    open_game_client,
)
from gameserver.game import Player
from gameserver.games.arena import INPUT, Arena
from gameserver.room import Room, RoomConfig, RoomFull
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.messages import (
    Close,
    Delta,
    Error,
    Event,
    Input,
    Join,
    Joined,
    Leave,
    RoomEvent,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL_V1, CloseCode, subprotocol_for
from shared.replica import DesyncError
from tests.sdk_fakes import Harness, corrupt_checksum

# ================================================================ message handling


async def test_join_then_deltas_converge() -> None:
    h = Harness()
    assert not h.client.ready and h.client.tick == -1
    h.join()
    c = h.client
    assert c.ready and c.in_sync
    assert c.player == h.player.number if h.player else False
    assert c.joined.tick_rate == 20 and c.joined.game == "arena"
    assert c.state is c.replica
    h.assert_converged()
    assert len(c.replica.of_type("gem")) == 6
    assert len(c.replica.of_type("player")) == 1
    rng = random.Random(1)
    for _ in range(40):
        await c.send_input(dx=rng.uniform(-1, 1), dy=rng.uniform(-1, 1))
        h.tick()
        h.assert_converged()
    assert c.tick == h.room.state_tick == 41
    assert c.stats.snapshots == 1 and c.stats.deltas == 40 and c.stats.updates == 41
    assert c.stats.checksums_verified == 41  # the snapshot and every delta (interval 1)
    assert c.stats.messages_received == 2 + 40 + c.stats.room_events
    assert c.stats.bytes_down > 0
    assert c.stats.inputs_sent == 40 and c.stats.messages_sent == 40
    assert c.stats.bytes_up == sum(len(b) for b in h.sent)
    assert c.last_acked == 40 and c.last_sent == 40
    assert not c.desyncs and c.failure is None


async def test_checksum_only_on_interval_ticks() -> None:
    h = Harness(checksum_interval=5)
    h.join()
    for _ in range(10):
        h.tick()
    h.assert_converged()
    assert h.client.stats.checksums_verified == 1 + 2  # snapshot + ticks 5 and 10


async def test_inputs_are_encoded_with_increasing_seq() -> None:
    h = Harness()
    h.join()
    seqs = [await h.client.send_input(dx=0.5, dy=-0.25) for _ in range(3)]
    assert seqs == [1, 2, 3]
    msgs = [parse_client_message(b, INPUT) for b in h.sent]
    assert [m.seq for m in msgs if isinstance(m, Input)] == [1, 2, 3]
    values = INPUT.values_for(msgs[0].codes if isinstance(msgs[0], Input) else ())
    assert values.dx == pytest.approx(0.5) and values.dy == pytest.approx(-0.25)
    seq = await h.client.send_input(dx=2.0)  # clamped by the schema; dy takes its default
    assert seq == 4
    with pytest.raises(LocalProtocolError):
        await h.client.send_input(jump=True)
    assert h.client.last_sent == 4  # a rejected input uses no sequence number


async def test_acks_and_latency_bookkeeping() -> None:
    h = Harness()
    h.join()
    c = h.client
    h.clock.now = 1.0
    s1 = await c.send_input(dx=1.0)
    h.clock.now = 1.010
    s2 = await c.send_input(dx=1.0)
    assert c.last_acked == 0 and not c.latencies
    h.clock.now = 1.050
    h.tick()  # applies both: ack jumps to 2
    assert c.last_acked == s2 == 2
    assert list(c.latencies) == pytest.approx([0.050, 0.040])
    assert c.stats.inputs_acked == 2
    h.clock.now = 2.0
    await c.send_input(dx=0.0)
    h.clock.now = 2.020
    h.tick()
    assert c.pop_latencies() == pytest.approx([0.050, 0.040, 0.020])
    assert not c.latencies
    await c.wait_for_ack(s1)  # already acked: returns at once
    # another player's inputs don't ack ours
    other = h.room.seat("p2", "bob")
    h.tick()
    h.room.push_input(other.number, 1, INPUT.codes_for({"dx": 1.0}))
    h.deliver = False
    await c.send_input(dx=0.5)  # lost: never applied
    h.tick()
    assert c.replica.acks.get(other.number) == 1
    assert c.last_acked == 3 and c.stats.inputs_acked == 3


async def test_other_player_join_and_room_events() -> None:
    h = Harness()
    h.join()
    c = h.client
    first = await c.next_event()
    assert first == RoomEvent(0, "joined", b"alice")
    h.room.seat("p2", "bob")
    h.tick()
    h.assert_converged()
    assert len(c.replica.of_type("player")) == 2
    await c.send_event("chat", b"hello")
    h.tick()  # the game relays the event to everyone
    assert await c.next_event() == RoomEvent(0, "joined", b"bob")
    assert await c.next_event() == RoomEvent(h.player.number if h.player else 0, "chat", b"hello")
    assert c.stats.events_sent == 1 and c.stats.room_events == 3
    assert list(c.iter_new_events()) == []
    with trio.move_on_after(0.05) as scope:
        await c.next_event()
    assert scope.cancelled_caught


async def test_event_buffer_overflow_counts_missed() -> None:
    c = GameClient(event_history=2)
    for i in range(5):
        c.handle_message(RoomEvent(0, f"e{i}").to_bytes())
    assert [e.name for e in c.events] == ["e3", "e4"]
    assert (await c.next_event()).name == "e3"
    assert c.stats.events_missed == 3
    assert [e.name for e in c.iter_new_events()] == ["e4"]


async def test_wait_for_tick_and_next_update() -> None:
    h = Harness()
    h.join()
    c = h.client
    got: list[Any] = []

    async def waiter() -> None:
        got.append(await c.wait_for_tick(4))
        got.append(await c.next_update())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        for _ in range(3):  # ticks 2, 3, 4 (the join was tick 1)
            await trio.sleep(0.001)
            h.tick()
        await trio.sleep(0.001)
        assert got == [4]
        h.tick()
    assert isinstance(got[1], Delta) and got[1].tick == 5
    assert isinstance(c.last_update, Delta)


async def test_corrupted_checksum_raises_desync() -> None:
    h = Harness()
    h.join()
    h.tick()
    with pytest.raises(DesyncError, match="checksum mismatch"):
        h.tick(corrupt_checksum)
    c = h.client
    assert len(c.desyncs) == 1 and c.failure is c.desyncs[0]
    with pytest.raises(DesyncError):
        await c.wait_for_tick(100)
    with pytest.raises(DesyncError):
        await c.send_input(dx=1.0)


async def test_desync_tolerated_until_next_snapshot() -> None:
    h = Harness(raise_on_desync=False)
    h.join()
    h.tick(corrupt_checksum)  # recorded, not raised
    c = h.client
    assert len(c.desyncs) == 1 and c.failure is None and not c.in_sync
    for _ in range(3):
        h.tick()  # ignored until a snapshot
    assert c.stats.deltas_skipped == 3 and len(c.desyncs) == 1
    c.handle_message(h.room.snapshot())
    assert c.in_sync
    h.assert_converged()
    h.tick()
    h.assert_converged()


async def test_patch_of_unknown_entity_is_a_desync() -> None:
    h = Harness(raise_on_desync=False)
    h.join()
    await h.client.send_input(dx=1.0)
    h.client.replica.entities.pop(max(h.client.replica.entities))  # our avatar, moved next
    h.tick()
    assert len(h.client.desyncs) == 1 and not h.client.in_sync


async def test_snapshot_mid_stream_replaces_state_and_stale_deltas_are_skipped() -> None:
    h = Harness()
    h.join()
    c = h.client
    replica = c.replica
    stale = [h.room.tick() for _ in range(3)]  # the client "fell behind": deltas not delivered
    c.handle_message(h.room.snapshot())
    assert c.replica is replica  # replaced in place
    h.assert_converged()
    for out in stale:  # deltas older than the snapshot are skipped, not a desync
        assert c.handle_message(out.delta) is None
    assert c.stats.deltas_skipped == 3 and not c.desyncs
    h.tick()
    h.assert_converged()
    assert c.stats.snapshots == 2


async def test_delta_gap_is_a_desync() -> None:
    h = Harness()
    h.join()
    h.room.tick()  # lost
    with pytest.raises(DesyncError, match="tick"):
        h.tick()


async def test_error_raises_server_error() -> None:
    c = GameClient()
    with pytest.raises(ServerError) as info:
        c.handle_message(Error(CloseCode.ROOM_FULL, "room 'r' is full").to_bytes())
    assert info.value.code == 4005 and info.value.message == "room 'r' is full"
    assert "4005" in str(info.value)
    assert c.failure is info.value and c.server_errors == [Error(4005, "room 'r' is full")]
    with pytest.raises(ServerError):
        await c.wait_for_tick(1)
    with pytest.raises(ServerError):
        await c.next_event()


async def test_error_after_join_wakes_waiters() -> None:
    h = Harness()
    h.join()
    c = h.client

    async def inject() -> None:
        await trio.sleep(0.01)
        with pytest.raises(ServerError):
            c.handle_message(Error(CloseCode.POLICY_VIOLATION, "slow down").to_bytes())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inject)
        with pytest.raises(ServerError, match="slow down"):
            await c.wait_for_tick(1000)


def test_close_raises_connection_closed() -> None:
    h = Harness()
    h.join()
    with pytest.raises(ConnectionClosed) as info:
        h.client.handle_message(Close(CloseCode.KICKED, "kicked").to_bytes())
    assert info.value.code == 4010 and info.value.reason == "kicked"
    assert h.client.close_message == Close(4010, "kicked")


def test_malformed_and_unexpected_messages() -> None:
    c = GameClient()
    with pytest.raises(RemoteProtocolError, match="state before JOINED"):
        c.handle_message(b"\x11\x01")
    assert isinstance(c.failure, RemoteProtocolError)
    for data in (b"", b"\xff", b"\x13", "text"):
        with pytest.raises(RemoteProtocolError):
            GameClient().handle_message(data)
    h = Harness()
    h.join()
    assert h.player is not None
    with pytest.raises(RemoteProtocolError, match="second JOINED"):
        h.client.handle_message(h.room.joined_message(h.player))


def test_not_joined_yet() -> None:
    c = GameClient()
    assert c.tick == -1 and c.last_acked == 0 and not c.ready
    with pytest.raises(RuntimeError):
        _ = c.player
    with pytest.raises(RuntimeError):
        _ = c.replica


async def test_send_without_connection() -> None:
    h = Harness()
    h.join()
    c = GameClient()
    c.handle_message(h.room.joined_message(h.room.seat("p2", "bob")))
    with pytest.raises(RuntimeError, match="no connection"):
        await c.send_input(dx=1.0)


# ================================================================ a fake server for the I/O layer


def _binary(data: bytes | str) -> bytes:
    assert isinstance(data, bytes), "the client sent a text frame"
    return data


@attrs.define
class FakeServer:
    """Runs pure Rooms over trio-websocket, enough for the client: JOIN, inputs, events, LEAVE."""

    tick_rate: int = 50
    max_players: int = 8
    #: the protocol version it speaks (and selects): v1 by default, where no seat is resumed
    version: int = 1
    #: a function (room name, player number, frame) -> frame applied to each DELTA sent
    tamper: Callable[[str, int, bytes], bytes] | None = None
    rooms: dict[str, Room] = attrs.Factory(dict)
    outboxes: dict[tuple[str, int], trio.MemorySendChannel[bytes]] = attrs.Factory(dict)
    sockets: dict[tuple[str, int], WebSocketConnection] = attrs.Factory(dict)
    received: list[Any] = attrs.Factory(list)
    close_codes: list[int | None] = attrs.Factory(list)
    #: the subprotocols each client offered
    offered: list[tuple[str, ...]] = attrs.Factory(list)
    nursery: trio.Nursery | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def joined(self, room: Room, player: Player) -> bytes:
        """The room's JOINED in this server's version (v2: no resume token, so no resume)."""
        msg = parse_server_message(room.joined_message(player))
        assert isinstance(msg, Joined)
        return attrs.evolve(msg, version=self.version).to_bytes()

    async def handler(self, request: WebSocketRequest) -> None:
        subprotocol = subprotocol_for(self.version)
        if subprotocol not in request.proposed_subprotocols:
            await request.reject(400, body=f"offer {subprotocol}".encode())
            return
        ws = await request.accept(subprotocol=subprotocol)
        self.offered.append(tuple(request.proposed_subprotocols))
        join = parse_client_message(_binary(await ws.get_message()), version=self.version)
        assert isinstance(join, Join)
        room = self.rooms.get(join.room)
        if room is None:
            cfg = RoomConfig(max_players=self.max_players, tick_rate=self.tick_rate)
            room = self.rooms[join.room] = Room(join.room, Arena, cfg)
            assert self.nursery is not None
            self.nursery.start_soon(self.ticker, room)
        try:
            player = room.seat(join.name, join.name)
        except RoomFull as exc:
            await ws.send_message(Error(CloseCode.ROOM_FULL, str(exc)).to_bytes())
            await ws.aclose(CloseCode.ROOM_FULL, "room full")
            return
        key = (room.name, player.number)
        send, recv = trio.open_memory_channel[bytes](1000)
        self.outboxes[key] = send
        self.sockets[key] = ws
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.writer, ws, recv)
                while True:
                    try:
                        data = await ws.get_message()
                    except Exception:
                        break
                    msg = parse_client_message(_binary(data), room.input_schema)
                    self.received.append(msg)
                    if isinstance(msg, Input):
                        room.push_input(player.number, msg.seq, msg.codes)
                    elif isinstance(msg, Event):
                        room.push_event(player.number, msg.name, msg.data)
                    elif isinstance(msg, Leave):
                        break
                nursery.cancel_scope.cancel()
        finally:
            del self.outboxes[key]
            room.unseat(player.number)
            with trio.move_on_after(1, shield=True):
                await ws.aclose()
            reason = ws.closed
            self.close_codes.append(None if reason is None else reason.code)

    async def writer(self, ws: WebSocketConnection, recv: trio.MemoryReceiveChannel[bytes]) -> None:
        async for frame in recv:
            try:
                await ws.send_message(frame)
            except Exception:
                return

    async def ticker(self, room: Room) -> None:
        while True:
            await trio.sleep(1 / room.config.tick_rate)
            out = room.tick()
            joined = {p.number for p in out.joined}
            for p in out.joined:
                box = self.outboxes.get((room.name, p.number))
                if box is not None:
                    box.send_nowait(self.joined(room, p))
                    box.send_nowait(room.snapshot())
            for (name, number), box in list(self.outboxes.items()):
                if name == room.name and number not in joined:
                    frame = out.delta
                    if self.tamper is not None:
                        frame = self.tamper(name, number, frame)
                    box.send_nowait(frame)
            for frame, target in out.events:
                for (name, number), box in list(self.outboxes.items()):
                    if name == room.name and target in (None, number):
                        box.send_nowait(frame)

    def push(self, room: str, number: int, frame: bytes) -> None:
        self.outboxes[(room, number)].send_nowait(frame)


@pytest.fixture
async def fake_server(nursery: trio.Nursery) -> AsyncIterator[FakeServer]:
    srv = FakeServer(nursery=nursery)
    ws_server = await nursery.start(serve_websocket, srv.handler, "127.0.0.1", 0, None)
    srv.port = ws_server.port
    yield srv


async def test_open_game_client_plays_and_leaves(fake_server: FakeServer) -> None:
    async with open_game_client(fake_server.url, "room-a", name="alice") as c:
        assert c.ready and c.player == 1 and c.joined.room == "room-a"
        for _ in range(5):
            seq = await c.send_input(dx=1.0, dy=0.0)
            await trio.sleep(0.01)
        await c.wait_for_ack(seq)
        await c.wait_for_tick(c.tick + 2)
        assert c.stats.checksums_verified >= 1 and not c.desyncs
        assert len(c.pop_latencies()) == 5
    assert isinstance(fake_server.received[0], Input)
    assert isinstance(fake_server.received[-1], Leave)
    with trio.fail_after(2):
        while not fake_server.close_codes:
            await trio.sleep(0.01)
    assert fake_server.close_codes == [1000]
    assert c.stats.bytes_up == sum(len(m.to_bytes(INPUT)) for m in fake_server.received[:5]) + (
        len(Join("room-a", "", "alice").to_bytes()) + 1
    )
    with pytest.raises(ConnectionClosed):
        await c.wait_for_tick(10**6)


async def test_two_clients_see_each_other(fake_server: FakeServer) -> None:
    async with (
        open_game_client(fake_server.url, "room-b", name="alice") as a,
        open_game_client(fake_server.url, "room-b", name="bob") as b,
    ):
        await b.send_event("chat", b"hi")
        while (ev := await a.next_event()).name != "chat":
            pass
        assert ev == RoomEvent(b.player, "chat", b"hi")
        await a.wait_for_tick(b.tick)
        await b.wait_for_tick(a.tick)
        assert len(a.replica.of_type("player")) == 2


async def test_room_full_raises_server_error(fake_server: FakeServer) -> None:
    fake_server.max_players = 1
    async with open_game_client(fake_server.url, "small"):
        with pytest.raises(ServerError) as info:
            async with open_game_client(fake_server.url, "small"):
                pytest.fail("joined a full room")
    assert info.value.code == CloseCode.ROOM_FULL


async def test_server_close_cancels_the_block(fake_server: FakeServer) -> None:
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
        async with open_game_client(fake_server.url, "kick") as c:
            fake_server.push("kick", c.player, Close(CloseCode.KICKED, "bye").to_bytes())
            await trio.sleep(10)  # cancelled by the CLOSE
    assert info.value.code == CloseCode.KICKED and info.value.reason == "bye"


async def test_socket_closed_under_us(fake_server: FakeServer) -> None:
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
        async with open_game_client(fake_server.url, "drop") as c:
            await fake_server.sockets[("drop", c.player)].aclose(CloseCode.GOING_AWAY)
            while True:
                await c.next_update()
    assert info.value.code == CloseCode.GOING_AWAY


async def test_desync_over_the_wire_raises_out_of_the_block(fake_server: FakeServer) -> None:
    fake_server.tamper = lambda room, n, frame: corrupt_checksum(frame) if frame[1] & 1 else frame
    with trio.fail_after(5), pytest.raises(DesyncError):
        async with open_game_client(fake_server.url, "bad") as c:
            await trio.sleep(10)
    assert len(c.desyncs) == 1
    fake_server.tamper = lambda room, n, frame: (
        corrupt_checksum(frame) if frame[1] & 1 and room == "bad2" else frame
    )
    async with open_game_client(fake_server.url, "bad2", raise_on_desync=False) as c:
        await trio.sleep(0.3)
        assert c.desyncs and not c.in_sync and c.failure is None


async def test_user_exception_is_not_wrapped(fake_server: FakeServer) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_game_client(fake_server.url, "r"):
            raise KeyError("mine")
    assert isinstance(fake_server.received[-1], Leave)


async def test_outer_cancel_still_leaves(fake_server: FakeServer) -> None:
    with trio.fail_after(2):  # promptly: no waiting for a closing handshake nobody can read
        with trio.move_on_after(0.2):
            async with open_game_client(fake_server.url, "r"):
                await trio.sleep(10)
    with trio.fail_after(2):
        while not fake_server.received:
            await trio.sleep(0.01)
    assert isinstance(fake_server.received[-1], Leave)


async def test_connect_errors(fake_server: FakeServer) -> None:
    with pytest.raises(ConnectError, match="could not connect"):
        async with open_game_client("ws://127.0.0.1:1", "r"):
            pass
    with pytest.raises(ValueError):
        async with open_game_client("http://127.0.0.1:1", "r"):
            pass
    with pytest.raises(LocalProtocolError):  # a name too long for the wire
        async with open_game_client(fake_server.url, "r", name="x" * 100):
            pass


async def test_join_timeout(nursery: trio.Nursery) -> None:
    async def mute(request: WebSocketRequest) -> None:
        await request.accept(subprotocol=SUBPROTOCOL_V1)
        await trio.sleep_forever()

    server = await nursery.start(serve_websocket, mute, "127.0.0.1", 0, None)
    with trio.fail_after(3), pytest.raises(ConnectTimeout, match="JOINED"):
        async with open_game_client(f"ws://127.0.0.1:{server.port}", "r", connect_timeout=0.2):
            pass


async def test_subprotocol_refused(nursery: trio.Nursery) -> None:
    async def refuse(request: WebSocketRequest) -> None:
        await request.reject(400, body=b"unsupported subprotocol")

    server = await nursery.start(serve_websocket, refuse, "127.0.0.1", 0, None)
    with pytest.raises(ConnectError, match="HTTP 400"):
        async with open_game_client(f"ws://127.0.0.1:{server.port}", "r"):
            pass


async def test_tls_verified_against_ca_file(
    nursery: trio.Nursery, tmp_path: Path, fake_server: FakeServer
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = await nursery.start(serve_websocket, fake_server.handler, "127.0.0.1", 0, server_ctx)
    url = f"wss://127.0.0.1:{server.port}"
    ca_file = tmp_path / "dev-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with open_game_client(url, "tls", ca_file=ca_file) as c:
        assert c.ready
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with trio.fail_after(3), pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        async with open_game_client(url, "tls", ca_file=other):
            pass


def test_make_ssl_context(tmp_path: Path) -> None:
    assert make_ssl_context("ws://h:1") is None
    assert make_ssl_context("ws://h:1", ca_file=tmp_path / "ignored.pem") is None
    ctx = ssl.create_default_context()
    assert make_ssl_context("wss://h:1", ssl_context=ctx) is ctx
    assert make_ssl_context("wss://h:1").verify_mode == ssl.CERT_REQUIRED  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        make_ssl_context("ws://h:1", ssl_context=ctx)
    with pytest.raises(FileNotFoundError):
        make_ssl_context("wss://h:1", ca_file=tmp_path / "missing.pem")
