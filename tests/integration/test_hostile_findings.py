"""What an attacker working only from SECURITY.md and docs/protocol.md found (issue 8).

Of 160 hostile cases none crashed the server or disturbed a good player, but six broke a
promise. Each is pinned here in the style of ``test_hostile.py`` (real WSS on 127.0.0.1, tokens
required, virtual time): the hostile client gets the documented outcome, the observer in the
same room keeps every tick with no desync, the server's memory stays bounded, and nothing is
logged at WARNING or with a traceback.

a) A seated player that never reads, but keeps sending inputs (so it is never idle), while
   megabytes of reliable room events are relayed to it: closed with 4008 once its reliable
   bytes pass ``--outbound-limit``, though its socket never becomes writable again.
b) The opening handshake is validated (RFC 6455 4.2.1): a bad or repeated
   ``Sec-WebSocket-Key`` or HTTP/1.0 gets 400, two Origin headers get 403, each with a short
   body and no 101.
c) A token whose ``exp`` (or another claim) has the wrong type is refused (4001, bad claims).
d) A JOIN sent in the same write as the upgrade request is kept: the player is seated.
e) A player id or admin id with CR or LF cannot get in (4001 / 401), and log lines never
   carry a raw line break from a peer.
f) After ``POST /admin/close`` the room refuses joins with 4011 until it has been disposed of
   and for ``--room-grace`` after; then a JOIN makes a fresh room.
"""

from __future__ import annotations

import ssl
import time
from functools import partial
from typing import Any

import jwt
import pytest
import trio
import trio.testing

from gameserver.admin import AdminAPI
from gameserver.auth import ALGORITHM, AuthFailure, TokenVerifier
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import GameServer
from shared.messages import Close, Error, Event, Join, Joined, parse_server_message
from shared.protocol import CloseCode
from shared.wsframe import (
    OP_BINARY,
    OP_PING,
    frame,
    new_key,
)
from tests.integration import test_hostile as hostile
from tests.integration.test_admin import http
from tests.integration.test_hostile import (
    MB,
    ROOM,
    MemoryProbe,
    Mint,
    Observer,
    RawWS,
    _http_refusal,
    config,
    session_of,
    upgrade_request,
    wrap_up,
)

# the fixtures of the hostile suite
server_config = hostile.server_config
observer = hostile.observer
memory = hostile.memory
logs = hostile.logs


@pytest.fixture
async def admin_port(
    nursery: trio.Nursery, auth_server: GameServer, verifier: TokenVerifier
) -> int:
    """The admin API on a metrics port, as ``gameserver serve --metrics-port`` runs it."""
    registry = make_registry(auth_server.stats, auth_server.rooms)
    start = partial(serve_metrics, "127.0.0.1", 0, registry, admin=AdminAPI(auth_server, verifier))
    port: int = await nursery.start(start)
    return port


def no_raw_line_breaks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message


# ---------------------------------------------------------------- a) the slow reader


async def _keep_sending_inputs(ws: RawWS, period: float) -> None:
    while True:
        await ws.stream.send_all(ws.input_frame())
        await trio.sleep(period)


async def _read_forever(ws: RawWS) -> None:
    while True:
        await ws.recv()


LIMIT = 64 * 1024


