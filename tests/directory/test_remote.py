"""The remote directory: its wire (pure), hostile input to the socket server, timeouts and
reconnection of the client, and expiries carried across processes' clocks."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from gameserver.directory import (
    DirectoryLimits,
    DirectoryRefused,
    DirectoryUnavailable,
    EmbeddedDirectory,
    LeaseLost,
    LostReason,
    NodeRecord,
    Refused,
    Renewal,
    RoomLease,
    RoomTaken,
    Seat,
    SeatTaken,
)
from gameserver.directory import remote_wire as wire
from gameserver.directory.remote import RemoteDirectory, answer, serve_directory

A = NodeRecord("h/w0", "wss://127.0.0.1:9001", 0)
LIMITS = DirectoryLimits(lease_ttl=5.0)

texts = st.text(max_size=20)
leases = st.builds(
    RoomLease,
    texts,
    texts,
    st.integers(0, 2**62),
    st.floats(-1e6, 1e6),
    url=texts,
    game=texts,
    private=st.booleans(),
    generation=texts,
)
seats = st.builds(Seat, texts, texts, texts, st.integers(0, 2**62), st.floats(-1e6, 1e6))
losts = st.builds(LeaseLost, leases, st.sampled_from(LostReason), st.none() | leases)


def _shift(value: object, by: float) -> object:
    """``value`` with every expiry moved by ``by`` (what crossing clocks does)."""
    if isinstance(value, RoomLease | Seat):
        return attrs.evolve(value, expires=value.expires + by)
    assert isinstance(value, LeaseLost)
    current = None if value.current is None else _shift(value.current, by)
    return LeaseLost(_shift(value.lease, by), value.reason, current)  # type: ignore[arg-type]


def _close(a: object, b: object) -> bool:
    if isinstance(a, RoomLease | Seat) and isinstance(b, RoomLease | Seat):
        same = attrs.evolve(a, expires=0.0) == attrs.evolve(b, expires=0.0)  # type: ignore[misc]
        return same and abs(a.expires - b.expires) < 1e-6
    assert isinstance(a, LeaseLost) and isinstance(b, LeaseLost)
    currents = (a.current is None and b.current is None) or (
        a.current is not None and b.current is not None and _close(a.current, b.current)
    )
    return a.reason is b.reason and _close(a.lease, b.lease) and currents


@given(
    st.lists(leases, max_size=3),
    st.lists(losts, max_size=3),
    st.lists(seats, max_size=3),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
)
def test_values_round_trip_on_the_receivers_clock(
    kept: list[RoomLease], lost: list[LeaseLost], seated: list[Seat], there: float, here: float
) -> None:
    renewal = Renewal(tuple(kept), tuple(lost), tuple(seated), tuple(reversed(seated)))
    line = wire.ok_response(3, wire.encode_renewal(renewal, there))
    back = wire.decode_renewal(wire.decode_response(line[:-1], 3, here), here)
    for sent, got in [
        *zip(renewal.kept, back.kept, strict=True),
        *zip(renewal.lost, back.lost, strict=True),
        *zip(renewal.seats_kept, back.seats_kept, strict=True),
        *zip(renewal.seats_lost, back.seats_lost, strict=True),
    ]:
        assert _close(got, _shift(sent, here - there))


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_wire_error(data: bytes) -> None:
    try:
        call_id, op, args = wire.decode_request(data)
    except wire.WireError:
        return
    assert isinstance(call_id, int) and isinstance(op, str) and isinstance(args, dict)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=20))
def test_line_buffer_splits_any_chunking(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    buffer = wire.LineBuffer(max_line=10_000)
    got: list[bytes] = []
    for chunk in chunks:
        buffer.feed(chunk)
        while (line := buffer.next_line()) is not None:
            got.append(line)
    assert got == data.split(b"\n")[:-1]
    assert buffer.pending == len(data.split(b"\n")[-1])


def test_line_buffer_overflows_once_past_its_bound() -> None:
    buffer = wire.LineBuffer(max_line=8)
    buffer.feed(b"12345678\nabc")
    assert buffer.next_line() == b"12345678"
    buffer.feed(b"defghijk")
    assert buffer.next_line() is None and buffer.overflow
    assert buffer.next_line() is None  # stays overflowed: the connection must close


def test_refusals_round_trip_typed() -> None:
    lease = RoomLease("arena", "h/w1", 7, 104.0, url="wss://h:9002")
    seat = Seat("alice", "arena", "h/w1", 7, 104.0)
    for exc in (RoomTaken(lease), SeatTaken(seat), DirectoryRefused(Refused.CREATE_RATE)):
        line = wire.error_response(5, exc, now=100.0)
        with pytest.raises(DirectoryRefused) as info:
            wire.decode_response(line[:-1], 5, 1000.0)
        assert type(info.value) is type(exc) and info.value.kind is exc.kind
    with pytest.raises(RoomTaken) as taken:
        wire.decode_response(wire.error_response(1, RoomTaken(lease), 100.0)[:-1], 1, 1000.0)
    assert taken.value.lease == attrs.evolve(lease, expires=1004.0)
    with pytest.raises(wire.WireError):  # an answer to another request
        wire.decode_response(wire.ok_response(2, None)[:-1], 1, 0.0)
    with pytest.raises(wire.RemoteFailure):
        wire.decode_response(wire.error_response(1, RuntimeError("x"))[:-1], 1, 0.0)


# ------------------------------------------------------------------ over a socket
@pytest.fixture
def sock_path() -> Iterator[str]:
    where = Path(tempfile.mkdtemp(prefix="gs-remote-"))
    yield str(where / "d.sock")
    shutil.rmtree(where, ignore_errors=True)


class OffsetClock:
    """The supervisor's clock: a million seconds away from the test's trio clock."""

    def __call__(self) -> float:
        return trio.current_time() + 1e6


@pytest.fixture
async def served(sock_path: str) -> AsyncIterator[EmbeddedDirectory]:
    clock = OffsetClock()
    directory = EmbeddedDirectory(LIMITS, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_directory, directory, sock_path, clock=clock))
        yield directory
        nursery.cancel_scope.cancel()


async def _raw_exchange(path: str, *lines: bytes) -> list[dict[str, object]]:
    """Send raw lines on one connection; the JSON replies (until EOF or one per line)."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(b"".join(lines))
        buffer = wire.LineBuffer()
        replies: list[dict[str, object]] = []
        with trio.fail_after(5):
            while len(replies) < len(lines):
                while (line := buffer.next_line()) is not None:
                    replies.append(json.loads(line))
                if len(replies) == len(lines):
                    break
                data = await stream.receive_some(65536)
                if not data:
                    break
                buffer.feed(data)
    return replies


