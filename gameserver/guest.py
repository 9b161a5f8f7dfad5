"""Guest tokens for the web demo: a development-only way for a page to get a token. No trio.

``POST /guest`` on the WSS port (routed by ``gameserver.web``), only with ``--guest-tokens``
(``make run`` passes it; off by default, and then the path is 404). A guest token is a player
token like any other (``gameserver.auth.mint_token``) with:

* ``sub``: ``guest-`` and 16 random hex digits (a new player id every time);
* ``name``: the name asked for, sanitized (:func:`sanitize_name`): printable characters only,
  white space collapsed, at most 32 bytes of UTF-8; ``guest`` when empty;
* ``games``: the game the request names (one the server runs), else the server's default
  game; ``rooms``: any (``*``), so any public room of
  that game, and private rooms (created and joined by id) too;
* never ``admin``; valid :data:`GUEST_TTL` seconds (10 minutes).

Requests are limited per client IP address by a token bucket (a burst of
:data:`GUEST_BURST`, then :data:`GUEST_RATE` a second; 429 beyond). A real deployment mints
tokens in its own backend instead (``gameserver.auth.mint_token`` with the shared secret);
see the README, "Tokens".
"""

from __future__ import annotations

import secrets

import attrs

from gameserver.auth import mint_token
from gameserver.limits import TokenBucket
from shared.protocol import MAX_PLAYER_NAME_BYTES

GUEST_TTL = 600.0
GUEST_BURST = 10.0
GUEST_RATE = 0.2  # tokens per second per IP address, after the burst
GUEST_PREFIX = "guest-"
DEFAULT_NAME = "guest"
#: client addresses remembered at most; past it, addresses whose buckets have refilled are
#: forgotten, and if all are still in use, new addresses are refused (429) until some refill
MAX_ADDRESSES = 10_000


def sanitize_name(value: str) -> str:
    """A display name from what a page asked for: printable characters only (no control,
    format, separator or bidi-override characters), runs of white space as one space, cut to
    32 bytes of UTF-8 on a character boundary; ``guest`` if nothing is left."""
    kept = "".join(ch if ch.isprintable() else " " for ch in value)
    text = " ".join(kept.split())
    raw = text.encode("utf-8")[:MAX_PLAYER_NAME_BYTES]
    return raw.decode("utf-8", "ignore").strip() or DEFAULT_NAME


@attrs.frozen
class GuestToken:
    token: str
    player: str
    name: str
    game: str
    expires: int

    def to_json(self) -> dict[str, object]:
        return {
            "token": self.token,
            "player": self.player,
            "name": self.name,
            "game": self.game,
            "expires": self.expires,
        }


class GuestIssuer:
    """Mints guest tokens under ``secret``, at most a burst of ``burst`` then ``rate`` a
    second per client address."""

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: float = GUEST_TTL,
        rate: float = GUEST_RATE,
        burst: float = GUEST_BURST,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._secret = secret
        self.ttl = ttl
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, TokenBucket] = {}
        self.issued = 0

    def allow(self, address: str, now: float) -> bool:
        """Take one of ``address``'s tokens (``now``: a monotonic clock); False: none left."""
        buckets = self._buckets
        bucket = buckets.get(address)
        if bucket is None:
            if len(buckets) >= self.max_addresses:
                for key in [k for k, b in buckets.items() if b.full(now)]:
                    del buckets[key]
                if len(buckets) >= self.max_addresses:
                    return False
            bucket = buckets[address] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def retry_after(self) -> int:
        """Seconds until a refused address has a token again (at most)."""
        return max(1, round(1.0 / self.rate))

    def mint(self, name: str, game: str, wall: float) -> GuestToken:
        """A guest token for ``game`` (``wall``: seconds since the epoch)."""
        player = GUEST_PREFIX + secrets.token_hex(8)
        shown = sanitize_name(name)
        token = mint_token(
            self._secret, player, name=shown, rooms=["*"], games=[game], ttl=self.ttl, now=wall
        )
        self.issued += 1
        return GuestToken(token, player, shown, game, int(wall) + int(self.ttl))
