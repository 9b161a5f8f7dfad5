"""Both sides of the opening handshake, as pure functions.

Server: ``gameserver.handshake.check_upgrade`` (RFC 6455 section 4.2.1) on request heads as
h11 parses them. Client: ``shared.wsframe.check_response`` (section 4.1) on 101 responses.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.handshake import Refusal, check_upgrade, http_version, valid_key
from shared.wsframe import FrameError, accept_value, check_response, client_request, new_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the example key of RFC 6455 section 1.3


def request(*extra: str, version: str = "1.1", key: str | None = KEY, drop: str = "") -> bytes:
    lines = [
        f"GET /play HTTP/{version}",
        "Host: game.example",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: gamesync.v1",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    lines = [line for line in lines if not (drop and line.startswith(drop))]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode("latin-1")


def parsed(head: bytes) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """Headers as h11 gives them (lower-case names, repeats kept), without those wsproto
    strips, and the subprotocols as wsproto collects them."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    headers = []
    protocols: list[str] = []
    for name, value in event.headers:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode().split(",")]
        elif name not in (b"host", b"sec-websocket-extensions"):
            headers.append((bytes(name), bytes(value)))
    return headers, protocols


def check(head: bytes, allowed: Sequence[str] = ()) -> Refusal | None:
    headers, protocols = parsed(head)
    refused = check_upgrade(head, headers, protocols, allowed)
    if refused is not None:
        assert refused.status == (403 if refused.kind is Refusal.ORIGIN else 400)
        assert refused.body.endswith("\n") and len(refused.body) < 200
    return None if refused is None else refused.kind


# ---------------------------------------------------------------- the server's check


def test_a_valid_request_passes() -> None:
    assert check(request()) is None
    assert check(client_request("127.0.0.1:8443", "/", new_key(), ["gamesync.v1"])) is None


@pytest.mark.parametrize("version", ["1.0", "0.9", "2.0"])
def test_http_versions_before_1_1_or_not_http_1_are_refused(version: str) -> None:
    assert check(request(version=version)) is Refusal.HTTP_VERSION


def test_a_later_http_1_minor_version_is_fine() -> None:
    assert http_version(b"GET / HTTP/1.1\r\nHost: x") == (1, 1)
    assert http_version(b"GET / HTTP/1.9") == (1, 9)
    assert http_version(b"GET / HTTP/11.1") is None
    assert http_version(b"GET / FTP/1.1") is None


@pytest.mark.parametrize(
    "key",
    [
        "not base64 at all!!!!!!=",
        "AAAAAAAAAAAAAAAAAAAA",  # 15 bytes
        "AAAAAAAAAAAAAAAAAAAAAAA=",  # 17 bytes
        "AAAAAAAAAAAAAAAAAAAAAB==",  # 16 bytes, but not canonical (padding bits set)
        "",
    ],
    ids=["not-base64", "15-bytes", "17-bytes", "non-canonical", "empty"],
)
def test_a_key_that_is_not_the_base64_of_16_bytes_is_refused(key: str) -> None:
    assert check(request(key=key)) is Refusal.BAD_KEY


def test_two_keys_or_none_are_refused() -> None:
    assert check(request(f"Sec-WebSocket-Key: {new_key()}")) is Refusal.BAD_KEY
    assert check(request(f"Sec-WebSocket-Key: {KEY}")) is Refusal.BAD_KEY  # even the same
    assert check(request(key=None)) is Refusal.BAD_KEY


@given(st.binary(min_size=0, max_size=40))
def test_valid_key_means_exactly_the_base64_of_16_bytes(raw: bytes) -> None:
    assert valid_key(base64.b64encode(raw)) == (len(raw) == 16)