async def test_expiries_cross_clocks_as_seconds_remaining(
    served: EmbeddedDirectory, sock_path: str
) -> None:
    async with RemoteDirectory(sock_path, LIMITS) as remote:
        lease = await remote.create_room("arena", A, "p1", game="pong")
        # the served directory's clock is 1e6 s ahead; on ours the lease ends in lease_ttl
        assert 4.5 < lease.expires - trio.current_time() <= 5.0
        seat = await remote.claim_seat("alice", lease)
        assert 4.5 < seat.expires - trio.current_time() <= 5.0
        renewal = await remote.renew("h/w0", [lease], [seat])
        assert [k.epoch for k in renewal.kept] == [lease.epoch]
        assert [s.player_id for s in renewal.seats_kept] == ["alice"]
        there = await served.lookup("arena")
        assert there is not None and there.expires > 1e6  # the directory's own clock
        assert await remote.release_room(lease)
        assert await remote.lookup("arena") is None


async def test_hostile_lines_get_error_replies_and_never_a_traceback(
    served: EmbeddedDirectory, sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = wire.encode_request(9, "nodes", {})
    bad = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"op": "nodes", "args": {}}\n',  # no id
        b'{"id": -1, "op": "nodes", "args": {}}\n',
        b'{"id": true, "op": "nodes", "args": {}}\n',
        b'{"id": 1, "op": "format_disk", "args": {}}\n',
        b'{"id": 2, "op": "lookup", "args": []}\n',
        b'{"id": 3, "op": "lookup", "args": {"room": 5}}\n',
        b'{"id": 4, "op": "lookup", "args": {"room": "' + b"x" * 5000 + b'"}}\n',
        b'{"id": 5, "op": "heartbeat", "args": {"node": {"node_id": "a", "url": "u", '
        b'"load": NaN}}}\n',
        b'{"id": 6, "op": "renew", "args": {"node_id": "a", "leases": [{}], "seats": []}}\n',
        b'{"id": 7, "op": "create_room", "args": {"room": "r"}}\n',
        b'{"id": 8, "op": "release_seat", "args": {"seat": {"player_id": "p", "room": "r", '
        b'"node_id": "n", "epoch": 99999999999999999999, "ttl": 1}}}\n',
        b"[" * 100_000 + b"\n",
        b"\xff\xfe\n",
        b"1" * 10_000 + b"\n",
    ]
    with caplog.at_level(logging.DEBUG, logger="gameserver"):
        replies = await _raw_exchange(sock_path, *bad, good)
    assert [r["error"] for r in replies[:-1]] == ["bad_request"] * len(bad)
    # the id is echoed when the line could be read (NaN fails the whole line)
    assert [r["id"] for r in replies[5:13]] == [1, 2, 3, 4, None, 6, 7, 8]
    assert replies[-1] == {"id": 9, "ok": []}  # the connection still works
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert await served.nodes() == []  # nothing half-done


