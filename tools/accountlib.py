"""Pure helpers for tools/bench_account.py: the rows of a player-tick's account, the table that
maps py-spy's stack frames to them, the conversion of sample shares to µs, and the markdown.

No processes, no sockets, no clock: unit-tested on canned py-spy text in
tests/test_bench_account.py.

A py-spy ``--format raw`` file has one line per distinct stack: the frames from the root to the
leaf, separated by ``;``, each ``function (file:line)``, then a space and the sample count. A
sample goes to the row of its *innermost* anchor frame: the first frame, walking from the leaf
towards the root, that a rule of the table names. Helpers shared by several rows (``wire.py``,
``schema.py``, ``bytes.join``) are no anchors, so they count for the row of the caller that
anchors them (``parse_client_message`` for input decoding, ``State.encode_delta`` for delta
encoding). A stack no rule anchors is bookkeeping (``other``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: (key, title) of the rows of one player-tick, in the order of the table
SERVER_ROWS: tuple[tuple[str, str], ...] = (
    ("tls_read", "TLS read (recv syscall + decrypt)"),
    ("frames", "frame parsing"),
    ("decode", "input decoding"),
    ("update", "the game's update"),
    ("encode", "delta encoding (per room, / 8)"),
    ("tls_write", "TLS write (encrypt)"),
    ("send", "the send syscall"),
    ("bookkeeping", "bookkeeping (limits, stats, outbound, scheduler, the rest)"),
)

#: rows of one bot-tick of the load generator (``gamebots``, clients/bots/lean.py)
BOT_ROWS: tuple[tuple[str, str], ...] = (
    ("tls_read", "TLS read (recv syscall + decrypt)"),
    ("frames", "frame parsing"),
    ("decode", "reading the state message (tick, ack; replica for verifying bots)"),
    ("input", "building the input"),
    ("tls_write", "TLS write (encrypt)"),
    ("send", "the send syscall"),
    ("loop", "the engine's loop (epoll, schedule), the rest"),
)


@dataclass(frozen=True)
class Rule:
    """Frames whose function matches ``func`` (a regular expression, matched whole) in a file
    whose path ends with ``file`` anchor a sample to ``row`` (``detail`` names the part)."""

    row: str
    detail: str
    func: str
    file: str = ""

    def matches(self, frame: Frame) -> bool:
        return (not self.file or frame.file.endswith(self.file)) and bool(
            re.fullmatch(self.func, frame.func)
        )


#: the server's anchors. Order matters only between rules that can match the same frame.
SERVER_RULES: tuple[Rule, ...] = (
    # the compiled modules (mypyc): their functions are C frames, seen only by py-spy --native
    Rule("frames", "FrameReader (compiled)", r"CPyDef_wsframe___FrameReader___\w+"),
    Rule("frames", "unmask (compiled)", r"CPyDef_wsframe___unmask"),
    Rule("decode", "decode_input (compiled)", r"CPyDef_messages___(decode_input|parse_\w+)"),
    Rule("encode", "binary_frame (compiled)", r"CPyDef_wsframe___binary_frame"),
    Rule("encode", "State.encode_deltas (compiled)", r"CPyDef_(state|delta_v3)___\w+"),
    Rule("bookkeeping", "limits (compiled)", r"CPyDef_limits___\w+"),
    Rule("tls_read", "SSLObject.read", r"(SSLObject\.)?read", "ssl.py"),
    Rule("tls_read", "recv, BIO, loop", r"FastConnection\.read_available", "_tws.py"),
    Rule("frames", "FrameReader", r"FrameReader\.\w+", "wsframe.py"),
    Rule("frames", "unmask", r"unmask", "wsframe.py"),
    Rule("frames", "messages()", r"FastConnection\.messages", "_tws.py"),
    Rule("decode", "parse_client_message", r"parse_client_message", "messages.py"),
    Rule("encode", "State.encode_delta", r"State\.encode_delta", "state.py"),
    Rule("encode", "binary_frame", r"binary_frame", "wsframe.py"),
    Rule("tls_write", "SSLObject.write", r"(SSLObject\.)?write", "ssl.py"),
    Rule("send", "_send_raw", r"FastConnection\._send_raw", "_tws.py"),
    Rule("tls_write", "FastConnection.write", r"FastConnection\.write", "_tws.py"),
    Rule("bookkeeping", "resume history", r"DeltaHistory\.\w+", "history.py"),
    Rule("bookkeeping", "the room's input queue", r"Room\.(push_input|push_event)", "room.py"),
    Rule("update", "Arena", r"Arena\.\w+", "arena.py"),
    Rule("update", "Room.tick", r"Room\.\w+", "room.py"),
    Rule("bookkeeping", "limits", r"\w+\.(take_input|take|_verdict)", "limits.py"),
    Rule("bookkeeping", "outbound", r"Outbound\.\w+", "outbound.py"),
    Rule("bookkeeping", "stats, tick histogram", r".*", "stats.py"),
    Rule("bookkeeping", "read_inputs' loop", r"RoomHost\.read_inputs", "roomhost.py"),
    Rule("bookkeeping", "step's fan-out", r"RoomHost\.step", "roomhost.py"),
    Rule("bookkeeping", "the tick loop", r"RoomHost\.\w+", "roomhost.py"),
    Rule("bookkeeping", "trio scheduler", r".*", "trio/_core/_run.py"),
    Rule("bookkeeping", "trio I/O (epoll)", r".*", "trio/_core/_io_epoll.py"),
)

#: the load generator's anchors (clients/bots/lean.py: one engine thread serves every bot)
BOT_RULES: tuple[Rule, ...] = (
    Rule("tls_read", "SSLObject.read", r"(SSLObject\.)?read", "ssl.py"),
    Rule("tls_read", "recv, BIO", r"LeanConnection\._recv_plain", "lean.py"),
    Rule("tls_write", "SSLObject.write", r"(SSLObject\.)?write", "ssl.py"),
    Rule("send", "_send_raw", r"LeanConnection\._send_raw", "lean.py"),
    Rule("tls_write", "_write_plain", r"LeanConnection\._write_plain", "lean.py"),
    Rule("frames", "read_messages", r"LeanConnection\.read_messages", "lean.py"),
    Rule("frames", "FrameReader", r"FrameReader\.\w+", "wsframe.py"),
    Rule("input", "masked_frame", r"masked_frame", "lean.py"),
    Rule("input", "InputEncoder", r"InputEncoder\.\w+", "lean.py"),
    Rule("input", "send_input", r"Bot\.send_input", "lean.py"),
    Rule("input", "LeanConnection.send", r"LeanConnection\.send", "lean.py"),
    Rule("decode", "replica", r".*", "replica.py"),
    Rule("decode", "parse_server_message", r"parse_server_message", "messages.py"),
    Rule(
        "decode", "on_message", r"Bot\.(on_message|_on_message_replica|_ack|_on_other)", "lean.py"
    ),
    Rule("decode", "on_readable", r"Bot\.on_readable", "lean.py"),
    Rule("loop", "Engine", r"Engine\.\w+", "lean.py"),
)


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: int | None


_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")


def parse_frame(text: str) -> Frame:
    """``func (file:line)`` as py-spy prints it (the line may be missing)."""
    m = _FRAME_RE.match(text.strip())
    if m is None:
        return Frame(text.strip(), "", None)
    line = m.group("line")
    return Frame(m.group("func"), m.group("file"), int(line) if line else None)


def parse_raw(text: str) -> list[tuple[tuple[Frame, ...], int]]:
    """The stacks (root first) and their sample counts of a py-spy ``--format raw`` file.
    Lines that do not end in a count are skipped."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = tuple(parse_frame(f) for f in stack.split(";") if f.strip())
        out.append((frames, int(count)))
    return out