@pytest.mark.parametrize(
    "server_config",
    config(outbound_limit=LIMIT, event_rate=150.0, event_burst=50.0, abuse_allowance=60.0),
)
async def test_a_reader_that_never_reads_but_sends_inputs_is_closed_4008(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Room events the slow player could not take queue up to the limit; the one that does
    not fit closes it (4008), at once: its writer, waiting for a socket that never drains,
    is woken for it. Those events are dropped with the player (it would start over from a
    fresh snapshot). Before the fix it stayed seated however much was relayed."""
    stats = auth_server.stats
    room = observer.host.room
    observer.begin()
    event = Event("chat", b"e" * 1000).to_bytes()
    frame_size = len(event) + 4  # framed as the server relays it
    with trio.fail_after(60):
        slow = await RawWS.open(auth_server.port, client_ssl, rcvbuf=4096)
        await slow.join(mint("slow"))
        session = session_of(auth_server, "slow")
        relayer = await RawWS.open(auth_server.port, client_ssl)
        await relayer.join(mint("relayer"))
        relayed = 0
        queued_when_full = None
        async with trio.open_nursery() as inner:
            inner.start_soon(_keep_sending_inputs, slow, room.dt)
            inner.start_soon(_read_forever, relayer)
            while session.end is None and relayed < 8 * MB:
                await relayer.send(event)
                relayed += len(event)
                if session.conn.backlog and queued_when_full is None:
                    queued_when_full = relayed  # the kernel takes no more from here on
                assert session.outbound.queued_bytes <= LIMIT
                if relayed % (100 * len(event)) == 0:
                    memory.sample()
                await trio.sleep(1 / 150)
            closed_at = relayed
            inner.cancel_scope.cancel()
    # (a) closed with 4008, counted, once the limit was passed (plus the events already read
    # and ticked: at most a tick's worth) and not megabytes later
    assert session.end is not None and session.end.code == CloseCode.TOO_SLOW, session.end
    assert stats.slow_disconnects == 1
    assert queued_when_full is not None
    events_after_full = (closed_at - queued_when_full) // len(event)
    assert events_after_full <= LIMIT // frame_size + 20, events_after_full
    # its connection is gone; being a gamesync.v2 player cut off by 4008, its seat is held
    # for a resume (and expires before wrap_up settles)
    host = observer.host
    assert session.player.number not in host.sessions
    assert host.held_seats.get(session.player.number) is session
    # the player kept sending inputs throughout: it was never idle
    assert not stats.protocol_errors.get("idle_timeout")
    await relayer.stream.aclose()
    await slow.stream.aclose()
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- b) the opening handshake


def _bad_upgrade(kind: str) -> bytes:
    request, key = upgrade_request()
    if kind == "key-not-base64":
        return request.replace(key.encode(), b"this is not base64 !!!!!")
    if kind == "key-15-bytes":
        return request.replace(key.encode(), b"AAAAAAAAAAAAAAAAAAAA")
    if kind == "two-keys":
        return upgrade_request(headers=[f"Sec-WebSocket-Key: {new_key()}"])[0]
    if kind == "http-1.0":
        return request.replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    if kind == "two-origins":
        origins = ["Origin: https://good.example", "Origin: https://evil.example"]
        return upgrade_request(headers=origins)[0]
    if kind == "two-good-origins":
        return upgrade_request(headers=["Origin: https://good.example"] * 2)[0]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "status", "label", "says"),
    [
        ("key-not-base64", 400, "bad_key", b"Sec-WebSocket-Key"),
        ("key-15-bytes", 400, "bad_key", b"Sec-WebSocket-Key"),
        ("two-keys", 400, "bad_key", b"Sec-WebSocket-Key"),
        ("http-1.0", 400, "http_version", b"HTTP/1.1"),
        ("two-origins", 403, "origin", b"Origin"),
        ("two-good-origins", 403, "origin", b"Origin"),
    ],
)
@pytest.mark.parametrize("server_config", config(allowed_origins=("https://good.example",)))
async def test_an_upgrade_request_rfc_6455_refuses_gets_no_101(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
    kind: str,
    status: int,
    label: str,
    says: bytes,
) -> None:
    observer.begin()
    with trio.fail_after(30):
        got, headers, body, how = await _http_refusal(
            auth_server.port, client_ssl, _bad_upgrade(kind)
        )
        # a valid request from a browser on the allowed Origin still plays
        ok = await RawWS.open(
            auth_server.port, client_ssl, headers=["Origin: https://good.example"]
        )
        await ok.join(mint("good"))
        await ok.stream.aclose()
    # (a) the status, a short text body saying what is wrong, no 101, and the TCP close
    assert got == status
    assert b"sec-websocket-accept" not in headers
    assert headers[b"content-type"].startswith(b"text/plain")
    assert says in body and len(body) < 200
    assert how == "eof"
    assert auth_server.stats.refused[label] == 1
    assert auth_server.stats.connections_accepted == 2  # the observer and the good one
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- c) claims of the wrong type


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "9999999999"},
        {"exp": 9999999999, "iat": "1700000000"},
        {"exp": 9999999999, "nbf": "0"},
        {"exp": 9999999999, "sub": ["intruder"]},
        {"exp": 9999999999, "admin": "true"},
        {"exp": 9999999999, "rooms": "*"},
        {"exp": True},
    ],
    ids=[
        "exp-string",
        "iat-string",
        "nbf-string",
        "sub-list",
        "admin-string",
        "rooms-string",
        "exp-bool",
    ],
)
async def test_a_token_whose_claims_have_the_wrong_type_is_refused(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    secret: bytes,
    autojump_clock: trio.testing.MockClock,
    claims: dict[str, Any],
) -> None:
    token = jwt.encode(
        {"sub": "intruder", "rooms": ["*"], "games": ["*"], **claims}, secret, algorithm=ALGORITHM
    )
    observer.begin()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl)
        await ws.send(Join(ROOM, "", "", token).to_bytes())
        told, code = await ws.until_closed()
    # (a) ERROR 4001 and close 4001, counted as bad claims; never seated
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.UNAUTHORIZED)]
    assert code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.refused[AuthFailure.BAD_CLAIMS.value] == 1
    assert "intruder" not in auth_server.by_player
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- d) JOIN with the request


async def test_a_join_sent_with_the_upgrade_request_is_kept(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    join = Join(ROOM, "", "", mint("eager")).to_bytes()
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl, after=frame(OP_BINARY, join, b"mask"))
        # (a) the JOIN was read from the same write: JOINED comes, then the room's updates
        opcode, payload = await ws.recv()
        assert opcode == OP_BINARY
        joined = parse_server_message(payload)
        assert isinstance(joined, Joined)
        assert session_of(auth_server, "eager").player.number == joined.player
        for _ in range(3):
            opcode, _ = await ws.recv()
            assert opcode == OP_BINARY
        await ws.stream.aclose()
    assert auth_server.stats.refused["join_timeout"] == 0
    await wrap_up(auth_server, observer, memory, logs)


async def test_bytes_sent_with_the_upgrade_request_count_towards_the_pre_join_allowance(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kept, but not for free: more than a message's worth before JOIN is refused, whether it
    came with the request or after the 101."""
    observer.begin()
    pings = frame(OP_PING, b"p" * 125, b"mask") * 100  # 13 KB, over the 8 KiB allowance
    with trio.fail_after(30):
        ws = await RawWS.open(auth_server.port, client_ssl, after=pings)
        told, code = await ws.until_closed()
    assert [(type(m), m.code) for m in told] == [(Error, CloseCode.POLICY_VIOLATION)]
    assert code == CloseCode.POLICY_VIOLATION
    assert auth_server.stats.protocol_errors["pre_join_flood"] == 1
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- e) forged log lines

