"""Validation of a WebSocket upgrade request (RFC 6455 section 4.2.1), as a pure function.

trio-websocket (over wsproto and h11) parses the request and refuses what it cannot parse or
what lacks the basic upgrade headers. It accepts, though, requests that RFC 6455 says a server
must refuse, and it reads only the last of repeated headers. :func:`check_upgrade` is the
server's own look at the request before it answers 101. In order:

===================================================  ======  ====================
refused                                              status  ``Refusal`` (label)
===================================================  ======  ====================
request line not ``HTTP/1.1`` (or a later 1.x)        400     ``http_version``
a body (``Content-Length`` other than 0, or           400     ``bad_upgrade``
``Transfer-Encoding``); a repeated
``Sec-WebSocket-Version``
``Sec-WebSocket-Key`` missing, repeated, or not       400     ``bad_key``
the base64 of 16 bytes
more than one ``Origin``, or one not allowed          403     ``origin``
``gamesync.v1`` not offered in                        400     ``subprotocol``
``Sec-WebSocket-Protocol``
===================================================  ======  ====================

The refusal's value is the metrics label (``refused{reason=...}``); its body is a short text.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Collection, Sequence

import attrs

from shared.protocol import SUBPROTOCOL, SUPPORTED_SUBPROTOCOLS


class Refusal(enum.Enum):
    """Why an upgrade request was refused; the value is the metrics label."""

    HTTP_VERSION = "http_version"
    BAD_UPGRADE = "bad_upgrade"
    BAD_KEY = "bad_key"
    ORIGIN = "origin"
    SUBPROTOCOL = "subprotocol"


@attrs.frozen
class UpgradeRefused:
    """The HTTP answer to a refused upgrade request."""

    kind: Refusal
    status: int
    body: str


def _refused(kind: Refusal, body: str) -> UpgradeRefused:
    return UpgradeRefused(kind, 403 if kind is Refusal.ORIGIN else 400, body + "\n")


def http_version(head: bytes) -> tuple[int, int] | None:
    """The (major, minor) HTTP version of a request head's request line, or None."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    _, _, version = line.rpartition(b" ")
    if not version.startswith(b"HTTP/"):
        return None
    major, dot, minor = version[5:].partition(b".")
    if not (dot and major.isdigit() and minor.isdigit() and len(major) == len(minor) == 1):
        return None
    return int(major), int(minor)


def valid_key(value: bytes) -> bool:
    """True for a ``Sec-WebSocket-Key`` that is the (canonical) base64 of 16 bytes."""
    if len(value) != 24:
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 16 and base64.b64encode(raw) == value


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value.strip() for key, value in headers if key.lower() == name]


def check_upgrade(
    head: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    proposed_subprotocols: Sequence[str],
    allowed_origins: Collection[str],
) -> UpgradeRefused | None:
    """None if the request may be answered with 101, else how to refuse it.

    ``head`` is the request head as received (only its request line is read here);
    ``headers`` are the headers as parsed (h11 lower-cases names and keeps repeats);
    ``proposed_subprotocols`` the subprotocols the client offered; ``allowed_origins`` the
    allowed browser Origins (``"*"`` = any)."""
    version = http_version(head)
    if version is None or version[0] != 1 or version[1] < 1:
        return _refused(Refusal.HTTP_VERSION, "a WebSocket upgrade needs HTTP/1.1")
    if _values(headers, b"transfer-encoding") or any(
        v != b"0" for v in _values(headers, b"content-length")
    ):
        return _refused(Refusal.BAD_UPGRADE, "an upgrade request has no body")
    if len(_values(headers, b"sec-websocket-version")) != 1:
        return _refused(Refusal.BAD_UPGRADE, "exactly one Sec-WebSocket-Version is required")
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1 or not valid_key(keys[0]):
        return _refused(
            Refusal.BAD_KEY, "exactly one Sec-WebSocket-Key, the base64 of 16 bytes, is required"
        )
    origins = _values(headers, b"origin")
    if len(origins) > 1:
        return _refused(Refusal.ORIGIN, "more than one Origin header")
    if origins and "*" not in allowed_origins:
        if origins[0].decode("latin-1") not in allowed_origins:
            return _refused(Refusal.ORIGIN, "this Origin is not allowed to connect")
    if SUBPROTOCOL not in proposed_subprotocols:
        return _refused(
            Refusal.SUBPROTOCOL,
            "unsupported WebSocket subprotocol; offer one of: "
            + ", ".join(SUPPORTED_SUBPROTOCOLS)
            + " (Sec-WebSocket-Protocol)",
        )
    return None
