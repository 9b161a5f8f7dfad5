"""The activity feed: a bounded ring buffer of recent joins, leaves, disconnects, refusals and
room creations/disposals, for the dashboard.

Plain Python, no trio. One :class:`ActivityLog` belongs to a server (its room directory holds
it: ``server.rooms.activity``); the server and its rooms call :meth:`ActivityLog.record` with one
line at each event. Memory is bounded by ``capacity`` entries whose strings are cut to
:data:`MAX_TEXT` characters; a burst of identical refusals (a flood) coalesces into one entry
with a count, so it cannot push every join out of the feed.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

import attrs

__all__ = ["MAX_TEXT", "Activity", "ActivityKind", "ActivityLog"]

#: room names, player ids and reasons are cut to this many characters
MAX_TEXT = 64


class ActivityKind(enum.Enum):
    JOIN = "join"
    RESUME = "resume"
    #: the player left on purpose (LEAVE, or a close frame with 1000)
    LEAVE = "leave"
    #: any other end of a session: lost, idle, too slow, kicked, bad input ... (with its code)
    DISCONNECT = "disconnect"
    REFUSED = "refused"
    ROOM_CREATED = "room_created"
    ROOM_DISPOSED = "room_disposed"


@attrs.frozen
class Activity:
    """One entry. ``at`` is wall-clock seconds (Unix time) of its latest occurrence."""

    seq: int
    at: float
    kind: ActivityKind
    room: str = ""
    player: str = ""
    code: int | None = None
    reason: str = ""
    #: occurrences coalesced into this entry (identical refusals in a row)
    count: int = 1

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": round(self.at, 3),
            "kind": self.kind.value,
            "room": self.room,
            "player": self.player,
            "code": self.code,
            "reason": self.reason,
            "count": self.count,
        }


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class ActivityLog:
    """The last ``capacity`` events, oldest first. Never awaits; O(1) per record."""

    def __init__(self, capacity: int = 200, *, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._entries: deque[Activity] = deque(maxlen=capacity)
        self._clock = clock
        self._seq = 0

    @property
    def capacity(self) -> int:
        maxlen = self._entries.maxlen
        assert maxlen is not None
        return maxlen

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        kind: ActivityKind,
        room: str = "",
        player: str = "",
        code: int | None = None,
        reason: str = "",
    ) -> None:
        """Add an event (a refusal identical to the newest entry bumps its count instead)."""
        now = self._clock()
        entries = self._entries
        if kind is ActivityKind.REFUSED and entries:
            last = entries[-1]
            if last.kind is kind and last.reason == reason and last.room == _cut(room):
                entries[-1] = attrs.evolve(last, at=now, count=last.count + 1)
                return
        self._seq += 1
        entries.append(Activity(self._seq, now, kind, _cut(room), _cut(player), code, _cut(reason)))

    def refused(self, reason: str) -> None:
        """A handshake or join refused for ``reason`` (a ``Refusal`` value)."""
        self.record(ActivityKind.REFUSED, reason=reason)

    def ended(self, room: str, player: str, code: int, cause: str) -> None:
        """A seated session ended with close ``code`` because of ``cause`` (an EndCause value):
        LEAVE if the player left on purpose, else DISCONNECT."""
        kind = ActivityKind.LEAVE if cause in _LEFT else ActivityKind.DISCONNECT
        self.record(kind, room, player, code, cause)

    def recent(self, n: int | None = None) -> list[Activity]:
        """The newest ``n`` entries (all by default), newest first."""
        items = list(self._entries)
        items.reverse()
        return items if n is None else items[:n]


#: EndCause values of a player who left on purpose
_LEFT = frozenset({"left", "peer_closed_normal"})
