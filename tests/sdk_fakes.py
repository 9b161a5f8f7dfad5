"""Fakes for the Python SDK's tests: a sans-I/O harness around the pure Room, a catch-up DELTA
encoder, and an in-memory gamesync.v2 server with seat holds and RESUME.

:class:`MemoryServer` runs pure Rooms behind trio-websocket over in-memory streams: the SDK's
``clients.connect._open_stream`` is patched to hand it one end of a
``trio.testing.memory_stream_pair``. Nothing touches a socket, so tests run on the autojump
MockClock (stall timeouts and backoff delays cost no real time). It can cut a connection
(no close frame), mute it (a stall), refuse connections (down) or leave them unanswered
(blackhole), close with any code, and expire held seats. With ``redirect`` set it plays a
cluster node that does not host the room (REDIRECT, then close 4015; ERROR 4015 on v1), or
refuses with 4016; :class:`MemoryCluster` routes each connection to a node by its URL's host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing
import trio_websocket

from clients.client import GameClient
from gameserver.game import Player
from gameserver.games.arena import Arena
from gameserver.room import Room, RoomConfig, RoomFull, TickOutput
from shared import wire
from shared.messages import (
    Close,
    Error,
    Event,
    Input,
    Join,
    Joined,
    Leave,
    Redirect,
    Resume,
    Resync,
    parse_client_message,
    parse_server_message,
)
from shared.protocol import CloseCode, Kind, subprotocol_for
from shared.replica import Replica
from shared.state import encode_acks, encode_record


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def corrupt_checksum(delta: bytes) -> bytes:
    """Flip a bit of a per-tick DELTA's checksum (the delta must carry one)."""
    assert delta[0] == Kind.DELTA and delta[1] == 0x01
    # kind, flags, tick varint, then 4 checksum bytes
    pos = 2
    while delta[pos] & 0x80:
        pos += 1
    pos += 1
    return delta[:pos] + bytes((delta[pos] ^ 0x01,)) + delta[pos + 1 :]


def joined_v2(room: Room, player: Player, **fields: Any) -> bytes:
    """The room's JOINED for ``player`` in the v2 layout, with the given v2 fields."""
    msg = parse_server_message(room.joined_message(player))
    assert isinstance(msg, Joined)
    return attrs.evolve(msg, version=2, **fields).to_bytes()


@attrs.frozen
class Copy:
    """A copy of a room's state and acks at one tick (what a client's replica would hold)."""

    tick: int
    entities: dict[int, tuple[int, tuple[Any, ...]]]  # id -> (type id, codes)
    acks: dict[int, int]

    @classmethod
    def of(cls, room: Room) -> Copy:
        ents = {e.id: (e.etype.type_id, tuple(e.codes)) for e in room.ctx.state}
        return cls(room.state_tick, ents, dict(room.acks))


def catch_up_delta(room: Room, base: Copy) -> bytes:
    """A v2 catch-up DELTA (flags CHECKSUM | BASE) taking ``base`` to the room's current
    state: entities created since in full, changed fields of the others, removed ids, and the
    summed acks (0 for a player who left)."""
    state = room.ctx.state
    created = [e for e in state if e.id not in base.entities]
    patches = []
    for e in state:
        old = base.entities.get(e.id)
        if old is None:
            continue
        mask = 0
        for i, (a, b) in enumerate(zip(old[1], e.codes, strict=True)):
            if a != b:
                mask |= 1 << i
        if mask:
            etype = e.etype
            part = [wire.varint(e.id), mask.to_bytes(etype.mask_bytes, "little")]
            part += [etype.encoders[i](e.codes[i]) for i in range(len(e.codes)) if mask >> i & 1]
            patches.append(b"".join(part))
    live = {e.id for e in state}
    removed = [i for i in base.entities if i not in live]
    acks = [(p, s - base.acks.get(p, 0)) for p, s in room.acks.items() if s != base.acks.get(p, 0)]
    acks += [(p, 0) for p in base.acks if p not in room.acks]
    return b"".join(
        [
            bytes((Kind.DELTA, 0x03)),
            wire.varint(room.state_tick),
            wire.varint(base.tick),
            state.checksum().to_bytes(4, "little"),
            encode_acks(acks),
            wire.varint(len(created)),
            *[encode_record(e) for e in created],
            wire.varint(len(patches)),
            *patches,
            wire.varint(len(removed)),
            *[wire.varint(i) for i in removed],
        ]
    )


