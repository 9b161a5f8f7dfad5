"""shared.wire: LEB128 varints, zigzag, strings, byte strings and the bounds-checked Reader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.protocol import CloseCode

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (255, "ff01"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        ((1 << 32) - 1, "ffffffff0f"),
        (1 << 63, "80808080808080808001"),
        (U64_MAX, "ffffffffffffffffff01"),
    ],
)
def test_varint_known_encodings(value: int, hex_: str) -> None:
    assert wire.varint(value).hex() == hex_
    r = wire.Reader(bytes.fromhex(hex_))
    assert r.varint() == value
    assert r.at_end()


def test_varint_lengths_at_group_boundaries() -> None:
    for n in range(1, 10):
        assert len(wire.varint((1 << (7 * n)) - 1)) == n
        assert len(wire.varint(1 << (7 * n))) == n + 1
    assert len(wire.varint(U64_MAX)) == wire.MAX_VARINT_BYTES == 10


@pytest.mark.parametrize("value", [-1, -(1 << 70), 1 << 64, 1 << 80])
def test_varint_out_of_range_is_a_local_error(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        wire.varint(value)


@given(st.integers(0, U64_MAX))
@settings(max_examples=200, deadline=None)
def test_varint_round_trip(value: int) -> None:
    data = wire.varint(value)
    assert 1 <= len(data) <= 10
    # every byte but the last has the continuation bit
    assert all(b & 0x80 for b in data[:-1]) and data[-1] < 0x80
    r = wire.Reader(data + b"\xaa")
    assert r.varint() == value
    assert r.pos == len(data)


@given(st.integers(I64_MIN, I64_MAX))
@settings(max_examples=200, deadline=None)
def test_svarint_round_trip(value: int) -> None:
    data = wire.svarint(value)
    assert wire.unzigzag(wire.zigzag(value)) == value
    r = wire.Reader(data)
    assert r.svarint() == value
    assert r.at_end()


@pytest.mark.parametrize(
    ("value", "zz", "hex_"),
    [
        (0, 0, "00"),
        (-1, 1, "01"),
        (1, 2, "02"),
        (-2, 3, "03"),
        (63, 126, "7e"),
        (-64, 127, "7f"),
        (64, 128, "8001"),
        (-65, 129, "8101"),
        (I64_MAX, U64_MAX - 1, "feffffffffffffffff01"),
        (I64_MIN, U64_MAX, "ffffffffffffffffff01"),
    ],
)
def test_zigzag_known_values(value: int, zz: int, hex_: str) -> None:
    assert wire.zigzag(value) == zz
    assert wire.unzigzag(zz) == value
    assert wire.svarint(value).hex() == hex_


@pytest.mark.parametrize(
    "hex_",
    [
        "",  # nothing at all
        "80",  # continuation bit, then nothing
        "ff",
        "8080",
        "ffffffffffffffffff",  # 9 bytes, all with continuation
    ],
)
def test_truncated_varint_raises(hex_: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        wire.Reader(bytes.fromhex(hex_)).varint()
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_overlong_varint_raises() -> None:
    # 10 bytes that all carry the continuation bit: an 11th would be needed
    with pytest.raises(RemoteProtocolError, match="longer than 10"):
        wire.Reader(b"\x80" * 10 + b"\x00").varint()
    with pytest.raises(RemoteProtocolError):
        wire.Reader(b"\xff" * 11).varint()


@pytest.mark.parametrize(
    "hex_",
    [
        "80808080808080808002",  # 2**64
        "ffffffffffffffffff7f",  # 2**70 - 1
    ],
)
def test_varint_beyond_64_bits_raises(hex_: str) -> None:
    with pytest.raises(RemoteProtocolError, match="64 bits") as info:
        wire.Reader(bytes.fromhex(hex_)).varint()
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_non_minimal_varint_is_accepted() -> None:
    # LEB128 padding with 0x80 groups is tolerated by the reader (documented in protocol.md)
    r = wire.Reader(bytes.fromhex("8000"))
    assert r.varint() == 0
    assert r.at_end()


def test_failed_varint_does_not_advance() -> None:
    r = wire.Reader(b"\x01\x80")
    assert r.varint() == 1
    with pytest.raises(RemoteProtocolError):
        r.varint()
    assert r.pos == 1


def test_string_encoding() -> None:
    assert wire.string("", 10) == b"\x00"
    assert wire.string("hi", 10) == b"\x02hi"
    assert wire.string("é", 2) == b"\x02\xc3\xa9"  # length counts UTF-8 bytes
    with pytest.raises(LocalProtocolError):
        wire.string("é", 1)
    long = "x" * 200
    assert wire.string(long, 200) == b"\xc8\x01" + long.encode()


def test_blob_encoding() -> None:
    assert wire.blob(b"", 0) == b"\x00"
    assert wire.blob(b"\x00\xff", 2) == b"\x02\x00\xff"
    with pytest.raises(LocalProtocolError):
        wire.blob(b"abc", 2)


@given(st.text(max_size=40))
@settings(max_examples=150, deadline=None)
def test_string_round_trip(text: str) -> None:
    data = wire.string(text, 200)
    r = wire.Reader(data)
    assert r.string(200) == text
    r.expect_end()


def test_reader_string_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="UTF-8") as info:
        wire.Reader(b"\x02\xc3\x28").string(10)
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        wire.Reader(b"\x05hello").string(4)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        wire.Reader(b"\x05hell").string(10)
    # a lone surrogate encoded as UTF-8 (CESU style) is not valid UTF-8
    with pytest.raises(RemoteProtocolError):
        wire.Reader(b"\x03\xed\xa0\x80").string(10)


def test_reader_fixed_and_u8() -> None:
    r = wire.Reader(bytes.fromhex("01 3412 78563412".replace(" ", "")))
    assert r.u8() == 1
    assert r.fixed(2) == 0x1234
    assert r.fixed(4) == 0x12345678
    assert r.at_end()
    r.expect_end()
    with pytest.raises(RemoteProtocolError):
        r.u8()
    with pytest.raises(RemoteProtocolError):
        wire.Reader(b"\x01").fixed(2)
    assert wire.Reader(b"").fixed(0) == 0


def test_reader_raw_and_f64() -> None:
    r = wire.Reader(wire.f64(0.05) + b"xy")
    assert r.f64() == 0.05
    assert r.raw(2) == b"xy"
    with pytest.raises(RemoteProtocolError):
        r.raw(1)
    assert wire.f64(1.0).hex() == "000000000000f03f"  # IEEE 754 binary64, little-endian
    with pytest.raises(RemoteProtocolError):
        wire.Reader(b"\x00" * 7).f64()


def test_expect_end_reports_trailing_bytes() -> None:
    r = wire.Reader(b"\x00\x01\x02")
    r.u8()
    with pytest.raises(RemoteProtocolError, match="2 trailing bytes") as info:
        r.expect_end()
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD
