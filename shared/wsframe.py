"""Sans-I/O WebSocket framing (RFC 6455 section 5) for the hot paths of server and bots.

trio-websocket (over wsproto) does the opening handshake; after it, the server and the lean load
bots frame and parse messages with this module: one broadcast frame is built once per tick, and
incoming frames are parsed without a task or queue per message. No extensions are negotiated,
so RSV bits must be zero.

``FrameReader`` takes bytes with ``feed()`` and returns complete messages from ``next()`` as
``(opcode, payload)``: a data message reassembled from its fragments, or a control frame. Every
violation raises :class:`FrameError` carrying the close code to use (a length encoded in more
bytes than it needs is one: 1002). A frame's declared length is checked against
``max_message_size`` as soon as its header arrives, so memory stays bounded.

``client_request`` and ``check_response`` are the client's side of the opening handshake.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from shared.errors import RemoteProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPS = (OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: fragments one message may have; more (e.g. a flood of empty continuation frames, which add
#: nothing to the message's size) is refused with 1009 like an oversized message
MAX_FRAGMENTS = 64


class FrameError(RemoteProtocolError):
    """The peer broke the WebSocket framing rules."""


def frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame. Servers send unmasked (``mask=None``); clients pass a 4-byte key."""
    n = len(payload)
    head = bytearray((0x80 | opcode,))
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mbit | 127)
        head += n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    head += mask
    return bytes(head) + unmask(payload, mask)


def binary_frame(payload: bytes) -> bytes:
    """An unmasked final binary frame: what the server sends."""
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 1 << 16:
        return b"\x82\x7e" + n.to_bytes(2, "big") + payload
    return b"\x82\x7f" + n.to_bytes(8, "big") + payload