def test_origin_is_checked_once_and_only_once() -> None:
    good = "Origin: https://good.example"
    assert check(request(good), ["https://good.example"]) is None
    assert check(request(), []) is None  # not a browser
    assert check(request("Origin: https://evil.example"), ["https://good.example"]) is (
        Refusal.ORIGIN
    )
    assert check(request("Origin: https://any.example"), ["*"]) is None
    # two Origin headers: refused whatever they say (a browser sends exactly one)
    for second in ("Origin: https://evil.example", good):
        assert check(request(good, second), ["https://good.example"]) is Refusal.ORIGIN
        assert check(request(good, second), ["*"]) is Refusal.ORIGIN


def test_the_subprotocol_must_be_offered() -> None:
    head = request(drop="Sec-WebSocket-Protocol")
    headers, _ = parsed(head)
    refused = check_upgrade(head, headers, ["chat"], [])
    assert refused is not None and refused.kind is Refusal.SUBPROTOCOL
    assert "gamesync.v1" in refused.body
    assert check_upgrade(head, headers, ["chat", "gamesync.v1"], []) is None


def test_a_body_or_a_repeated_version_is_refused() -> None:
    assert check(request("Content-Length: 5")) is Refusal.BAD_UPGRADE
    assert check(request("Transfer-Encoding: chunked")) is Refusal.BAD_UPGRADE
    assert check(request("Content-Length: 0")) is None
    assert check(request("Sec-WebSocket-Version: 8")) is Refusal.BAD_UPGRADE


def test_checks_run_in_the_documented_order() -> None:
    # HTTP/1.0 with a bad key and a bad Origin: the version is reported first
    head = request("Origin: https://evil.example", version="1.0", key="bad")
    assert check(head) is Refusal.HTTP_VERSION
    assert check(request("Origin: https://evil.example", key="bad")) is Refusal.BAD_KEY


# ---------------------------------------------------------------- the client's check


def response(*lines: str, key: str = KEY, status: str = "101 Switching Protocols") -> bytes:
    base = [
        f"HTTP/1.1 {status}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
    ]
    return "\r\n".join(base + list(lines)).encode("latin-1")


def test_the_rfc_example_accept_value() -> None:
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_response_returns_the_chosen_subprotocol() -> None:
    head = response("Sec-WebSocket-Protocol: gamesync.v1")
    assert check_response(head, KEY, ["gamesync.v1"]) == "gamesync.v1"
    # header names and the Upgrade / Connection values are case-insensitive
    head = head.replace(b"Upgrade: websocket", b"upgrade: WebSocket")
    head = head.replace(b"Connection: Upgrade", b"CONNECTION: keep-alive, UPGRADE")
    assert check_response(head, KEY, ["gamesync.v1"]) == "gamesync.v1"
    assert check_response(response(), KEY) is None


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (response(status="200 OK"), "refused"),
        (response().replace(b"Upgrade: websocket\r\n", b""), "Upgrade"),
        (response().replace(b"Upgrade: websocket", b"Upgrade: h2c"), "Upgrade"),
        (response().replace(b"Connection: Upgrade\r\n", b""), "Connection"),
        (response().replace(b"Connection: Upgrade", b"Connection: keep-alive"), "Connection"),
        (response(key=new_key()), "Accept"),
        (response(f"Sec-WebSocket-Accept: {accept_value(KEY)}"), "more than one"),
        (response("Sec-WebSocket-Protocol: chat"), "not one offered"),
        (response(), "not one offered"),  # offered one, the server chose none
        (response("Sec-WebSocket-Extensions: permessage-deflate"), "extension"),
    ],
    ids=[
        "not-101",
        "no-upgrade",
        "upgrade-h2c",
        "no-connection",
        "connection-keep-alive",
        "bad-accept",
        "two-accepts",
        "other-subprotocol",
        "no-subprotocol",
        "extension",
    ],
)
def test_a_bad_response_is_refused(head: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why) as info:
        check_response(head, KEY, ["gamesync.v1"])
    assert info.value.close_code == 1002


def test_a_subprotocol_when_none_was_offered_is_refused() -> None:
    with pytest.raises(FrameError, match="none was offered"):
        check_response(response("Sec-WebSocket-Protocol: gamesync.v1"), KEY)
