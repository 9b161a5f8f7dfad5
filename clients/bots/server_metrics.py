"""The report's ``server`` section: the server's Prometheus metrics over the measured window.

:func:`scrape` fetches ``/metrics`` with a tiny HTTP/1.1 GET over ``trio.open_tcp_stream``;
:func:`parse_metrics` turns the text into ``{(sample name, labels): value}``;
:func:`server_section` compares the scrapes taken as the window opened and as it closed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio
from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
MAX_RESPONSE = 8 << 20


class ScrapeError(Exception):
    pass


@attrs.frozen
class Scrape:
    #: ``time.monotonic()`` of the scrape
    at: float
    samples: Mapping[SampleKey, float]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def labelled(self, name: str, label: str) -> dict[str, float]:
        return {
            dict(lbls)[label]: v
            for (n, lbls), v in self.samples.items()
            if n == name and label in dict(lbls)
        }


def metrics_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/metrics``; ValueError for other schemes."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--metrics-url must be http://host:port[/path], not {url!r}")
    if parts.path in ("", "/"):
        return parts._replace(path="/metrics").geturl()
    return url


def parse_metrics(text: str) -> dict[SampleKey, float]:
    out: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


async def http_get(url: str, timeout: float = 5.0) -> bytes:
    """The body of a 200 response to ``GET url`` (plain HTTP; Content-Length, chunked or EOF)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/plain\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    chunks = []
    size = 0
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(request)
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    chunks.append(data)
                    size += len(data)
                    if size > MAX_RESPONSE:
                        raise ScrapeError(f"{url}: response larger than {MAX_RESPONSE} bytes")
    except trio.TooSlowError:
        raise ScrapeError(f"{url}: no response within {timeout}s") from None
    except OSError as exc:
        raise ScrapeError(f"{url}: {exc}") from None
    return _http_body(b"".join(chunks), url)


def _http_body(response: bytes, url: str = "") -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        raise ScrapeError(f"{url}: malformed HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        raise ScrapeError(f"{url}: {lines[0]}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        rest = body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2 :]
        return bytes(out)
    if "content-length" in headers:
        return body[: int(headers["content-length"])]
    return body


async def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """Fetch and parse; the scrape's time is the middle of the request (a busy server answers
    late, and when in that time it read its counters is unknown)."""
    sent = time.monotonic()
    body = await http_get(url, timeout)
    at = (sent + time.monotonic()) / 2
    try:
        samples = parse_metrics(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScrapeError(f"{url}: cannot parse the metrics: {exc}") from None
    return Scrape(at, samples)


def _buckets(s: Scrape, name: str) -> dict[float, float]:
    return {float(le): v for le, v in s.labelled(f"{name}_bucket", "le").items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q``-quantile from cumulative ``{upper bound: count}`` buckets, interpolated within
    its bucket as Prometheus' ``histogram_quantile`` does (the +Inf bucket gives the largest
    finite bound). None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _delta(before: Scrape, after: Scrape, name: str) -> float | None:
    a, b = before.get(name), after.get(name)
    return None if a is None or b is None else b - a


def _round(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def server_section(before: Scrape, after: Scrape) -> dict[str, Any]:
    """What the server did between two scrapes (see the report schema in ``clients.bots.cli``)."""
    elapsed = after.at - before.at
    per_s = 1.0 / elapsed if elapsed > 0 else math.nan
    rooms = after.get("gameserver_rooms")
    ticks = _delta(before, after, "gameserver_ticks_total")
    cpu = _delta(before, after, "process_cpu_seconds_total")
    rss = after.get("process_resident_memory_bytes")
    b0 = _buckets(before, "gameserver_tick_seconds")
    b1 = _buckets(after, "gameserver_tick_seconds")
    window_buckets = {le: b1[le] - b0.get(le, 0.0) for le in b1}

    def quantile_ms(q: float) -> float | None:
        v = histogram_quantile(q, window_buckets)
        return None if v is None else round(v * 1000, 3)

    def counter(name: str) -> int | None:
        d = _delta(before, after, name)
        return None if d is None else int(d)

    refused0 = before.labelled("gameserver_connections_refused_total", "reason")
    refused = {
        k: int(v - refused0.get(k, 0.0))
        for k, v in after.labelled("gameserver_connections_refused_total", "reason").items()
        if v - refused0.get(k, 0.0)
    }
    return {
        "window_s": round(elapsed, 3),
        "rooms": None if rooms is None else int(rooms),
        "players": _int(after.get("gameserver_players")),
        "tick_rate_config": after.get("gameserver_tick_rate_hertz"),
        "tick_rate_measured": _round(ticks * per_s / rooms)
        if ticks is not None and rooms
        else None,
        "tick_ms_p50": quantile_ms(0.50),
        "tick_ms_p99": quantile_ms(0.99),
        "ticks_late": counter("gameserver_ticks_late_total"),
        "ticks_skipped": counter("gameserver_ticks_skipped_total"),
        "cpu_percent": _round(cpu * per_s * 100, 1) if cpu is not None else None,
        "rss_mb": _round(rss / 2**20, 1) if rss is not None else None,
        "bytes_out_per_s": _round(
            _mul(_delta(before, after, "gameserver_sent_bytes_total"), per_s), 0
        ),
        "bytes_in_per_s": _round(
            _mul(_delta(before, after, "gameserver_received_bytes_total"), per_s), 0
        ),
        "deltas_skipped": counter("gameserver_deltas_skipped_total"),
        "snapshot_resyncs": counter("gameserver_snapshot_resyncs_total"),
        "inputs_dropped": counter("gameserver_inputs_dropped_total"),
        "slow_disconnects": counter("gameserver_slow_disconnects_total"),
        "connections_refused": refused,
    }


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def _mul(v: float | None, k: float) -> float | None:
    return None if v is None else v * k