class Harness:
    """A pure Room on one side, a socketless GameClient on the other."""

    def __init__(
        self,
        *,
        checksum_interval: int = 1,
        raise_on_desync: bool = True,
        input_buffer: int = 64,
    ) -> None:
        self.room = Room("r", Arena, RoomConfig(checksum_interval=checksum_interval, seed=7))
        self.clock = FakeClock()
        self.sent: list[bytes] = []
        self.client = GameClient(
            self._send, raise_on_desync=raise_on_desync, input_buffer=input_buffer, clock=self.clock
        )
        self.player: Player | None = None
        self.deliver = True  # False: messages the client sends are lost

    async def _send(self, data: bytes) -> None:
        self.sent.append(data)
        assert self.player is not None
        if not self.deliver:
            return
        self.apply(data)

    def apply(self, data: bytes) -> Any:
        """What the server does with one client message (INPUT, EVENT; the rest returned)."""
        assert self.player is not None
        msg = parse_client_message(data, self.room.input_schema)
        if isinstance(msg, Input):
            self.room.push_input(self.player.number, msg.seq, msg.codes)
        elif isinstance(msg, Event):
            self.room.push_event(self.player.number, msg.name, msg.data)
        return msg

    def _events(self, out: TickOutput) -> None:
        assert self.player is not None
        for frame, target in out.events:
            if target in (None, self.player.number):
                self.client.handle_message(frame)

    def join(self, *, v2: bool = False, v1: bool = False, token: str = "tok-1") -> None:
        """JOINED and SNAPSHOT: the room's own JOINED, or a v2 one with a resume token, or
        a v1 one."""
        self.player = self.room.seat("p1", "alice")
        out = self.room.tick()
        assert out.joined == (self.player,)
        if v2:
            self.client.handle_message(
                joined_v2(self.room, self.player, resume_token=token, seat_hold_ms=20000)
            )
        elif v1:
            msg = parse_server_message(self.room.joined_message(self.player))
            self.client.handle_message(attrs.evolve(msg, version=1).to_bytes())
        else:
            self.client.handle_message(self.room.joined_message(self.player))
        self.client.handle_message(self.room.snapshot())
        self._events(out)

    def tick(self, transform: Callable[[bytes], bytes] = lambda b: b) -> TickOutput:
        out = self.room.tick()
        self.client.handle_message(transform(out.delta))
        self._events(out)
        return out

    def assert_converged(self, replica: Replica | None = None) -> None:
        state = self.room.ctx.state
        replica = replica or self.client.replica
        assert replica.tick == self.room.state_tick
        assert {e.id: (e.etype.name, list(e.codes)) for e in replica} == {
            e.id: (e.etype.name, list(e.codes)) for e in state
        }
        assert replica.checksum() == state.checksum()
        # a new player's ack of 0 reaches others only in snapshots, not deltas: drop zeros
        assert {p: s for p, s in replica.acks.items() if s} == {
            p: s for p, s in self.room.acks.items() if s
        }


# ================================================================ an in-memory v2 server


def _binary(data: bytes | str) -> bytes:
    assert isinstance(data, bytes), "the client sent a text frame"
    return data


@attrs.define(eq=False)
class ServerConn:
    """One client connection as the fake server sees it."""

    ws: trio_websocket.WebSocketConnection
    stream: trio.abc.Stream
    version: int
    outbox: trio.MemorySendChannel[bytes]
    seat: Seat | None = None
    muted: bool = False
    left: bool = False
    #: the server does not notice this connection end (the seat stays attached to it)
    unnoticed: bool = False


@attrs.define(eq=False)
class Seat:
    room: str
    player: Player
    generation: int = 0
    conn: ServerConn | None = None
    #: the trio time the hold ends (None: seated on a live connection)
    held_until: float | None = None
    gone: bool = False

    @property
    def token(self) -> str:
        return f"{self.room}.{self.player.number}.{self.generation}"


