"""The takeover (gameserver/_tws.py): a real trio-websocket client talks to a server whose
connection ran the handshake over our own HandshakeStream and was then taken over by a
FastConnection, over TLS 1.3, TLS 1.2 and plain TCP.
"""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio
import trustme
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    connect_websocket_url,
)

from gameserver._tws import FastConnection, TransportClosed, receive_request
from shared.wsframe import binary_frame

pytestmark = pytest.mark.parametrize("tls", ["tls1.3", "tls1.2", "plain"])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _pair(
    nursery: trio.Nursery, ca: trustme.CA, tls: str
) -> tuple[FastConnection, WebSocketConnection]:
    """A taken-over server connection and the trio-websocket client talking to it."""
    server_ctx = None
    client_ctx = None
    if tls != "plain":
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        if tls == "tls1.2":
            server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
    taken: list[FastConnection] = []
    ready = trio.Event()

    async def handler(stream: trio.abc.Stream) -> None:
        upgrade = await receive_request(
            stream, server_ctx, max_message_size=1 << 20, deadline=trio.current_time() + 10
        )
        assert upgrade is not None
        taken.append(await upgrade.accept("gamesync.v1", 1 << 20))
        ready.set()
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    scheme = "ws" if server_ctx is None else "wss"
    port = listeners[0].socket.getsockname()[1]
    client = await connect_websocket_url(
        nursery, f"{scheme}://127.0.0.1:{port}/", client_ctx, subprotocols=["gamesync.v1"]
    )
    await ready.wait()
    return taken[0], client


async def _read_until(conn: FastConnection, count: int) -> list[bytes | str]:
    got: list[bytes | str] = []
    with trio.fail_after(10):
        while len(got) < count:
            await conn.wait_readable()
            conn.read_available()
            got += list(conn.messages())
    return got


async def test_messages_both_ways(nursery: trio.Nursery, ca: trustme.CA, tls: str) -> None:
    conn, client = await _pair(nursery, ca, tls)
    assert client.subprotocol == "gamesync.v1"
    for i in range(50):
        conn.write(binary_frame(bytes([i]) * (i * 100)))
    await conn.flush()
    for i in range(50):
        assert await client.get_message() == bytes([i]) * (i * 100)
    for i in range(20):
        await client.send_message(b"in%d" % i)
    await client.send_message("text")
    got = await _read_until(conn, 21)
    assert got == [b"in%d" % i for i in range(20)] + ["text"]
    assert conn.bytes_in > 0 and conn.bytes_out > 0


async def test_ping_is_answered_and_close_handshake(
    nursery: trio.Nursery, ca: trustme.CA, tls: str
) -> None:
    conn, client = await _pair(nursery, ca, tls)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(client.ping, b"hello")  # returns when our pong arrives
            await _read_until_idle(conn)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(client.aclose, 4321, "bye")  # returns once our side answers
            while conn.peer_close is None:
                await conn.wait_readable()
                conn.read_available()
                list(conn.messages())
            await conn.flush()
    assert conn.peer_close == (4321, "bye")
    assert conn.close_sent
    assert client.closed is not None and client.closed.code == 4321


async def _read_until_idle(conn: FastConnection) -> None:
    await conn.wait_readable()
    conn.read_available()
    assert list(conn.messages()) == []


async def test_backlog_when_the_client_stops_reading(
    nursery: trio.Nursery, ca: trustme.CA, tls: str
) -> None:
    conn, client = await _pair(nursery, ca, tls)
    frame = binary_frame(b"x" * 4000)
    sent = 0
    while not conn.backlog:  # the client never reads: kernel buffers fill, then a backlog forms
        conn.write(frame)
        sent += 1
        assert sent < 100_000
    assert conn.backlog > 0
    # writes never block; once the client reads again, flush drains the backlog in order
    async with trio.open_nursery() as n:
        n.start_soon(conn.flush)
        for _ in range(sent):
            assert await client.get_message() == b"x" * 4000
    assert conn.backlog == 0


async def test_peer_disconnect_is_seen(nursery: trio.Nursery, ca: trustme.CA, tls: str) -> None:
    conn, client = await _pair(nursery, ca, tls)
    await client._stream.aclose()  # drop TCP without a close frame
    with trio.fail_after(10):
        while not (conn.eof or conn.closed):
            await conn.wait_readable()
            try:
                conn.read_available()
            except TransportClosed:
                break
    assert conn.eof or conn.closed
    with pytest.raises((TransportClosed, OSError)):
        for _ in range(1000):  # the kernel may take one write before noticing the reset
            conn.write(binary_frame(b"after"))
            await trio.sleep(0)
            if conn.closed:
                raise TransportClosed


