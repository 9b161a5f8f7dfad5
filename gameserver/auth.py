"""Player tokens: signed, expiring JWTs (HS256, PyJWT), and the server's signing secret.

A token's claims:

==========  ==========================================================================
``sub``     the player id (string). One seat per player id on the whole server.
``name``    the display name (at most 32 bytes of UTF-8)
``rooms``   rooms the player may join: names, private room ids, or ``"*"`` for any room
``games``   games the player may play, or ``"*"``
``admin``   optional; ``true`` allows the admin API (list rooms, kick, close a room)
``exp``     expiry (seconds since the epoch); ``iat`` issued-at; optional ``nbf`` not-before
==========  ==========================================================================

Every claim's type is checked (``exp``, ``iat`` and ``nbf`` must be JSON numbers, never
strings); a player id must be printable (no CR, LF or other control characters), so that it can
never forge a log line.

Tokens travel in the JOIN message (the first message, sent within the join deadline), because
a browser cannot set headers on a WebSocket. They are never logged.
"""

from __future__ import annotations

import enum
import math
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import jwt

ALGORITHM = "HS256"
SECRET_FILE = "secret.key"
SECRET_ENV = "GAMESERVER_SECRET"
MIN_SECRET_BYTES = 32
LEEWAY_SECONDS = 5


class AuthFailure(enum.Enum):
    """Why a token was refused; the value is the metrics label."""

    MISSING = "auth_missing"
    MALFORMED = "auth_malformed"
    EXPIRED = "auth_expired"
    BAD_SIGNATURE = "auth_bad_signature"
    BAD_CLAIMS = "auth_bad_claims"


class AuthError(Exception):
    def __init__(self, failure: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


class SecretError(Exception):
    """The signing secret is missing, unreadable or too short (an operator's problem)."""


@attrs.frozen
class Identity:
    """Who a verified token says the player is, and what it may do."""

    player_id: str
    name: str
    rooms: tuple[str, ...]
    games: tuple[str, ...]
    admin: bool
    expires: float

    def may_join(self, room: str) -> bool:
        return "*" in self.rooms or room in self.rooms

    def may_play(self, game: str) -> bool:
        return "*" in self.games or game in self.games


def mint_token(
    secret: bytes,
    player_id: str,
    *,
    name: str = "",
    rooms: Sequence[str] = ("*",),
    games: Sequence[str] = ("*",),
    ttl: float = 3600.0,
    admin: bool = False,
    now: float | None = None,
) -> str:
    """A signed token for ``player_id`` valid for ``ttl`` seconds."""
    if not player_id:
        raise ValueError("a token needs a player id")
    if not valid_player_id(player_id):
        raise ValueError("a player id is 1-128 printable characters (no control characters)")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": player_id,
        "name": name or player_id,
        "rooms": list(rooms),
        "games": list(games),
        "iat": issued,
        "exp": issued + int(ttl),
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class TokenVerifier:
    """Verifies tokens against the current secret and, during a rotation, previous ones."""

    def __init__(self, secrets_: Sequence[bytes], *, leeway: float = LEEWAY_SECONDS) -> None:
        if not secrets_:
            raise SecretError("at least one signing secret is needed")
        self._secrets = tuple(secrets_)
        self._leeway = leeway

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        """The identity a token proves, else AuthError. In order: the token is a JWT
        (MALFORMED), its signature verifies under one of the secrets (BAD_SIGNATURE), every
        claim has its type (BAD_CLAIMS), and it is within its time (EXPIRED; a ``nbf`` still
        in the future is BAD_CLAIMS). Times are checked here, not by PyJWT, which would
        accept a string ``exp``."""
        if not token:
            raise AuthError(AuthFailure.MISSING, "a token is required in JOIN")
        if token.count(".") != 2:
            raise AuthError(AuthFailure.MALFORMED, "the token is not a JWT")
        claims: dict[str, Any] | None = None
        for secret in self._secrets:
            try:
                claims = jwt.decode(
                    token,
                    secret,
                    algorithms=[ALGORITHM],
                    options={
                        "require": ["exp", "sub"],
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.DecodeError:
                raise AuthError(AuthFailure.MALFORMED, "the token cannot be decoded") from None
            except jwt.InvalidTokenError as exc:
                raise AuthError(AuthFailure.BAD_CLAIMS, f"the token is invalid: {exc}") from None
        if claims is None:
            raise AuthError(AuthFailure.BAD_SIGNATURE, "the token's signature does not verify")
        identity = _identity(claims)
        t = time.time() if now is None else now
        if identity.expires + self._leeway < t:
            raise AuthError(AuthFailure.EXPIRED, "the token has expired")
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and nbf - self._leeway > t:
            raise AuthError(AuthFailure.BAD_CLAIMS, "the token is not valid yet (nbf)")
        return identity


def _time_claim(claims: dict[str, Any], key: str) -> float | None:
    """A NumericDate claim (``exp``, ``nbf``, ``iat``): a finite JSON number, never a string
    or a boolean. None if absent."""
    if key not in claims:
        return None
    value = claims[key]
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise AuthError(AuthFailure.BAD_CLAIMS, f"claim {key!r} must be a number")


def valid_player_id(value: object) -> bool:
    """1-128 printable characters: no control characters (CR, LF, ...), no other
    non-printable ones (line or paragraph separators, format characters)."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()


def _identity(claims: dict[str, Any]) -> Identity:
    def str_list(key: str) -> tuple[str, ...]:
        value = claims.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AuthError(AuthFailure.BAD_CLAIMS, f"claim {key!r} must be a list of strings")
        return tuple(value)

    sub = claims.get("sub")
    name = claims.get("name", sub)
    if not valid_player_id(sub):
        raise AuthError(
            AuthFailure.BAD_CLAIMS,
            "claim 'sub' must be a player id: 1-128 printable characters",
        )
    assert isinstance(sub, str)
    if not isinstance(name, str):
        raise AuthError(AuthFailure.BAD_CLAIMS, "claim 'name' must be a string")
    admin = claims.get("admin", False)
    if not isinstance(admin, bool):
        raise AuthError(AuthFailure.BAD_CLAIMS, "claim 'admin' must be a boolean")
    expires = _time_claim(claims, "exp")
    assert expires is not None  # required
    _time_claim(claims, "iat")
    _time_claim(claims, "nbf")
    return Identity(
        player_id=sub,
        name=name.encode("utf-8")[:32].decode("utf-8", "ignore"),
        rooms=str_list("rooms"),
        games=str_list("games"),
        admin=admin,
        expires=expires,
    )


# ---------------------------------------------------------------- the signing secret


def _check(secret: bytes, where: str) -> bytes:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(
            f"the signing secret from {where} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def read_secret_file(path: Path) -> bytes:
    try:
        return _check(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise SecretError(f"cannot read the signing secret {path}: {exc.strerror}") from None


def load_secret(
    secret_file: Path | None, state_dir: Path, *, create: bool, env: dict[str, str] | None = None
) -> bytes:
    """The signing secret: ``secret_file``, else ``$GAMESERVER_SECRET``, else
    ``state_dir/secret.key`` (created on first run, owner-only, when ``create``)."""
    if secret_file is not None:
        return read_secret_file(secret_file)
    environ = os.environ if env is None else env
    if environ.get(SECRET_ENV):
        return _check(environ[SECRET_ENV].encode(), f"${SECRET_ENV}")
    path = state_dir / SECRET_FILE
    if not path.exists():
        if not create:
            raise SecretError(f"no signing secret: {path} does not exist (run the server once)")
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return read_secret_file(path)