@attrs.define(eq=False)
class MemoryServer:
    """A gamesync.v1/v2 server over in-memory streams, for the SDK's reconnect tests."""

    nursery: trio.Nursery
    #: the versions it speaks; it selects the newest one the client offers
    versions: tuple[int, ...] = (2, 1)
    tick_rate: int = 20
    max_players: int = 8
    seat_hold: float = 20.0
    #: history for catch-up deltas: ticks kept (0: always answer RESUME with a SNAPSHOT)
    history: int = 200
    #: new connections fail at once (a refused connect) / are never answered (a blackhole)
    down: bool = False
    blackhole: bool = False
    #: RESYNCs to ignore (as the server's rate limit would) before answering one
    ignore_resyncs: int = 0
    rooms: dict[str, Room] = attrs.Factory(dict)
    copies: dict[str, dict[int, Copy]] = attrs.Factory(dict)
    seats: list[Seat] = attrs.Factory(list)
    conns: list[ServerConn] = attrs.Factory(list)
    #: every client message: (connection index, message)
    received: list[tuple[int, Any]] = attrs.Factory(list)
    offered: list[tuple[str, ...]] = attrs.Factory(list)
    close_codes: list[int | None] = attrs.Factory(list)
    connects: int = 0
    resyncs: int = 0
    #: a function (room, player number, frame) -> frame applied to each per-tick DELTA
    tamper: Callable[[str, int, bytes], bytes] | None = None
    #: a cluster node: the first message (JOIN or RESUME) -> the URL to redirect it to, or
    #: int(CloseCode.DIRECTORY_UNAVAILABLE) to refuse it so, or None to serve it here
    redirect: Callable[[Join | Resume], str | int | None] | None = None
    url: str = "ws://game.test/"

    # ------------------------------------------------------------ the transport
    async def open_stream(self, target: Any, context: Any) -> trio.abc.Stream:
        """Stands in for ``clients.connect._open_stream``."""
        await trio.lowlevel.checkpoint()
        if self.down:
            raise OSError(111, "Connection refused")
        self.connects += 1
        client_end, server_end = trio.testing.memory_stream_pair()
        if not self.blackhole:
            self.nursery.start_soon(self._serve_stream, server_end)
        return client_end

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            try:
                request = await trio_websocket.wrap_server_stream(nursery, stream)
            except trio_websocket.ConnectionClosed:
                return
            offered = tuple(request.proposed_subprotocols)
            self.offered.append(offered)
            version = next((v for v in self.versions if subprotocol_for(v) in offered), None)
            if version is None:
                await request.reject(400, body=b"no subprotocol")
                return
            ws = await request.accept(subprotocol=subprotocol_for(version))
            send, recv = trio.open_memory_channel[bytes](10_000)
            conn = ServerConn(ws, stream, version, send)
            self.conns.append(conn)
            nursery.start_soon(self._writer, conn, recv)
            try:
                await self._session(conn)
            finally:
                self._detach(conn)
                with trio.move_on_after(1, shield=True):
                    await ws.aclose()
                reason = ws.closed
                self.close_codes.append(None if reason is None else reason.code)
                nursery.cancel_scope.cancel()

    async def _writer(self, conn: ServerConn, recv: trio.MemoryReceiveChannel[bytes]) -> None:
        async for frame in recv:
            if conn.muted:
                continue
            try:
                await conn.ws.send_message(frame)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                return

    # ------------------------------------------------------------ faults
    async def cut(self, conn: ServerConn) -> None:
        """Drop the connection's stream: no close frame (the client sees 1006)."""
        conn.muted = True
        await trio.aclose_forcefully(conn.stream)

    async def close(self, conn: ServerConn, code: int, reason: str) -> None:
        """CLOSE message, then the close frame, as the real server ends a session."""
        # the server's own decisions are not held; a lost connection (1001, 4008) is
        conn.left = code in (CloseCode.KICKED, CloseCode.ROOM_CLOSED, CloseCode.REPLACED)
        conn.outbox.send_nowait(Close(code, reason).to_bytes())
        await trio.sleep(0.01)
        await conn.ws.aclose(code, reason)

    def conn_of(self, number: int) -> ServerConn:
        """The live connection of player ``number`` (the newest one)."""
        for conn in reversed(self.conns):
            if conn.seat is not None and conn.seat.player.number == number:
                return conn
        raise KeyError(number)

    def expire(self, number: int) -> None:
        """End player ``number``'s hold now (as if ``seat_hold`` had passed)."""
        for seat in self.seats:
            if seat.player.number == number and seat.conn is None and not seat.gone:
                self._unseat(seat)

    # ------------------------------------------------------------ sessions
    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            cfg = RoomConfig(max_players=self.max_players, tick_rate=self.tick_rate, seed=3)
            room = self.rooms[name] = Room(name, Arena, cfg)
            self.copies[name] = {}
            self.nursery.start_soon(self._ticker, room)
        return room

    async def _session(self, conn: ServerConn) -> None:
        ws = conn.ws
        index = self.conns.index(conn)
        try:
            first = parse_client_message(_binary(await ws.get_message()), version=conn.version)
        except trio_websocket.ConnectionClosed:
            return
        self.received.append((index, first))
        if self.redirect is not None and isinstance(first, Join | Resume):
            to = self.redirect(first)
            if isinstance(to, int):
                await self._refuse(conn, to, "directory unavailable: try again shortly")
                return
            if to is not None:
                await self._redirect(conn, to, first.room)
                return
        if isinstance(first, Join):
            room = self.room(first.room)
            try:
                player = room.seat(first.name or "p", first.name)
            except RoomFull as exc:
                await self._refuse(conn, CloseCode.ROOM_FULL, str(exc))
                return
            seat = Seat(room.name, player, generation=1)
            self.seats.append(seat)
            self._attach(conn, seat)  # JOINED and SNAPSHOT after the next tick
        elif isinstance(first, Resume):
            if not await self._resume(conn, first):
                return
        else:
            await self._refuse(conn, CloseCode.PROTOCOL_ERROR, "JOIN first")
            return
        seat = conn.seat
        assert seat is not None
        room = self.rooms[seat.room]
        while True:
            try:
                data = _binary(await ws.get_message())
            except trio_websocket.ConnectionClosed as exc:
                if exc.reason is not None and exc.reason.code == CloseCode.NORMAL:
                    conn.left = True  # close 1000 from the peer: not held
                return
            msg = parse_client_message(data, room.input_schema, version=conn.version)
            self.received.append((index, msg))
            if conn.seat is not seat:
                continue  # replaced
            if isinstance(msg, Input):
                room.push_input(seat.player.number, msg.seq, msg.codes)
            elif isinstance(msg, Event):
                room.push_event(seat.player.number, msg.name, msg.data)
            elif isinstance(msg, Resync):
                self.resyncs += 1
                if self.ignore_resyncs > 0:
                    self.ignore_resyncs -= 1
                else:
                    conn.outbox.send_nowait(room.snapshot())
            elif isinstance(msg, Leave):
                conn.left = True
                return

    async def _redirect(self, conn: ServerConn, url: str, room: str) -> None:
        """As a node that does not host ``room``: REDIRECT (v2) or ERROR 4015 (v1), close 4015."""
        if conn.version >= 2:
            conn.outbox.send_nowait(Redirect(url, room).to_bytes())
        else:
            conn.outbox.send_nowait(
                Error(CloseCode.REDIRECT, f"room {room!r} lives at {url}").to_bytes()
            )
        await trio.sleep(0.01)
        await conn.ws.aclose(CloseCode.REDIRECT, "redirect")

    async def _refuse(self, conn: ServerConn, code: int, message: str) -> None:
        conn.outbox.send_nowait(Error(code, message).to_bytes())
        await trio.sleep(0.01)
        await conn.ws.aclose(code, message)

    async def _resume(self, conn: ServerConn, msg: Resume) -> bool:
        seat = next((s for s in self.seats if s.token == msg.token), None)
        if seat is None:
            known = any(
                msg.token.rsplit(".", 1)[0] == s.token.rsplit(".", 1)[0] for s in self.seats
            )
            text = "unauthorized: resume token already used" if known else "bad resume token"
            await self._refuse(conn, CloseCode.UNAUTHORIZED, text)
            return False
        if seat.gone:
            await self._refuse(conn, CloseCode.SEAT_LOST, "seat lost: the hold expired")
            return False
        old = seat.conn
        if old is not None:  # the server had not noticed the old connection die
            old.seat = None
            old.outbox.send_nowait(
                Close(CloseCode.REPLACED, "replaced by a resumed connection").to_bytes()
            )
            self.nursery.start_soon(old.ws.aclose, CloseCode.REPLACED, "replaced")
        room = self.rooms[seat.room]
        number = seat.player.number
        applied = room.acks.get(number, 0)
        room._seats[number].last_seq = applied  # re-sent seqs are accepted again
        seat.generation += 1
        seat.held_until = None
        seat.conn = conn
        conn.seat = seat
        conn.outbox.send_nowait(
            joined_v2(
                room,
                seat.player,
                resumed=True,
                resume_token=seat.token,
                seat_hold_ms=int(self.seat_hold * 1000),
                input_seq=applied,
            )
        )
        base = self.copies[seat.room].get(msg.have_tick) if msg.have_tick else None
        if base is not None and base.tick < room.state_tick:
            conn.outbox.send_nowait(catch_up_delta(room, base))
        else:
            conn.outbox.send_nowait(room.snapshot())
        return True

    def _attach(self, conn: ServerConn, seat: Seat) -> None:
        seat.conn = conn
        conn.seat = seat

    def _detach(self, conn: ServerConn) -> None:
        seat = conn.seat
        if seat is None or seat.conn is not conn or conn.unnoticed:
            return
        seat.conn = None
        conn.seat = None
        if conn.left or conn.version < 2 or self.seat_hold <= 0:
            self._unseat(seat)
            return
        seat.held_until = trio.current_time() + self.seat_hold
        self.rooms[seat.room]._seats[seat.player.number].inputs.clear()
        self.nursery.start_soon(self._expire_later, seat, seat.generation)

    async def _expire_later(self, seat: Seat, generation: int) -> None:
        await trio.sleep(self.seat_hold)
        if seat.conn is None and seat.generation == generation and not seat.gone:
            self._unseat(seat)

    def _unseat(self, seat: Seat) -> None:
        seat.gone = True
        self.rooms[seat.room].unseat(seat.player.number)

    async def _ticker(self, room: Room) -> None:
        copies = self.copies[room.name]
        while True:
            await trio.sleep(1 / self.tick_rate)
            out = room.tick()
            if self.history:
                copies[room.state_tick] = Copy.of(room)
                copies.pop(room.state_tick - self.history, None)
            joined = {p.number for p in out.joined}
            live = [s for s in self.seats if s.room == room.name and s.conn is not None]
            for seat in live:
                conn = seat.conn
                assert conn is not None
                number = seat.player.number
                if number in joined:
                    if conn.version >= 2:
                        fields = {
                            "resume_token": seat.token if self.seat_hold > 0 else "",
                            "seat_hold_ms": int(self.seat_hold * 1000),
                        }
                        conn.outbox.send_nowait(joined_v2(room, seat.player, **fields))
                    else:
                        msg = parse_server_message(room.joined_message(seat.player))
                        conn.outbox.send_nowait(attrs.evolve(msg, version=1).to_bytes())
                    conn.outbox.send_nowait(room.snapshot())
                else:
                    frame = out.delta
                    if self.tamper is not None:
                        frame = self.tamper(room.name, number, frame)
                    conn.outbox.send_nowait(frame)
            for frame, target in out.events:
                for seat in live:
                    if seat.conn is not None and target in (None, seat.player.number):
                        seat.conn.outbox.send_nowait(frame)


@attrs.define(eq=False)
class MemoryCluster:
    """In-memory cluster nodes, each a :class:`MemoryServer` reached by the host of its URL
    (``ws://HOST/``): stands in for ``clients.connect._open_stream``. Unknown hosts refuse."""

    nodes: dict[str, MemoryServer] = attrs.Factory(dict)
    #: the host of every connection attempt, in order
    dialled: list[str] = attrs.Factory(list)

    def add(self, nursery: trio.Nursery, host: str, **options: Any) -> MemoryServer:
        node = self.nodes[host] = MemoryServer(nursery, url=f"ws://{host}/", **options)
        return node

    async def open_stream(self, target: Any, context: Any) -> trio.abc.Stream:
        self.dialled.append(target.host)
        node = self.nodes.get(target.host)
        if node is None:
            await trio.lowlevel.checkpoint()
            raise OSError(111, "Connection refused")
        return await node.open_stream(target, context)
