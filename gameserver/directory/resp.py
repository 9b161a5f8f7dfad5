"""RESP2, the Redis wire protocol, sans-I/O: commands to bytes, bytes to replies.

Only what the directory needs: arrays of bulk strings out; simple strings, errors, integers,
bulk strings and (nested) arrays in. Replies are bounded (``max_bulk``, ``max_items``,
``max_depth``) so that a broken or hostile peer cannot make the parser allocate without limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

import attrs


@attrs.frozen
class RespError:
    """An error reply (``-ERR ...``): ``kind`` is its first word (``NOSCRIPT``, ``ERR``, ...)."""

    kind: str
    message: str

    @classmethod
    def from_line(cls, line: bytes) -> RespError:
        text = line.decode("utf-8", "replace")
        kind, _, _ = text.partition(" ")
        return cls(kind, text)


Reply: TypeAlias = "bytes | int | list[Reply] | RespError | None"


class RespProtocolError(Exception):
    """The peer sent bytes that are not RESP2 (or past our bounds): drop the connection."""


def encode_command(*args: bytes | str | int | float) -> bytes:
    """One command as an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("bool is not a Redis argument")
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(float(arg)).encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


class _Incomplete(Exception):
    pass


class RespParser:
    """Feed bytes in; take whole replies out (``replies()``)."""

    def __init__(
        self, max_bulk: int = 16 * 1024 * 1024, max_items: int = 1_000_000, max_depth: int = 8
    ) -> None:
        self._buf = bytearray()
        self._max_bulk = max_bulk
        self._max_items = max_items
        self._max_depth = max_depth

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) > self._max_bulk + 1024 and b"\r\n" not in self._buf[:1024]:
            raise RespProtocolError("reply line too long")

    def replies(self) -> Iterator[Reply]:
        while True:
            try:
                reply, end = self._parse(0, 0)
            except _Incomplete:
                return
            del self._buf[:end]
            yield reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            if len(self._buf) - pos > 1024:
                raise RespProtocolError("reply line too long")
            raise _Incomplete
        return bytes(self._buf[pos:end]), end + 2

    def _int(self, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise RespProtocolError(f"not an integer: {raw[:32]!r}") from None

    def _parse(self, pos: int, depth: int) -> tuple[Reply, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        tag = self._buf[pos]
        line, pos = self._line(pos + 1)
        if tag == 0x2B:  # + simple string
            return line, pos
        if tag == 0x2D:  # - error
            return RespError.from_line(line), pos
        if tag == 0x3A:  # : integer
            return self._int(line), pos
        if tag == 0x24:  # $ bulk string
            size = self._int(line)
            if size == -1:
                return None, pos
            if not 0 <= size <= self._max_bulk:
                raise RespProtocolError(f"bulk string of {size} bytes")
            if len(self._buf) < pos + size + 2:
                raise _Incomplete
            if self._buf[pos + size : pos + size + 2] != b"\r\n":
                raise RespProtocolError("bulk string not terminated")
            return bytes(self._buf[pos : pos + size]), pos + size + 2
        if tag == 0x2A:  # * array
            count = self._int(line)
            if count == -1:
                return None, pos
            if not 0 <= count <= self._max_items or depth >= self._max_depth:
                raise RespProtocolError(f"array of {count} items at depth {depth}")
            items: list[Reply] = []
            for _ in range(count):
                item, pos = self._parse(pos, depth + 1)
                items.append(item)
            return items, pos
        raise RespProtocolError(f"unknown reply type {bytes([tag])!r}")
