"""Pure helpers for tools/bench_cluster.py: parsing what the servers print, the join samples'
statistics, CPU per join, Prometheus samples summed over workers, the capacity rule and the
markdown. No processes, no sockets, no clock: unit-tested in tests/test_bench_cluster.py.
"""

from __future__ import annotations

import enum
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import benchlib as bl


class Route(enum.Enum):
    """How a measured join reaches its room."""

    LOCAL = "local"  # one plain server (no cluster): dialled the room's server
    WORKERS_OWNER = "workers-owner"  # --workers 2: dialled the worker that owns the room
    WORKERS_REDIRECT = "workers-redirect"  # --workers 2: dialled the other worker
    NODES_OWNER = "nodes-owner"  # two nodes sharing Redis: dialled the owner
    NODES_REDIRECT = "nodes-redirect"  # two nodes sharing Redis: dialled the other node

    @property
    def redirected(self) -> bool:
        return self in (Route.WORKERS_REDIRECT, Route.NODES_REDIRECT)

    @property
    def label(self) -> str:
        return ROUTE_LABELS[self]


ROUTE_LABELS = {
    Route.LOCAL: "one server, no cluster",
    Route.WORKERS_OWNER: "--workers 2, dialled the owner worker",
    Route.WORKERS_REDIRECT: "--workers 2, redirected to the other worker",
    Route.NODES_OWNER: "two nodes + Redis, dialled the owner",
    Route.NODES_REDIRECT: "two nodes + Redis, redirected to the other node",
}

#: the groups --routes accepts, and the routes each one measures
ROUTE_GROUPS: dict[str, tuple[Route, ...]] = {
    "local": (Route.LOCAL,),
    "workers": (Route.WORKERS_OWNER, Route.WORKERS_REDIRECT),
    "nodes": (Route.NODES_OWNER, Route.NODES_REDIRECT),
}


class Unsupported(Exception):
    """The server under test lacks what a mode needs (one line for the user)."""


# ------------------------------------------------------------------ what the servers print
@dataclass(frozen=True)
class WorkerLine:
    index: int
    pid: int
    url: str


_WORKER_RE = re.compile(r"^worker (\d+) \(pid (\d+)\) listening on (\S+)\s*$")


def parse_worker_lines(text: str) -> list[WorkerLine]:
    """``worker I (pid P) listening on URL`` lines of a supervisor's stdout, by index (the last
    line for an index wins: a restarted worker prints again)."""
    found: dict[int, WorkerLine] = {}
    for line in text.splitlines():
        m = _WORKER_RE.match(line.strip())
        if m:
            i = int(m.group(1))
            found[i] = WorkerLine(i, int(m.group(2)), m.group(3))
    return [found[i] for i in sorted(found)]


def listening_url(text: str, port: int | None = None) -> str | None:
    """The URL of the first ``listening on URL`` line (on ``port``, if given) of a server's
    stdout; None before there is one."""
    for line in text.splitlines():
        if line.startswith("listening on "):
            url = line[len("listening on ") :].strip()
            if port is None or endpoint(url)[1] == port:
                return url
    return None