FORGED = "mallory\r\n2030-01-01 00:00:00,000 INFO admin ops closed room arena-1"


async def test_a_player_id_with_a_line_break_cannot_get_in_or_forge_a_log_line(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    secret: bytes,
    autojump_clock: trio.testing.MockClock,
) -> None:
    exp = int(time.time()) + 600
    observer.begin()
    with trio.fail_after(30):
        for sub in (FORGED, "mallory\n", "mallory\u2028INFO forged"):
            token = jwt.encode({"sub": sub, "exp": exp, "rooms": ["*"]}, secret, ALGORITHM)
            ws = await RawWS.open(auth_server.port, client_ssl)
            await ws.send(Join(ROOM, "", "", token).to_bytes())
            told, code = await ws.until_closed()
            assert [(type(m), m.code) for m in told] == [(Error, CloseCode.UNAUTHORIZED)]
            assert code == CloseCode.UNAUTHORIZED
    assert auth_server.stats.refused[AuthFailure.BAD_CLAIMS.value] == 3
    assert set(auth_server.by_player) == {"observer"}
    no_raw_line_breaks(logs)
    assert any("refused a JOIN" in r.getMessage() for r in logs.records)
    await wrap_up(auth_server, observer, memory, logs)


async def test_an_admin_id_with_a_line_break_cannot_use_the_admin_api(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    admin_port: int,
    secret: bytes,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer.begin()
    forged_admin = jwt.encode(
        {"sub": FORGED, "exp": int(time.time()) + 600, "admin": True}, secret, ALGORITHM
    )
    with trio.fail_after(30):
        status, body = await http(admin_port, "POST", f"/admin/close?room={ROOM}", forged_admin)
        assert status == 401 and "sub" in body["error"]
        # a real admin's actions are logged on one line each
        status, body = await http(admin_port, "GET", "/admin/rooms", mint("ops", admin=True))
        assert status == 200
    assert auth_server.stats.refused["admin_auth_bad_claims"] == 1
    assert not observer.host.closing
    no_raw_line_breaks(logs)
    await wrap_up(auth_server, observer, memory, logs)


# ---------------------------------------------------------------- f) a closed room stays closed

DOOMED = "doomed"


async def _join_outcome(port: int, ctx: ssl.SSLContext, token: str) -> tuple[Any, RawWS]:
    """JOINED, or the (ERROR/CLOSE message, close code) a JOIN of DOOMED got."""
    ws = await RawWS.open(port, ctx)
    await ws.send(Join(DOOMED, "", "", token).to_bytes())
    opcode, payload = await ws.recv()
    msg = parse_server_message(payload) if opcode == OP_BINARY else None
    if isinstance(msg, Joined):
        return msg, ws
    _, code = await ws.until_closed()
    return (msg, code), ws


async def test_a_closed_room_refuses_joins_until_it_is_gone_and_room_grace_after(
    auth_server: GameServer,
    observer: Observer,
    memory: MemoryProbe,
    logs: pytest.LogCaptureFixture,
    client_ssl: ssl.SSLContext,
    admin_port: int,
    mint: Mint,
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = auth_server.stats
    rooms = auth_server.rooms.rooms
    grace = auth_server.config.room_grace
    port = auth_server.port
    observer.begin()
    with trio.fail_after(60):
        player, ws = await _join_outcome(port, client_ssl, mint("player"))
        assert isinstance(player, Joined)
        created = stats.rooms_created
        status, body = await http(
            admin_port, "POST", f"/admin/close?room={DOOMED}", mint("ops", admin=True)
        )
        assert (status, body) == (200, {"closed": DOOMED, "players": 1})
        told, code = await ws.until_closed()
        assert [(type(m), m.code) for m in told] == [(Close, CloseCode.ROOM_CLOSED)]
        assert code == CloseCode.ROOM_CLOSED
        # the player reconnects at once: refused (the room is still being disposed of)
        refused, _ = await _join_outcome(port, client_ssl, mint("player"))
        assert refused[1] == CloseCode.ROOM_CLOSED
        assert isinstance(refused[0], Error) and refused[0].code == CloseCode.ROOM_CLOSED
        # the room is gone; its name is still refused for room_grace
        while DOOMED in rooms:
            await trio.sleep(0.01)
        gone_at = trio.current_time()
        refused, _ = await _join_outcome(port, client_ssl, mint("someone-else"))
        assert refused == (Error(CloseCode.ROOM_CLOSED, "this room has been closed"), 4011)
        assert DOOMED not in rooms and stats.rooms_created == created
        # after room_grace the name is free: a JOIN makes a fresh room
        await trio.sleep_until(gone_at + grace + 0.05)
        fresh, ws = await _join_outcome(port, client_ssl, mint("player"))
        assert isinstance(fresh, Joined)
        assert stats.rooms_created == created + 1
        assert not rooms[DOOMED].closing and rooms[DOOMED].room.player_count == 1
        await ws.stream.aclose()
    assert stats.refused["room_closed"] == 2
    # the fresh room empties and is disposed of after its own grace
    with trio.fail_after(30):
        while DOOMED in rooms:
            await trio.sleep(0.05)
    await wrap_up(auth_server, observer, memory, logs)
