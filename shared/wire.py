"""Primitive encoders and a bounds-checked reader for the binary codec.

Integers are little-endian. ``varint`` is unsigned LEB128 (7 bits per byte, low group first,
high bit set on every byte but the last), at most 10 bytes. ``svarint`` is zigzag then varint.
Strings and byte strings are a varint length followed by that many bytes (UTF-8 for strings).
"""

from __future__ import annotations

import struct
from typing import Any

from shared.errors import LocalProtocolError, RemoteProtocolError

_F64 = struct.Struct("<d")
MAX_VARINT_BYTES = 10


def varint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64 as LEB128."""
    if value < 0x80:
        if value < 0:
            raise LocalProtocolError(f"varint must be non-negative, got {value}")
        return bytes((value,))
    if value >= 1 << 64:
        raise LocalProtocolError(f"varint too large: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    return (value << 1) if value >= 0 else ((-value) << 1) - 1


def unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def svarint(value: int) -> bytes:
    return varint(zigzag(value))


def string(value: str, max_bytes: int) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > max_bytes:
        raise LocalProtocolError(f"string of {len(raw)} bytes exceeds {max_bytes}")
    return varint(len(raw)) + raw


def blob(value: bytes, max_bytes: int) -> bytes:
    if len(value) > max_bytes:
        raise LocalProtocolError(f"byte string of {len(value)} bytes exceeds {max_bytes}")
    return varint(len(value)) + value


def f64(value: float) -> bytes:
    return _F64.pack(value)


# How :func:`field` writes a field's code, by the field's kind (``FieldList.plan`` in
# shared.schema names each field's op and its argument): the same bytes as the field type's
# own ``encode``, without a Python-level call per field where this module is compiled.
#: an unsigned little-endian integer of ``arg`` bytes (U8, U16, U32, FLOAT)
FIELD_UINT = 0
#: a signed (two's complement) little-endian integer of ``arg`` bytes (I8, I16, I32)
FIELD_SINT = 1
#: a varint (VARUINT)
FIELD_VARUINT = 2
#: a zigzag varint (VARINT)
FIELD_VARINT = 3
#: one byte, 1 or 0 (BOOL)
FIELD_BOOL = 4
#: a varint length and UTF-8 bytes, at most ``arg`` of them (STRING)
FIELD_STRING = 5


def field(op: int, arg: int, code: Any) -> bytes:
    """One field's code as its type encodes it (``op`` and ``arg`` from ``FieldList.plan``).
    Raises ValueError for an op it does not know."""
    if op == FIELD_UINT:
        return int(code).to_bytes(arg, "little")
    if op == FIELD_VARUINT:
        n: int = code
        return varint(n)
    if op == FIELD_STRING:
        text: str = code
        return string(text, arg)
    if op == FIELD_SINT:
        return int(code).to_bytes(arg, "little", signed=True)
    if op == FIELD_VARINT:
        m: int = code
        return svarint(m)
    if op == FIELD_BOOL:
        return b"\x01" if code else b"\x00"
    raise ValueError(f"unknown field op {op}")


class Reader:
    """Reads primitives from a message; every overrun raises RemoteProtocolError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            raise RemoteProtocolError(f"{len(self.data) - self.pos} trailing bytes after message")

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise RemoteProtocolError("message truncated")
        self.pos = pos + 1
        return self.data[pos]

    def fixed(self, width: int) -> int:
        pos = self.pos
        end = pos + width
        if end > len(self.data):
            raise RemoteProtocolError("message truncated")
        self.pos = end
        return int.from_bytes(self.data[pos:end], "little")

    def varint(self) -> int:
        data = self.data
        pos = self.pos
        result = 0
        shift = 0
        for _ in range(MAX_VARINT_BYTES):
            if pos >= len(data):
                raise RemoteProtocolError("message truncated inside a varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                if result >= 1 << 64:
                    raise RemoteProtocolError("varint exceeds 64 bits")
                return result
            shift += 7
        raise RemoteProtocolError("varint longer than 10 bytes")

    def svarint(self) -> int:
        return unzigzag(self.varint())

    def raw(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.data):
            raise RemoteProtocolError("message truncated")
        self.pos = end
        return bytes(self.data[pos:end])

    def blob(self, max_bytes: int) -> bytes:
        n = self.varint()
        if n > max_bytes:
            raise RemoteProtocolError(f"byte string of {n} bytes exceeds limit {max_bytes}")
        return self.raw(n)

    def string(self, max_bytes: int) -> str:
        raw = self.blob(max_bytes)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("string is not valid UTF-8") from None

    def f64(self) -> float:
        value: float = _F64.unpack(self.raw(8))[0]
        return value
