"""Pure helpers for tools/bench.py: /proc and Prometheus parsing, the saturation rule, the step
search, and the markdown rendering. No processes, no sockets, no clock: unit-tested on canned
text in tests/test_bench_tools.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROOM_SIZE = 8  # players per arena room


# ------------------------------------------------------------------ /proc parsing
@dataclass(frozen=True)
class CpuTimes:
    """One ``cpuN`` line of /proc/stat, in clock ticks."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def busy(self) -> int:
        """Time the core ran anything: processes, kernel, interrupts, softirq (not steal)."""
        return self.user + self.nice + self.system + self.irq + self.softirq

    @property
    def total(self) -> int:
        return self.busy + self.idle + self.iowait + self.steal


def parse_proc_stat(text: str) -> dict[str, CpuTimes]:
    """``{"cpu": ..., "cpu0": ..., "cpu1": ...}`` from the text of /proc/stat.

    Fields past ``steal`` (guest, guest_nice) are already counted in user/nice and are ignored;
    kernels that print fewer than eight fields get zeros for the missing ones.
    """
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        values = [int(v) for v in fields[:8]] + [0] * max(0, 8 - len(fields))
        out[name] = CpuTimes(*values)
    return out


def core_usage(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """Busy, softirq and steal shares (percent) of one core between two samples."""
    total = after.total - before.total
    if total <= 0:
        return {"busy_pct": 0.0, "softirq_pct": 0.0, "steal_pct": 0.0}
    return {
        "busy_pct": round(100.0 * (after.busy - before.busy) / total, 1),
        "softirq_pct": round(100.0 * (after.softirq - before.softirq) / total, 1),
        "steal_pct": round(100.0 * (after.steal - before.steal) / total, 1),
    }


@dataclass(frozen=True)
class ProcTimes:
    """From /proc/<pid>/stat: CPU time in clock ticks and the resident set in pages."""

    utime: int
    stime: int
    rss_pages: int

    @property
    def cpu(self) -> int:
        return self.utime + self.stime


def parse_pid_stat(text: str) -> ProcTimes:
    """Parse /proc/<pid>/stat. The command name (field 2) may hold spaces and parentheses, so
    the fields are counted from the last ``)``: utime is field 14, stime 15, rss 24."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state)
    return ProcTimes(utime=int(rest[14 - 3]), stime=int(rest[15 - 3]), rss_pages=int(rest[24 - 3]))


def process_cpu_pct(before: ProcTimes, after: ProcTimes, wall_s: float, clk_tck: int) -> float:
    """CPU use of a process between two samples, percent of one core."""
    if wall_s <= 0:
        return 0.0
    return round(100.0 * (after.cpu - before.cpu) / clk_tck / wall_s, 1)


# ------------------------------------------------------------------ Prometheus text format
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_prometheus(text: str) -> dict[MetricKey, float]:
    """Samples of a Prometheus text exposition: ``{(name, sorted label pairs): value}``."""
    out: dict[MetricKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if m is None:
            continue
        name, labels, value = m.groups()
        pairs = tuple(sorted(_LABEL_RE.findall(labels or "")))
        try:
            out[(name, pairs)] = float(value)
        except ValueError:
            continue
    return out


def metric(samples: Mapping[MetricKey, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def labelled(samples: Mapping[MetricKey, float], name: str, label: str) -> dict[str, float]:
    """All samples of ``name`` by the value of ``label`` (e.g. refusals by reason)."""
    out = {}
    for (n, pairs), value in samples.items():
        if n == name:
            for k, v in pairs:
                if k == label:
                    out[v] = value
    return out


def histogram_buckets(samples: Mapping[MetricKey, float], name: str) -> list[tuple[float, float]]:
    """Cumulative ``(upper bound, count)`` of histogram ``name``, ascending (+Inf last)."""
    buckets = [(float(le), c) for le, c in labelled(samples, f"{name}_bucket", "le").items()]
    return sorted(buckets)


def bucket_quantile(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]], q: float
) -> float | None:
    """Upper bound of the bucket holding the q-quantile of what was observed between two scrapes
    of a cumulative histogram (``math.inf`` past the last finite bucket; None if empty)."""
    prev = dict(before)
    deltas = [(le, c - prev.get(le, 0.0)) for le, c in after]
    if not deltas:
        return None
    total = deltas[-1][1]
    if total <= 0:
        return None
    rank = max(1.0, math.ceil(round(q * total, 9)))
    for le, c in deltas:
        if c >= rank:
            return le
    return math.inf


# ------------------------------------------------------------------ the saturation rule
@dataclass(frozen=True)
class Thresholds:
    cpu_pct: float = 95.0  # server core busy (process + its kernel network work)
    min_update_p5: float = 19.0  # updates per player per second, 5th percentile
    max_latency_p99_ms: float = 100.0
    loadgen_busy_pct: float = 90.0  # above this the step measures the bots, not the server


def saturation_reasons(step: Mapping[str, Any], th: Thresholds = Thresholds()) -> list[str]:
    """Why a step counts as saturated; empty if it does not.

    Every rule that applies is listed:
      * the server uses >= 95% of its core: the larger of the process's own CPU share and
        ``server_core_pct`` (see :func:`server_core_share`; the core's whole busy share if that
        is missing);
      * the 5th-percentile update rate is below 19/s;
      * p99 input latency is above 100 ms (or there were no latency samples at all);
      * not every bot got to play (joins refused, connections failed): the step did not serve
        its target.
    """
    reasons = []
    share = step.get("server_core_pct", step.get("core0_busy_pct"))
    cpu = max(step.get("server_cpu_pct") or 0.0, share or 0.0)
    if cpu >= th.cpu_pct:
        reasons.append(f"cpu {cpu:.0f}%")
    p5 = step.get("updates_p5")
    if p5 is None or p5 < th.min_update_p5:
        reasons.append("p5 updates " + ("-" if p5 is None else f"{p5:.1f}/s"))
    p99 = step.get("latency_p99_ms")
    if p99 is None or p99 > th.max_latency_p99_ms:
        reasons.append("p99 latency " + ("-" if p99 is None else f"{p99:.0f} ms"))
    failed = step.get("failed") or 0
    if failed:
        reasons.append(f"{failed} bots failed")
    return reasons


def served_within_limits(step: Mapping[str, Any], th: Thresholds = Thresholds()) -> bool:
    """The players who did get in were served within the CPU, update-rate and latency limits
    (refused or failed bots aside): what the step shows the server can carry."""
    return bool(step.get("connected")) and not saturation_reasons(dict(step, failed=0), th)


def peak_served(steps: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The step that served the most players within the limits (see served_within_limits)."""
    ok = [s for s in steps if served_within_limits(s)]
    return max(ok, key=lambda s: s["connected"]) if ok else None


def server_core_share(proc_pct: float, core_busy_pct: float, softirq_pct: float) -> float:
    """What the server takes of its core: its own CPU time plus the softirq (loopback network)
    work on that core, but never more than the core's busy share. Other processes that ran on
    the core are left out, so another user of the machine does not saturate the server."""
    return round(min(core_busy_pct, proc_pct + softirq_pct), 1)


def foreign_share(core_busy_pct: float, *own_pcts: float) -> float:
    """Busy share of a core not explained by our processes and softirq (never negative)."""
    return round(max(0.0, core_busy_pct - sum(own_pcts)), 1)


def disturbance(step: Mapping[str, Any]) -> float:
    """The larger share of a core that other processes took during the step's window."""
    return max(step.get("foreign_core0_pct") or 0.0, step.get("foreign_core1_pct") or 0.0)


def contaminated(step: Mapping[str, Any], limit_pct: float = 10.0) -> bool:
    """Other processes took more than ``limit_pct`` of either core during the window."""
    return disturbance(step) > limit_pct


def loadgen_bound(step: Mapping[str, Any], th: Thresholds = Thresholds()) -> bool:
    busy = step.get("core1_busy_pct")
    return busy is not None and busy > th.loadgen_busy_pct


# ------------------------------------------------------------------ the step search
def round_to_rooms(players: float) -> int:
    """Players rounded to whole rooms (at least one room)."""
    return max(ROOM_SIZE, ROOM_SIZE * round(players / ROOM_SIZE))


def search_bounds(history: Iterable[tuple[int, bool]]) -> tuple[int, int | None]:
    """(largest good step below the smallest saturated one, smallest saturated step or None).

    ``history`` holds ``(players, saturated)`` of the steps run so far; the "good" bound is 0
    when no step below the first saturated one passed.
    """
    steps = list(history)
    bad = min((p for p, sat in steps if sat), default=None)
    good = max((p for p, sat in steps if not sat and (bad is None or p < bad)), default=0)
    return good, bad


def choose_step(
    explicit: list[int] | None,
    history: Sequence[tuple[int, bool]],
    *,
    coarse: int,
    fine: int,
    max_players: int,
) -> int | None:
    """The next step of a run: the next of ``explicit`` (``--steps``, consumed; none after a
    saturated step), else the auto search's; None when the run is done."""
    if explicit is not None:
        if not explicit or any(sat for _, sat in history):
            return None
        return round_to_rooms(explicit.pop(0))
    return next_auto_step(history, coarse=coarse, fine=fine, max_players=max_players)


def next_auto_step(
    history: Sequence[tuple[int, bool]], *, coarse: int, fine: int, max_players: int
) -> int | None:
    """The next step (players) of the auto search, or None when it is done.

    Coarse: ``coarse``, ``2*coarse``, ... until a step saturates (or ``max_players``). Then
    bisect between the largest good step and the first saturated step, in whole rooms, until
    they are at most ``fine`` players apart.
    """
    tried = {p for p, _ in history}
    good, bad = search_bounds(history)
    if bad is None:
        top = max(tried, default=0)
        nxt = round_to_rooms(top + coarse)
        return nxt if nxt <= max_players and nxt not in tried else None
    if bad - good <= fine:
        return None
    mid = round_to_rooms((good + bad) / 2)
    if mid <= good or mid >= bad or mid in tried:
        return None
    return mid


def capacity(history: Iterable[tuple[int, bool]]) -> int | None:
    """The largest step that did not saturate (None if every step did)."""
    good = [p for p, sat in history if not sat]
    return max(good) if good else None


# ------------------------------------------------------------------ markdown
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if value.is_integer() and abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _pair(a: Any, b: Any, digits: int = 1) -> str:
    return f"{_fmt(a, digits)} / {_fmt(b, digits)}"


STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("players", "players (conn./target)"),
    ("rooms", "rooms"),
    ("cpu", "server CPU % (proc / core0 busy, softirq)"),
    ("rss", "RSS MB"),
    ("bw", "B/player/s down / up"),
    ("upd", "updates/s mean / p5"),
    ("lat", "latency ms p50 / p95 / p99"),
    ("tick", "tick p99 ms"),
    ("ticks", "ticks late / skipped"),
    ("fail", "failed / desyncs"),
    ("loadgen", "load-gen core1 %"),
    ("verdict", "verdict"),
)


