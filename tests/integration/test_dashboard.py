"""The dashboard on the metrics port, over HTTPS (--metrics-tls), against a real server:
sign-in, cookie flags, no token anywhere it should not be, actions with and without CSRF,
the live feed's numbers against /admin/rooms, the watcher cap, and watchers that stall."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import trio

from gameserver.admin import AdminAPI
from gameserver.auth import TokenVerifier
from gameserver.dashboard import Dashboard
from gameserver.dashboard_auth import COOKIE_NAME
from gameserver.metrics import make_registry, serve_metrics
from gameserver.server import GameServer, ServerConfig
from shared.protocol import CloseCode
from tests.integration.test_admin import closed_with
from tests.integration.wsclient import connect

Mint = Callable[..., str]


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(port=0, room_grace=1.0, cpu_budget=0.0)


@pytest.fixture
async def dash(
    nursery: trio.Nursery,
    auth_server: GameServer,
    verifier: TokenVerifier,
    server_ssl: ssl.SSLContext,
) -> tuple[Dashboard, int]:
    """serve_metrics with the admin API and the dashboard over TLS, as ``gameserver serve
    --metrics-port P --metrics-tls`` runs it (a 1 s send timeout for the stall tests)."""
    registry = make_registry(auth_server.stats, auth_server.rooms)
    admin = AdminAPI(auth_server, verifier)
    dashboard = Dashboard(auth_server, verifier, admin, secure=True, send_timeout=1.0)
    start = partial(
        serve_metrics,
        "127.0.0.1",
        0,
        registry,
        admin=admin,
        dashboard=dashboard,
        ssl_context=server_ssl,
    )
    port: int = await nursery.start(start)
    return dashboard, port


async def _open(port: int, client_ssl: ssl.SSLContext, rcvbuf: int = 0) -> trio.SSLStream[Any]:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    tls = trio.SSLStream(trio.SocketStream(sock), client_ssl, server_hostname="127.0.0.1")
    await tls.do_handshake()
    return tls


def _request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def https(
    port: int,
    client_ssl: ssl.SSLContext,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    with trio.fail_after(10):
        stream = await _open(port, client_ssl)
        await stream.send_all(_request(method, target, headers, body))
        response = b""
        try:
            while chunk := await stream.receive_some(65536):
                response += chunk
        except trio.BrokenResourceError:
            pass  # closed without close_notify after the whole response
        await trio.aclose_forcefully(stream)
    head, _, content = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = (
            fields[k.strip().lower()] + "\n" if k.lower() in fields else ""
        ) + v.strip()
    return int(lines[0].split(" ")[1]), fields, content


async def sign_in(port: int, client_ssl: ssl.SSLContext, token: str) -> tuple[str, str]:
    """(cookie header value, csrf token)."""
    status, headers, body = await https(
        port,
        client_ssl,
        "POST",
        "/dashboard/session",
        {"Content-Type": "application/json"},
        json.dumps({"token": token}).encode(),
    )
    assert status == 200, body
    cookie = headers["set-cookie"].split(";")[0]
    return cookie, json.loads(body)["csrf"]


async def test_sign_in_sets_a_strict_cookie_and_the_token_goes_nowhere(
    dash: tuple[Dashboard, int],
    client_ssl: ssl.SSLContext,
    mint: Mint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dashboard, port = dash
    status, headers, page = await https(port, client_ssl, "GET", "/dashboard")
    assert status == 200 and b'<script type="module" src="/dashboard/app.js">' in page
    assert b"<script>" not in page  # no inline script: the CSP forbids it anyway
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    for asset in ("/dashboard/app.js", "/dashboard/style.css"):
        assert (await https(port, client_ssl, "GET", asset))[0] == 200

    token = mint("ops", admin=True)
    # a player token, a bad token, a form post: all refused, no cookie
    for body, ctype, want in (
        (json.dumps({"token": mint("p")}), "application/json", 403),
        (json.dumps({"token": "garbage"}), "application/json", 401),
        (f"token={token}", "application/x-www-form-urlencoded", 415),
    ):
        status, headers, _ = await https(
            port, client_ssl, "POST", "/dashboard/session", {"Content-Type": ctype}, body.encode()
        )
        assert status == want and "set-cookie" not in headers
    status, headers, body = await https(
        port,
        client_ssl,
        "POST",
        "/dashboard/session",
        {"Content-Type": "application/json"},
        json.dumps({"token": token}).encode(),
    )
    assert status == 200
    cookie = headers["set-cookie"]
    flags = [f.strip() for f in cookie.split(";")]
    assert flags[0].startswith(f"{COOKIE_NAME}=")
    assert {"HttpOnly", "SameSite=Strict", "Secure", "Path=/dashboard"} <= set(flags)
    sid = flags[0].split("=", 1)[1]
    assert len(sid) >= 40 and token not in cookie
    answer = json.loads(body)
    assert answer["admin"] == "ops" and token not in body.decode()
    # a reload: the cookie alone gets the CSRF token back
    status, _, again = await https(
        port, client_ssl, "GET", "/dashboard/session", {"Cookie": flags[0]}
    )
    assert status == 200 and json.loads(again)["csrf"] == answer["csrf"]
    assert (await https(port, client_ssl, "GET", "/dashboard/session"))[0] == 401
    # the token and the session id are in no log line
    assert caplog.records and any("signed in" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert token not in record.getMessage() and sid not in record.getMessage()
    assert dashboard.sessions.get(sid) is not None


async def test_actions_need_the_cookie_and_the_csrf_token(
    nursery: trio.Nursery,
    auth_server: GameServer,
    dash: tuple[Dashboard, int],
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    _, port = dash
    with trio.fail_after(20):
        victim = await connect(nursery, auth_server.url, client_ssl, "k", token=mint("victim"))
        await connect(nursery, auth_server.url, client_ssl, "k", token=mint("stays"))
    cookie, csrf = await sign_in(port, client_ssl, mint("ops", admin=True))
    params = json.dumps({"room": "k", "player": victim.joined.player}).encode()
    json_type = {"Content-Type": "application/json"}
    for headers in (
        {**json_type},  # neither
        {**json_type, "Cookie": cookie},  # no CSRF header
        {**json_type, "X-CSRF-Token": csrf},  # no cookie
        {**json_type, "Cookie": cookie, "X-CSRF-Token": csrf[:-2] + "xx"},  # a wrong one
    ):
        status, _, _ = await https(port, client_ssl, "POST", "/dashboard/kick", headers, params)
        assert status == 403
    assert len(auth_server.rooms.rooms["k"].sessions) == 2  # nobody was kicked
    assert (await https(port, client_ssl, "GET", "/dashboard/kick", {"Cookie": cookie}))[0] == 405

    ok = {**json_type, "Cookie": cookie, "X-CSRF-Token": csrf}
    status, _, body = await https(port, client_ssl, "POST", "/dashboard/kick", ok, params)
    assert (status, json.loads(body)) == (200, {"kicked": "victim"})
    code, _ = await closed_with(victim)
    assert code == CloseCode.KICKED
    status, _, body = await https(
        port, client_ssl, "POST", "/dashboard/close", ok, b'{"room": "k"}'
    )
    assert status == 200 and json.loads(body)["closed"] == "k"
    # signing out ends the session: the same cookie and CSRF token no longer act
    status, headers, _ = await https(port, client_ssl, "POST", "/dashboard/logout", ok)
    assert status == 200 and "Max-Age=0" in headers["set-cookie"]
    assert (await https(port, client_ssl, "POST", "/dashboard/drain", ok, b"{}"))[0] == 403
    assert not auth_server.draining


async def _watch(
    port: int, client_ssl: ssl.SSLContext, cookie: str, rcvbuf: int = 0
) -> trio.SSLStream[Any]:
    stream = await _open(port, client_ssl, rcvbuf)
    await stream.send_all(_request("GET", "/dashboard/events", {"Cookie": cookie}))
    return stream


async def _events(stream: trio.SSLStream[Any], n: int) -> list[dict[str, Any]]:
    """Read until ``n`` snapshot events have arrived."""
    buf = b""
    while buf.count(b"event: snapshot\n") < n or not buf.endswith(b"\n\n"):
        chunk = await stream.receive_some(65536)
        assert chunk, buf[:300]
        buf += chunk
    head, _, events = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    return [
        json.loads(part.split(b"data: ", 1)[1])
        for part in events.split(b"\n\n")
        if b"event: snapshot" in part
    ]


async def test_the_feed_equals_admin_rooms_and_the_watcher_cap_holds(
    nursery: trio.Nursery,
    auth_server: GameServer,
    dash: tuple[Dashboard, int],
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    dashboard, port = dash
    with trio.fail_after(30):
        for i in range(5):
            await connect(nursery, auth_server.url, client_ssl, f"r{i % 2}", token=mint(f"p{i}"))
    cookie, _ = await sign_in(port, client_ssl, mint("ops", admin=True))
    assert (await https(port, client_ssl, "GET", "/dashboard/events"))[0] == 401
    with trio.fail_after(20):
        watchers = [await _watch(port, client_ssl, cookie) for _ in range(dashboard.watchers.cap)]
        snaps = await _events(watchers[0], 3)
        status, headers, body = await https(
            port, client_ssl, "GET", "/dashboard/events", {"Cookie": cookie}
        )
    assert status == 503 and "too many dashboard watchers" in json.loads(body)["error"]
    assert headers["retry-after"] == "10"
    _, _, listing = await https(port, client_ssl, "GET", "/dashboard/rooms", {"Cookie": cookie})
    rooms = {r["room"]: len(r["players"]) for r in json.loads(listing)["rooms"]}
    snap = snaps[-1]
    assert {r["room"]: r["players"] for r in snap["rooms"]} == rooms == {"r0": 3, "r1": 2}
    assert snap["totals"]["players"] == sum(rooms.values()) == 5
    assert snap["totals"]["rooms"] == 2
    assert snap["totals"]["connections"] == 5
    assert snap["totals"]["watchers"] == dashboard.watchers.cap
    for room in snap["rooms"]:
        assert 15 <= room["measured_hz"] <= 25  # 20 Hz arena, over one real second
        assert room["tick_p99_ms"] is not None and room["bytes_out_per_s"] > 0
    # one source: the rooms' bytes are the seated players' share of the server's total
    # (the same message bytes that gameserver_sent_bytes_total counts, not TLS records)
    rooms_out = sum(r["bytes_out_per_s"] for r in snap["rooms"])
    total_out = snap["totals"]["bytes_out_per_s"]
    assert 0.9 * total_out <= rooms_out <= total_out + len(snap["rooms"]), (rooms_out, total_out)
    kinds = [(a["kind"], a["player"]) for a in snap["activity"]]
    assert ("join", "p4") in kinds and ("room_created", "") in kinds
    for w in watchers:
        await w.aclose()
    with trio.fail_after(5):
        while dashboard.watchers.count:
            await trio.sleep(0.05)


async def test_fifty_watchers_and_stalled_ones_leave_the_tick_alone(
    nursery: trio.Nursery,
    auth_server: GameServer,
    dash: tuple[Dashboard, int],
    client_ssl: ssl.SSLContext,
    mint: Mint,
) -> None:
    """50 watchers at once (the cap admits 16, the rest get 503), half of them never reading
    with a tiny receive buffer: the room keeps its 20 Hz, the stalled ones are closed within
    the send timeout, and the dashboard's memory is one shared snapshot."""
    dashboard, port = dash
    with trio.fail_after(20):
        await connect(nursery, auth_server.url, client_ssl, "busy", token=mint("p"))
    host = auth_server.rooms.rooms["busy"]
    cookie, _ = await sign_in(port, client_ssl, mint("ops", admin=True))
    dashboard.interval = 0.05  # 20 snapshots a second: a stalled reader fills its buffers fast
    # make every snapshot big (~20 kB): a long activity feed
    for i in range(200):
        auth_server.rooms.activity.refused(f"reason-{i}-" + "x" * 50)
    ticks0, t0 = host.ticks, trio.current_time()
    with trio.fail_after(60):
        streams = [
            await _watch(port, client_ssl, cookie, rcvbuf=4096 if i % 2 else 0) for i in range(50)
        ]
        readers = streams[::2]  # the others never read
        statuses = []
        for r in readers:
            statuses.append(int((await r.receive_some(12)).split(b" ")[1]))
        # the first 16 connections got in (8 readers, 8 that never read), the rest got 503
        assert statuses == [200] * 8 + [503] * 17
        assert dashboard.watchers.count == dashboard.watchers.cap
        while dashboard.stalled < 8:  # every one that never reads is closed, in time
            for r in readers[:8]:
                await r.receive_some(1 << 20)  # the readers keep reading
            await trio.sleep(0.01)
    elapsed = trio.current_time() - t0
    assert dashboard.watchers.count == 8
    rate = (host.ticks - ticks0) / elapsed
    assert rate >= 18, f"the room ticked at {rate:.1f} Hz with 50 dashboard watchers"
    assert auth_server.stats.ticks_skipped == 0
    # one shared snapshot for everyone: nothing is queued per watcher
    assert 10_000 < len(dashboard.latest) < 200_000
    for s in streams:
        await trio.aclose_forcefully(s)
