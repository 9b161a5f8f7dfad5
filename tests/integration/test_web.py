"""The web demo over real WSS (trustme TLS on 127.0.0.1, port 0): static files, the demo's own
origin, guest tokens, the refusals a browser can read, and serving while players play.

A "browser" here is a raw client that sends what a browser's ``new WebSocket(url, protocols)``
sends: exactly one ``Origin``, ``Host`` with the port, the offered subprotocols.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from gameserver.auth import TokenVerifier
from gameserver.front_door import FULL_NOTICES_PER_IP
from gameserver.game import GameRegistry
from gameserver.guest import GUEST_PREFIX, GuestIssuer
from gameserver.server import GameServer, ServerConfig, serve_gameserver
from shared.messages import Error, Join, Joined, parse_server_message
from shared.protocol import SUBPROTOCOL, CloseCode, Kind
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
from tests.integration.test_cli_settings import assert_one_line, run_cli
from tests.integration.test_hostile import (  # noqa: F401  (fixtures)
    BASE,
    MB,
    MemoryProbe,
    Observer,
    logs,
    memory,
    observer,
    read_response_head,
    read_to_close,
    tcp_connect,
    wrap_up,
)
from tests.integration.wsclient import connect

INDEX = b'<!doctype html><title>demo</title><script type="module" src="app.js"></script>\n'
APP = b"import { connect } from '../src/index.js';\n"
SDK = b"export function connect() {}\n"
ARENA = b"export const WORLD = 1000;\n"
SECRET_TEXT = b"TOP-SECRET-DO-NOT-SERVE"


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    files = {
        "demo/index.html": INDEX,
        "demo/app.js": APP,
        "demo/style.css": b"body { margin: 0; }\n",
        "demo/.env": SECRET_TEXT,
        "src/index.js": SDK,
        "games/arena.js": ARENA,
        "package.json": b'{"secret": "TOP-SECRET-DO-NOT-SERVE"}',
    }
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    (tmp_path / "secret.txt").write_bytes(SECRET_TEXT)
    os.symlink(tmp_path / "secret.txt", root / "demo" / "escape.js")
    return root


@pytest.fixture
def server_config(web_root: Path) -> ServerConfig:
    return attrs.evolve(BASE, web_root=web_root)


@pytest.fixture
def guest(secret: bytes) -> GuestIssuer:
    return GuestIssuer(secret, burst=3, rate=0.001)


@pytest.fixture
async def web_server(
    nursery: trio.Nursery,
    server_config: ServerConfig,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    verifier: TokenVerifier,
    guest: GuestIssuer,
) -> AsyncIterator[GameServer]:
    """Tokens required (``mint``), the temporary web root, guest tokens on."""
    start = functools.partial(serve_gameserver, auth=verifier, guest=guest)
    srv: GameServer = await nursery.start(start, server_config, registry, server_ssl)
    yield srv


# ---------------------------------------------------------------- raw clients


async def tls(
    port: int, ctx: ssl.SSLContext, sni: str = "127.0.0.1"
) -> trio.SSLStream[trio.SocketStream]:
    stream = trio.SSLStream(
        await tcp_connect(port), ctx, server_hostname=sni, https_compatible=True
    )
    await stream.do_handshake()
    return stream


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    how: str


def parse_answer(data: bytes, how: str) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body, how)


async def http(
    port: int, ctx: ssl.SSLContext, request: bytes | str, sni: str = "127.0.0.1"
) -> Answer:
    stream = await tls(port, ctx, sni)
    await stream.send_all(request.encode() if isinstance(request, str) else request)
    data, how = await read_to_close(stream)
    await stream.aclose()
    return parse_answer(data, how)


def get(path: str, port: int, method: str = "GET", *headers: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: */*", *headers]
    return "\r\n".join(lines) + "\r\n\r\n"


def guest_request(port: int, body: bytes, origin: str | None = "own", *headers: str) -> bytes:
    lines = [
        "POST /guest HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    if origin is not None:
        lines.append("Origin: " + (f"https://127.0.0.1:{port}" if origin == "own" else origin))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class BrowserWS:
    """The wire side of a browser's WebSocket: it sends one Origin and reads frames."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], head: bytes, rest: bytes) -> None:
        self.stream = stream
        self.head = head
        self.reader = FrameReader(max_message_size=MB, require_mask=False)
        self.reader.feed(rest)

    @classmethod
    async def open(
        cls,
        port: int,
        ctx: ssl.SSLContext,
        origin: str | None,
        host: str | None = None,
        subprotocols: Sequence[str] = (SUBPROTOCOL,),
        sni: str = "127.0.0.1",
    ) -> BrowserWS:
        """Handshake; raises AssertionError unless the answer is a valid 101 for what was
        offered (as a browser checks it)."""
        stream = await tls(port, ctx, sni)
        key = new_key()
        request = client_request(host or f"127.0.0.1:{port}", "/", key, list(subprotocols))
        if origin is not None:
            request = request[:-2] + f"Origin: {origin}\r\n\r\n".encode()
        await stream.send_all(request)
        head, rest = await read_response_head(stream)
        check_response(head, key, list(subprotocols))  # what a browser insists on
        return cls(stream, head, rest)

    @property
    def subprotocol(self) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-protocol":
                return value.strip()
        return None

    async def recv(self) -> tuple[int, bytes]:
        while (item := self.reader.next()) is None:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self.reader.feed(bytes(chunk))
        return item

    async def frames_until_close(self) -> tuple[list[tuple[int, bytes]], tuple[int, str]]:
        """Every frame before the close frame, and the close frame's (code, reason); the
        client then answers the close, as a browser does."""
        seen = []
        while True:
            opcode, payload = await self.recv()
            if opcode == OP_CLOSE:
                code, reason = parse_close(payload)
                try:
                    await self.stream.send_all(frame(OP_CLOSE, payload[:2], mask=os.urandom(4)))
                except trio.BrokenResourceError:
                    pass
                return seen, (code, reason)
            seen.append((opcode, payload))

    async def join(self, token: str, room: str = "web-1") -> Joined:
        await self.stream.send_all(
            frame(OP_BINARY, Join(room, "", "", token).to_bytes(), mask=os.urandom(4))
        )
        while True:
            opcode, payload = await self.recv()
            if opcode == OP_BINARY:
                msg = parse_server_message(payload)
                assert isinstance(msg, Joined), msg
                return msg