def step_cells(step: Mapping[str, Any]) -> dict[str, str]:
    lat = "{} / {} / {}".format(
        _fmt(step.get("latency_p50_ms")),
        _fmt(step.get("latency_p95_ms")),
        _fmt(step.get("latency_p99_ms")),
    )
    cpu = "{} / {} ({})".format(
        _fmt(step.get("server_cpu_pct")),
        _fmt(step.get("core0_busy_pct")),
        _fmt(step.get("core0_softirq_pct")),
    )
    reasons = step.get("saturated") or []
    verdict = "saturated: " + ", ".join(reasons) if reasons else "ok"
    loadgen = _fmt(step.get("core1_busy_pct"))
    if step.get("loadgen_bound"):
        loadgen += " **bots-bound**"
        verdict += " (load generator saturated: measures the bots)"
    if step.get("overload"):
        verdict = "overload step: " + verdict
    return {
        "players": f"{step.get('connected', '-')}/{step.get('target', '-')}",
        "rooms": _fmt(step.get("rooms")),
        "cpu": cpu,
        "rss": _fmt(step.get("rss_mb")),
        "bw": _pair(step.get("bytes_down_pps"), step.get("bytes_up_pps"), 0),
        "upd": _pair(step.get("updates_mean"), step.get("updates_p5")),
        "lat": lat,
        "tick": _fmt(step.get("tick_p99_ms")),
        "ticks": _pair(step.get("ticks_late"), step.get("ticks_skipped"), 0),
        "fail": _pair(step.get("failed"), step.get("desyncs"), 0),
        "loadgen": loadgen,
        "verdict": verdict,
    }


