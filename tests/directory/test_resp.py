"""RESP2 encoding and parsing (sans-I/O), including bounds on hostile replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.directory.redis_client import RedisAddress
from gameserver.directory.resp import RespError, RespParser, RespProtocolError, encode_command


def test_encode() -> None:
    assert encode_command("GET", b"k", 12) == b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    with pytest.raises(TypeError):
        encode_command(True)


def _all(data: bytes, chunk: int = 1) -> list[object]:
    p = RespParser()
    out: list[object] = []
    for i in range(0, len(data), chunk):
        p.feed(data[i : i + chunk])
        out.extend(p.replies())
    return out


def test_parse_every_kind_byte_by_byte() -> None:
    data = b"+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n$-1\r\n$3\r\nabc\r\n*2\r\n:1\r\n*1\r\n$0\r\n\r\n*-1\r\n"
    assert _all(data) == [
        b"OK",
        RespError("NOSCRIPT", "NOSCRIPT No matching script"),
        42,
        None,
        b"abc",
        [1, [b""]],
        None,
    ]


@pytest.mark.parametrize(
    "bad",
    [
        b"?x\r\n",
        b":abc\r\n",
        b"$5\r\nabcdefg\r\n",
        b"*99999999\r\n",
        b"$999999999999\r\n",
        b"+" + b"x" * 2000,
    ],
)
def test_hostile_replies_raise(bad: bytes) -> None:
    p = RespParser(max_bulk=1024, max_items=1000)
    with pytest.raises(RespProtocolError):
        p.feed(bad)
        list(p.replies())


def test_depth_is_bounded() -> None:
    p = RespParser(max_depth=3)
    p.feed(b"*1\r\n" * 5 + b":1\r\n")
    with pytest.raises(RespProtocolError):
        list(p.replies())


_values = st.recursive(
    st.binary(max_size=40) | st.integers(-(2**63), 2**63 - 1) | st.none(),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


def _encode(v: object) -> bytes:
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if isinstance(v, int):
        return b":%d\r\n" % v
    assert isinstance(v, list)
    return b"*%d\r\n" % len(v) + b"".join(_encode(x) for x in v)


@given(st.lists(_values, max_size=5), st.integers(1, 17))
def test_roundtrip_in_any_chunks(values: list[object], chunk: int) -> None:
    assert _all(b"".join(_encode(v) for v in values), chunk) == values


def test_redis_url() -> None:
    a = RedisAddress.from_url("rediss://user:p%40ss@node:6380/2")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls) == (
        "node",
        6380,
        2,
        "user",
        "p@ss",
        True,
    )
    assert "p@ss" not in str(a) and str(a) == "rediss://node:6380/2"
    assert RedisAddress.from_url("redis://h") == RedisAddress(host="h")
    for bad in ("http://h", "redis://h:x", "redis://h/abc"):
        with pytest.raises(ValueError):
            RedisAddress.from_url(bad)
