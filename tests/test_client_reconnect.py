"""The SDK's reconnects: the pure policy, the session core with hand-built v2 messages, and
``open_game_client`` against an in-memory gamesync.v2 server on the autojump clock.

The real-WSS versions (through the fault proxy) are in tests/integration/test_sdk_resume.py.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import clients.connect
from clients.client import (
    Backoff,
    ConnectError,
    ConnectionClosed,
    ConnectionState,
    EndCause,
    GameClient,
    Lost,
    LostReason,
    NotConnected,
    Reconnecting,
    Rejoined,
    Resumed,
    open_game_client,
)
from clients.reconnect import (
    ConnectionEnd,
    Finish,
    Phase,
    Reconnector,
    Retry,
    StallDetector,
    Verdict,
    classify,
)
from gameserver.games.arena import INPUT
from shared.errors import RemoteProtocolError
from shared.messages import Delta, Input, Resume, Resync, parse_client_message
from shared.protocol import RESTART_REASON, CloseCode
from shared.replica import DesyncError
from tests.sdk_fakes import Copy, Harness, MemoryServer, catch_up_delta, corrupt_checksum, joined_v2

# ================================================================ the policy (pure)


def test_backoff_ceilings_and_full_jitter() -> None:
    b = Backoff()
    assert (b.base, b.cap, b.max_attempts) == (0.1, 0.75, 40)
    assert [b.ceiling(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.75, 0.75])
    assert b.delay(1, lambda: 0.0) == 0.0
    assert b.delay(3, lambda: 0.5) == pytest.approx(0.2)
    assert b.ceiling(10_000) == 0.75  # no overflow
    # the longest the attempts can wait in all: about 30 s, beyond the default 20 s hold
    assert 25 < sum(b.ceiling(n) for n in range(1, 41)) < 30
    for bad in (dict(base=-1.0), dict(cap=float("inf")), dict(max_attempts=0)):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]


@given(
    attempt=st.integers(1, 1000),
    r=st.floats(0, 1, exclude_max=True),
    base=st.floats(0.001, 10),
    cap=st.floats(0, 10),
)
def test_backoff_delay_is_within_its_ceiling(
    attempt: int, r: float, base: float, cap: float
) -> None:
    b = Backoff(base, cap)
    delay = b.delay(attempt, lambda: r)
    assert 0 <= delay <= b.ceiling(attempt) <= cap
    assert b.ceiling(attempt) <= b.ceiling(attempt + 1)


def _end(cause: EndCause, code: int | None = None, detail: str = "") -> ConnectionEnd:
    return ConnectionEnd(cause, code, detail)


@pytest.mark.parametrize(
    ("end", "verdict"),
    [
        (_end(EndCause.TRANSPORT), Verdict.RETRY),
        (_end(EndCause.STALLED), Verdict.RETRY),
        (_end(EndCause.CLOSED, 1001, "idle timeout"), Verdict.RETRY),
        (_end(EndCause.CLOSED, 1001, "connection lost"), Verdict.RETRY),
        (_end(EndCause.CLOSED, 1006), Verdict.RETRY),
        (_end(EndCause.CLOSED, 4008, "too slow"), Verdict.RETRY),
        (_end(EndCause.CLOSED, 1000, "bye"), Verdict.RETRY),  # a close without our LEAVE
        # the drain's restart: come back (to this address: a restarted or another instance)
        (_end(EndCause.CLOSED, 1001, RESTART_REASON), Verdict.RETRY),
        (_end(EndCause.CLOSED, 4009, "replaced by a resumed connection"), Verdict.FINAL),
        (_end(EndCause.CLOSED, 4010, "kicked"), Verdict.FINAL),
        (_end(EndCause.CLOSED, 4011, "room closed"), Verdict.FINAL),
        (_end(EndCause.CLOSED, 1011, "the game crashed"), Verdict.FINAL),
        (_end(EndCause.CLOSED, 1002), Verdict.FINAL),
        (_end(EndCause.CLOSED, 4999), Verdict.FINAL),  # unknown: not guessed at
        (_end(EndCause.REFUSED, 1008, "slow down"), Verdict.FINAL),  # an ERROR while seated
        (_end(EndCause.PROTOCOL, 1007), Verdict.FINAL),
        (_end(EndCause.LEFT), Verdict.FINAL),
    ],
)
def test_classify_a_seated_end(end: ConnectionEnd, verdict: Verdict) -> None:
    assert classify(end, Phase.SEATED) is verdict


@pytest.mark.parametrize(
    ("cause", "code", "resuming", "joining"),
    [
        (EndCause.REFUSED, 4013, Verdict.REJOIN, Verdict.FINAL),
        (EndCause.REFUSED, 4001, Verdict.REJOIN, Verdict.FINAL),  # JOIN: our auth token
        (EndCause.REFUSED, 4012, Verdict.RETRY, Verdict.RETRY),  # draining
        (EndCause.REFUSED, 4006, Verdict.RETRY, Verdict.RETRY),  # server full
        (EndCause.REFUSED, 4005, Verdict.FINAL, Verdict.RETRY),  # room full: only a JOIN
        (EndCause.REFUSED, 4003, Verdict.FINAL, Verdict.FINAL),
        (EndCause.CLOSED, 1006, Verdict.RETRY, Verdict.RETRY),
        (EndCause.CONNECT_FAILED, None, Verdict.RETRY, Verdict.RETRY),
        (EndCause.TIMEOUT, None, Verdict.RETRY, Verdict.RETRY),
        (EndCause.TOKEN_FAILED, None, Verdict.FINAL, Verdict.FINAL),
        (EndCause.PROTOCOL, 1002, Verdict.FINAL, Verdict.FINAL),
    ],
)
def test_classify_an_attempt(
    cause: EndCause, code: int | None, resuming: Verdict, joining: Verdict
) -> None:
    assert classify(_end(cause, code), Phase.RESUMING) is resuming
    assert classify(_end(cause, code), Phase.JOINING) is joining


def _seated(rec: Reconnector, now: float = 0.0, player: int = 3, **kw: Any) -> Any:
    kw.setdefault("version", 2)
    kw.setdefault("resumable", True)
    return rec.seated(now, player, **kw)


def test_reconnector_resumes_after_a_cut() -> None:
    rec = Reconnector(random=lambda: 0.5)
    assert rec.state is ConnectionState.CONNECTING
    assert _seated(rec) is None  # the first join publishes nothing
    assert rec.state is ConnectionState.CONNECTED
    step = rec.ended(_end(EndCause.TRANSPORT), 10.0)
    assert step == Retry(0.05, True, 1, (Reconnecting(1, 0.05, EndCause.TRANSPORT),))
    assert rec.state is ConnectionState.RECONNECTING
    step = rec.attempt_failed(_end(EndCause.CONNECT_FAILED), 10.1)
    assert step == Retry(0.1, True, 2, (Reconnecting(2, 0.1, EndCause.CONNECT_FAILED),))
    step = rec.attempt_failed(_end(EndCause.REFUSED, 4012), 10.3)
    assert isinstance(step, Retry) and step.attempt == 3 and step.delay == pytest.approx(0.2)
    assert _seated(rec, 11.25) == Resumed(3, pytest.approx(1.25))
    assert rec.state is ConnectionState.CONNECTED and rec.attempts == 0
    # the next outage counts from 1 again
    step = rec.ended(_end(EndCause.STALLED), 20.0)
    assert isinstance(step, Retry) and step.attempt == 1 and step.resume


def test_reconnector_falls_back_to_a_fresh_join() -> None:
    rec = Reconnector(random=lambda: 1.0)
    _seated(rec, player=3)
    rec.ended(_end(EndCause.CLOSED, 4008, "too slow"), 0.0)
    step = rec.attempt_failed(_end(EndCause.REFUSED, 4013, "seat lost: expired"), 0.2)
    assert isinstance(step, Retry)
    assert (step.resume, step.delay, step.attempt) == (False, 0.0, 2)  # at once, a JOIN
    lost, again = step.events
    assert lost == Lost(LostReason.SEAT_LOST, 4013, True, "seat lost: expired")
    assert again == Reconnecting(2, 0.0, EndCause.REFUSED, 4013)
    # a refused fresh JOIN that may pass later is retried, still as a JOIN
    step = rec.attempt_failed(_end(EndCause.REFUSED, 4005), 0.3)
    assert isinstance(step, Retry) and not step.resume and step.delay == pytest.approx(0.4)
    assert _seated(rec, 1.0, player=7) == Rejoined(7, 3, 3, 1.0)
    # 4001 to a RESUME: the token is used or bad -> a fresh JOIN too
    rec.ended(_end(EndCause.TRANSPORT), 5.0)
    step = rec.attempt_failed(_end(EndCause.REFUSED, 4001), 5.1)
    assert isinstance(step, Retry) and not step.resume
    assert step.events[0] == Lost(LostReason.RESUME_REFUSED, 4001, True, "")
    # ... but 4001 to the JOIN is final: our auth token is refused
    step = rec.attempt_failed(_end(EndCause.REFUSED, 4001, "unauthorized"), 5.2)
    assert step == Finish(
        _end(EndCause.REFUSED, 4001, "unauthorized"),
        (Lost(LostReason.REFUSED, 4001, False, "unauthorized"),),
    )
    assert rec.state is ConnectionState.CLOSED


def test_reconnector_gives_up_after_max_attempts() -> None:
    rec = Reconnector(Backoff(max_attempts=3), random=lambda: 0.0)
    _seated(rec)
    steps = [rec.ended(_end(EndCause.TRANSPORT), 0.0)]
    for _ in range(3):
        steps.append(rec.attempt_failed(_end(EndCause.CONNECT_FAILED, None, "refused"), 1.0))
    assert [s.attempt for s in steps[:3] if isinstance(s, Retry)] == [1, 2, 3]
    last = steps[3]
    assert isinstance(last, Finish)
    (lost,) = last.events
    assert isinstance(lost, Lost) and lost.reason is LostReason.GAVE_UP and not lost.rejoining
    assert "3 attempts failed" in lost.detail


@pytest.mark.parametrize(
    "end",
    [
        _end(EndCause.CLOSED, 4010, "kicked"),
        _end(EndCause.CLOSED, 4011, "room closed"),
        _end(EndCause.CLOSED, 4009, "replaced by a resumed connection"),
        _end(EndCause.PROTOCOL, 1002, "bad message"),
    ],
)
def test_reconnector_final_ends(end: ConnectionEnd) -> None:
    rec = Reconnector()
    _seated(rec)
    step = rec.ended(end, 0.0)
    assert step == Finish(end, (Lost(LostReason.ENDED, end.code, False, end.detail),))
    assert rec.state is ConnectionState.CLOSED


def test_reconnector_off_v1_our_leave_and_no_token() -> None:
    cut = _end(EndCause.TRANSPORT)
    off = Reconnector(enabled=False)
    _seated(off)
    assert isinstance(off.ended(cut, 0.0), Finish)
    v1 = Reconnector()
    _seated(v1, version=1, resumable=True)  # v1: no seat is held, the end is final
    assert not v1.resumable and isinstance(v1.ended(cut, 0.0), Finish)
    ours = Reconnector()
    _seated(ours)
    assert ours.ended(_end(EndCause.LEFT), 0.0) == Finish(_end(EndCause.LEFT), ())
    # v2 without a resume token (seat hold off): straight to a fresh JOIN
    no_hold = Reconnector(random=lambda: 0.0)
    _seated(no_hold, resumable=False)
    step = no_hold.ended(cut, 0.0)
    assert isinstance(step, Retry) and not step.resume
    assert step.events[0] == Lost(LostReason.NO_RESUME, None, True, "the seat cannot be resumed")


def test_stall_detector() -> None:
    stall = StallDetector.for_tick_rate(2.0, 20, now=100.0)
    assert stall.deadline == 102.0 and not stall.stalled(101.9) and stall.stalled(102.0)
    stall.message(101.5)
    assert stall.deadline == 103.5
    # a slow-ticking game gets at least 3 ticks of silence
    assert StallDetector.for_tick_rate(2.0, 1, now=0.0).timeout == 3.0


# ================================================================ the session core (no I/O)


async def test_resume_bytes_catch_up_delta_and_re_sent_inputs() -> None:
    h = Harness()
    h.join(v2=True, token="tok-1")
    c = h.client
    assert c.version == 2 and c.resumable and c.joined.seat_hold_ms == 20000
    for _ in range(3):
        await c.send_input(dx=1.0)
        h.tick()
    assert c.last_acked == 3
    base = Copy.of(h.room)  # what the client holds when the connection drops
    h.deliver = False
    await c.send_input(dx=0.5)  # 4: lost in flight
    c._sender = None  # the outage: the I/O layer detached the socket
    c._supervised = True
    for _ in range(2):
        await c.send_input(dx=-1.0)  # 5, 6: buffered
    assert c.buffered_inputs == 2 and c.last_sent == 6
    for _ in range(4):
        h.room.tick()  # the room goes on without us
    data = c.begin_resume(2)
    resume = parse_client_message(data, version=2)
    assert resume == Resume("r", "tok-1", base.tick, 2)
    assert h.player is not None
    c.handle_message(joined_v2(h.room, h.player, resumed=True, resume_token="tok-2", input_seq=3))
    assert not c.handshake_done  # JOINED, but not the catch-up state yet
    c.handle_message(catch_up_delta(h.room, base))
    assert c.handshake_done
    h.assert_converged()
    assert c.stats.snapshots == 1 and isinstance(c.last_update, Delta)
    assert c.last_update.base == base.tick
    assert c.joined.resume_token == "tok-2" and c.player == h.player.number
    # the server applied up to 3: 4 is sent again, 5 and 6 for the first time, in order
    out = c.take_unsent_inputs()
    assert [m.seq for m in (parse_client_message(b, INPUT) for b in out)] == [4, 5, 6]  # type: ignore[union-attr]
    assert c.stats.inputs_resent == 1 and c.take_unsent_inputs() == []
    c.end_handshake()
    for data in out:
        h.apply(data)
    h.tick()
    h.assert_converged()
    assert c.last_acked == 6


async def test_resume_after_a_tolerated_desync_asks_for_a_snapshot() -> None:
    h = Harness(raise_on_desync=False)
    h.join(v2=True)
    h.tick(corrupt_checksum)
    c = h.client
    assert not c.in_sync
    resume = parse_client_message(c.begin_resume(2), version=2)
    assert isinstance(resume, Resume) and resume.have_tick == 0  # no base: a SNAPSHOT
    assert h.player is not None
    c.handle_message(joined_v2(h.room, h.player, resumed=True, resume_token="t2"))
    c.handle_message(h.room.snapshot())
    assert c.handshake_done and c.in_sync
    h.assert_converged()


async def test_bad_resumed_joined_and_bad_base() -> None:
    h = Harness()
    h.join(v2=True)
    assert h.player is not None
    other = h.room.seat("p2", "bob")
    resumed = joined_v2(h.room, h.player, resumed=True, resume_token="t")
    with pytest.raises(RemoteProtocolError, match="without RESUME"):
        h.client.handle_message(resumed)
    h2 = Harness()
    h2.join(v2=True)
    h2.client.begin_resume(2)
    with pytest.raises(RemoteProtocolError, match="not player"):
        h2.client.handle_message(joined_v2(h2.room, other, resumed=True, resume_token="t"))
    # a catch-up delta from a tick the replica is not at is a desync
    h3 = Harness()
    h3.join(v2=True)
    base = Copy.of(h3.room)
    h3.tick()
    h3.tick()
    assert h3.player is not None
    h3.client.begin_resume(2)
    h3.client.handle_message(joined_v2(h3.room, h3.player, resumed=True, resume_token="t"))
    with pytest.raises(DesyncError, match="catch-up"):
        h3.client.handle_message(catch_up_delta(h3.room, base))


async def test_fresh_join_after_a_lost_seat_starts_over() -> None:
    h = Harness()
    h.join(v2=True)
    c = h.client
    old_replica = c.replica
    await c.send_input(dx=1.0)
    h.tick()
    c._sender = None
    c._supervised = True
    await c.send_input(dx=1.0)  # buffered for a seat that is then lost
    c.begin_join(2)
    assert c.player == 1  # the old seat's JOINED until the new one comes
    assert c.stats.inputs_dropped == 1 and c.last_sent == 0
    seq = await c.send_input(dx=-1.0)  # buffered for the new seat
    assert seq == 1
    new = h.room.seat("p1b", "alice")
    h.player = new
    h.room.tick()
    c.handle_message(joined_v2(h.room, new, resume_token="fresh"))
    assert c.replica is not old_replica and c.tick == -1 and c.player == new.number
    c.handle_message(h.room.snapshot())
    assert c.handshake_done
    (data,) = c.take_unsent_inputs()
    assert parse_client_message(data, INPUT) == Input(1, INPUT.codes_for({"dx": -1.0}))
    h.assert_converged()


async def test_input_buffer_is_bounded() -> None:
    h = Harness(input_buffer=4)
    h.join(v2=True)
    c = h.client
    c._sender = None
    c._supervised = True
    seqs = [await c.send_input(dx=1.0) for _ in range(10)]
    assert seqs == list(range(1, 11))
    assert c.buffered_inputs == 4 and c.stats.inputs_dropped == 6
    assert [parse_client_message(b, INPUT).seq for b in c.take_unsent_inputs()] == [7, 8, 9, 10]  # type: ignore[union-attr]
    with pytest.raises(NotConnected, match="not connected"):
        await c.send_event("chat", b"hi")


async def test_resync_is_rate_limited_and_only_on_v2() -> None:
    h = Harness(raise_on_desync=False)
    h.join(v2=True)
    c = h.client
    assert c.poll_resync(0.0) is None  # in sync: nothing to ask for
    h.tick(corrupt_checksum)
    assert c.poll_resync(10.0) == Resync().to_bytes()
    assert c.poll_resync(11.9) is None  # at most once per 2 s
    h.tick()  # skipped: still waiting
    assert c.poll_resync(12.0) == Resync().to_bytes()
    assert c.stats.resyncs == 2
    c.handle_message(h.room.snapshot())
    assert c.in_sync and c.poll_resync(20.0) is None
    h.assert_converged()
    v1 = Harness(raise_on_desync=False)
    v1.join(v1=True)
    v1.tick(corrupt_checksum)
    assert v1.client.version == 1 and not v1.client.in_sync
    assert v1.client.poll_resync(0.0) is None  # v1 has no RESYNC: wait (as before v2)


def test_connection_events_log_is_bounded() -> None:
    c = GameClient(connection_history=2)
    for i in range(1, 6):
        c._emit(Reconnecting(i, 0.0, EndCause.TRANSPORT))
    assert [e.attempt for e in c.iter_connection_events()] == [4, 5]  # type: ignore[union-attr]
    assert c.stats.connection_events == 5 and c.stats.connection_events_missed == 3
    assert list(c.iter_connection_events()) == []


# ================================================================ open_game_client, in memory


@pytest.fixture
async def mem(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MemoryServer]:
    srv = MemoryServer(nursery)
    monkeypatch.setattr(clients.connect, "_open_stream", srv.open_stream)
    yield srv


async def _until(predicate: Any, step: float = 0.01) -> None:
    while not predicate():
        await trio.sleep(step)


async def test_cut_resumes_the_same_seat(mem: MemoryServer, autojump_clock: Any) -> None:
    async with open_game_client(mem.url, "r", name="ann", random=lambda: 0.5) as c:
        assert mem.offered == [("gamesync.v3", "gamesync.v2", "gamesync.v1")] and c.version == 2
        assert c.connection_state == "connected"
        for _ in range(3):
            seq = await c.send_input(dx=1.0)
            await c.next_update()
        await c.wait_for_ack(seq)
        player, entity = c.player, _avatar(c)
        await mem.cut(mem.conn_of(player))
        assert await c.next_connection_event() == Reconnecting(1, 0.05, EndCause.TRANSPORT)
        assert c.connection_state == "reconnecting"
        buffered = await c.send_input(dx=-1.0)  # numbered and kept
        with pytest.raises(NotConnected):
            await c.send_event("chat", b"are you there?")
        update = await c.next_update()  # waits across the outage: the catch-up DELTA
        assert isinstance(update, Delta) and update.base is not None
        event = await c.next_connection_event()
        assert isinstance(event, Resumed) and event.attempts == 1
        assert event.downtime == pytest.approx(0.05, abs=0.02)
        assert c.connection_state == "connected" and c.player == player
        await c.wait_for_ack(buffered)
        room = mem.rooms["r"]
        await c.wait_for_tick(room.state_tick)
        assert c.replica.checksum() == room.ctx.state.checksum()
        assert _avatar(c) == entity and not c.desyncs
        assert c.stats.resumes == 1 and c.stats.snapshots == 1 and c.stats.reconnect_attempts == 1
        resume = [m for i, m in mem.received if isinstance(m, Resume)]
        assert len(resume) == 1 and resume[0].have_tick > 0
    assert c.connection_state == "closed" and c.failure is None


def _avatar(c: GameClient) -> int:
    return next(e.id for e in c.replica.of_type("player") if e.owner == c.player)


async def test_stall_is_a_dead_socket_and_the_old_one_cannot_close_us(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    async with open_game_client(mem.url, "r", name="ann", random=lambda: 0.0) as c:
        player = c.player
        old = mem.conn_of(player)
        old.muted = True  # the server (or the path) goes silent; TCP looks fine
        start = trio.current_time()
        event = await c.next_connection_event()
        assert isinstance(event, Reconnecting) and event.reason is EndCause.STALLED
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
        assert isinstance(await c.next_connection_event(), Resumed)
        assert c.player == player
        await c.wait_for_tick(c.tick + 10)  # served on, whatever the old socket got
        assert c.connection_state == "connected" and c.failure is None


async def test_old_connection_replaced_on_resume_never_reaches_the_new_one(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    """The server has not noticed the old connection die (it is still attached to the seat)
    when the RESUME comes: it closes the old one with 4009; the client is unaffected."""
    async with open_game_client(mem.url, "r", name="ann", random=lambda: 0.0) as c:
        old = mem.conn_of(c.player)
        old.unnoticed = True
        await mem.cut(old)
        assert isinstance(await c.next_connection_event(), Reconnecting)
        assert isinstance(await c.next_connection_event(), Resumed)
        assert old.seat is None  # replaced
        await c.wait_for_tick(c.tick + 20)
        assert c.connection_state == "connected" and c.failure is None


async def test_hold_expired_falls_back_to_a_fresh_join(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    tokens = iter(["t1", "t2", "t3"])
    calls: list[str] = []

    async def token() -> str:
        calls.append(tok := next(tokens))
        return tok

    async with open_game_client(mem.url, "r", name="ann", token=token, random=lambda: 0.5) as c:
        old_player, old_entity = c.player, _avatar(c)
        await c.send_input(dx=1.0)
        mem.down = True
        await mem.cut(mem.conn_of(old_player))
        await _until(lambda: mem.seats[0].conn is None)
        mem.expire(old_player)
        await trio.sleep(0.5)
        mem.down = False
        await c.wait_connected()
        events = list(c.iter_connection_events())
        lost = [e for e in events if isinstance(e, Lost)]
        assert lost == [Lost(LostReason.SEAT_LOST, 4013, True, "seat lost: the hold expired")]
        rejoined = events[-1]
        assert isinstance(rejoined, Rejoined) and rejoined.previous_player == old_player
        assert c.player == rejoined.player != old_player
        assert calls == ["t1", "t2"]  # a fresh token for the fresh JOIN
        assert c.last_sent == 0 and c.stats.inputs_dropped == 0 and c.stats.rejoins == 1
        assert await c.send_input(dx=1.0) == 1  # seqs restart
        await c.wait_for_tick(c.tick + 2)
        ids = {e.id for e in c.replica.of_type("player")}
        assert old_entity not in ids and _avatar(c) in ids


async def test_used_token_falls_back_to_a_fresh_join(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    async with open_game_client(mem.url, "r", name="ann", random=lambda: 0.5) as c:
        old = c.player
        mem.down = True
        await mem.cut(mem.conn_of(old))
        await _until(lambda: mem.seats[0].conn is None)
        mem.seats[0].generation += 1  # someone resumed with the token first
        await _until(lambda: c.connection_state == "reconnecting")
        mem.down = False
        await c.wait_connected()
        lost = [e for e in c.iter_connection_events() if isinstance(e, Lost)]
        assert [(e.reason, e.code) for e in lost] == [(LostReason.RESUME_REFUSED, 4001)]
        assert c.player != old


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (CloseCode.KICKED, "kicked by an admin"),
        (CloseCode.ROOM_CLOSED, "the room was closed by an admin"),
        (CloseCode.REPLACED, "replaced by a newer connection for the same player"),
    ],
)
async def test_final_closes_end_the_client(
    mem: MemoryServer, autojump_clock: Any, code: int, reason: str
) -> None:
    watched: list[Any] = []

    async def watch(c: GameClient) -> None:
        try:
            while True:
                watched.append(await c.next_connection_event())
        except ConnectionClosed as exc:
            watched.append(exc.code)

    async with trio.open_nursery() as nursery:
        with pytest.raises(ConnectionClosed) as info:
            async with open_game_client(mem.url, "r", name="ann") as c:
                nursery.start_soon(watch, c)
                await mem.close(mem.conn_of(c.player), code, reason)
                await trio.sleep(10)
    assert (info.value.code, info.value.reason) == (code, reason)
    # a waiter gets the event, then the failure
    assert watched == [Lost(LostReason.ENDED, code, False, reason), code]
    assert mem.connects == 1 and c.connection_state == "closed"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (CloseCode.GOING_AWAY, "idle timeout"),
        (CloseCode.TOO_SLOW, "too slow"),
        (CloseCode.GOING_AWAY, RESTART_REASON),  # a drain's end: come back
    ],
)
async def test_resumable_closes_resume(
    mem: MemoryServer, autojump_clock: Any, code: int, reason: str
) -> None:
    async with open_game_client(mem.url, "r", name="ann") as c:
        player = c.player
        await mem.close(mem.conn_of(player), code, reason)
        first = await c.next_connection_event()
        assert first == Reconnecting(1, first.delay, EndCause.CLOSED, code)  # type: ignore[union-attr]
        assert isinstance(await c.next_connection_event(), Resumed) and c.player == player


async def test_attempts_run_out_and_the_client_is_lost(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    waited: list[float] = []
    with pytest.raises(ConnectError, match="could not connect"):
        async with open_game_client(
            mem.url, "r", name="ann", backoff=Backoff(max_attempts=3), random=lambda: 1.0
        ) as c:
            mem.down = True
            await mem.cut(mem.conn_of(c.player))
            start = trio.current_time()
            try:
                await c.wait_for_tick(10**9)  # waits across the attempts
            finally:
                waited.append(trio.current_time() - start)
    assert waited[0] == pytest.approx(0.1 + 0.2 + 0.4, abs=0.05)
    events = list(c.iter_connection_events())
    assert [type(e) for e in events] == [Reconnecting] * 3 + [Lost]
    assert isinstance(events[-1], Lost) and events[-1].reason is LostReason.GAVE_UP
    assert c.stats.reconnect_attempts == 3 and c.connection_state == "closed"
    with pytest.raises(ConnectError):
        await c.next_connection_event()  # the events are taken; then the failure


async def test_unanswered_attempts_time_out(mem: MemoryServer, autojump_clock: Any) -> None:
    async with open_game_client(
        mem.url, "r", name="ann", attempt_timeout=0.5, random=lambda: 1.0
    ) as c:
        mem.blackhole = True
        await mem.cut(mem.conn_of(c.player))
        await trio.sleep(3)
        mem.blackhole = False
        back = trio.current_time()
        await c.wait_connected()
        # within one attempt timeout and one capped delay of the network's return
        assert trio.current_time() - back <= 0.5 + 0.75 + 0.05
        reasons = {e.reason for e in c.iter_connection_events() if isinstance(e, Reconnecting)}
        assert EndCause.TIMEOUT in reasons


async def test_buffered_inputs_are_sent_after_the_resume(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    async with open_game_client(mem.url, "r", name="ann", input_buffer=4) as c:
        await c.wait_for_ack(await c.send_input(dx=1.0))
        mem.down = True
        await mem.cut(mem.conn_of(c.player))
        await _until(lambda: c.connection_state == "reconnecting")
        seqs = [await c.send_input(dx=-1.0) for _ in range(10)]
        assert seqs == list(range(2, 12)) and c.stats.inputs_dropped == 6
        mem.down = False
        await c.wait_connected()
        await c.wait_for_ack(11)
        after = [m.seq for i, m in mem.received if isinstance(m, Input) and i == len(mem.conns) - 1]
        assert after == [8, 9, 10, 11]


async def test_close_while_reconnecting_stops(mem: MemoryServer, autojump_clock: Any) -> None:
    async with open_game_client(mem.url, "r", name="ann") as c:
        mem.down = True
        await mem.cut(mem.conn_of(c.player))
        assert isinstance(await c.next_connection_event(), Reconnecting)
        await c.close()
        assert c.connection_state == "closed"
        connects = mem.connects
        mem.down = False
        await trio.sleep(5)
        assert mem.connects == connects
        with pytest.raises(ConnectionClosed) as info:
            await c.next_update()
        assert info.value.code == 1000
        with pytest.raises(ConnectionClosed):
            await c.send_input(dx=1.0)
    assert c.failure is None


async def test_reconnect_off_ends_the_client_as_before(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    with pytest.raises(ConnectionClosed) as info:
        async with open_game_client(mem.url, "r", name="ann", reconnect=False) as c:
            await mem.cut(mem.conn_of(c.player))
            while True:
                await c.next_update()
    assert info.value.code == 1006
    assert mem.connects == 1 and c.stats.reconnect_attempts == 0
    assert [type(e) for e in c.connection_events] == [Lost]


async def test_v1_server_is_spoken_without_resume(mem: MemoryServer, autojump_clock: Any) -> None:
    mem.versions = (1,)
    with pytest.raises(ConnectionClosed):
        async with open_game_client(mem.url, "r", name="ann") as c:
            assert c.version == 1 and not c.resumable
            await c.wait_for_ack(await c.send_input(dx=1.0))
            await mem.cut(mem.conn_of(c.player))
            await trio.sleep(10)
    assert mem.connects == 1


async def test_tolerated_desync_recovers_through_resync(
    mem: MemoryServer, autojump_clock: Any
) -> None:
    ticks = itertools.count()
    mem.tamper = lambda room, n, frame: (
        corrupt_checksum(frame) if frame[1] & 1 and next(ticks) == 1 else frame
    )
    mem.ignore_resyncs = 1  # the first RESYNC is lost to the server's rate limit
    async with open_game_client(mem.url, "r", name="ann", raise_on_desync=False) as c:
        await _until(lambda: bool(c.desyncs))
        desync_at = trio.current_time()
        assert not c.in_sync
        await _until(lambda: c.in_sync)
        assert trio.current_time() - desync_at == pytest.approx(2.0, abs=0.2)  # the retry
        assert c.stats.resyncs == 2 and mem.resyncs == 2 and len(c.desyncs) == 1
        room = mem.rooms["r"]
        await c.wait_for_tick(room.state_tick + 2)
        assert c.replica.checksum() == room.ctx.state.checksum()
        assert c.connection_state == "connected" and c.stats.reconnect_attempts == 0


async def test_no_resync_on_v1(mem: MemoryServer, autojump_clock: Any) -> None:
    mem.versions = (1,)
    ticks = itertools.count()
    mem.tamper = lambda room, n, frame: (
        corrupt_checksum(frame) if frame[1] & 1 and next(ticks) == 1 else frame
    )
    async with open_game_client(mem.url, "r", name="ann", raise_on_desync=False) as c:
        await _until(lambda: bool(c.desyncs))
        await trio.sleep(5)
        assert not c.in_sync and c.stats.resyncs == 0 and mem.resyncs == 0
