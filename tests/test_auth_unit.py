"""Player tokens and the signing secret, without any I/O beyond a temporary directory."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from gameserver.auth import (
    ALGORITHM,
    LEEWAY_SECONDS,
    MIN_SECRET_BYTES,
    SECRET_ENV,
    SECRET_FILE,
    AuthError,
    AuthFailure,
    Identity,
    SecretError,
    TokenVerifier,
    load_secret,
    mint_token,
    read_secret_file,
)

SECRET = b"k" * MIN_SECRET_BYTES
OTHER = b"o" * MIN_SECRET_BYTES


def _failure(verifier: TokenVerifier, token: str) -> AuthFailure:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    return info.value.failure


def _raw(claims: dict[str, Any], secret: bytes = SECRET) -> str:
    """A token with exactly these claims (mint_token only makes well-formed ones)."""
    base: dict[str, Any] = {"sub": "p1", "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, secret, algorithm=ALGORITHM)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- round trip


def test_mint_and_verify_round_trip() -> None:
    now = time.time()
    token = mint_token(
        SECRET, "player-7", name="Alice", rooms=["lobby", "r2"], games=["arena"], ttl=120
    )
    ident = TokenVerifier([SECRET]).verify(token)
    assert ident == Identity(
        player_id="player-7",
        name="Alice",
        rooms=("lobby", "r2"),
        games=("arena",),
        admin=False,
        expires=ident.expires,
    )
    assert now + 118 <= ident.expires <= now + 122
    assert ident.may_join("lobby") and not ident.may_join("other")
    assert ident.may_play("arena") and not ident.may_play("chess")


def test_defaults_allow_any_room_and_game_and_name_defaults_to_the_id() -> None:
    ident = TokenVerifier([SECRET]).verify(mint_token(SECRET, "bob"))
    assert ident.name == "bob"
    assert ident.rooms == ("*",) and ident.games == ("*",)
    assert ident.may_join("anything") and ident.may_play("anything")
    assert ident.admin is False


def test_admin_claim_round_trip() -> None:
    token = mint_token(SECRET, "ops", admin=True)
    assert TokenVerifier([SECRET]).verify(token).admin is True
    # a non-admin token carries no admin claim at all
    plain = jwt.decode(mint_token(SECRET, "p"), SECRET, algorithms=[ALGORITHM])
    assert "admin" not in plain


def test_long_display_names_are_cut_to_32_bytes_of_utf8() -> None:
    ident = TokenVerifier([SECRET]).verify(mint_token(SECRET, "p", name="é" * 40))
    assert ident.name == "é" * 16
    assert len(ident.name.encode()) <= 32


def test_mint_needs_a_player_id() -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, "")


# ---------------------------------------------------------------- refusals


def test_missing_token() -> None:
    assert _failure(TokenVerifier([SECRET]), "") is AuthFailure.MISSING


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "....",
        "!!!.???.***",
        _b64(b"not json") + "." + _b64(b"{}") + "." + _b64(b"sig"),
    ],
)
def test_malformed_token(token: str) -> None:
    assert _failure(TokenVerifier([SECRET]), token) is AuthFailure.MALFORMED


def test_expired_token() -> None:
    token = mint_token(SECRET, "p", ttl=60, now=time.time() - 3600)
    assert _failure(TokenVerifier([SECRET]), token) is AuthFailure.EXPIRED


def test_expiry_has_a_small_leeway() -> None:
    verifier = TokenVerifier([SECRET])
    # expired 2 s ago: within the leeway, still accepted
    recent = mint_token(SECRET, "p", ttl=10, now=time.time() - 12)
    assert verifier.verify(recent).player_id == "p"
    # expired well past the leeway
    old = mint_token(SECRET, "p", ttl=10, now=time.time() - 10 - LEEWAY_SECONDS - 5)
    assert _failure(verifier, old) is AuthFailure.EXPIRED


def test_tampered_payload_fails_the_signature() -> None:
    token = mint_token(SECRET, "alice", rooms=["lobby"])
    header, payload, sig = token.split(".")
    # flip one character of the payload: still valid base64url, but not what was signed
    i = len(payload) // 2
    flipped = "B" if payload[i] != "B" else "C"
    tampered = ".".join([header, payload[:i] + flipped + payload[i + 1 :], sig])
    assert _failure(TokenVerifier([SECRET]), tampered) is AuthFailure.BAD_SIGNATURE


def test_escalating_claims_fails_the_signature() -> None:
    """The classic attack: decode the payload, grant yourself more, re-encode."""
    token = mint_token(SECRET, "alice", rooms=["lobby"])
    header, payload, sig = token.split(".")
    claims = json.loads(_unb64(payload))
    claims.update(rooms=["*"], admin=True, sub="someone-else")
    forged = ".".join([header, _b64(json.dumps(claims).encode()), sig])
    assert _failure(TokenVerifier([SECRET]), forged) is AuthFailure.BAD_SIGNATURE


def test_tampered_signature_fails() -> None:
    token = mint_token(SECRET, "alice")
    header, payload, sig = token.split(".")
    raw = bytearray(_unb64(sig))
    raw[0] ^= 0x01
    assert (
        _failure(TokenVerifier([SECRET]), f"{header}.{payload}.{_b64(bytes(raw))}")
        is AuthFailure.BAD_SIGNATURE
    )


def test_wrong_key() -> None:
    assert _failure(TokenVerifier([SECRET]), mint_token(OTHER, "p")) is AuthFailure.BAD_SIGNATURE


def test_unsigned_and_other_algorithm_tokens_are_refused() -> None:
    verifier = TokenVerifier([SECRET])
    exp = int(time.time()) + 600
    # alg "none" (no signature at all) and any algorithm but HS256 are refused outright;
    # PyJWT reports a disallowed alg as an invalid token, so it is counted as bad claims
    unsigned = jwt.encode({"sub": "p", "exp": exp}, "", algorithm="none")
    assert _failure(verifier, unsigned) is AuthFailure.BAD_CLAIMS
    hs512 = jwt.encode({"sub": "p", "exp": exp}, SECRET * 2, algorithm="HS512")
    assert _failure(TokenVerifier([SECRET * 2]), hs512) is AuthFailure.BAD_CLAIMS


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize(
    "claims",
    [
        {"rooms": "lobby"},  # a string, not a list
        {"rooms": ["lobby", 3]},
        {"rooms": {"lobby": True}},
        {"games": "arena"},
        {"games": [None]},
        {"admin": "yes"},
        {"admin": 1},
        {"name": 5},
        {"sub": ""},
        {"sub": "x" * 129},
    ],
)
def test_bad_claims(claims: dict[str, Any]) -> None:
    assert _failure(TokenVerifier([SECRET]), _raw(claims)) is AuthFailure.BAD_CLAIMS


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "9999999999"},  # a string that PyJWT would take as a number
        {"exp": "soon"},
        {"exp": True},
        {"exp": None},
        {"exp": [9999999999]},
        {"exp": float("inf")},
        {"exp": 10**400},
        {"iat": "1700000000"},
        {"iat": None},
        {"nbf": "0"},
        {"nbf": False},
        {"nbf": time.time() + 3600},  # not valid yet
        {"sub": 12},
        {"sub": ["p1"]},
        {"sub": "p1\r\nINFO admin ops closed room lobby"},  # a forged log line
        {"sub": "p1\n"},
        {"sub": "\x1b[31mred"},
        {"sub": "line\u2028separator"},
        {"sub": "nul\x00"},
        {"name": ["x"]},
        {"rooms": [["lobby"]]},
        {"games": [1]},
        {"admin": "true"},
    ],
    ids=repr,
)
def test_claims_of_the_wrong_type_are_bad_claims(claims: dict[str, Any]) -> None:
    assert _failure(TokenVerifier([SECRET]), _raw(claims)) is AuthFailure.BAD_CLAIMS


def test_time_claims_may_be_fractional_and_nbf_in_the_past_is_fine() -> None:
    verifier = TokenVerifier([SECRET])
    ident = verifier.verify(_raw({"exp": time.time() + 600.5, "iat": 1.5, "nbf": time.time()}))
    assert ident.expires > time.time()
    # nbf has the same leeway as exp
    assert verifier.verify(_raw({"nbf": time.time() + LEEWAY_SECONDS - 1})).player_id == "p1"


def test_a_string_exp_is_refused_even_when_it_is_in_the_past() -> None:
    # bad claims, not "expired": the type is wrong whatever the value
    assert _failure(TokenVerifier([SECRET]), _raw({"exp": "1"})) is AuthFailure.BAD_CLAIMS


@pytest.mark.parametrize("player_id", ["a\nb", "a\rb", "tab\t", "\u2029", "x" * 129])
def test_mint_refuses_a_player_id_that_is_not_printable(player_id: str) -> None:
    with pytest.raises(ValueError, match="printable"):
        mint_token(SECRET, player_id)


def test_unicode_player_ids_are_fine() -> None:
    token = mint_token(SECRET, "Zoë-玩家-🎮")
    assert TokenVerifier([SECRET]).verify(token).player_id == "Zoë-玩家-🎮"


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_required_claims(missing: str) -> None:
    claims = {"sub": "p1", "exp": int(time.time()) + 600}
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm=ALGORITHM)
    assert _failure(TokenVerifier([SECRET]), token) is AuthFailure.BAD_CLAIMS


def test_missing_rooms_and_games_claims_allow_nothing() -> None:
    ident = TokenVerifier([SECRET]).verify(_raw({}))
    assert ident.rooms == () and ident.games == ()
    assert not ident.may_join("lobby") and not ident.may_play("arena")
    assert ident.name == "p1"


def test_admin_must_be_exactly_true() -> None:
    verifier = TokenVerifier([SECRET])
    assert verifier.verify(_raw({"admin": True})).admin is True
    assert verifier.verify(_raw({"admin": False})).admin is False


# ---------------------------------------------------------------- key rotation


def test_key_rotation_accepts_tokens_from_both_keys() -> None:
    new, old = b"n" * 32, b"o" * 32
    verifier = TokenVerifier([new, old])
    assert verifier.verify(mint_token(new, "a")).player_id == "a"
    assert verifier.verify(mint_token(old, "b")).player_id == "b"
    # a third key is still refused
    assert _failure(verifier, mint_token(b"x" * 32, "c")) is AuthFailure.BAD_SIGNATURE
    # once the old key is dropped, its tokens stop working
    assert _failure(TokenVerifier([new]), mint_token(old, "b")) is AuthFailure.BAD_SIGNATURE


def test_expired_token_signed_by_the_previous_key_is_expired_not_bad_signature() -> None:
    new, old = b"n" * 32, b"o" * 32
    stale = mint_token(old, "p", ttl=60, now=time.time() - 3600)
    assert _failure(TokenVerifier([new, old]), stale) is AuthFailure.EXPIRED
    # an expired token signed by a key the server does not know is a bad signature
    assert _failure(TokenVerifier([new]), stale) is AuthFailure.BAD_SIGNATURE


def test_a_verifier_needs_a_secret() -> None:
    with pytest.raises(SecretError):
        TokenVerifier([])


def test_verify_honours_an_explicit_now() -> None:
    token = mint_token(SECRET, "p", ttl=60)
    with pytest.raises(AuthError) as info:
        TokenVerifier([SECRET]).verify(token, now=time.time() + 3600)
    assert info.value.failure is AuthFailure.EXPIRED


# ---------------------------------------------------------------- the signing secret


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_secret_file_wins_over_env_and_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _write(state / SECRET_FILE, b"s" * 40)
    chosen = _write(tmp_path / "chosen.key", b"f" * 40 + b"\n")
    env = {SECRET_ENV: "e" * 40}
    assert load_secret(chosen, state, create=True, env=env) == b"f" * 40


def test_env_wins_over_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _write(state / SECRET_FILE, b"s" * 40)
    assert load_secret(None, state, create=True, env={SECRET_ENV: "e" * 40}) == b"e" * 40
    # an empty variable counts as unset
    assert load_secret(None, state, create=True, env={SECRET_ENV: ""}) == b"s" * 40


def test_state_dir_secret_is_created_owner_only_and_then_reused(tmp_path: Path) -> None:
    state = tmp_path / "fresh" / "state"
    first = load_secret(None, state, create=True, env={})
    path = state / SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) & 0o077 == 0
    assert len(first) >= MIN_SECRET_BYTES
    assert load_secret(None, state, create=True, env={}) == first  # not regenerated
    assert load_secret(None, state, create=False, env={}) == first


def test_two_fresh_state_dirs_get_different_secrets(tmp_path: Path) -> None:
    a = load_secret(None, tmp_path / "a", create=True, env={})
    b = load_secret(None, tmp_path / "b", create=True, env={})
    assert a != b


def test_no_secret_without_create(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        load_secret(None, tmp_path / "none", create=False, env={})
    assert not (tmp_path / "none").exists()


def test_short_secrets_are_refused(tmp_path: Path) -> None:
    short = b"x" * (MIN_SECRET_BYTES - 1)
    with pytest.raises(SecretError, match="shorter"):
        load_secret(_write(tmp_path / "short.key", short), tmp_path, create=True, env={})
    with pytest.raises(SecretError, match="shorter"):
        load_secret(None, tmp_path, create=True, env={SECRET_ENV: short.decode()})
    # surrounding whitespace does not count towards the length
    padded = b"  " + short + b"\n\n\n"
    with pytest.raises(SecretError, match="shorter"):
        read_secret_file(_write(tmp_path / "padded.key", padded))
    state = tmp_path / "state"
    state.mkdir()
    _write(state / SECRET_FILE, short)
    with pytest.raises(SecretError, match="shorter"):
        load_secret(None, state, create=True, env={})


def test_unreadable_secret_file_is_a_secret_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read"):
        read_secret_file(tmp_path / "missing.key")


def test_load_secret_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "v" * 40)
    assert load_secret(None, tmp_path, create=False) == b"v" * 40