def render_table(
    steps: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] = STEP_COLUMNS
) -> str:
    """A markdown table, one row per step, in the order given."""
    numeric = {"rooms", "rss", "tick", "loadgen"}
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---:" if key in numeric else "---" for key, _ in columns) + "|"
    rows = []
    for step in steps:
        cells = step_cells(step)
        rows.append("| " + " | ".join(cells[key].replace("|", "\\|") for key, _ in columns) + " |")
    return "\n".join([head, rule, *rows])


# ------------------------------------------------------------------ the measured window
def measured_window(
    times: Sequence[float],
    open_fds: Sequence[int],
    t_exit: float,
    duration: float,
    *,
    tail: float = 0.5,
    trim: float = 0.5,
) -> tuple[float, float]:
    """(start, end) of the bots' measured window, on the sampler's clock.

    The load generator measures for ``duration`` seconds and then closes every bot, so the
    server's count of open file descriptors falls: the window ends at the last sample that still
    saw at least 90% of the peak count (and at least ``tail`` seconds before the bots exited,
    whatever the counts say). ``trim`` is shaved off the start so the window stays inside the
    bots' own one.
    """
    end = t_exit - tail
    if times and open_fds:
        peak = max(open_fds)
        if peak > 0:
            for t, n in zip(reversed(times), reversed(open_fds), strict=True):
                if n >= 0.9 * peak:
                    end = min(end, t)
                    break
    return end - duration + trim, end


def window_indices(times: Sequence[float], start: float, end: float) -> tuple[int, int] | None:
    """Indices of the first sample at or after ``start`` and the last at or before ``end``."""
    inside = [i for i, t in enumerate(times) if start <= t <= end]
    if len(inside) < 2:
        return None
    return inside[0], inside[-1]
