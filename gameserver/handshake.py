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
none of ``gamesync.v2``, ``gamesync.v1`` offered in   400     ``subprotocol``
``Sec-WebSocket-Protocol``
===================================================  ======  ====================

The refusal's value is the metrics label (``refused{reason=...}``); its body is a short text.
An accepted request gets the newest subprotocol it offers (:func:`shared.protocol.
select_subprotocol`: ``gamesync.v2`` if offered, else ``gamesync.v1``); the connection speaks
that version from then on.

A page's JavaScript cannot read an HTTP refusal: it sees close 1006 with no reason. So a
refusal a browser should understand (:data:`BROWSER_CLOSES`: a request with exactly one
``Origin`` refused for its Origin or its subprotocol) is answered differently: the server
completes the handshake and sends only a close frame with a code and a short reason, then
reads nothing more (docs/protocol.md, "Refusals a browser can read"). :func:`own_origin` is the
origin of the pages this server serves itself (the web demo), which is allowed without
``--allow-origin``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence

import attrs

from shared.protocol import SUPPORTED_SUBPROTOCOLS, CloseCode, select_subprotocol


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
    if select_subprotocol(tuple(proposed_subprotocols)) is None:
        return _refused(
            Refusal.SUBPROTOCOL,
            "unsupported WebSocket subprotocol; offer one of: "
            + ", ".join(SUPPORTED_SUBPROTOCOLS)
            + " (Sec-WebSocket-Protocol)",
        )
    return None


# ------------------------------------------------------------------ refusals a browser can read

#: the refusals a browser's page can read: the close frame (code, reason) it gets instead of
#: the HTTP error, for a request with exactly one ``Origin`` header
BROWSER_CLOSES: Mapping[Refusal, tuple[int, str]] = {
    Refusal.ORIGIN: (CloseCode.FORBIDDEN, "origin not allowed"),
    Refusal.SUBPROTOCOL: (
        CloseCode.PROTOCOL_ERROR,
        "unsupported subprotocol; this server speaks " + ", ".join(SUPPORTED_SUBPROTOCOLS),
    ),
}
#: the close frame a browser gets when the server is at ``--max-connections``
SERVER_FULL_CLOSE = (CloseCode.SERVER_FULL, "server full; try again in a moment")


def is_browser(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A request with exactly one ``Origin`` header: what every browser sends."""
    return len(_values(headers, b"origin")) == 1


def browser_close(
    refused: UpgradeRefused, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, str] | None:
    """The close frame to send instead of the HTTP refusal, or None to answer with HTTP."""
    if not is_browser(headers):
        return None
    return BROWSER_CLOSES.get(refused.kind)


def echo_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol a 101 that only carries a close frame selects: one of ours if offered
    (the newest), else the first one offered (a browser fails a 101 that selects none of
    those it offered, and would see 1006 instead of the close code), else none."""
    ours = select_subprotocol(tuple(offered))
    if ours is not None:
        return ours
    return offered[0] if offered else None


# ------------------------------------------------------------------ the server's own origin

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def own_origin(
    host_header: str | None, *, tls: bool, local_ip: str, local_port: int, bound_host: str
) -> str | None:
    """The origin (``https://127.0.0.1:8443``) of a page this server served, if the request's
    ``Host`` header names this server as the connection reached it, else None.

    The Host must name the port the connection came in on, and either the address it came in
    on (an IP literal), or ``localhost`` on a loopback address, or the host name the server
    was told to bind (``--host game.example``). A name that merely resolves to this machine is
    not enough: that is how DNS rebinding would pass for the server's own origin."""
    if host_header is None:
        return None
    match = _HOST.fullmatch(host_header)
    if match is None:
        return None
    scheme, default = ("https", 443) if tls else ("http", 80)
    name, port_text = match[1].lower(), match[2]
    port = int(port_text) if port_text else default
    if port != local_port:
        return None
    local = _ip(local_ip)
    ip = _ip(name) if name.startswith("[") or name[-1:].isdigit() else None
    if ip is not None:
        if ip != local:
            return None
        name = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    elif not (
        (name == "localhost" and local is not None and local.is_loopback)
        or (name == bound_host.lower() and bound_host not in _WILDCARDS and _ip(bound_host) is None)
    ):
        return None
    return f"{scheme}://{name}" + ("" if port == default else f":{port}")