def endpoint(url: str) -> tuple[str, int]:
    """(host, port) of a ws:// or wss:// URL, for comparing URLs spelled differently."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return (parts.hostname or "").lower(), port


def other_url(owner: str, urls: Sequence[str]) -> str:
    """The first of ``urls`` that is not ``owner`` (the node or worker to misroute a join to)."""
    own = endpoint(owner)
    for url in urls:
        if endpoint(url) != own:
            return url
    raise Unsupported(f"the room's owner {owner} is the only address among {list(urls)}")


def check_workers(lines: Sequence[WorkerLine], wanted: int) -> None:
    """The supervisor printed a line per worker, or the server cannot run workers yet."""
    if not lines:
        raise Unsupported(
            f"the server does not run workers: `serve --workers {wanted}` printed no "
            "'worker N (pid P) listening on URL' line (is the workers branch merged?)"
        )
    if len(lines) < wanted:
        raise Unsupported(f"--workers {wanted} started only {len(lines)} worker(s)")


def check_redirected(route: Route, hops: int, dialled: str, room: str) -> None:
    """A join that should have been redirected was (or the server does not route yet)."""
    if route.redirected and hops == 0:
        raise Unsupported(
            f"{dialled} served room {room!r} itself instead of redirecting to its owner: the "
            "server does not route joins through the directory (yet)"
        )


def check_bots_follow(errors: Mapping[str, Any] | None) -> None:
    """gamebots followed the redirects (else its bots failed with close 4015)."""
    redirected = {k: v for k, v in (errors or {}).items() if "4015" in k or "redirect" in k.lower()}
    if redirected:
        raise Unsupported(
            f"gamebots does not follow REDIRECT yet ({', '.join(sorted(redirected))}): "
            "is the SDK branch merged?"
        )


# ------------------------------------------------------------------ join samples
@dataclass(frozen=True)
class JoinSample:
    """One measured join: from opening the first TCP connection to JOINED (``ms``) and to
    sending JOIN on the connection that got it (``reach_ms``: TCP, TLS, WebSocket, and any
    redirects, without the wait for the room's tick), redirects followed, where it ended."""

    ms: float
    hops: int
    url: str
    reach_ms: float = 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize_joins(samples: Sequence[JoinSample]) -> dict[str, Any]:
    ms = [s.ms for s in samples]
    reach = [s.reach_ms for s in samples]
    hops: dict[str, int] = {}
    for s in samples:
        hops[str(s.hops)] = hops.get(str(s.hops), 0) + 1
    return {
        "joins": len(samples),
        "ms_mean": round(statistics.fmean(ms), 2) if ms else None,
        "ms_min": round(min(ms), 2) if ms else None,
        "ms_p50": _round(percentile(ms, 0.5)),
        "ms_p90": _round(percentile(ms, 0.9)),
        "ms_p99": _round(percentile(ms, 0.99)),
        "ms_max": round(max(ms), 2) if ms else None,
        "reach_ms_p50": _round(percentile(reach, 0.5)),
        "reach_ms_p90": _round(percentile(reach, 0.9)),
        "reach_ms_p99": _round(percentile(reach, 0.99)),
        "hops": dict(sorted(hops.items())),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def cpu_ms_per_join(
    busy_ticks: int,
    busy_wall_s: float,
    idle_ticks: int,
    idle_wall_s: float,
    joins: int,
    clk_tck: int,
) -> float | None:
    """CPU milliseconds one join cost a set of processes.

    ``busy_ticks`` is the CPU (clock ticks) they used while ``joins`` joins ran for
    ``busy_wall_s``; ``idle_ticks`` what they used over ``idle_wall_s`` just before, with the
    same rooms open and no joins (ticking, renewals). The idle rate is taken off, and the rest
    divided by the joins. Never negative; None without joins."""
    if joins <= 0 or busy_wall_s <= 0:
        return None
    idle_rate = idle_ticks / idle_wall_s if idle_wall_s > 0 else 0.0
    extra = max(0.0, busy_ticks - idle_rate * busy_wall_s)
    return round(1000.0 * extra / clk_tck / joins, 3)


# ------------------------------------------------------------------ Prometheus, over workers
def summed(samples: Mapping[bl.MetricKey, float], name: str) -> float | None:
    """The sum of every sample of ``name`` whatever its labels (the supervisor labels each
    worker's samples ``worker="i"``; a single server has one unlabelled sample)."""
    values = [v for (n, _), v in samples.items() if n == name]
    return sum(values) if values else None


def merged_buckets(samples: Mapping[bl.MetricKey, float], name: str) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` of histogram ``name`` with every worker's buckets added."""
    out: dict[float, float] = {}
    for (n, pairs), value in samples.items():
        if n != f"{name}_bucket":
            continue
        le = dict(pairs).get("le")
        if le is not None:
            out[float(le)] = out.get(float(le), 0.0) + value
    return sorted(out.items())


def window_figures(
    first: Mapping[bl.MetricKey, float], last: Mapping[bl.MetricKey, float], seconds: float
) -> dict[str, Any]:
    """Tick figures between two scrapes of a server or a supervisor (summed over workers)."""

    def delta(name: str) -> float:
        return (summed(last, name) or 0.0) - (summed(first, name) or 0.0)

    rooms = summed(last, "gameserver_rooms") or 0.0
    ticks = delta("gameserver_ticks_total")
    p99 = bl.bucket_quantile(
        merged_buckets(first, "gameserver_tick_seconds"),
        merged_buckets(last, "gameserver_tick_seconds"),
        0.99,
    )
    return {
        "rooms_measured": rooms,
        "tick_rate_measured": round(ticks / seconds / rooms, 2) if rooms and seconds > 0 else None,
        "ticks_late": delta("gameserver_ticks_late_total"),
        "ticks_skipped": delta("gameserver_ticks_skipped_total"),
        "tick_p99_ms": None if p99 is None else round(p99 * 1000, 1),
    }


# ------------------------------------------------------------------ capacity
MACHINE_BUSY_PCT = 95.0  # both cores together


THRESHOLDS = bl.Thresholds()


def capacity_reasons(step: Mapping[str, Any], th: bl.Thresholds = THRESHOLDS) -> list[str]:
    """Why a capacity step of the workers comparison counts as saturated (empty: it did not).

    The server and the bots share both cores here, so the per-core CPU rule of tools/bench.py
    does not apply; instead: the machine (both cores) >= 95% busy, p5 updates under 19/s, p99
    latency over 100 ms, or not every bot got to play."""
    reasons = []
    busy = step.get("machine_busy_pct")
    if busy is not None and busy >= MACHINE_BUSY_PCT:
        reasons.append(f"machine {busy:.0f}% busy")
    rest = bl.saturation_reasons(dict(step, server_cpu_pct=0.0, server_core_pct=0.0), th)
    return reasons + rest


def machine_busy(core0: float | None, core1: float | None) -> float | None:
    """Both cores' busy share together (percent of the two)."""
    if core0 is None or core1 is None:
        return None
    return round((core0 + core1) / 2, 1)


def foreign_machine_pct(step: Mapping[str, Any]) -> float | None:
    """Busy time of both cores (percent of one core) that neither the server's processes,
    the bots nor softirq explain: other work on a shared machine. None if not measured."""
    cores = [step.get("core0_busy_pct"), step.get("core1_busy_pct")]
    if None in cores:
        return None
    return bl.foreign_share(
        sum(c for c in cores if c is not None),
        step.get("server_cpu_pct") or 0.0,
        step.get("bots_cpu_pct") or 0.0,
        step.get("core0_softirq_pct") or 0.0,
        2.0,  # this script's sampling
    )


def capacity_verdict(one: int | None, two: int | None) -> str:
    """One line comparing the capacities of --workers 1 and --workers 2."""
    if one is None or two is None:
        return "capacity not found for both (see the steps)"
    return f"--workers 2 / --workers 1: {two} / {one} players = {two / one:.2f}x"


# ------------------------------------------------------------------ markdown
def _f(value: Any, digits: int = 1) -> str:
    return bl._fmt(value, digits)


def _triple(row: Mapping[str, Any], key: str) -> str:
    return " / ".join(_f(row.get(f"{key}_{q}"), 2) for q in ("p50", "p90", "p99"))


def render_routes(rows: Iterable[Mapping[str, Any]]) -> str:
    """The routing table: one row per measured route."""
    head = (
        "| route | joins | to JOIN at the owner ms p50 / p90 / p99 "
        "| to JOINED ms p50 / p90 / p99 | redirects per join "
        "| server CPU ms/join | Redis CPU ms/join | client CPU ms/join |"
    )
    out = [head, "|---|---:|---|---|---|---:|---:|---:|"]
    for r in rows:
        hops = ", ".join(f"{k}: {v}" for k, v in (r.get("hops") or {}).items()) or "-"
        out.append(
            f"| {r['label']} | {r['joins']} | {_triple(r, 'reach_ms')} | {_triple(r, 'ms')} "
            f"| {hops} | {_f(r.get('server_cpu_ms'), 2)} "
            f"| {_f(r.get('redis_cpu_ms'), 2)} | {_f(r.get('client_cpu_ms'), 2)} |"
        )
    return "\n".join(out)


def render_capacity(arms: Mapping[str, Mapping[str, Any]]) -> str:
    """The capacity steps of each arm (``--workers 1``, ``--workers 2``)."""
    head = (
        "| server | players (conn./target) | server CPU % (of 200) | bots CPU % | machine busy % "
        "| other work % | updates/s p5 | latency ms p99 | tick p99 ms | verdict |"
    )
    out = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, arm in arms.items():
        for s in sorted(arm.get("steps") or [], key=lambda s: s["target"]):
            reasons = s.get("saturated") or []
            out.append(
                f"| {name} | {s.get('connected', '-')}/{s['target']} "
                f"| {_f(s.get('server_cpu_pct'))} | {_f(s.get('bots_cpu_pct'))} "
                f"| {_f(s.get('machine_busy_pct'))} | {_f(s.get('foreign_pct'))} "
                f"| {_f(s.get('updates_p5'))} "
                f"| {_f(s.get('latency_p99_ms'))} | {_f(s.get('tick_p99_ms'))} "
                f"| {'saturated: ' + ', '.join(reasons) if reasons else 'ok'} |"
            )
    return "\n".join(out)
