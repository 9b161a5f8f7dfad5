"""Resume tokens (gameserver/resume.py): round trips, forgeries, hostile strings. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.resume import (
    MAX_TOKEN_CHARS,
    ResumeClaims,
    ResumeKey,
    ResumeRefusal,
    ResumeTokenError,
)
from shared import wire
from shared.errors import RemoteProtocolError
from shared.protocol import CloseCode

KEY = ResumeKey(bytes(range(32)))
OTHER = ResumeKey(bytes(range(1, 33)))
EPOCH = b"\x01\x02\x03\x04\x05\x06\x07\x08"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

rooms = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
epochs = st.binary(min_size=8, max_size=8)
u64 = st.integers(0, 2**64 - 1)


def reason_of(room: str, token: str, key: ResumeKey = KEY) -> ResumeRefusal:
    with pytest.raises(ResumeTokenError) as info:
        key.parse(room, token)
    return info.value.reason


def test_the_format_is_the_documented_one() -> None:
    token = KEY.mint("lobby", EPOCH, 3, 300)
    payload = EPOCH + wire.varint(3) + wire.varint(300)
    mac = hmac.new(KEY.key, b"gamesync-resume\0lobby\0" + payload, hashlib.sha256).digest()
    assert token == base64.urlsafe_b64encode(payload + mac[:16]).decode().rstrip("=")
    assert "=" not in token and token.isascii()
    assert KEY.parse("lobby", token) == ResumeClaims(EPOCH, 3, 300)


def test_the_longest_token_is_well_under_the_wire_limit() -> None:
    token = KEY.mint("r" * 64, b"\xff" * 8, 2**64 - 1, 2**64 - 1)
    assert len(token) <= 59 < MAX_TOKEN_CHARS


@given(rooms, epochs, u64, u64)
def test_round_trip(room: str, epoch: bytes, number: int, generation: int) -> None:
    token = KEY.mint(room, epoch, number, generation)
    assert KEY.parse(room, token) == ResumeClaims(epoch, number, generation)


@given(rooms, epochs, u64, u64, st.data())
def test_any_mutated_character_fails(
    room: str, epoch: bytes, number: int, generation: int, data: st.DataObject
) -> None:
    token = KEY.mint(room, epoch, number, generation)
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from(B64URL).filter(lambda c: c != token[i]))
    bad = token[:i] + c + token[i + 1 :]
    assert reason_of(room, bad) in (ResumeRefusal.MALFORMED, ResumeRefusal.BAD_MAC)


@given(rooms, epochs, u64, u64, st.data())
def test_any_mutated_byte_fails(
    room: str, epoch: bytes, number: int, generation: int, data: st.DataObject
) -> None:
    raw = bytearray(base64.urlsafe_b64decode(KEY.mint(room, epoch, number, generation) + "=="))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    bad = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert reason_of(room, bad) in (ResumeRefusal.MALFORMED, ResumeRefusal.BAD_MAC)


@given(rooms, rooms, epochs, u64, u64)
def test_a_token_is_bound_to_its_room_and_key(
    room: str, other_room: str, epoch: bytes, number: int, generation: int
) -> None:
    token = KEY.mint(room, epoch, number, generation)
    assert reason_of(room, token, OTHER) is ResumeRefusal.BAD_MAC
    if other_room != room:
        assert reason_of(other_room, token) is ResumeRefusal.BAD_MAC


@given(st.text(max_size=300))
def test_any_string_fails_cleanly(token: str) -> None:
    try:
        KEY.parse("room", token)
    except ResumeTokenError as exc:
        assert exc.close_code == CloseCode.UNAUTHORIZED
        assert str(exc) == "unauthorized: bad resume token"
    else:  # pragma: no cover - a forged MAC by chance
        raise AssertionError(f"{token!r} was accepted")


@given(st.text(alphabet=B64URL, max_size=200))
def test_any_base64url_string_fails_cleanly(token: str) -> None:
    assert reason_of("room", token) in (ResumeRefusal.MALFORMED, ResumeRefusal.BAD_MAC)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "A",
        "AAAA=",
        "AAAAAAAA",  # too short for epoch + two varints + MAC
        "x" * (MAX_TOKEN_CHARS + 1),
        "é" * 40,
        "\0" * 40,
        "AAAA AAAA",
    ],
)
def test_malformed_tokens(token: str) -> None:
    assert reason_of("room", token) is ResumeRefusal.MALFORMED


def test_padding_bits_and_long_varints_are_refused() -> None:
    token = KEY.mint("room", EPOCH, 1, 1)  # 26 bytes: 35 characters, 2 unused low bits
    assert len(token) == 35
    sibling = token[:-1] + B64URL[B64URL.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(sibling + "=") == base64.urlsafe_b64decode(token + "=")
    assert reason_of("room", sibling) is ResumeRefusal.MALFORMED
    # a non-shortest varint for the number, with a MAC made over those very bytes
    payload = EPOCH + b"\x81\x00" + wire.varint(1)
    mac = hmac.new(KEY.key, b"gamesync-resume\0room\0" + payload, hashlib.sha256).digest()[:16]
    padded = base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")
    assert reason_of("room", padded) is ResumeRefusal.MALFORMED


def test_the_error_blames_the_peer_and_the_key_stays_secret() -> None:
    assert issubclass(ResumeTokenError, RemoteProtocolError)
    assert KEY.key.hex() not in repr(KEY)
    assert ResumeKey.generate() != ResumeKey.generate()
    with pytest.raises(ValueError):
        ResumeKey(b"short")
    with pytest.raises(Exception, match="epoch"):
        KEY.mint("room", b"short", 1, 1)
