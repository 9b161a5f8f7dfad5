"""The web demo's pure parts: the request parser, the file allow-list and URL map, the response
headers, the router (gameserver.web), guest tokens, the server's own origin and the refusals a
browser can read (gameserver.handshake). No sockets; the real-WSS side is in
tests/integration/test_web.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver import http_static
from gameserver.auth import TokenVerifier
from gameserver.guest import GUEST_PREFIX, GuestIssuer, sanitize_name
from gameserver.handshake import (
    BROWSER_CLOSES,
    SERVER_FULL_CLOSE,
    Refusal,
    UpgradeRefused,
    browser_close,
    echo_subprotocol,
    own_origin,
)
from gameserver.http_static import (
    BadRequest,
    HttpRequest,
    Response,
    StaticSite,
    WebRootError,
    allowed_name,
    decode_path,
    read_web_root,
)
from gameserver.web import MAX_GUEST_BODY, RequestInfo, WebApp, server_full, ws_origin
from shared.protocol import CloseCode

SECRET = b"s" * 32
OWN = "https://127.0.0.1:8443"


def req(head: str) -> HttpRequest:
    return HttpRequest.from_head(head.replace("\n", "\r\n").encode() + b"\r\n")


def info(own: str | None = OWN, address: str = "10.0.0.1", now: float = 0.0) -> RequestInfo:
    return RequestInfo(own, address, now, time.time())


# ---------------------------------------------------------------- parsing


def test_a_request_head_is_parsed() -> None:
    r = req("GET /src/index.js?v=2 HTTP/1.1\nHost: 127.0.0.1:8443\nAccept:  */* \nX-A: 1\nX-A: 2")
    assert (r.method, r.target, r.version, r.path) == (
        "GET",
        "/src/index.js?v=2",
        (1, 1),
        "/src/index.js",
    )
    assert r.header("host") == "127.0.0.1:8443"
    assert r.header("accept") == "*/*"
    assert r.values("x-a") == ["1", "2"] and r.header("x-a") is None  # repeated: no single value
    assert not r.is_upgrade
    assert req("GET / HTTP/1.1\nUpgrade: websocket\nConnection: Upgrade").is_upgrade
    # bare LF line ends, and HTTP/1.0
    bare = HttpRequest.from_head(b"HEAD / HTTP/1.0\nHost: x\n\n")
    assert (bare.method, bare.version, bare.header("host")) == ("HEAD", (1, 0), "x")


@pytest.mark.parametrize(
    "head",
    [
        b"\r\n\r\n",
        b"GET /\r\n\r\n",  # HTTP/0.9
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(BadRequest):
        HttpRequest.from_head(head)


def test_paths_are_decoded_only_to_be_looked_up() -> None:
    assert decode_path("/src/index%2Ejs") == "/src/index.js"
    assert decode_path("/%2e%2e/%2e%2e/pyproject.toml") == "/../../pyproject.toml"
    assert decode_path("/%ff") is None  # not UTF-8
    assert decode_path("/a%00b") is None
    assert decode_path("/a%5cb") is None  # a backslash


# ---------------------------------------------------------------- the allow-list


def test_allowed_names() -> None:
    for ok in ("demo/index.html", "src/index.js", "games/arena.js", "demo/img/a-b_c.v2.png"):
        assert allowed_name(ok), ok
    for bad in (
        "index.html",  # not under a served folder
        "test/x.test.js",
        "node_modules/ws/index.js",
        "demo/.env",
        "demo/.hidden/x.js",
        "demo/../pyproject.toml",
        "demo/x.py",
        "demo/x.ts",
        "demo/x.JS.bak",
        "demo/a b.js",
        "demo/" + "d/" * 9 + "x.js",
    ):
        assert not allowed_name(bad), bad


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def test_the_web_root_is_read_through_the_allow_list(tmp_path: Path) -> None:
    root = tmp_path / "web"
    _tree(
        root,
        {
            "demo/index.html": b"<!doctype html>",
            "demo/app.js": b"import '../src/index.js';",
            "demo/.env": b"SECRET=1",
            "demo/notes.txt": b"txt",
            "src/index.js": b"export {};",
            "src/sub/deep.mjs": b"export {};",
            "games/arena.js": b"export {};",
            "test/a.test.js": b"no",
            "package.json": b"{}",
        },
    )
    (tmp_path / "outside.js").write_bytes(b"OUTSIDE")
    os.symlink(tmp_path / "outside.js", root / "demo" / "escape.js")
    os.symlink(root / "src" / "index.js", root / "demo" / "inside.js")
    os.symlink(tmp_path, root / "demo" / "up")  # a folder symlink is never followed
    found = read_web_root(root)
    assert set(found) == {
        "demo/index.html",
        "demo/app.js",
        "demo/inside.js",
        "src/index.js",
        "src/sub/deep.mjs",
        "games/arena.js",
    }
    assert found["demo/inside.js"] == b"export {};"
    assert b"OUTSIDE" not in b"".join(found.values())


def test_a_web_root_past_its_limits_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, {"demo/a.js": b"a" * 100, "demo/b.js": b"b" * 100})
    monkeypatch.setattr(http_static, "MAX_FILE_BYTES", 99)
    with pytest.raises(WebRootError, match="larger than"):
        read_web_root(tmp_path)
    monkeypatch.setattr(http_static, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(http_static, "MAX_TOTAL_BYTES", 150)
    with pytest.raises(WebRootError, match="to serve"):
        read_web_root(tmp_path)
    with pytest.raises(WebRootError, match="not a folder"):
        StaticSite.load(tmp_path / "missing")


def test_the_url_map() -> None:
    site = StaticSite.from_files(
        {
            "demo/index.html": b"INDEX",
            "demo/app.js": b"APP",
            "demo/src/shadow.js": b"SHADOW",
            "src/index.js": b"SDK",
            "src/shadow.js": b"REAL",
            "games/arena.js": b"ARENA",
        }
    )

    def body(path: str) -> bytes | None:
        found = site.lookup(path)
        return None if found is None else found.body

    assert (
        body("/") == body("/demo/") == body("/demo/index.html") == body("/index.html") == b"INDEX"
    )
    assert body("/demo/app.js") == body("/app.js") == b"APP"
    assert body("/src/index.js") == body("/sdk/index.js") == b"SDK"
    assert body("/games/arena.js") == body("/sdk/games/arena.js") == b"ARENA"
    assert body("/src/shadow.js") == b"REAL"  # a demo alias never hides an SDK file
    for missing in ("/demo", "/src/", "/src", "/../src/index.js", "/src/../src/index.js", ""):
        assert body(missing) is None, missing
    # without a demo, / is the built-in page
    bare = StaticSite.from_files({"src/index.js": b"SDK"})
    found = bare.lookup("/")
    assert found is not None and b"not installed" in found.body
    assert bare.lookup("/demo/") is None


# ---------------------------------------------------------------- responses


def _headers(r: Response) -> dict[str, str]:
    return {k.lower(): v for k, v in r.headers}


def test_files_have_their_content_type_and_the_security_headers() -> None:
    site = StaticSite.from_files(
        {
            "demo/index.html": b"<p>",
            "src/a.js": b"1",
            "src/b.mjs": b"2",
            "demo/s.css": b"",
            "demo/i.svg": b"<svg/>",
            "demo/i.png": b"\x89PNG",
            "demo/d.json": b"{}",
            "src/a.js.map": b"{}",
        }
    )
    expected = {
        "/": "text/html; charset=utf-8",
        "/src/a.js": "text/javascript; charset=utf-8",
        "/src/b.mjs": "text/javascript; charset=utf-8",
        "/s.css": "text/css; charset=utf-8",
        "/i.svg": "image/svg+xml",
        "/i.png": "image/png",
        "/d.json": "application/json",
        "/src/a.js.map": "application/json",
    }
    for path, ctype in expected.items():
        found = site.lookup(path)
        assert found is not None, path
        h = _headers(found.response("wss://127.0.0.1:8443", None))
        assert h["content-type"] == ctype
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cross-origin-opener-policy"] == "same-origin"
        assert h["cache-control"] == "no-cache"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self' wss://127.0.0.1:8443;" in csp
        assert "unsafe" not in csp and "frame-ancestors 'none'" in csp


def test_etag_revalidation_and_head() -> None:
    found = StaticSite.from_files({"src/a.js": b"x" * 10}).lookup("/src/a.js")
    assert found is not None
    assert found.response("", found.etag).status == 304
    assert found.response("", f'"other", {found.etag}').status == 304
    assert found.response("", '"other"').status == 200
    full = found.response("", None).to_bytes(now=0)
    head = found.response("", None).to_bytes(head_only=True, now=0)
    assert full == head + b"x" * 10
    assert b"Content-Length: 10\r\n" in head and b"Connection: close\r\n" in head
    assert b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in head
    not_modified = found.response("", found.etag).to_bytes(now=0)
    assert not_modified.startswith(b"HTTP/1.1 304 ") and b"Content-Length" not in not_modified


# ---------------------------------------------------------------- routing

APP_SITE = StaticSite.from_files({"demo/index.html": b"INDEX", "src/index.js": b"SDK"})


def respond(app: WebApp, head: str, body: bytes = b"", i: RequestInfo | None = None) -> Response:
    r = req(head)
    need = app.body_length(r)
    if isinstance(need, Response):
        return need
    assert need == len(body)
    return app.respond(r, body, i or info())


def test_routing_of_files_and_methods() -> None:
    app = WebApp(APP_SITE)
    ok = respond(app, "GET / HTTP/1.1\nHost: 127.0.0.1:8443")
    assert (ok.status, ok.body) == (200, b"INDEX")
    assert respond(app, "GET /nope.js HTTP/1.1").status == 404
    assert respond(app, "GET /sdk/../../pyproject.toml HTTP/1.1").status == 404
    assert respond(app, "GET /src/%2e%2e/%2e%2e/pyproject.toml HTTP/1.1").status == 404
    assert respond(app, "GET /%ff HTTP/1.1").status == 400
    assert respond(app, "OPTIONS * HTTP/1.1").status == 400
    assert respond(app, "GET http://evil.example/ HTTP/1.1").status == 400
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "BREW"):
        r = respond(app, f"{method} / HTTP/1.1")
        assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    assert respond(app, "POST /nope.js HTTP/1.1").status == 404
    # guest tokens off: /guest is a path like any other
    assert respond(app, "POST /guest HTTP/1.1").status == 404
    assert respond(app, "GET /guest HTTP/1.1").status == 404
    # --no-web: 426, whatever the path
    off = respond(WebApp(None), "GET / HTTP/1.1")
    assert off.status == 426 and off.header("Upgrade") == "websocket"
    # every answer, errors too, carries the security headers
    for r in (ok, off, respond(app, "GET /x HTTP/1.1")):
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert r.header("Content-Security-Policy")


def test_the_csp_names_the_servers_own_websocket_origin() -> None:
    app = WebApp(APP_SITE)
    r = respond(app, "GET / HTTP/1.1", i=info("https://localhost:9443"))
    assert "connect-src 'self' wss://localhost:9443;" in (r.header("Content-Security-Policy") or "")
    r = respond(app, "GET / HTTP/1.1", i=info(None))  # a Host that does not name this server
    assert "connect-src 'self';" in (r.header("Content-Security-Policy") or "")
    assert ws_origin("http://127.0.0.1:80") == "ws://127.0.0.1:80"


def test_server_full_is_a_503_with_retry_after() -> None:
    r = server_full(info())
    assert r.status == 503 and r.header("Retry-After") == "5"


# ---------------------------------------------------------------- guest tokens


def guest_app(**kw: float) -> WebApp:
    return WebApp(APP_SITE, GuestIssuer(SECRET, **kw), "arena")


def post(app: WebApp, body: bytes, *headers: str, i: RequestInfo | None = None) -> Response:
    lines = ["POST /guest HTTP/1.1", "Host: 127.0.0.1:8443", *headers]
    if not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return respond(app, "\n".join(lines), body, i)


JSON = "Content-Type: application/json"


def test_a_guest_token_is_minted_for_the_servers_own_pages() -> None:
    app = guest_app()
    before = time.time()
    r = post(app, b'{"name": "Ada"}', f"Origin: {OWN}", JSON, "Sec-Fetch-Site: same-origin")
    assert r.status == 200, r.body
    assert r.header("Content-Type") == "application/json"
    assert r.header("Cache-Control") == "no-store"
    data = json.loads(r.body)
    assert data["player"].startswith(GUEST_PREFIX) and len(data["player"]) == len(GUEST_PREFIX) + 16
    assert (data["name"], data["game"]) == ("Ada", "arena")
    assert before + 590 <= data["expires"] <= time.time() + 601
    identity = TokenVerifier([SECRET]).verify(data["token"])
    assert identity.player_id == data["player"] and identity.name == "Ada"
    assert identity.games == ("arena",) and identity.rooms == ("*",)
    assert identity.admin is False
    # a new player id every time; an empty body (or none) is "guest"
    again = json.loads(post(app, b"", f"Origin: {OWN}").body)
    assert again["player"] != data["player"] and again["name"] == "guest"


def test_a_guest_token_may_name_another_game_of_this_server() -> None:
    app = WebApp(APP_SITE, GuestIssuer(SECRET), "arena", ("arena", "field"))
    own = (f"Origin: {OWN}", JSON)
    r = post(app, b'{"name": "Ada", "game": "field"}', *own)
    assert r.status == 200, r.body
    data = json.loads(r.body)
    assert data["game"] == "field"
    assert TokenVerifier([SECRET]).verify(data["token"]).games == ("field",)
    # "" is the default game; a game the server does not run is refused, as is a non-string
    assert json.loads(post(app, b'{"game": ""}', *own).body)["game"] == "arena"
    unknown = post(app, b'{"game": "chess"}', *own)
    assert unknown.status == 404 and "no game 'chess'" in json.loads(unknown.body)["error"]
    assert post(app, b'{"game": 7}', *own).status == 400
    # a server that lists no games mints for its default game only
    assert post(guest_app(), b'{"game": "field"}', *own).status == 404


@pytest.mark.parametrize(
    "headers",
    [
        (),  # no Origin: not a page of ours
        ("Origin: https://evil.example",),
        ("Origin: null",),
        ("Origin: http://127.0.0.1:8443",),
        (f"Origin: {OWN}", f"Origin: {OWN}"),
        (f"Origin: {OWN}", "Sec-Fetch-Site: cross-site"),
        (f"Origin: {OWN}", "Sec-Fetch-Site: same-site"),
    ],
)
def test_guest_tokens_are_refused_cross_origin(headers: tuple[str, ...]) -> None:
    app = guest_app()
    r = post(app, b'{"name": "x"}', *headers, JSON)
    assert r.status == 403, headers
    assert "token" not in json.loads(r.body)


def test_guest_tokens_are_refused_when_the_host_is_not_this_server() -> None:
    r = post(guest_app(), b"", f"Origin: {OWN}", i=info(None))
    assert r.status == 403


def test_guest_tokens_are_rate_limited_per_address() -> None:
    app = guest_app(burst=3, rate=0.5)
    statuses = [post(app, b"", f"Origin: {OWN}", i=info(now=0.0)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = post(app, b"", f"Origin: {OWN}", i=info(now=0.0))
    assert limited.header("Retry-After") == "2"
    # another address has its own bucket; the first refills at the rate
    assert post(app, b"", f"Origin: {OWN}", i=info(address="10.0.0.2")).status == 200
    assert post(app, b"", f"Origin: {OWN}", i=info(now=2.0)).status == 200
    assert post(app, b"", f"Origin: {OWN}", i=info(now=2.0)).status == 429


def test_the_guest_address_table_is_bounded() -> None:
    issuer = GuestIssuer(SECRET, burst=1, rate=0.001, max_addresses=3)
    assert all(issuer.allow(f"10.0.0.{n}", 0.0) for n in range(3))
    assert not issuer.allow("10.0.0.9", 0.0)  # all three still in use
    assert issuer.allow("10.0.0.9", 5000.0)  # refilled ones are forgotten


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"name": "x"}', ("Content-Type: text/plain",), 415),
        (b'{"name": "x"}', (), 415),
        (b"not json", (JSON,), 400),
        (b"\xff\xfe", (JSON,), 400),
        (b'["x"]', (JSON,), 400),
        (b'{"name": 7}', (JSON,), 400),
        (b"{}", ("Transfer-Encoding: chunked", "Content-Length: 2", JSON), 400),
        (b"", ("Content-Length: 2", "Content-Length: 3", JSON), 400),
        (b"", ("Content-Length: -1", JSON), 400),
        (b"", (f"Content-Length: {MAX_GUEST_BODY + 1}", JSON), 413),
    ],
)
def test_bad_guest_requests(body: bytes, headers: tuple[str, ...], status: int) -> None:
    assert post(guest_app(), body, f"Origin: {OWN}", *headers).status == status


def test_a_guest_request_needs_a_length() -> None:
    app = guest_app()
    r = app.body_length(req(f"POST /guest HTTP/1.1\nOrigin: {OWN}"))
    assert isinstance(r, Response) and r.status == 411
    assert respond(app, "GET /guest HTTP/1.1").status == 405


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ("Ada", "Ada"),
        ("  Ada \t Lovelace\n", "Ada Lovelace"),
        ("", "guest"),
        (" \x00\x1b[31m ", "[31m"),
        ("a\u202eevil", "a evil"),  # a bidi override
        ("line\u2028break", "line break"),
        ("é" * 40, "é" * 16),  # 32 bytes of UTF-8
        ("ab" + "€" * 11, "ab" + "€" * 10),  # never half a character
    ],
)
def test_names_are_sanitized(asked: str, shown: str) -> None:
    assert sanitize_name(asked) == shown


@given(st.text(max_size=200))
def test_a_sanitized_name_is_short_printable_and_never_empty(text: str) -> None:
    name = sanitize_name(text)
    assert 0 < len(name.encode()) <= 32
    assert name.isprintable() and name == name.strip()


# ---------------------------------------------------------------- own origin, browser refusals


@pytest.mark.parametrize(
    ("host", "local", "bound", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443), "127.0.0.1", "https://127.0.0.1:8443"),
        ("localhost:8443", ("127.0.0.1", 8443), "127.0.0.1", "https://localhost:8443"),
        ("LOCALHOST:8443", ("127.0.0.1", 8443), "127.0.0.1", "https://localhost:8443"),
        ("[::1]:8443", ("::1", 8443, 0, 0), "::1", "https://[::1]:8443"),
        ("[0:0:0:0:0:0:0:1]:8443", ("::1", 8443), "::", "https://[::1]:8443"),
        ("127.0.0.1:8443", ("::ffff:127.0.0.1", 8443), "::", "https://127.0.0.1:8443"),
        ("192.168.1.5:8443", ("192.168.1.5", 8443), "0.0.0.0", "https://192.168.1.5:8443"),
        ("game.example", ("10.0.0.1", 443), "game.example", "https://game.example"),
        ("game.example:443", ("10.0.0.1", 443), "game.example", "https://game.example"),
        # not this server as the connection reached it
        ("127.0.0.1:9999", ("127.0.0.1", 8443), "127.0.0.1", None),  # another port
        ("127.0.0.1", ("127.0.0.1", 8443), "127.0.0.1", None),  # port 443 implied
        ("10.0.0.2:8443", ("127.0.0.1", 8443), "0.0.0.0", None),  # another address
        ("evil.example:8443", ("127.0.0.1", 8443), "127.0.0.1", None),  # DNS rebinding
        ("localhost:8443", ("192.168.1.5", 8443), "0.0.0.0", None),  # not on loopback
        ("game.example:8443", ("10.0.0.1", 8443), "0.0.0.0", None),
        ("localhost.:8443", ("127.0.0.1", 8443), "127.0.0.1", None),
        ("127.0.0.1:8443, evil", ("127.0.0.1", 8443), "127.0.0.1", None),
        ("user@127.0.0.1:8443", ("127.0.0.1", 8443), "127.0.0.1", None),
        ("", ("127.0.0.1", 8443), "127.0.0.1", None),
        (None, ("127.0.0.1", 8443), "127.0.0.1", None),
    ],
)
def test_own_origin(
    host: str | None, local: tuple[str, int], bound: str, expected: str | None
) -> None:
    got = own_origin(host, tls=True, local_ip=local[0], local_port=local[1], bound_host=bound)
    assert got == expected


def test_own_origin_without_tls_is_http() -> None:
    got = own_origin("127.0.0.1:80", tls=False, local_ip="127.0.0.1", local_port=80, bound_host="")
    assert got == "http://127.0.0.1"


def test_which_refusals_a_browser_can_read() -> None:
    one = [(b"origin", b"https://evil.example")]
    two = one * 2
    for kind, (code, reason) in BROWSER_CLOSES.items():
        refused = UpgradeRefused(kind, 403 if kind is Refusal.ORIGIN else 400, "x")
        assert browser_close(refused, one) == (code, reason)
        assert browser_close(refused, []) is None  # no Origin: not a browser, HTTP as ever
        assert browser_close(refused, two) is None  # two Origins: not a browser either
        assert len(reason.encode()) <= 123
    assert BROWSER_CLOSES[Refusal.ORIGIN][0] == CloseCode.FORBIDDEN
    assert BROWSER_CLOSES[Refusal.SUBPROTOCOL][0] == CloseCode.PROTOCOL_ERROR
    assert SERVER_FULL_CLOSE[0] == CloseCode.SERVER_FULL
    for kind in (Refusal.HTTP_VERSION, Refusal.BAD_UPGRADE, Refusal.BAD_KEY):
        assert browser_close(UpgradeRefused(kind, 400, "x"), one) is None


def test_the_echoed_subprotocol() -> None:
    assert echo_subprotocol(["chat", "gamesync.v1"]) == "gamesync.v1"
    assert echo_subprotocol(["gamesync.v9", "chat"]) == "gamesync.v9"
    assert echo_subprotocol([]) is None