async def test_close_wakes_a_waiting_flush(nursery: trio.Nursery, ca: trustme.CA, tls: str) -> None:
    conn, client = await _pair(nursery, ca, tls)
    while conn.backlog < 1_000_000:  # far more than the client's buffers will ever take
        conn.write(binary_frame(b"y" * 4000))
    with trio.fail_after(10):
        async with trio.open_nursery() as n:

            async def flush_expect_closed() -> None:
                with pytest.raises(TransportClosed):
                    await conn.flush()

            n.start_soon(flush_expect_closed)
            await trio.sleep(0.01)
            conn.close()
    with pytest.raises(ConnectionClosed):
        while True:
            await client.get_message()


async def test_only_the_latest_ping_is_answered_once_a_backed_up_send_path_drains(
    nursery: trio.Nursery, ca: trustme.CA, tls: str
) -> None:
    """RFC 6455 5.5.3: a pong must not be lost behind a full send buffer, and an endpoint may
    answer only the most recent ping. Pongs never queue: one is due at most."""
    conn, client = await _pair(nursery, ca, tls)
    filler = binary_frame(b"f" * 4000)
    sent = 0
    while not conn.backlog:  # the client's reader stops at its full message queue
        conn.write(filler)
        sent += 1
    written: list[bytes] = []
    write = conn.write

    def spy(frame_bytes: bytes) -> None:
        written.append(frame_bytes)
        write(frame_bytes)

    conn.write = spy  # type: ignore[method-assign]
    backlog = conn.backlog
    with trio.fail_after(10):
        async with trio.open_nursery() as pings:
            for i in range(3):
                pings.start_soon(client.ping, b"ping-%d" % i)
                await trio.sleep(0.01)
            while conn.pong_due != b"ping-2":
                await conn.wait_readable()
                conn.read_available()
                assert list(conn.messages()) == []
            assert conn.backlog == backlog and written == []  # nothing written yet
            # the client reads again: the backlog drains, then the one pong goes out, and all
            # three pings return (trio-websocket counts skipped pings as answered)
            pings.start_soon(conn.flush)
            for _ in range(sent):
                assert await client.get_message() == b"f" * 4000
    assert written == [bytes((0x8A, 6)) + b"ping-2"]
    assert conn.pong_due is None and conn.backlog == 0


async def test_bytes_sent_with_the_upgrade_request_reach_the_connection(
    nursery: trio.Nursery, ca: trustme.CA, tls: str
) -> None:
    """A client that sends its first message in the same write as the upgrade request (before
    the 101) loses nothing: trio-websocket only ever sees the request's head."""
    from gameserver._tws import HandshakeStream
    from shared.wsframe import (
        OP_BINARY,
        FrameReader,
        check_response,
        client_request,
        frame,
        new_key,
    )

    server_ctx = client_ctx = None
    if tls != "plain":
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        if tls == "tls1.2":
            server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
    taken: list[FastConnection] = []
    heads: list[bytes] = []
    done = trio.Event()

    async def handler(stream: trio.abc.Stream) -> None:
        upgrade = await receive_request(
            stream, server_ctx, max_message_size=4096, deadline=trio.current_time() + 10
        )
        assert upgrade is not None and isinstance(upgrade.stream, HandshakeStream)
        heads.append(upgrade.head)
        taken.append(await upgrade.accept("gamesync.v1", 4096))
        done.set()
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    raw: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if client_ctx is not None:
        raw = trio.SSLStream(raw, client_ctx, server_hostname="127.0.0.1")
    key = new_key()
    request = client_request("127.0.0.1", "/", key, ["gamesync.v1"])
    messages = [b"first", b"x" * 300, b"third"]
    with trio.fail_after(10):
        await raw.send_all(request + b"".join(frame(OP_BINARY, m, b"abcd") for m in messages))
        await done.wait()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await raw.receive_some(4096)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert check_response(head, key, ["gamesync.v1"]) == "gamesync.v1"
        assert rest == b""
        conn = taken[0]
        got = list(conn.messages())
        while len(got) < 3:
            await conn.wait_readable()
            conn.read_available()
            got += list(conn.messages())
    assert got == messages
    assert heads == [request]
    assert conn.bytes_in > 0
    # and the connection carries on both ways
    conn.write(binary_frame(b"reply"))
    reader = FrameReader(max_message_size=4096, require_mask=False)
    with trio.fail_after(10):
        while (item := reader.next()) is None:
            reader.feed(await raw.receive_some(4096))
    assert item == (OP_BINARY, b"reply")