def classify(stack: Sequence[Frame], rules: Sequence[Rule]) -> tuple[str, str]:
    """(row, detail) of one sample: its innermost anchor, else ``("bookkeeping"|"loop",
    "other: LEAF")``: the last row of the table, with the leaf's function."""
    for frame in reversed(stack):
        for rule in rules:
            if rule.matches(frame):
                return rule.row, rule.detail
    leaf = stack[-1].func if stack else "?"
    return ("loop" if rules is BOT_RULES else "bookkeeping"), f"other: {leaf}"


@dataclass(frozen=True)
class Tally:
    total: int
    rows: Mapping[str, int]
    details: Mapping[tuple[str, str], int]


def tally(stacks: Iterable[tuple[Sequence[Frame], int]], rules: Sequence[Rule]) -> Tally:
    rows: Counter[str] = Counter()
    details: Counter[tuple[str, str]] = Counter()
    total = 0
    for stack, count in stacks:
        row, detail = classify(stack, rules)
        rows[row] += count
        details[(row, detail)] += count
        total += count
    return Tally(total, dict(rows), dict(details))


def us_per_unit(share: float, cpu_fraction: float, units_per_s: float) -> float:
    """µs of CPU per unit (player-tick, bot-tick) for a share of the process's samples, given
    the process's CPU (fraction of a core) and the units it served per second."""
    if units_per_s <= 0:
        return 0.0
    return share * cpu_fraction / units_per_s * 1e6


