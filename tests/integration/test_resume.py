"""Resume, resync and gamesync.v2 negotiation on real WSS (127.0.0.1, port 0, trustme).

The client here is written by hand on the shared codec (``shared.messages``,
``shared.replica``): it can cut its TCP connection without a close frame (``SO_LINGER`` 0: a
reset), and send exactly the RESUME it wants. Virtual time (``autojump_clock``) runs the seat
holds and rate limits; the server's room ticks at its rate with respect to that clock.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import trio
import trio.testing

from gameserver.roomhost import RoomHost
from gameserver.server import GameServer, ServerConfig
from shared.delta_v3 import coding_for
from shared.messages import (
    Close,
    Delta,
    Error,
    Input,
    Join,
    Joined,
    Leave,
    Resume,
    Resync,
    RoomEvent,
    Snapshot,
    parse_server_message,
)
from shared.protocol import SUBPROTOCOL_V1, SUBPROTOCOL_V2, CloseCode, version_of_subprotocol
from shared.replica import Replica
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    FrameReader,
    check_response,
    client_request,
    frame,
    new_key,
    parse_close,
)

Mint = Callable[..., str]
ROOM = "resume-room"
HOLD = 3.0
MB = 1024 * 1024


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(
        port=0,
        room_grace=1.0,
        join_timeout=5.0,
        close_timeout=1.0,
        cpu_budget=0,
        seat_hold=HOLD,
        resume_history=10.0,
    )


@pytest.fixture(autouse=True)
def quiet_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing here is worth a traceback or a warning in the server's log."""
    caplog.set_level(logging.INFO, logger="gameserver")
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not bad, [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


class Closed(Exception):
    """The server closed the WebSocket (or the connection)."""

    def __init__(self, code: int | None, told: list[Error | Close]) -> None:
        super().__init__(code, told)
        self.code = code
        self.told = told


class Client:
    """A gamesync client by hand: the shared codec over a raw TLS stream."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], subprotocol: str) -> None:
        self.stream = stream
        self.subprotocol = subprotocol
        self.version = version_of_subprotocol(subprotocol) or 1
        self.reader = FrameReader(max_message_size=MB, require_mask=False)
        self.joined: Joined | None = None
        self.replica: Replica | None = None
        self.raw_joined = b""
        self.received: list[Any] = []  # every server message, in order
        self.told: list[Error | Close] = []
        self.seq = 0

    @classmethod
    async def open(
        cls,
        server: GameServer,
        ctx: ssl.SSLContext,
        subprotocols: Sequence[str] = (SUBPROTOCOL_V2, SUBPROTOCOL_V1),
    ) -> Client:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect(("127.0.0.1", server.port))
        stream = trio.SSLStream(
            trio.SocketStream(sock), ctx, server_hostname="127.0.0.1", https_compatible=True
        )
        await stream.do_handshake()
        key = new_key()
        await stream.send_all(client_request("127.0.0.1", "/", key, list(subprotocols)))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(4096)
            assert chunk, buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        selected = check_response(head, key, list(subprotocols))
        assert selected is not None
        client = cls(stream, selected)
        client.reader.feed(rest)
        return client

    # ---------------------------------------------------------------- sending
    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(frame(OP_BINARY, payload, mask=os.urandom(4)))

    async def send_input(self, seq: int | None = None, dx: float = 1.0, dy: float = 0.0) -> int:
        assert self.joined is not None
        if seq is None:
            self.seq += 1
            seq = self.seq
        schema = self.joined.input_schema
        await self.send(Input(seq, schema.codes_for({"dx": dx, "dy": dy})).to_bytes(schema))
        return seq

    def cut(self) -> None:
        """Drop the connection with no close frame: an RST, as a lost network looks after
        the fact (SO_LINGER 0)."""
        sock = self.stream.transport_stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    # ---------------------------------------------------------------- receiving
    async def _frame(self) -> tuple[int, bytes]:
        while (item := self.reader.next()) is None:
            try:
                chunk = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise Closed(None, self.told) from None
            if not chunk:
                raise Closed(None, self.told)
            self.reader.feed(bytes(chunk))
        return item

    async def recv(self) -> Any:
        """The next server message (applied to the replica); Closed at the close frame."""
        while True:
            opcode, payload = await self._frame()
            if opcode == OP_CLOSE:
                raise Closed(parse_close(payload)[0], self.told)
            if opcode != OP_BINARY:
                continue
            schema = self.joined.schema if self.joined is not None else None
            type_of = self.replica.type_of if self.replica is not None else None
            rep = self.replica
            msg = parse_server_message(
                payload,
                schema,
                type_of,
                version=self.version,
                coding=None if rep is None else rep.coding,
                predict=None if rep is None else rep.predicted,
            )
            self.received.append(msg)
            if isinstance(msg, Joined):
                self.raw_joined = payload
                if self.joined is None or not msg.resumed:
                    self.replica = Replica(msg.schema, coding=coding_for(msg.version, msg.view))
                self.joined = msg
            elif isinstance(msg, Snapshot):
                assert self.replica is not None
                self.replica.apply_snapshot(msg)
            elif isinstance(msg, Delta):
                assert self.replica is not None
                self.replica.apply_delta(msg)
            elif isinstance(msg, (Error, Close)):
                self.told.append(msg)
            return msg

    async def until_closed(self) -> tuple[list[Error | Close], int | None]:
        try:
            while True:
                await self.recv()
        except Closed as closed:
            return closed.told, closed.code

    async def join(self, token: str, room: str = ROOM) -> Joined:
        await self.send(Join(room, "", "", token, version=self.version).to_bytes())
        msg = await self.recv()
        if not isinstance(msg, Joined):
            told, code = await self.until_closed()
            raise Closed(code, told)
        while self.tick < msg_tick(msg):
            await self.recv()
        return msg

    async def resume(self, token: str, have_tick: int, room: str = ROOM) -> Joined:
        """RESUME; returns the JOINED(RESUMED) once the state after it has been applied."""
        await self.send(Resume(room, token, have_tick, self.version).to_bytes())
        msg = await self.recv()
        if not isinstance(msg, Joined):
            told, code = await self.until_closed()
            raise Closed(code, told)
        assert msg.resumed
        state = await self.recv()  # the catch-up delta or a snapshot comes next
        assert isinstance(state, (Delta, Snapshot)), state
        return msg

    @property
    def tick(self) -> int:
        return -1 if self.replica is None else self.replica.tick

    async def wait_tick(self, tick: int) -> None:
        while self.tick < tick:
            await self.recv()

    async def wait_ack(self, seq: int) -> None:
        assert self.joined is not None and self.replica is not None
        while self.replica.acks.get(self.joined.player, 0) < seq:
            await self.recv()


def msg_tick(_: Joined) -> int:
    return 0  # a fresh join is followed by a snapshot: any tick >= 0


def host_of(server: GameServer) -> RoomHost:
    return server.rooms.rooms[ROOM]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.01)


async def joined_client(server: GameServer, ctx: ssl.SSLContext, token: str, **kw: Any) -> Client:
    client = await Client.open(server, ctx, **kw)
    await client.join(token)
    return client


# ---------------------------------------------------------------- negotiation, fresh joins


async def test_a_fresh_v2_join_carries_a_resume_token(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(30):
        a = await joined_client(auth_server, client_ssl, mint("alice"))
        b = await joined_client(auth_server, client_ssl, mint("bob"))
    assert a.subprotocol == SUBPROTOCOL_V2  # the newest one offered
    for c in (a, b):
        assert c.joined is not None and c.joined.version == 2 and not c.joined.resumed
        assert c.joined.resume_token and c.joined.seat_hold_ms == int(HOLD * 1000)
        assert c.joined.input_seq == 0
    assert a.joined is not None and b.joined is not None
    assert a.joined.resume_token != b.joined.resume_token


@pytest.mark.parametrize(
    ("server_config", "hold_ms"),
    [
        (ServerConfig(port=0, cpu_budget=0, seat_hold=None), 20_000),  # the game's own
        (ServerConfig(port=0, cpu_budget=0, seat_hold=0.0), 0),  # --seat-hold 0: off
    ],
    ids=["game-default", "off"],
)
async def test_the_seat_hold_is_the_games_unless_the_server_says(
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: Any,
    hold_ms: int,
) -> None:
    with trio.fail_after(30):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        assert me.joined is not None and me.joined.seat_hold_ms == hold_ms
        # no hold, no token: a cut frees the seat at once
        assert bool(me.joined.resume_token) == bool(hold_ms)
        host = host_of(auth_server)
        assert (host.room.history is not None) == bool(hold_ms)
        me.cut()
        if hold_ms:
            await until(lambda: bool(host.held_seats))
        else:
            await until(lambda: "me" not in auth_server.by_player)
            assert not host.held_seats and auth_server.stats.seats_held == 0


async def test_the_version_byte_must_match_the_subprotocol(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(30):
        v2 = await Client.open(auth_server, client_ssl)
        await v2.send(Join(ROOM, "", "", mint("a"), version=1).to_bytes())
        told, code = await v2.until_closed()
        assert code == CloseCode.PROTOCOL_ERROR
        assert [type(m) for m in told] == [Error] and "version 1" in told[0].message
        v1 = await Client.open(auth_server, client_ssl, (SUBPROTOCOL_V1,))
        await v1.send(Join(ROOM, "", "", mint("b"), version=2).to_bytes())
        told, code = await v1.until_closed()
        assert code == CloseCode.PROTOCOL_ERROR and told[0].code == CloseCode.PROTOCOL_ERROR
    assert not auth_server.by_player


async def test_a_v1_client_still_works_byte_for_byte_and_is_never_held(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(30):
        v2 = await joined_client(auth_server, client_ssl, mint("modern"))
        v1 = await joined_client(auth_server, client_ssl, mint("old"), subprotocols=["gamesync.v1"])
        assert v1.subprotocol == SUBPROTOCOL_V1 and v1.joined is not None
        j = v1.joined
        # the v1 JOINED layout, byte for byte
        expected = Joined(j.player, ROOM, "arena", 20, j.schema, j.input_schema, version=1)
        assert v1.raw_joined == expected.to_bytes() and v1.raw_joined[1] == 1
        seq = await v1.send_input()
        await v1.wait_ack(seq)
        await v1.wait_tick(v1.tick + 5)
        assert all(m.base is None for m in v1.received if isinstance(m, Delta))
        # its drop is not held: the seat goes, and on_leave removes its avatar
        host = host_of(auth_server)
        avatar = host.room.ctx.players[j.player].data["avatar"]
        v1.cut()
        await until(lambda: j.player not in host.room.ctx.players)
        assert not host.held_seats and auth_server.stats.seats_held == 0
        assert "old" not in auth_server.by_player
        assert avatar.id not in host.room.ctx.state.entities
        # the v2 player next to it never noticed
        await v2.wait_tick(host.room.state_tick)
        assert v2.replica is not None and v2.replica.checksum() == host.room.ctx.state.checksum()


@pytest.mark.parametrize(
    "payload", [Resume(ROOM, "x", 1, 2).to_bytes(), Resync().to_bytes()], ids=["resume", "resync"]
)
async def test_resume_and_resync_are_unknown_kinds_on_v1(
    auth_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: Any,
    payload: bytes,
) -> None:
    with trio.fail_after(30):
        v1 = await joined_client(auth_server, client_ssl, mint("old"), subprotocols=["gamesync.v1"])
        await v1.send(payload)
        told, code = await v1.until_closed()
    assert code == CloseCode.PROTOCOL_ERROR
    assert [type(m) for m in told] == [Error] and "unknown client message kind" in told[0].message
    # as the first message, too
    with trio.fail_after(30):
        first = await Client.open(auth_server, client_ssl, (SUBPROTOCOL_V1,))
        await first.send(payload)
        told, code = await first.until_closed()
    assert code == CloseCode.PROTOCOL_ERROR


# ---------------------------------------------------------------- resume


async def test_a_cut_then_resume_gets_the_same_seat_entity_and_score(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    stats = auth_server.stats
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        other = await joined_client(auth_server, client_ssl, mint("other"))
        assert me.joined is not None and me.replica is not None
        number = me.joined.player
        token = me.joined.resume_token
        host = host_of(auth_server)
        room = host.room
        player = room.ctx.players[number]
        avatar = player.data["avatar"]
        avatar.score = 7  # as if it had collected gems
        for _ in range(3):
            await me.send_input(dx=1.0, dy=0.0)
        await me.wait_ack(3)
        await me.wait_tick(room.state_tick)
        # cut, with inputs 4 and 5 on the way (they may or may not get in before the reset)
        await me.send_input(dx=0.0, dy=1.0)
        await me.send_input(dx=0.0, dy=1.0)
        have_tick = me.tick
        me.cut()
        await until(lambda: number in host.held_seats)
        assert not player.connected and stats.seats_held == 1
        # the world goes on without us for a while: the other player moves
        for _ in range(20):
            await other.send_input(dx=-1.0, dy=-1.0)
            await trio.sleep(0.05)
        assert room.state_tick > have_tick + 10
        # resume on a new connection, with the replica kept from before the cut
        back = await Client.open(auth_server, client_ssl)
        back.joined, back.replica, back.seq = me.joined, me.replica, me.seq
        joined = await back.resume(token, have_tick)
    # the same seat and room; a new token; the acks say what to send again
    assert joined.resumed and joined.player == number and joined.room == ROOM
    assert joined.resume_token and joined.resume_token != token
    assert joined.seat_hold_ms == int(HOLD * 1000)
    assert joined.input_seq in (3, 4, 5)
    # a catch-up delta from the client's tick to the server's, with a checksum that held
    catch_up = back.received[1]
    assert isinstance(catch_up, Delta) and catch_up.base == have_tick
    assert catch_up.checksum is not None and back.replica is not None
    assert back.replica.tick == catch_up.tick
    with trio.fail_after(30):
        await back.wait_tick(room.state_tick)
        assert back.replica.checksum() == room.ctx.state.checksum()
        # the same entity, with its score
        mine = [e for e in back.replica.of_type("player") if e.owner == number]
        assert [e.id for e in mine] == [avatar.id] and mine[0].score == 7
        # the inputs after input_seq are sent again, with their numbers: all applied
        for seq in range(joined.input_seq + 1, 6):
            await back.send_input(seq, dx=0.0, dy=1.0)
        await back.wait_ack(5)
        assert room.last_applied(number) == 5
        await back.send_input(6)
        await back.wait_ack(6)
    assert player.connected and number in host.sessions and not host.held_seats
    assert stats.resumes == 1 and stats.seats_held == 0
    assert auth_server.by_player["me"] is host.sessions[number]


async def test_a_resume_while_the_old_connection_is_open_replaces_it(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        old = await joined_client(auth_server, client_ssl, mint("me"))
        assert old.joined is not None
        number = old.joined.player
        host = host_of(auth_server)
        old_session = host.sessions[number]
        new = await Client.open(auth_server, client_ssl)
        new.joined, new.replica = old.joined, Replica(old.joined.schema)
        joined = await new.resume(old.joined.resume_token, 0)  # a reloaded page: no state
        assert isinstance(new.received[1], Snapshot)
        told, code = await old.until_closed()
        # the old connection is told, then closed with 4009
        assert code == CloseCode.REPLACED
        assert told == [Close(CloseCode.REPLACED, "replaced by a resumed connection")]
        # its cleanup has run, and the seat is the new connection's, attached, not held
        await until(lambda: old_session.conn.closed)
        await trio.sleep(1.0)
        assert host.sessions[number] is auth_server.by_player["me"] is not old_session
        assert not host.held_seats and host.room.ctx.players[number].connected
        seq = await new.send_input()
        await new.wait_ack(seq)
        await new.wait_tick(host.room.state_tick)
    assert joined.player == number
    assert new.replica is not None and new.replica.checksum() == host.room.ctx.state.checksum()
    assert auth_server.stats.players == 1


async def test_a_replayed_token_is_refused_4001(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        assert me.joined is not None
        token = me.joined.resume_token
        me.cut()
        host = host_of(auth_server)
        await until(lambda: bool(host.held_seats))
        back = await Client.open(auth_server, client_ssl)
        back.joined, back.replica = me.joined, me.replica
        await back.resume(token, me.tick)
        replay = await Client.open(auth_server, client_ssl)
        await replay.send(Resume(ROOM, token, 0, 2).to_bytes())
        told, code = await replay.until_closed()
    assert code == CloseCode.UNAUTHORIZED
    assert told == [Error(CloseCode.UNAUTHORIZED, "unauthorized: resume token already used")]
    stats = auth_server.stats
    assert stats.resume_refusals == {"resume_replayed": 1} and stats.resumes == 1
    # the seat stayed with the resumed connection
    assert host.sessions[me.joined.player] is auth_server.by_player["me"]


async def test_two_racing_resumes_exactly_one_wins(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        assert me.joined is not None
        token = me.joined.resume_token
        me.cut()
        host = host_of(auth_server)
        await until(lambda: bool(host.held_seats))
        racers = [await Client.open(auth_server, client_ssl) for _ in range(2)]
        for r in racers:
            r.joined, r.replica = me.joined, Replica(me.joined.schema)
        results: list[Any] = [None, None]

        async def race(i: int) -> None:
            try:
                results[i] = await racers[i].resume(token, 0)
            except Closed as closed:
                results[i] = closed

        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(race, i)
    won = [r for r in results if isinstance(r, Joined)]
    lost = [r for r in results if isinstance(r, Closed)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.resumes == 1
    assert len(host.sessions) == 1 and not host.held_seats


async def test_a_hold_that_expires_runs_on_leave_then_resume_gets_4013(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        watcher = await joined_client(auth_server, client_ssl, mint("watcher"))
        assert me.joined is not None
        number = me.joined.player
        host = host_of(auth_server)
        avatar = host.room.ctx.players[number].data["avatar"]
        me.cut()
        await until(lambda: number in host.held_seats)
        held_at = trio.current_time()
        # held: still in the room, its avatar too
        await trio.sleep(HOLD / 2)
        assert number in host.room.ctx.players and avatar.id in host.room.ctx.state.entities
        await until(lambda: number not in host.room.ctx.players)
        assert HOLD - 0.1 <= trio.current_time() - held_at <= HOLD + 0.5
        # on_leave ran: the entity is gone, for the other players too
        assert avatar.id not in host.room.ctx.state.entities
        await watcher.wait_tick(host.room.state_tick)
        assert watcher.replica is not None and watcher.replica.get(avatar.id) is None
        assert "me" not in auth_server.by_player and not host.held_seats
        late = await Client.open(auth_server, client_ssl)
        await late.send(Resume(ROOM, me.joined.resume_token, me.tick, 2).to_bytes())
        told, code = await late.until_closed()
    assert code == CloseCode.SEAT_LOST == 4013
    assert [(type(m), m.code) for m in told] == [(Error, 4013)]
    assert told[0].message.startswith("seat lost: ")
    stats = auth_server.stats
    assert stats.seats_expired == 1 and stats.seats_held == 0
    assert stats.resume_refusals == {"seat_lost": 1}


async def test_what_is_not_held(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    """LEAVE, a close 1000 and a protocol error free the seat at once; a close with 1001
    (a browser tab going away) holds it."""
    host: RoomHost | None = None
    with trio.fail_after(60):
        for player, goodbye in [
            ("leaver", Leave().to_bytes()),
            ("closer", None),
            ("broken", b"\x7f"),
        ]:
            c = await joined_client(auth_server, client_ssl, mint(player))
            if goodbye is None:
                await c.stream.send_all(
                    frame(OP_CLOSE, struct.pack("!H", 1000), mask=os.urandom(4))
                )
            else:
                await c.send(goodbye)
            await c.until_closed()
            host = host_of(auth_server)
            await until(lambda p=player: p not in auth_server.by_player)  # type: ignore[misc]
            assert not host.held_seats
        c = await joined_client(auth_server, client_ssl, mint("tab"))
        await c.stream.send_all(frame(OP_CLOSE, struct.pack("!H", 1001), mask=os.urandom(4)))
        await c.until_closed()
        assert host is not None
        await until(lambda: bool(host.held_seats))
    assert auth_server.stats.seats_held == 1


async def test_a_fresh_join_of_the_same_player_evicts_its_held_seat(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        assert me.joined is not None
        me.cut()
        host = host_of(auth_server)
        await until(lambda: bool(host.held_seats))
        again = await joined_client(auth_server, client_ssl, mint("me"))
        assert again.joined is not None and again.joined.player != me.joined.player
        assert not host.held_seats and auth_server.stats.seats_held == 0
        await until(lambda: me.joined is not None and me.joined.player not in host.room.ctx.players)
        late = await Client.open(auth_server, client_ssl)
        await late.send(Resume(ROOM, me.joined.resume_token, 0, 2).to_bytes())
        _, code = await late.until_closed()
    assert code == CloseCode.SEAT_LOST
    assert auth_server.by_player["me"] is host.sessions[again.joined.player]


async def test_kick_and_room_close_free_held_seats(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        a = await joined_client(auth_server, client_ssl, mint("a"))
        b = await joined_client(auth_server, client_ssl, mint("b"))
        c = await joined_client(auth_server, client_ssl, mint("c"))
        host = host_of(auth_server)
        for x in (a, b):
            x.cut()
        await until(lambda: len(host.held_seats) == 2)
        # an admin kicks a held player: its seat goes at once
        assert a.joined is not None and b.joined is not None
        auth_server.kick(auth_server.by_player["a"])
        await until(lambda: a.joined is not None and a.joined.player not in host.room.ctx.players)
        assert "a" not in auth_server.by_player and auth_server.stats.seats_held == 1
        # the room is closed: the held seat goes with the connected player
        host.close(CloseCode.ROOM_CLOSED, "the room was closed by an admin")
        _, code = await c.until_closed()
        assert code == CloseCode.ROOM_CLOSED
        await until(lambda: not auth_server.by_player and host.closed)
        late = await Client.open(auth_server, client_ssl)
        await late.send(Resume(ROOM, b.joined.resume_token, 0, 2).to_bytes())
        _, code = await late.until_closed()
    assert code == CloseCode.SEAT_LOST
    assert auth_server.stats.seats_held == 0 and not host.held_seats


async def test_drain_frees_held_seats_and_a_resume_while_draining_gets_4012(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        stay = await joined_client(auth_server, client_ssl, mint("stay"))
        assert me.joined is not None
        host = host_of(auth_server)
        me.cut()
        await until(lambda: bool(host.held_seats))
        # a connection that has done its handshake, about to resume
        resumer = await Client.open(auth_server, client_ssl)
        auth_server.begin_drain(30.0)
        assert not host.held_seats and auth_server.stats.seats_held == 0
        await until(lambda: me.joined is not None and me.joined.player not in host.room.ctx.players)
        try:
            await resumer.send(Resume(ROOM, me.joined.resume_token, 0, 2).to_bytes())
        except trio.BrokenResourceError:
            pass  # already refused
        told, code = await resumer.until_closed()
        assert code == CloseCode.DRAINING
        assert [(type(m), m.code) for m in told] == [(Error, CloseCode.DRAINING)]
        # a seated player cut off while draining is not held either
        stay.cut()
        await until(lambda: "stay" not in auth_server.by_player)
    assert not host.held_seats


# ---------------------------------------------------------------- resync


async def test_resync_returns_a_snapshot_and_is_rate_limited(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    stats = auth_server.stats
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        host = host_of(auth_server)
        await me.wait_tick(host.room.state_tick + 2)
        start = len(me.received)
        for _ in range(4):  # a burst of 2 is served; the rest is ignored, not refused
            await me.send(Resync().to_bytes())
        await me.wait_tick(host.room.state_tick + 5)
        snapshots = [m for m in me.received[start:] if isinstance(m, Snapshot)]
        assert len(snapshots) == 2 and stats.resyncs == 2 and stats.resyncs_limited == 2
        # one more after the interval
        await trio.sleep(2.1)
        start = len(me.received)
        await me.send(Resync().to_bytes())
        await me.wait_tick(host.room.state_tick + 3)
        assert sum(isinstance(m, Snapshot) for m in me.received[start:]) == 1
        assert stats.resyncs == 3
        # the replica still agrees with the server, and the player is still seated
        await me.wait_tick(host.room.state_tick)
        assert me.replica is not None
        assert me.replica.checksum() == host.room.ctx.state.checksum()
        assert "me" in auth_server.by_player


async def test_a_resync_flood_is_closed_1008(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        payload = frame(OP_BINARY, Resync().to_bytes(), mask=os.urandom(4))
        try:
            for _ in range(20):
                await me.stream.send_all(payload * 100)
                await trio.sleep(0.05)
        except trio.BrokenResourceError:
            pass
        told, code = await me.until_closed()
    assert code == CloseCode.POLICY_VIOLATION
    assert told and told[0].code == CloseCode.POLICY_VIOLATION
    assert auth_server.stats.protocol_errors["flood"] == 1
    # a flood is the peer's error: the seat is not held
    await until(lambda: "me" not in auth_server.by_player)
    assert auth_server.stats.seats_held == 0


# ---------------------------------------------------------------- held events


async def test_events_for_a_held_seat_arrive_after_the_resume(
    auth_server: GameServer, client_ssl: ssl.SSLContext, mint: Mint, autojump_clock: Any
) -> None:
    with trio.fail_after(60):
        me = await joined_client(auth_server, client_ssl, mint("me"))
        assert me.joined is not None
        host = host_of(auth_server)
        me.cut()
        await until(lambda: bool(host.held_seats))
        # someone joins while we are away: arena broadcasts "joined"
        await joined_client(auth_server, client_ssl, mint("newcomer", name="Newcomer"))
        back = await Client.open(auth_server, client_ssl)
        back.joined, back.replica = me.joined, me.replica
        await back.resume(me.joined.resume_token, me.tick)
        while not any(isinstance(m, RoomEvent) for m in back.received):
            await back.recv()
    kinds = [type(m).__name__ for m in back.received[:3]]
    assert kinds[:2] in (["Joined", "Delta"], ["Joined", "Snapshot"])
    assert any(isinstance(m, RoomEvent) and m.data == b"Newcomer" for m in back.received)
