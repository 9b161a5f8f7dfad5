"""Log lines: the text and JSON formats, structured event lines and rate-limited peer lines.

Every line the server writes about a room or a player is an *event*: a short fixed message
plus structured fields (``room``, ``player`` (the seat number), ``player_id``, ``code``,
``reason``, ``kind``, ...). :func:`log_event` writes one; in the text format the fields follow
the message as ``key=value`` (logfmt-style, values with spaces quoted), in the JSON format
(:class:`JsonFormatter`, ``--log-format json``) they are keys of the line's object::

    2025-01-01 12:00:00,000 INFO player joined room=lobby player=3 player_id=alice
    {"ts": "2025-01-01T12:00:00.000Z", "level": "INFO", "logger": "gameserver",
     "msg": "player joined", "room": "lobby", "player": 3, "player_id": "alice"}

(the JSON object is one line). No field ever holds a token: callers pass room names, player
numbers and ids, close codes and reasons, never a JOIN's or RESUME's token.

Lines caused by a peer's bad input (refusals, protocol errors) go through a
:class:`PeerLog`: a token bucket per kind lets ``rate`` lines a second through (``burst`` at
once) and counts the rest, which one ``suppressed N similar lines`` summary reports later, so
a flood of bad input cannot fill a disk.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import trio

from gameserver.limits import TokenBucket
from gameserver.logsafe import peer_text

__all__ = [
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "PeerLog",
    "configure_logging",
    "log_event",
]

#: the ``--log-format`` choices
LOG_FORMATS = ("text", "json")
#: the text format (what the server has always written)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: the keys every JSON line has; an event's fields never replace them
_CORE_KEYS = frozenset(("ts", "level", "logger", "msg", "exc"))

FieldValue = str | int | float | bool | None


def _clean(value: FieldValue) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    return peer_text(value)  # one line, bounded length, whoever chose it


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, str) and (not value or any(c in value for c in ' "=')):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def log_event(
    logger: logging.Logger, msg: str, /, *, level: int = logging.INFO, **fields: FieldValue
) -> None:
    """Write one event line: ``msg`` and its ``fields`` (None values are left out). String
    values pass through :func:`~gameserver.logsafe.peer_text`: one line, bounded length."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: _clean(v) for k, v in fields.items() if v is not None}
    text = " ".join(f"{k}={_text(v)}" for k, v in clean.items())
    logger.log(
        level,
        "%s %s" if text else "%s%s",
        msg,
        text,
        extra={"event": msg, "fields": clean},
        stacklevel=2,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
    ``msg``, the event's fields (:func:`log_event`), and ``exc`` (the traceback, as one
    string) when there is one. Non-ASCII is escaped, so no character can end the line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        obj: dict[str, Any] = {
            "ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": getattr(record, "event", None) or record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _CORE_KEYS:
                    obj[key] = value
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        return json.dumps(obj, ensure_ascii=True, default=str)


def configure_logging(level: int, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send every log line to ``stream`` (default: stderr) in ``log_format`` ("text" or
    "json") at ``level`` (the command line's setup). Like :func:`logging.basicConfig`, it
    does nothing if the root logger already has handlers (an embedding application's own)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}: {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])


class PeerLog:
    """Rate-limited event lines about a peer's bad input (refusals, protocol errors).

    Per ``kind`` (a typed reason's value: bounded in number), a token bucket lets ``rate``
    lines a second through, ``burst`` at once; the rest are counted. The count is reported
    as one ``suppressed N similar lines`` line (``kind``, ``suppressed``) just before the
    kind's next line that gets through, or by :meth:`flush` (:meth:`run` calls it every
    ``flush_interval`` seconds), so the log says how much it left out.

    ``clock`` is for tests (default ``time.monotonic``: a log's rate is real time).
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        rate: float = 10.0,
        burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = 10.0,
    ) -> None:
        self.logger = logger if logger is not None else logging.getLogger("gameserver.peer")
        self.rate = rate
        self.burst = burst
        self.flush_interval = flush_interval
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        #: lines left out since the last summary, by kind
        self.suppressed: dict[str, int] = {}
        #: lines left out in all, by kind (never reset)
        self.suppressed_total: dict[str, int] = {}

    def event(
        self, kind: str, msg: str, /, *, level: int = logging.INFO, **fields: FieldValue
    ) -> bool:
        """Write ``msg`` (see :func:`log_event`) unless ``kind`` is over its rate; False if
        it was left out (and counted)."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self._clock()
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = TokenBucket(self.rate, self.burst, now)
        if not bucket.take(now):
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            self.suppressed_total[kind] = self.suppressed_total.get(kind, 0) + 1
            return False
        self._summary(kind, level)
        log_event(self.logger, msg, level=level, **fields)
        return True

    def _summary(self, kind: str, level: int = logging.INFO) -> None:
        n = self.suppressed.pop(kind, 0)
        if n:
            log_event(
                self.logger, f"suppressed {n} similar lines", level=level, kind=kind, suppressed=n
            )

    def flush(self) -> None:
        """A summary line for every kind with lines left out since its last one."""
        for kind in list(self.suppressed):
            self._summary(kind)

    async def run(self) -> None:
        """:meth:`flush` every ``flush_interval`` seconds, until cancelled."""
        while True:
            await trio.sleep(self.flush_interval)
            self.flush()