def profile_rows(
    t: Tally, cpu_fraction: float, units_per_s: float, rows: Sequence[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Per row: samples, share (0..1), µs per unit, and the parts by detail (share)."""
    out: dict[str, dict[str, Any]] = {}
    for key, _ in rows:
        n = t.rows.get(key, 0)
        share = n / t.total if t.total else 0.0
        parts = {
            d: round(c / t.total, 4)
            for (r, d), c in sorted(t.details.items(), key=lambda kv: -kv[1])
            if r == key and t.total
        }
        out[key] = {
            "samples": n,
            "share": round(share, 4),
            "us": round(us_per_unit(share, cpu_fraction, units_per_s), 2),
            "parts": parts,
        }
    return out


# ------------------------------------------------------------------ markdown
def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}x"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def shares(us: Mapping[str, float | None]) -> dict[str, float | None]:
    """Each row's share of the rows' sum (None where the row has no figure)."""
    total = sum(v for v in us.values() if v)
    return {k: (v / total if v is not None and total else None) for k, v in us.items()}


#: rows whose code is compiled (mypyc): without py-spy --native a profile cannot see into them,
#: and their samples are in the row of the Python code that calls them
COMPILED_IN: dict[str, str] = {
    "frames": "tls_read",  # FastConnection.read_available feeds the FrameReader
    "decode": "bookkeeping",  # RoomHost.read_inputs calls decode_input
    "encode": "update",  # Room.tick calls State.encode_deltas
}


def account_table(
    rows: Sequence[tuple[str, str]],
    profile: Mapping[str, Mapping[str, Any]] | None,
    micro: Mapping[str, Mapping[str, Any]] | None,
) -> str:
    """The account: per row the profile's µs and share, the micro-benchmark's µs and share,
    and the floor's µs; then a total line. Either source may be missing (``-``). A compiled
    row with no profile samples says in which row its time is ("in TLS read")."""
    titles = dict(rows)
    micro_us = {k: (micro or {}).get(k, {}).get("us") for k, _ in rows}
    micro_share = shares(micro_us)
    head = (
        "| part of a player-tick | profile µs | profile share | micro-bench µs | micro share "
        "| floor µs | row / floor |"
    )
    rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    lines = [head, rule]
    tot_p = tot_m = tot_f = 0.0
    for key, title in rows:
        p = (profile or {}).get(key) or {}
        m = (micro or {}).get(key) or {}
        floor = m.get("floor_us")
        ratio = m["us"] / floor if m.get("us") and floor else None
        tot_p += p.get("us") or 0.0
        tot_m += m.get("us") or 0.0
        tot_f += floor or 0.0
        p_us, p_share = _num(p.get("us")), _pct(p.get("share"))
        if profile and key in profile and not p.get("samples") and key in COMPILED_IN:
            inside = titles.get(COMPILED_IN[key], COMPILED_IN[key]).split(" (")[0]
            p_us, p_share = f"in {inside}", "(compiled)"
        lines.append(
            f"| {title} | {p_us} | {p_share} | {_num(m.get('us'), 2)} "
            f"| {_pct(micro_share.get(key))} | {_num(floor, 2)} | {_ratio(ratio)} |"
        )
    ratio = tot_m / tot_f if tot_f else None
    lines.append(
        f"| **total** | **{_num(tot_p if profile else None)}** | 100% | **{_num(tot_m, 2)}** "
        f"| 100% | **{_num(tot_f, 2)}** | {_ratio(ratio)} |"
    )
    return "\n".join(lines)


def parts_lines(
    profile: Mapping[str, Mapping[str, Any]], rows: Sequence[tuple[str, str]], least: float = 0.005
) -> str:
    """One line per row: the profile's parts of it by share of all samples, largest first;
    parts under ``least`` are summed as "smaller parts"."""
    out = []
    for key, title in rows:
        parts = (profile.get(key) or {}).get("parts") or {}
        if parts:
            big = [(d, s) for d, s in parts.items() if s >= least]
            small = sum(s for d, s in parts.items() if s < least)
            inner = ", ".join(f"{d} {_pct(s)}" for d, s in big)
            if small:
                inner += (", " if inner else "") + f"smaller parts {_pct(small)}"
            out.append(f"- {title}: {inner}")
    return "\n".join(out)


def bots_table(rows: Sequence[tuple[str, str]], profile: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| part of a bot-tick | µs | share |", "| --- | ---: | ---: |"]
    total = 0.0
    for key, title in rows:
        p = profile.get(key) or {}
        total += p.get("us") or 0.0
        lines.append(f"| {title} | {_num(p.get('us'))} | {_pct(p.get('share'))} |")
    lines.append(f"| **total** | **{_num(total)}** | 100% |")
    return "\n".join(lines)


# ------------------------------------------------------------------ by library (perf)
#: (key, title) of the groups a ``perf report --sort dso`` split puts the core's time in
NATIVE_GROUPS: tuple[tuple[str, str], ...] = (
    ("interpreter", "CPython's interpreter and runtime (libpython: bytecode, objects, calls)"),
    ("kernel", "the kernel (syscalls, loopback TCP, epoll, scheduler)"),
    ("openssl", "OpenSSL (libssl, libcrypto: TLS records, AES-GCM)"),
    ("compiled", "the modules compiled with mypyc (frames, encoders, limits)"),
    ("libc", "libc (malloc, memcpy)"),
    ("extensions", "CPython's C modules (_socket, _ssl, select, ...)"),
    ("other", "anything else"),
)

_PERF_LINE = re.compile(r"^\s*(?P<pct>\d+(?:\.\d+)?)%\s+(?P<dso>\S.*?)\s*$")


def parse_perf_dso(text: str) -> dict[str, float]:
    """``perf report --sort dso --stdio`` (no call graphs) as {dso: share 0..1}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _PERF_LINE.match(line)
        if m:
            dso = m.group("dso")
            out[dso] = out.get(dso, 0.0) + float(m.group("pct")) / 100
    return out


def native_group(dso: str) -> str:
    """Which of :data:`NATIVE_GROUPS` a shared object's samples belong to."""
    name = dso.rsplit("/", 1)[-1]
    if name.startswith("[kernel") or name in ("[vdso]", "[kernel.vmlinux]"):
        return "kernel"
    if name.startswith("libpython") or name.startswith("python3"):
        return "interpreter"
    if name.startswith(("libssl", "libcrypto")):
        return "openssl"
    if "mypyc" in name:
        return "compiled"
    if name.startswith(("libc.so", "libc-", "ld-linux", "libm.so")):
        return "libc"
    if ".cpython-" in name:
        return "extensions"
    return "other"


def native_rows(
    dso_shares: Mapping[str, float], cpu_fraction: float, units_per_s: float
) -> dict[str, dict[str, Any]]:
    """Per group: its share of the process's samples, its µs per unit, and its objects."""
    total = sum(dso_shares.values())
    out: dict[str, dict[str, Any]] = {}
    for key, _ in NATIVE_GROUPS:
        objs = {d: s for d, s in dso_shares.items() if native_group(d) == key}
        share = sum(objs.values()) / total if total else 0.0
        out[key] = {
            "share": round(share, 4),
            "us": round(us_per_unit(share, cpu_fraction, units_per_s), 2),
            "objects": {
                d: round(s / total, 4) for d, s in sorted(objs.items(), key=lambda kv: -kv[1])
            },
        }
    return out


def native_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| where | share of the server's CPU | µs per player-tick |", "| --- | ---: | ---: |"]
    for key, title in NATIVE_GROUPS:
        row = rows.get(key)
        if row and row["share"] > 0:
            lines.append(f"| {title} | {_pct(row['share'])} | {_num(row['us'])} |")
    total = sum(r["us"] for r in rows.values())
    lines.append(f"| **total** | 100% | **{total:.1f}** |")
    return "\n".join(lines)