def own(server: GameServer, host: str = "127.0.0.1") -> str:
    return f"https://{host}:{server.port}"


# ---------------------------------------------------------------- static files


async def test_get_the_demo_page(web_server: GameServer, client_ssl: ssl.SSLContext) -> None:
    with trio.fail_after(10):
        a = await http(web_server.port, client_ssl, get("/", web_server.port))
    assert (a.status, a.body, a.how) == (200, INDEX, "eof")
    h = a.headers
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["content-length"] == str(len(INDEX))
    assert h["connection"] == "close"
    csp = h["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert f"connect-src 'self' wss://127.0.0.1:{web_server.port};" in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cross-origin-opener-policy"] == "same-origin"
    assert h["cache-control"] == "no-cache" and h["etag"]
    assert web_server.stats.http_responses["200"] == 1
    assert web_server.stats.connections_accepted == 0  # no WebSocket was made


async def test_modules_are_served_as_javascript(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    with trio.fail_after(10):
        for path, body in [
            ("/src/index.js", SDK),
            ("/sdk/index.js", SDK),
            ("/games/arena.js", ARENA),
            ("/sdk/games/arena.js", ARENA),
            ("/demo/app.js", APP),
            ("/app.js", APP),  # beside index.html when it is served at /
            ("/src/index.js?v=3", SDK),
        ]:
            a = await http(port, client_ssl, get(path, port))
            assert (a.status, a.body) == (200, body), path
            assert a.headers["content-type"] == "text/javascript; charset=utf-8"
            assert a.headers["x-content-type-options"] == "nosniff"
        css = await http(port, client_ssl, get("/style.css", port))
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        head = await http(port, client_ssl, get("/src/index.js", port, "HEAD"))
        assert (head.status, head.body) == (200, b"")
        assert head.headers["content-length"] == str(len(SDK))
        again = await http(
            port,
            client_ssl,
            get("/src/index.js", port, "GET", f"If-None-Match: {head.headers['etag']}"),
        )
        assert (again.status, again.body) == (304, b"")


async def test_not_found_and_method_not_allowed(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    with trio.fail_after(10):
        for path in ("/nope.js", "/demo/.env", "/package.json", "/test/x.js", "/src/"):
            a = await http(port, client_ssl, get(path, port))
            assert a.status == 404, path
            assert SECRET_TEXT not in a.body
            assert a.headers["x-content-type-options"] == "nosniff"
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            a = await http(port, client_ssl, get("/", port, method, "Content-Length: 0"))
            assert (a.status, a.headers["allow"]) == (405, "GET, HEAD"), method
    assert web_server.stats.http_responses == {"404": 5, "405": 4}


@pytest.mark.parametrize(
    "path",
    [
        "/sdk/../../pyproject.toml",
        "/../secret.txt",
        "/src/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/src/%2e%2e/%2e%2e/secret.txt",
        "/src/..%2f..%2fsecret.txt",
        "/demo/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/src/..%5c..%5csecret.txt",
        "//secret.txt",
        "/demo/escape.js",  # a symlink out of the web root
        "/escape.js",
        "/demo/%00index.html",
        "/%ff",
    ],
)
async def test_path_traversal_is_refused(
    web_server: GameServer, client_ssl: ssl.SSLContext, path: str
) -> None:
    with trio.fail_after(10):
        a = await http(web_server.port, client_ssl, get(path, web_server.port))
    assert a.status in (400, 404), a
    assert SECRET_TEXT not in a.body and b"[project]" not in a.body


@pytest.mark.parametrize("server_config", [attrs.evolve(BASE, web=False)])
async def test_no_web_answers_426(auth_server: GameServer, client_ssl: ssl.SSLContext) -> None:
    with trio.fail_after(10):
        a = await http(auth_server.port, client_ssl, get("/", auth_server.port))
    assert a.status == 426 and a.headers["upgrade"] == "websocket"
    assert b"--no-web" in a.body


async def test_without_a_demo_the_root_is_a_built_in_page(
    nursery: trio.Nursery,
    registry: GameRegistry,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.js").write_bytes(SDK)
    config = attrs.evolve(BASE, web_root=tmp_path)
    srv: GameServer = await nursery.start(serve_gameserver, config, registry, server_ssl)
    with trio.fail_after(10):
        a = await http(srv.port, client_ssl, get("/", srv.port))
        sdk = await http(srv.port, client_ssl, get("/src/index.js", srv.port))
    assert a.status == 200 and b"not installed" in a.body
    assert a.headers["content-type"] == "text/html; charset=utf-8"
    assert sdk.body == SDK


# ---------------------------------------------------------------- bounded like any other input


async def test_an_oversized_request_head_is_refused(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    big = get("/", port, "GET", "X-Pad: " + "a" * 20_000)
    with trio.fail_after(10):
        a = await http(port, client_ssl, big)
    assert a.status == 400 and a.how in ("eof", "reset")
    # a head that never ends: the server stops reading it and closes
    with trio.fail_after(10):
        stream = await tls(port, client_ssl)
        sent = 0
        try:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while sent < 4 * MB:
                await stream.send_all(b"X-Pad: " + b"a" * 4090 + b"\r\n")
                sent += 4099
        except trio.BrokenResourceError:
            pass
        data, _ = await read_to_close(stream)
    assert data.startswith(b"HTTP/1.1 400") or data == b""
    with trio.fail_after(10):
        while web_server.stats.connections_open:
            await trio.sleep(0.01)


async def test_slow_requests_are_cut_off_at_the_handshake_deadline(
    web_server: GameServer,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    port = web_server.port
    request = get("/", port).encode()
    start = trio.current_time()
    with trio.fail_after(30):
        stream = await tls(port, client_ssl)
        try:
            for i in range(len(request) - 1):
                await stream.send_all(request[i : i + 1])
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass
        data, _ = await read_to_close(stream)
    assert data == b""
    assert trio.current_time() - start <= BASE.connect_timeout + 0.5
    # a guest request whose body never comes: the same deadline
    start = trio.current_time()
    with trio.fail_after(30):
        stream = await tls(port, client_ssl)
        await stream.send_all(guest_request(port, b'{"name": "slow"}')[:-4])
        data, _ = await read_to_close(stream)
    assert data == b""
    assert trio.current_time() - start <= BASE.connect_timeout + 0.5
    assert web_server.stats.refused["handshake"] == 1
    while web_server.stats.connections_open:
        await trio.sleep(0.01)


# ---------------------------------------------------------------- the demo's own origin


async def test_the_demo_origin_is_allowed_without_allow_origin(
    web_server: GameServer, client_ssl: ssl.SSLContext, mint: Callable[..., str]
) -> None:
    assert web_server.config.allowed_origins == ()
    port = web_server.port
    token = mint("player-a")
    with trio.fail_after(10):
        for name in ("127.0.0.1", "localhost"):
            ws = await BrowserWS.open(
                port, client_ssl, own(web_server, name), host=f"{name}:{port}", sni=name
            )
            assert ws.subprotocol == SUBPROTOCOL
            joined = await ws.join(token)
            assert joined.game == "arena"
            await ws.stream.aclose()
    assert web_server.stats.refused["origin"] == 0


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.example", None),
        ("null", None),
        ("http://127.0.0.1:{port}", None),  # another scheme
        ("https://127.0.0.1:1", None),  # another port
        ("https://evil.example:{port}", "evil.example:{port}"),  # DNS rebinding
        ("https://127.0.0.1:{port}", "evil.example:{port}"),  # a Host that is not ours
    ],
)
async def test_another_origin_is_refused_with_a_close_code_a_page_can_read(
    web_server: GameServer, client_ssl: ssl.SSLContext, origin: str, host: str | None
) -> None:
    port = web_server.port
    origin = origin.format(port=port)
    with trio.fail_after(10):
        ws = await BrowserWS.open(
            port, client_ssl, origin, host=None if host is None else host.format(port=port)
        )
        frames, close = await ws.frames_until_close()
        data, how = await read_to_close(ws.stream)
    # no game data before the Origin check passes: the close frame is all there is
    assert frames == [] and data == b""
    assert close == (CloseCode.FORBIDDEN, "origin not allowed")
    assert how == "eof"
    assert web_server.stats.refused["origin"] == 1
    assert web_server.stats.connections_accepted == 0


async def test_a_non_browser_keeps_the_http_refusals(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    base = client_request(f"127.0.0.1:{port}", "/", new_key(), ["chat.v2"])
    with trio.fail_after(10):
        a = await http(port, client_ssl, base)  # no Origin, wrong subprotocol
        assert a.status == 400 and b"gamesync.v1" in a.body
        two = client_request(f"127.0.0.1:{port}", "/", new_key(), [SUBPROTOCOL])[:-2]
        two += f"Origin: {own(web_server)}\r\nOrigin: {own(web_server)}\r\n\r\n".encode()
        b = await http(port, client_ssl, two)  # two Origins: not a browser
        assert b.status == 403


@pytest.mark.parametrize("offered", [("gamesync.v0", "chat"), ()])
async def test_a_browser_with_another_subprotocol_reads_1002(
    web_server: GameServer, client_ssl: ssl.SSLContext, offered: tuple[str, ...]
) -> None:
    with trio.fail_after(10):
        ws = await BrowserWS.open(
            web_server.port, client_ssl, own(web_server), subprotocols=offered
        )
        # the 101 selects one the browser offered (else it would report 1006), or none
        assert ws.subprotocol == (offered[0] if offered else None)
        frames, (code, reason) = await ws.frames_until_close()
    assert frames == []
    assert code == CloseCode.PROTOCOL_ERROR and "gamesync.v1" in reason
    assert web_server.stats.refused["subprotocol"] == 1


@pytest.mark.parametrize("server_config", [attrs.evolve(BASE, max_connections=2)])
async def test_a_full_server_tells_a_browser_4006(
    web_server: GameServer, client_ssl: ssl.SSLContext, autojump_clock: trio.testing.MockClock
) -> None:
    port = web_server.port
    with trio.fail_after(20):
        holders = [await tcp_connect(port) for _ in range(2)]
        while web_server.stats.connections_open < 2:
            await trio.sleep(0.01)
        ws = await BrowserWS.open(port, client_ssl, own(web_server))
        frames, close = await ws.frames_until_close()
        assert frames == [] and close == (
            CloseCode.SERVER_FULL,
            "server full; try again in a moment",
        )
        # the Origin check is not weakened by a full server
        evil = await BrowserWS.open(port, client_ssl, "https://evil.example")
        assert (await evil.frames_until_close())[1][0] == CloseCode.FORBIDDEN
        # a non-browser gets HTTP 503, and so does a plain GET
        native = await http(
            port, client_ssl, client_request("127.0.0.1", "/", new_key(), [SUBPROTOCOL])
        )
        assert native.status == 503 and native.headers["retry-after"] == "5"
        page = await http(port, client_ssl, get("/", port))
        assert page.status == 503 and page.headers["retry-after"] == "5"
        assert web_server.stats.refused["connection_limit"] == 4
        while web_server.front.full_notices:
            await trio.sleep(0.01)
        # the notices are bounded: with FULL_NOTICES_PER_IP silent ones pending, the next
        # connection is closed before TLS, as ever
        silent = [await tcp_connect(port) for _ in range(FULL_NOTICES_PER_IP)]
        while web_server.front.full_notices < FULL_NOTICES_PER_IP:
            await trio.sleep(0.01)
        extra = await tcp_connect(port)
        assert await read_to_close(extra) == (b"", "eof")
        for s in [*holders, *silent]:
            await s.aclose()
        while web_server.stats.connections_open or web_server.front.full_notices:
            await trio.sleep(0.01)
    assert web_server.stats.connections_accepted == 0


async def test_a_browser_reads_4012_when_the_server_drains(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    with trio.fail_after(10):
        ws = await BrowserWS.open(web_server.port, client_ssl, own(web_server))
        web_server.begin_drain(1.0)
        frames, (code, reason) = await ws.frames_until_close()
    assert code == CloseCode.DRAINING and reason.startswith("draining")
    assert len(frames) == 1 and frames[0][0] == OP_BINARY
    error = parse_server_message(frames[0][1])
    assert isinstance(error, Error) and error.code == CloseCode.DRAINING
    assert frames[0][1][0] == Kind.ERROR


# ---------------------------------------------------------------- guest tokens


async def test_a_guest_token_from_the_page_joins_a_room(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    with trio.fail_after(10):
        a = await http(port, client_ssl, guest_request(port, b'{"name": " Ada\\n\\u0007 "}'))
        assert a.status == 200, a.body
        assert a.headers["content-type"] == "application/json"
        assert a.headers["cache-control"] == "no-store"
        data = json.loads(a.body)
        assert data["player"].startswith(GUEST_PREFIX) and data["name"] == "Ada"
        ws = await BrowserWS.open(port, client_ssl, own(web_server))
        joined = await ws.join(data["token"])
        assert joined.game == "arena"
        session = web_server.by_player[data["player"]]
        assert session.player.name == "Ada"
        await ws.stream.aclose()


async def test_guest_tokens_are_rate_limited_and_same_origin_only(
    web_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = web_server.port
    with trio.fail_after(20):
        refused = [
            await http(port, client_ssl, guest_request(port, b"{}", "https://evil.example")),
            await http(port, client_ssl, guest_request(port, b"{}", None)),
            await http(
                port, client_ssl, guest_request(port, b"{}", "own", "Sec-Fetch-Site: cross-site")
            ),
        ]
        assert [a.status for a in refused] == [403, 403, 403]
        assert all("token" not in json.loads(a.body) for a in refused)
        statuses = [
            (await http(port, client_ssl, guest_request(port, b"{}"))).status for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]  # a burst of 3 per address
        limited = await http(port, client_ssl, guest_request(port, b"{}"))
        assert limited.status == 429 and int(limited.headers["retry-after"]) > 0
        # GET is not how tokens are asked for
        assert (await http(port, client_ssl, get("/guest", port))).status == 405


async def test_guest_tokens_are_off_by_default(
    auth_server: GameServer, client_ssl: ssl.SSLContext
) -> None:
    port = auth_server.port
    with trio.fail_after(10):
        a = await http(port, client_ssl, guest_request(port, b'{"name": "x"}'))
    assert a.status == 404 and b"token" not in a.body


async def test_guest_tokens_need_the_web_demo() -> None:
    code, _, err = await run_cli("serve", "--guest-tokens", "--no-web", "--port", "0")
    assert code == 2
    assert_one_line(err, "--guest-tokens")


async def test_a_missing_web_root_is_one_line(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        "serve",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path),
        "--log-level",
        "WARNING",
        "--web-root",
        str(tmp_path / "nope"),
    )
    assert code == 1
    assert_one_line(err, f"--web-root {tmp_path / 'nope'}: not a folder")


# ---------------------------------------------------------------- the WebSocket endpoint


async def test_the_websocket_endpoint_is_unchanged(
    nursery: trio.Nursery,
    web_server: GameServer,
    client_ssl: ssl.SSLContext,
    mint: Callable[..., str],
) -> None:
    with trio.fail_after(10):
        client = await connect(nursery, web_server.url, client_ssl, "plain-1", token=mint("native"))
        await client.wait_tick(client.replica.tick + 3)
        assert client.deltas >= 3
        await client.ws.aclose()
    assert web_server.stats.connections_accepted == 1
    assert not web_server.stats.http_responses


# ---------------------------------------------------------------- serving costs the tick nothing


async def test_hammering_get_does_not_disturb_the_tick(
    auth_server: GameServer,
    observer: Observer,  # noqa: F811  (the fixtures of test_hostile.py)
    memory: MemoryProbe,  # noqa: F811
    logs: pytest.LogCaptureFixture,  # noqa: F811
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client fetches the demo page and a module 200 times, 4 at a time, while the observer
    plays: it keeps one DELTA per tick with no desync, and memory stays bounded."""
    observer.begin()
    port = auth_server.port
    done = 0

    async def hammer(n: int) -> None:
        nonlocal done
        for i in range(n):
            path = "/" if i % 2 else "/src/index.js"
            a = await http(port, client_ssl, get(path, port))
            assert a.status == 200
            done += 1

    with trio.fail_after(60):
        async with trio.open_nursery() as clients:
            for _ in range(4):
                clients.start_soon(hammer, 50)
    assert done == 200
    assert auth_server.stats.http_responses["200"] == 200
    await wrap_up(auth_server, observer, memory, logs)
