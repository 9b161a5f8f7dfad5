"""The supervisor's view of its workers' metrics: fetch a worker's endpoint (a tiny, bounded
HTTP/1.1 GET) and merge every worker's samples into one exposition, each labelled
``worker="i"`` (:func:`merge_worker_metrics` is pure)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping

import trio
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("gameserver.supervisor")

#: a worker's response is cut off past this many bytes (its metrics are a few KiB)
MAX_RESPONSE = 8 * 1024 * 1024


class _Fixed:
    """A collector that yields the families it was given."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_worker_metrics(texts: Mapping[int, str], extra: Iterable[Metric] = ()) -> bytes:
    """One Prometheus text exposition of every worker's (``texts``: worker index -> its
    ``/metrics`` text), each sample with a ``worker`` label, then ``extra`` families. A
    worker whose text does not parse is left out (logged)."""
    families: dict[str, Metric] = {}
    for index in sorted(texts):
        try:
            parsed = list(text_string_to_metric_families(texts[index]))
        except Exception as exc:  # a worker is ours, but its text is still input here
            log.warning("worker %d: its metrics did not parse (%s); left out", index, exc)
            continue
        for family in parsed:
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            label = str(index)
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": label}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), *extra]))  # type: ignore[arg-type]
    return generate_latest(registry)


def parse_response(raw: bytes) -> tuple[int, bytes] | None:
    """(status, body) of a whole HTTP/1.x response (read to EOF), or None if it is not one."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    status_line = head.split(b"\r\n", 1)[0].split(b" ")
    if (
        len(status_line) < 2
        or not status_line[0].startswith(b"HTTP/1.")
        or not (status_line[1].isdigit() and len(status_line[1]) == 3)
    ):
        return None
    return int(status_line[1]), body


async def http_get(
    host: str, port: int, path: str, ssl_context: ssl.SSLContext | None, *, timeout: float
) -> tuple[int, bytes] | None:
    """``GET path`` from a worker's metrics endpoint: (status, body), or None if it did not
    answer within ``timeout`` seconds (or answered something else than HTTP)."""
    with trio.move_on_after(timeout):
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
            async with stream:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                await stream.send_all(request.encode("ascii"))
                raw = bytearray()
                while len(raw) <= MAX_RESPONSE:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        break  # HTTPS closed without close_notify: the response is complete
                    if not data:
                        break
                    raw += data
            return parse_response(bytes(raw))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            return None
    return None