async def test_a_line_too_long_is_refused_and_closed(
    served: EmbeddedDirectory, sock_path: str
) -> None:
    stream = await trio.open_unix_socket(sock_path)
    async with stream:
        reply = b""
        with trio.fail_after(10):
            await stream.send_all(b"x" * (wire.MAX_LINE + 1))  # and no newline
            while data := await stream.receive_some(65536):
                reply += data
    assert json.loads(reply)["error"] == "bad_request"
    async with RemoteDirectory(sock_path, LIMITS) as remote:
        assert await remote.nodes() == []  # the server carries on


async def test_refusals_and_lost_leases_keep_their_types(
    served: EmbeddedDirectory, sock_path: str
) -> None:
    async with RemoteDirectory(sock_path, LIMITS) as a, RemoteDirectory(sock_path, LIMITS) as b:
        with pytest.raises(DirectoryRefused) as none:
            await a.pick_node("arena")
        assert none.value.kind is Refused.NO_NODE
        lease = await a.create_room("arena", A, "p1")
        with pytest.raises(RoomTaken) as taken:
            await b.create_room("arena", attrs.evolve(A, node_id="h/w1"), "p2")
        assert taken.value.lease.fence() == lease.fence() and taken.value.lease.url == A.url
        fenced = await b.renew("h/w1", [attrs.evolve(lease, node_id="h/w1")], [])
        assert fenced.lost[0].reason is LostReason.MOVED
        assert fenced.lost[0].current is not None and fenced.lost[0].current.node_id == "h/w0"
        # refusals keep the connection: a's next call reuses it
        assert len(a._idle) == 1


async def test_no_socket_is_unavailable_at_once(sock_path: str) -> None:
    async with RemoteDirectory(sock_path, LIMITS) as remote:
        with trio.fail_after(1), pytest.raises(DirectoryUnavailable):
            await remote.lookup("arena")


async def test_a_silent_server_times_out_and_the_connection_is_dropped(sock_path: str) -> None:
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(sock_path)
    listener.listen(4)
    async with RemoteDirectory(sock_path, LIMITS, timeout=0.2) as remote:
        start = trio.current_time()
        with pytest.raises(DirectoryUnavailable, match=r"did not answer within 0\.2 s"):
            await remote.lookup("arena")
        assert trio.current_time() - start < 1.0
        assert remote._idle == []
    listener.close()


async def test_the_server_going_away_and_coming_back(sock_path: str) -> None:
    directory = EmbeddedDirectory(LIMITS, clock=trio.current_time)
    async with RemoteDirectory(sock_path, LIMITS) as remote:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_directory, directory, sock_path, clock=trio.current_time)
            )
            await remote.heartbeat(A)
            assert len(remote._idle) == 1
            nursery.cancel_scope.cancel()
        assert not Path(sock_path).exists()  # the socket file is removed
        with pytest.raises(DirectoryUnavailable):
            await remote.nodes()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_directory, directory, sock_path, clock=trio.current_time)
            )
            assert [n.node_id for n in await remote.nodes()] == ["h/w0"]  # dials again
            nursery.cancel_scope.cancel()


class _Broken(EmbeddedDirectory):
    async def lookup(self, room: str) -> RoomLease | None:
        raise RuntimeError("a bug")


async def test_a_failing_directory_is_unavailable_to_the_caller_and_logged(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory = _Broken(LIMITS, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_directory, directory, sock_path, clock=trio.current_time))
        async with RemoteDirectory(sock_path, LIMITS) as remote:
            with pytest.raises(DirectoryUnavailable, match="failed on this request"):
                await remote.lookup("arena")
            assert await remote.nodes() == []  # served on
        nursery.cancel_scope.cancel()
    assert any(r.exc_info and "the directory failed" in r.getMessage() for r in caplog.records)


async def test_answer_is_pure_enough_to_call_directly() -> None:
    directory = EmbeddedDirectory(LIMITS, clock=lambda: 50.0)
    line = wire.encode_request(1, "create_room", {
        "room": "r", "node": wire.encode_node(A), "creator": "p", "game": "", "private": True,
    })  # fmt: skip
    reply = json.loads(await answer(directory, line[:-1], lambda: 50.0))
    assert reply["id"] == 1 and reply["ok"]["private"] is True and reply["ok"]["ttl"] == 5.0


async def test_a_stale_file_is_replaced_but_nothing_else(sock_path: str) -> None:
    Path(sock_path).write_text("not a socket")
    directory = EmbeddedDirectory(LIMITS)
    with pytest.raises(FileExistsError):
        await serve_directory(directory, sock_path)