def close_payload(code: int, reason: str = "") -> bytes:
    raw = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + raw


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a CLOSE frame; 1005 when it carries no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000:
        raise FrameError(f"invalid close code {code}", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("close reason is not valid UTF-8", 1007) from None
    return code, reason


def unmask(data: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (masking and unmasking are the same)."""
    n = len(data)
    if not n:
        return b""
    k = int.from_bytes((bytes(key) * ((n + 3) >> 2))[:n], "little")
    return (int.from_bytes(data, "little") ^ k).to_bytes(n, "little")


class FrameReader:
    """Parses frames from one peer. Servers use ``require_mask=True``, clients ``False``."""

    def __init__(self, *, max_message_size: int, require_mask: bool) -> None:
        self.max_message_size = max_message_size
        self.require_mask = require_mask
        self._buf = bytearray()
        self._pos = 0
        self._frag_op = 0  # opcode of the fragmented message being assembled, 0 if none
        self._frags: list[bytes] = []
        self._frag_size = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos:  # drop what has been parsed, so only a partial frame is ever kept
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> tuple[int, bytes] | None:
        """The next complete message or control frame, or None until more bytes arrive."""
        buf = self._buf
        pos = self._pos
        # the common case first: a whole final, masked binary frame of 1-125 bytes, no
        # fragmented message in progress (b0 0x82: FIN, no RSV bits, BINARY; b1 0x81-0xfd:
        # MASK, a 7-bit length); anything else takes the general path below
        if (
            len(buf) - pos >= 7
            and buf[pos] == 0x82
            and 0x80 < buf[pos + 1] < 0xFE
            and self.require_mask
            and not self._frag_op
        ):
            length = buf[pos + 1] & 0x7F
            end = pos + 6 + length
            if end <= len(buf) and length <= self.max_message_size:
                self._pos = end
                return OP_BINARY, unmask(buf[pos + 6 : end], buf[pos + 2 : pos + 6])
        while True:
            buf = self._buf
            pos = self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)", 1002)
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if avail < 4:
                    return None
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                if length < 126:
                    raise FrameError("frame length not in the fewest bytes (RFC 6455 5.2)", 1002)
                head = 4
            elif length == 127:
                if avail < 10:
                    return None
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise FrameError("frame length has its top bit set", 1002)
                if length < 1 << 16:
                    raise FrameError("frame length not in the fewest bytes (RFC 6455 5.2)", 1002)
                head = 10
            masked = b1 & 0x80
            if masked:
                if not self.require_mask:
                    raise FrameError("server frames must not be masked", 1002)
                head += 4
            elif self.require_mask:
                raise FrameError("client frames must be masked", 1002)
            fin = b0 & 0x80
            if opcode >= 0x8:
                if opcode not in _CONTROL_OPS:
                    raise FrameError(f"unknown control opcode {opcode}", 1002)
                if not fin or length > 125:
                    raise FrameError("control frames must be final and at most 125 bytes", 1002)
            elif opcode == OP_CONTINUATION:
                if not self._frag_op:
                    raise FrameError("continuation frame outside a fragmented message", 1002)
            elif opcode in _DATA_OPS:
                if self._frag_op:
                    raise FrameError("new message inside a fragmented message", 1002)
            else:
                raise FrameError(f"unknown data opcode {opcode}", 1002)
            if opcode < 0x8 and self._frag_size + length > self.max_message_size:
                raise FrameError(
                    f"message exceeds the maximum of {self.max_message_size} bytes", 1009
                )
            end = pos + head + length
            if len(buf) < end:
                return None
            if masked:
                payload = unmask(buf[pos + head : end], buf[pos + head - 4 : pos + head])
            else:
                payload = bytes(buf[pos + head : end])
            self._pos = end
            if opcode >= 0x8:
                return opcode, payload
            if fin and not self._frag_op:
                return opcode, payload
            if not self._frag_op:
                self._frag_op = opcode
            if len(self._frags) >= MAX_FRAGMENTS:
                raise FrameError(f"message in more than {MAX_FRAGMENTS} fragments", 1009)
            self._frags.append(payload)
            self._frag_size += length
            if fin:
                op = self._frag_op
                message = b"".join(self._frags)
                self._frag_op = 0
                self._frags = []
                self._frag_size = 0
                return op, message


# ---------------------------------------------------------------- client opening handshake


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WS_GUID).digest()).decode("ascii")


def client_request(host: str, path: str, key: str, subprotocols: list[str]) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def check_response(head: bytes, key: str, subprotocols: Sequence[str] = ()) -> str | None:
    """Validate a server's 101 response head (up to the blank line), as RFC 6455 section 4.1
    asks of a client; returns the subprotocol the server chose.

    The status must be 101, ``Upgrade`` must be ``websocket`` and ``Connection`` must name
    ``Upgrade`` (both case-insensitively), ``Sec-WebSocket-Accept`` must answer ``key``, no
    extension may be named (none was offered), and the subprotocol must be one of
    ``subprotocols``: when any were offered, the server must choose one of them."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise FrameError(f"handshake refused: {lines[0]!r}", 1002)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())

    def one(name: str) -> str | None:
        values = headers.get(name, [])
        if len(values) > 1:
            raise FrameError(f"more than one {name} header in the 101 response", 1002)
        return values[0] if values else None

    if (one("upgrade") or "").lower() != "websocket":
        raise FrameError("the 101 response lacks 'Upgrade: websocket'", 1002)
    tokens = [t.strip().lower() for v in headers.get("connection", []) for t in v.split(",")]
    if "upgrade" not in tokens:
        raise FrameError("the 101 response lacks 'Connection: Upgrade'", 1002)
    if one("sec-websocket-accept") != accept_value(key):
        raise FrameError("bad Sec-WebSocket-Accept", 1002)
    if headers.get("sec-websocket-extensions"):
        raise FrameError("the server named an extension that was not offered", 1002)
    chosen = one("sec-websocket-protocol")
    if subprotocols and chosen not in subprotocols:
        raise FrameError(f"the server chose the subprotocol {chosen!r}, not one offered", 1002)
    if not subprotocols and chosen is not None:
        raise FrameError(f"the server chose the subprotocol {chosen!r}; none was offered", 1002)
    return chosen
