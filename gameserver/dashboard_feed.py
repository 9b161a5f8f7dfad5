"""The dashboard's snapshot: what the page shows, built once a second for every watcher.

:class:`FeedSampler` reads the server's plain counters (never awaits, so a snapshot sees one
moment of the server) and keeps only what rates need: the previous sample's counters, one
small counter copy per second for the refusal/error window, and each session's byte count at
the previous sample. Its cost is O(rooms + players) once a second, whatever the number of
watchers. No trio import: the clock and the process sampler are passed in.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gameserver.server import GameServer

from gameserver.metrics import _psutil_sampler

__all__ = ["MAX_ACTIVITY", "MAX_ROOMS", "WINDOW", "FeedSampler", "process_sampler"]

#: the refusals and protocol errors shown are those of the last WINDOW seconds
WINDOW = 300.0
#: rooms listed in a snapshot (the busiest first; the totals count every room)
MAX_ROOMS = 200
#: activity entries in a snapshot (newest first)
MAX_ACTIVITY = 60


def process_sampler() -> Callable[[], tuple[float, int]]:
    """(CPU seconds used by this process, RSS bytes): the metrics module's sampler."""
    return _psutil_sampler()


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _window(history: deque[tuple[float, Counter[str]]], now: Counter[str]) -> dict[str, int]:
    """Counts added since the oldest sample kept (zero counts left out)."""
    if not history:
        return {}
    old = history[0][1]
    return {k: n - old.get(k, 0) for k, n in sorted(now.items()) if n - old.get(k, 0) > 0}


class FeedSampler:
    """Builds :meth:`sample` dicts (JSON-ready) from a running :class:`GameServer`.

    ``clock`` is monotonic seconds (trio time in the server), ``wall`` Unix time (for the
    activity feed's timestamps, shown in the operator's time zone)."""

    def __init__(
        self,
        server: GameServer,
        clock: Callable[[], float],
        *,
        wall: Callable[[], float] = time.time,
        sample_process: Callable[[], tuple[float, int]] | None = None,
        window: float = WINDOW,
    ) -> None:
        self.server = server
        self._clock = clock
        self._wall = wall
        self._process = sample_process if sample_process is not None else process_sampler()
        self.window = window
        self._last_time: float | None = None
        self._last: dict[str, float] = {}
        self._room_ticks: dict[object, int] = {}  # host -> its tick count at the last sample
        self._session_bytes: dict[object, tuple[int, int]] = {}  # session -> (in, out)
        self._refused: deque[tuple[float, Counter[str]]] = deque()
        self._errors: deque[tuple[float, Counter[str]]] = deque()
        self.samples = 0

    def sample(self, watchers: int = 0) -> dict[str, Any]:
        server = self.server
        stats = server.stats
        now = self._clock()
        dt = None if self._last_time is None else max(1e-6, now - self._last_time)
        cpu_seconds, rss = self._process()
        counters = {
            "messages_in": float(stats.messages_in),
            "messages_out": float(stats.messages_out),
            "bytes_in": float(stats.bytes_in),
            "bytes_out": float(stats.bytes_out),
            "cpu": cpu_seconds,
        }

        def rate(key: str) -> float:
            if dt is None or key not in self._last:
                return 0.0
            return max(0.0, (counters[key] - self._last[key]) / dt)

        hosts = server.rooms.rooms
        rooms = [self._room(name, host, now, dt) for name, host in hosts.items()]
        rooms.sort(key=lambda r: (-r["players"], r["room"]))
        # the byte counts of sessions that left are dropped: bounded by the players seated now
        self._session_bytes = {
            s: (s.bytes_received, s.outbound.bytes_sent)
            for host in hosts.values()
            for s in host.sessions.values()
        }
        self._room_ticks = {host: host.ticks for host in hosts.values()}

        for history, counter in (
            (self._refused, stats.refused),
            (self._errors, stats.protocol_errors),
        ):
            history.append((now, Counter(counter)))
            while len(history) > 1 and history[0][0] < now - self.window:
                history.popleft()

        snapshot = {
            "now": round(self._wall(), 3),
            "draining": server.draining,
            "totals": {
                "connections": stats.connections_open,
                "players": sum(host.room.player_count for host in hosts.values()),
                "rooms": len(hosts),
                "seats_held": stats.seats_held,
                "messages_in_per_s": round(rate("messages_in"), 1),
                "messages_out_per_s": round(rate("messages_out"), 1),
                "bytes_in_per_s": round(rate("bytes_in")),
                "bytes_out_per_s": round(rate("bytes_out")),
                "cpu_ratio": round(rate("cpu"), 4),
                "rss_bytes": rss,
                "ticks_late": stats.ticks_late,
                "watchers": watchers,
            },
            "rooms": rooms[:MAX_ROOMS],
            "rooms_shown": min(len(rooms), MAX_ROOMS),
            "window_s": round(min(self.window, now - self._refused[0][0])),
            "refusals": _window(self._refused, stats.refused),
            "protocol_errors": _window(self._errors, stats.protocol_errors),
            "activity": [a.to_json() for a in server.rooms.activity.recent(MAX_ACTIVITY)],
        }
        self._last_time = now
        self._last = counters
        self.samples += 1
        return snapshot

    def _room(self, name: str, host: Any, now: float, dt: float | None) -> dict[str, Any]:
        room = host.room
        before = self._room_ticks.get(host)
        hz = None if dt is None or before is None else (host.ticks - before) / dt
        bytes_in = bytes_out = 0
        prev: Mapping[object, tuple[int, int]] = self._session_bytes
        for session in host.sessions.values():
            b_in, b_out = prev.get(session, (0, 0))
            bytes_in += session.bytes_received - b_in
            bytes_out += session.outbound.bytes_sent - b_out
        p99 = _p99(list(host.tick_times))
        return {
            "room": name,
            "game": room.game_cls.name,
            "private": host.private,
            "closing": host.closing or host.draining,
            "players": room.player_count,
            "max_players": room.max_players,
            "tick_rate": room.config.tick_rate,
            "measured_hz": None if hz is None else round(hz, 1),
            "tick_p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "bytes_in_per_s": None if dt is None else round(max(0, bytes_in) / dt),
            "bytes_out_per_s": None if dt is None else round(max(0, bytes_out) / dt),
            "age_s": round(max(0.0, time.monotonic() - host.started)),
        }
