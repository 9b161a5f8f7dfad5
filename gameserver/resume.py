"""Resume tokens: what a client shows to get its held seat back. Pure: no I/O, no trio.

A token is ASCII base64url without padding of::

    epoch (8 bytes) | varint number | varint generation | mac (16 bytes)

    mac = HMAC-SHA256(key, b"gamesync-resume\\0" + room (UTF-8) + b"\\0"
                           + epoch + varint number + varint generation)[:16]

``epoch`` is the room instance's random epoch (``Room.epoch``: a room that closed and was
made again under the same name has another one), ``number`` the player number, and
``generation`` the seat's counter (``Room.rotate``), bumped each time a token is minted for
the seat, so only the newest token of a seat is good. The key is 32 bytes, never sent
anywhere: ``gameserver serve`` derives it from the token secret (so the nodes of a cluster
share it), an embedder may draw a random one per server (:meth:`ResumeKey.generate`). The varints are canonical (shortest) LEB128,
as ``shared.wire.varint`` writes them, and the base64 text is canonical too, so exactly one
string is the token of a given seat and generation.

:meth:`ResumeKey.parse` only checks that the token is well formed and was minted by this key
for this room; whether the seat is still held and the generation current is the room's
business (:meth:`gameserver.room.Room.resume_check`). Every failure is a
:class:`ResumeTokenError` (blame: the peer), whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets

import attrs

from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.protocol import CloseCode

KEY_BYTES = 32
EPOCH_BYTES = 8
MAC_BYTES = 16
#: the longest token the protocol carries (RESUME's token field); ours are at most 59 chars
MAX_TOKEN_CHARS = 128
_DOMAIN = b"gamesync-resume\0"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class ResumeRefusal(enum.Enum):
    """Why a RESUME is refused. ``close_code`` and ``message`` are what the peer gets."""

    #: not a token at all: bad characters, bad length, bad structure
    MALFORMED = "malformed"
    #: well formed, but not minted by this server's key for this room
    BAD_MAC = "bad_mac"
    #: genuine, but the seat is no longer held (the hold expired, the player left, the room
    #: closed or was made again under the same name)
    SEAT_LOST = "seat_lost"
    #: genuine, but a newer token of the seat exists (replayed, or a racing resume won)
    TOKEN_USED = "token_used"

    @property
    def close_code(self) -> int:
        return CloseCode.SEAT_LOST if self is ResumeRefusal.SEAT_LOST else CloseCode.UNAUTHORIZED

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    ResumeRefusal.MALFORMED: "unauthorized: bad resume token",
    ResumeRefusal.BAD_MAC: "unauthorized: bad resume token",
    ResumeRefusal.SEAT_LOST: "seat lost: the seat is no longer held",
    ResumeRefusal.TOKEN_USED: "unauthorized: resume token already used",
}


class ResumeTokenError(RemoteProtocolError):
    """A resume token that is malformed or forged. Blame: the peer. ``reason`` is
    :attr:`ResumeRefusal.MALFORMED` or :attr:`ResumeRefusal.BAD_MAC`; the message is the same
    for both ("unauthorized: bad resume token"), so a peer learns nothing from it."""

    def __init__(self, reason: ResumeRefusal) -> None:
        super().__init__(reason.message, reason.close_code)
        self.reason = reason


@attrs.frozen
class ResumeClaims:
    """What a genuine token says: the room instance, the seat and its generation."""

    epoch: bytes
    number: int
    generation: int


def _check_key(_: object, __: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_BYTES:
        raise ValueError(f"a resume key is {KEY_BYTES} bytes")


@attrs.frozen
class ResumeKey:
    """The server's secret for resume tokens (``repr`` never shows it). Inject one to make
    tokens that survive a restart of the object, or use :meth:`generate`."""

    key: bytes = attrs.field(repr=False, validator=_check_key)

    @classmethod
    def generate(cls) -> ResumeKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def _mac(self, room: bytes, payload: bytes) -> bytes:
        msg = b"".join((_DOMAIN, room, b"\0", payload))
        return hmac.new(self.key, msg, hashlib.sha256).digest()[:MAC_BYTES]

    def mint(self, room: str, epoch: bytes, number: int, generation: int) -> str:
        """The token of seat ``number`` at ``generation`` in the room instance ``epoch``."""
        if len(epoch) != EPOCH_BYTES:
            raise LocalProtocolError(f"a room epoch is {EPOCH_BYTES} bytes, got {len(epoch)}")
        payload = epoch + wire.varint(number) + wire.varint(generation)
        raw = payload + self._mac(room.encode(), payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def parse(self, room: str, token: str) -> ResumeClaims:
        """Check ``token`` for ``room`` and return what it claims. Raises
        :class:`ResumeTokenError` (and nothing else) for any token this key did not mint for
        this room; the MAC is compared in constant time."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise ResumeTokenError(ResumeRefusal.MALFORMED)
        if not _B64URL.fullmatch(token) or len(token) % 4 == 1:
            raise ResumeTokenError(ResumeRefusal.MALFORMED)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            room_bytes = room.encode()
        except (binascii.Error, ValueError, UnicodeError):
            raise ResumeTokenError(ResumeRefusal.MALFORMED) from None
        # canonical text only: unused low bits of the last character must be zero
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            raise ResumeTokenError(ResumeRefusal.MALFORMED)
        if len(raw) < EPOCH_BYTES + 2 + MAC_BYTES:
            raise ResumeTokenError(ResumeRefusal.MALFORMED)
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        reader = wire.Reader(payload, EPOCH_BYTES)
        try:
            number = reader.varint()
            generation = reader.varint()
            reader.expect_end()
        except RemoteProtocolError:
            raise ResumeTokenError(ResumeRefusal.MALFORMED) from None
        epoch = payload[:EPOCH_BYTES]
        if epoch + wire.varint(number) + wire.varint(generation) != payload:
            raise ResumeTokenError(ResumeRefusal.MALFORMED)  # a non-shortest varint
        if not hmac.compare_digest(mac, self._mac(room_bytes, payload)):
            raise ResumeTokenError(ResumeRefusal.BAD_MAC)
        return ResumeClaims(epoch, number, generation)
