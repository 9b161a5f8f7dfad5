"""The wire of the remote directory (pure: no trio, no I/O): JSON lines between a worker's
:class:`~gameserver.directory.remote.RemoteDirectory` and the supervisor's
:func:`~gameserver.directory.remote.serve_directory`.

One request per line, one response per line, in order, on each connection::

    {"id": 7, "op": "lookup", "args": {"room": "arena"}}
    {"id": 7, "ok": {"room": "arena", "node_id": "h/w0", "epoch": 3, "ttl": 4.2, ...}}
    {"id": 8, "error": "room_taken", "lease": {...}}

Times never cross the wire as clock values: each process's trio clock has its own random
offset, so a lease's or seat's ``expires`` travels as ``ttl`` (seconds remaining) and is rebuilt
on the receiver's clock (``expires = now + ttl``). Every field of every line is checked
(:class:`WireError` names the first bad one); nothing here trusts its input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from gameserver.directory.types import (
    DirectoryRefused,
    LeaseLost,
    LostReason,
    NodeRecord,
    Refused,
    Renewal,
    RoomLease,
    RoomTaken,
    Seat,
    SeatTaken,
)

#: the longest line either side accepts (a renewal of 256 rooms with all their seats fits)
MAX_LINE = 16 * 1024 * 1024
#: the longest string field (room names are at most 64 bytes, URLs 256)
MAX_TEXT = 1024
#: the most items in one list field (leases or seats of one renewal, nodes)
MAX_ITEMS = 100_000

#: what an error response says (``"error"``): the directory's refusals, or a broken request
ERR_ROOM_TAKEN = "room_taken"
ERR_SEAT_TAKEN = "seat_taken"
ERR_REFUSED = "refused"
ERR_BAD_REQUEST = "bad_request"  # the peer sent something this side cannot parse
ERR_INTERNAL = "internal"  # the directory raised something unexpected: our bug, logged there

Json = Any


class WireError(ValueError):
    """A line, or a field in it, is not what the protocol says (the peer's fault).
    ``call_id``: the id of the request it was in, when known."""

    call_id: int | None = None


# ------------------------------------------------------------------ fields (checked reads)
def field(obj: Json, key: str) -> Json:
    if not isinstance(obj, dict):
        raise WireError(f"expected an object holding {key!r}")
    if key not in obj:
        raise WireError(f"missing field {key!r}")
    return obj[key]


def text(obj: Json, key: str) -> str:
    value = field(obj, key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"field {key!r}: expected a string of at most {MAX_TEXT} characters")
    return value


def integer(obj: Json, key: str) -> int:
    value = field(obj, key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise WireError(f"field {key!r}: expected a non-negative integer")
    return value


def number(obj: Json, key: str) -> float:
    value = field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"field {key!r}: expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise WireError(f"field {key!r}: expected a finite number")
    return value


def flag(obj: Json, key: str) -> bool:
    value = field(obj, key)
    if not isinstance(value, bool):
        raise WireError(f"field {key!r}: expected true or false")
    return value


def items(obj: Json, key: str) -> list[Json]:
    value = field(obj, key)
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise WireError(f"field {key!r}: expected a list of at most {MAX_ITEMS} items")
    return value


def optional(obj: Json, key: str, decode: Callable[[Json, float], Any], now: float) -> Any:
    value = field(obj, key)
    return None if value is None else decode(value, now)


# ------------------------------------------------------------------ values
def encode_node(node: NodeRecord) -> Json:
    return {"node_id": node.node_id, "url": node.url, "load": float(node.load)}


def decode_node(obj: Json, now: float = 0.0) -> NodeRecord:
    return NodeRecord(text(obj, "node_id"), text(obj, "url"), number(obj, "load"))


def encode_lease(lease: RoomLease, now: float) -> Json:
    return {
        "room": lease.room,
        "node_id": lease.node_id,
        "epoch": lease.epoch,
        "ttl": lease.expires - now,
        "url": lease.url,
        "game": lease.game,
        "private": lease.private,
        "generation": lease.generation,
    }


def decode_lease(obj: Json, now: float) -> RoomLease:
    return RoomLease(
        text(obj, "room"),
        text(obj, "node_id"),
        integer(obj, "epoch"),
        now + number(obj, "ttl"),
        url=text(obj, "url"),
        game=text(obj, "game"),
        private=flag(obj, "private"),
        generation=text(obj, "generation"),
    )


def encode_seat(seat: Seat, now: float) -> Json:
    return {
        "player_id": seat.player_id,
        "room": seat.room,
        "node_id": seat.node_id,
        "epoch": seat.epoch,
        "ttl": seat.expires - now,
    }


def decode_seat(obj: Json, now: float) -> Seat:
    return Seat(
        text(obj, "player_id"),
        text(obj, "room"),
        text(obj, "node_id"),
        integer(obj, "epoch"),
        now + number(obj, "ttl"),
    )


def encode_lost(lost: LeaseLost, now: float) -> Json:
    current = None if lost.current is None else encode_lease(lost.current, now)
    return {"lease": encode_lease(lost.lease, now), "reason": lost.reason.value, "current": current}


def decode_lost(obj: Json, now: float) -> LeaseLost:
    reason = text(obj, "reason")
    try:
        why = LostReason(reason)
    except ValueError:
        raise WireError(f"field 'reason': unknown reason {reason!r}") from None
    return LeaseLost(
        decode_lease(field(obj, "lease"), now), why, optional(obj, "current", decode_lease, now)
    )


def encode_renewal(renewal: Renewal, now: float) -> Json:
    return {
        "kept": [encode_lease(x, now) for x in renewal.kept],
        "lost": [encode_lost(x, now) for x in renewal.lost],
        "seats_kept": [encode_seat(x, now) for x in renewal.seats_kept],
        "seats_lost": [encode_seat(x, now) for x in renewal.seats_lost],
    }


def decode_renewal(obj: Json, now: float) -> Renewal:
    return Renewal(
        tuple(decode_lease(x, now) for x in items(obj, "kept")),
        tuple(decode_lost(x, now) for x in items(obj, "lost")),
        tuple(decode_seat(x, now) for x in items(obj, "seats_kept")),
        tuple(decode_seat(x, now) for x in items(obj, "seats_lost")),
    )


# ------------------------------------------------------------------ lines
def _reject_constant(name: str) -> None:
    raise WireError(f"{name} is not a number here")


def parse_line(line: bytes) -> dict[str, Json]:
    """One line (without its newline) as a JSON object; WireError if it is not one."""
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge ints, deep nesting
        raise WireError(f"not a JSON line: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise WireError("a line must be a JSON object")
    return obj


def dump_line(obj: Mapping[str, Json]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_request(call_id: int, op: str, args: Mapping[str, Json]) -> bytes:
    return dump_line({"id": call_id, "op": op, "args": dict(args)})


def decode_request(line: bytes) -> tuple[int, str, dict[str, Json]]:
    """(id, op, args) of a request line. WireError if it is malformed (its ``call_id`` is
    then the request's id, if that much could be read, for the error reply)."""
    obj = parse_line(line)
    call_id = integer(obj, "id")
    try:
        op = text(obj, "op")
        args = field(obj, "args")
        if not isinstance(args, dict):
            raise WireError("field 'args': expected an object")
    except WireError as exc:
        exc.call_id = call_id
        raise
    return call_id, op, args


def ok_response(call_id: int, result: Json) -> bytes:
    return dump_line({"id": call_id, "ok": result})


def error_response(call_id: int | None, exc: BaseException | str, now: float = 0.0) -> bytes:
    """The error line for a refusal of the directory, or for a bad request (``exc`` a
    WireError or a message) or an internal failure (any other exception)."""
    body: dict[str, Json] = {"id": call_id}
    if isinstance(exc, RoomTaken):
        body |= {"error": ERR_ROOM_TAKEN, "lease": encode_lease(exc.lease, now)}
    elif isinstance(exc, SeatTaken):
        body |= {"error": ERR_SEAT_TAKEN, "seat": encode_seat(exc.seat, now)}
    elif isinstance(exc, DirectoryRefused):
        body |= {"error": ERR_REFUSED, "kind": exc.kind.value}
    elif isinstance(exc, WireError | str):
        body |= {"error": ERR_BAD_REQUEST, "message": str(exc)[:MAX_TEXT]}
    else:
        body |= {"error": ERR_INTERNAL}
    return dump_line(body)


_REFUSALS = {r.value: r for r in Refused}


class RemoteFailure(Exception):
    """The far side answered with ``bad_request`` or ``internal``: a bug on one side, or two
    versions that do not match (the client turns it into DirectoryUnavailable)."""


def decode_response(line: bytes, call_id: int, now: float) -> Json:
    """The result of a response line to request ``call_id``; the directory's own error if it
    is a refusal (RoomTaken, SeatTaken, DirectoryRefused), RemoteFailure for bad_request or
    internal; WireError if the line is malformed or answers another request."""
    obj = parse_line(line)
    if obj.get("id") != call_id or isinstance(obj.get("id"), bool):
        raise WireError(f"a response to another request (expected id {call_id})")
    if "ok" in obj:
        return obj["ok"]
    error = text(obj, "error")
    if error == ERR_ROOM_TAKEN:
        raise RoomTaken(decode_lease(field(obj, "lease"), now))
    if error == ERR_SEAT_TAKEN:
        raise SeatTaken(decode_seat(field(obj, "seat"), now))
    if error == ERR_REFUSED:
        kind = text(obj, "kind")
        if kind not in _REFUSALS:
            raise WireError(f"field 'kind': unknown refusal {kind!r}")
        raise DirectoryRefused(_REFUSALS[kind])
    if error == ERR_BAD_REQUEST:
        message = obj.get("message")
        raise RemoteFailure(f"the directory refused the request: {message!r:.200}")
    if error == ERR_INTERNAL:
        raise RemoteFailure("the directory failed on this request (see its log)")
    raise WireError(f"field 'error': unknown error {error!r}")


# ------------------------------------------------------------------ framing
class LineBuffer:
    """Bytes in, complete lines out (without their newline); at most ``max_line`` bytes per
    line. ``feed(data)``, then ``lines()``; :attr:`overflow` is set once a line grew past the
    bound (the connection cannot be resynchronised: close it)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes already known to hold no newline
        self.overflow = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | None:
        """The next complete line, or None if more bytes are needed (or on overflow)."""
        if self.overflow:
            return None
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            if self._scanned > self.max_line:
                self.overflow = True
            return None
        if end > self.max_line:
            self.overflow = True
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        return line

    @property
    def pending(self) -> int:
        """Bytes received and not yet returned as a line."""
        return len(self._buf)
