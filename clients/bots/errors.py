"""Why bots failed, explained: a label per kind, the first error of each kind, hints, and the
early stop when no bot can connect.

A failed bot is counted under its ``BotFailed.kind`` (the raise site decides it: ``refused``,
``tls_closed``, ``tls_verify``, ``closed:4001`` ...; never parsed out of a message).
:class:`FirstErrors` keeps, per kind, the first detail and when it happened;
:func:`error_lines` renders ``connection refused x64 (first: [Errno 111] ... at 12:00:01)``;
:func:`hints` names the known causes; :class:`EarlyStop` decides that a run cannot connect.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs

from shared.protocol import CloseCode

#: what each kind of failure means, for a person
KIND_LABELS: Mapping[str, str] = {
    "refused": "connection refused",
    "connect": "cannot connect",
    "connect_timeout": "no JOINED within --connect-timeout",
    "tls_closed": "server closed the connection before/during the TLS handshake",
    "tls_verify": "TLS certificate verify failed",
    "tls": "TLS error",
    "tls_not_tls": "no TLS server at this port (it answered in plain text)",
    "handshake": "WebSocket handshake refused",
    "protocol": "protocol error from the server",
    "eof": "server closed the connection (no close frame)",
    "send": "send failed",
    "send_backlog": "server did not read (send backlog full)",
    "recv": "receive failed",
    "desync": "desync (replica does not match the server)",
    "stopped": "not started: the run stopped first",
    "resume_failed": "resume failed",
    "rejoin_failed": "rejoin failed",
    "redirect_loop": "more than 3 redirects for one join",
    "redirect_url": "redirected to a URL the bots refuse",
    "redirect_unreachable": "cannot reach the node a redirect named",
}

#: connections a run tries before :class:`EarlyStop` may give up
EARLY_STOP_ATTEMPTS = 16
#: keep at most this many characters of an error's detail
MAX_DETAIL = 160


def kind_label(kind: str) -> str:
    """``closed:4001`` -> ``closed 4001 UNAUTHORIZED``; a known kind -> its label."""
    if kind in KIND_LABELS:
        return KIND_LABELS[kind]
    prefix, sep, rest = kind.partition(":")
    if sep and rest.isdigit():
        try:
            name = CloseCode(int(rest)).name
        except ValueError:
            name = ""
        words = {"closed": "closed", "ServerError": "server error", "resume": "resume refused"}
        return f"{words.get(prefix, prefix)} {rest}{' ' + name if name else ''}"
    if prefix == "misfit":
        return f"behaviour {rest} does not fit the game"
    if prefix == "worker_exit":
        return f"worker process exited ({rest})"
    return kind


@attrs.define
class FirstErrors:
    """The first error of each kind: ``{kind: [detail, wall-clock time]}`` (JSON-ready)."""

    first: dict[str, list[Any]] = attrs.field(factory=dict)

    def record(self, kind: str, detail: str, at: float | None = None) -> None:
        if kind not in self.first:
            self.first[kind] = [detail[:MAX_DETAIL], time.time() if at is None else at]

    def merge(self, other: Mapping[str, Any]) -> None:
        """Keep the earliest of each kind (the figures of several processes)."""
        for kind, (detail, at) in other.items():
            mine = self.first.get(kind)
            if mine is None or at < mine[1]:
                self.first[kind] = [detail, at]


def error_lines(errors: Mapping[str, int], first: Mapping[str, Any] | None = None) -> list[str]:
    """One line per kind, most frequent first: label, count, the first one's detail and time."""
    first = first or {}
    out = []
    for kind, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
        line = f"{kind_label(kind)} x{n}"
        if kind in first:
            detail, at = first[kind]
            when = time.strftime("%H:%M:%S", time.localtime(at))
            line += f" (first: {detail} at {when})" if detail else f" (first at {when})"
        out.append(line)
    return out


def _count(errors: Mapping[str, int], *kinds: str, code: int | None = None) -> int:
    n = sum(errors.get(k, 0) for k in kinds)
    if code is not None:
        n += sum(v for k, v in errors.items() if k.partition(":")[2] == str(code))
    return n


def hints(report: Mapping[str, Any]) -> list[str]:
    """Likely causes and their fixes, for the failures a report counts."""
    errors: Mapping[str, int] = report.get("errors", {})
    cfg = report.get("config", {})
    players = report.get("players", {})
    out = []
    refused_by_server = (report.get("server") or {}).get("connections_refused") or {}
    if _count(errors, "tls_closed") or refused_by_server.get("connection_limit"):
        out.append(
            "the server closed connections before the TLS handshake: it caps connections per "
            "IP address (--max-connections-per-ip, default 256) and in all "
            "(--max-connections), and every bot connects from this one address: run the "
            "server with --max-connections-per-ip 0 for load tests"
        )
    if _count(errors, "tls_verify"):
        out.append(
            "the server's certificate does not verify against the CA the bots trust "
            f"({cfg.get('ca_file') or 'the system CAs'}): pass --ca-file with the CA that "
            "signed it, or --state-dir of the local server (its dev-ca.pem)"
        )
    if _count(errors, code=int(CloseCode.UNAUTHORIZED)):
        out.append(
            "the server refused the bots' tokens (4001): it wants tokens signed with its "
            "secret: pass --secret-file (or set GAMESERVER_SECRET), or --state-dir of a local "
            "server (<state-dir>/secret.key); a server started with another --state-dir has "
            "another secret"
        )
    if _count(errors, "tls_not_tls"):
        out.append(
            f"the server at {cfg.get('url', 'the --url')} does not speak TLS there: use "
            "ws:// for a plain server, or the port the game server listens on (not its "
            "metrics or admin port)"
        )
    if _count(errors, "refused") and not players.get("connected"):
        out.append(
            f"nothing accepts connections at {cfg.get('url', 'the --url')}: is the server "
            "running, on this host and port?"
        )
    if _count(errors, "connect_timeout"):
        out.append(
            "bots did not join within --connect-timeout: the server is overloaded or "
            "refusing at admission; lower --ramp or raise --connect-timeout"
        )
    if _count(errors, "redirect_unreachable"):
        out.append(
            "a cluster node redirected bots to a node they cannot reach (see the first error "
            "for its URL): every node's --public-url must be an address the bots can connect "
            "to, with a certificate for that name"
        )
    if _count(errors, "redirect_loop"):
        out.append(
            "the cluster kept redirecting joins (more than 3 times for one join): its nodes "
            "disagree where rooms live; check that every node uses the same --directory"
        )
    if _count(errors, code=int(CloseCode.DIRECTORY_UNAVAILABLE)):
        out.append(
            "nodes could not reach the room directory (4016) within --connect-timeout: is "
            "the --directory (Redis) up and reachable from every node?"
        )
    if _count(errors, "send_backlog"):
        out.append(
            "the server stopped reading some bots' inputs: it may be overloaded; compare with "
            "--metrics-url"
        )
    return out


@attrs.define
class EarlyStop:
    """Gives up when none of the first ``attempts`` connection attempts (each: connect, TLS,
    WebSocket handshake and JOIN) succeeded: :meth:`record` returns why, once."""

    attempts: int = EARLY_STOP_ATTEMPTS
    done: int = 0
    succeeded: int = 0
    kinds: Counter[str] = attrs.field(factory=Counter)
    reason: str | None = None

    def record(self, kind: str | None) -> str | None:
        """One attempt finished: ``kind`` is why it failed, None if it joined. Returns the
        reason to stop the run the first time the rule is met, else None."""
        self.done += 1
        if kind is None:
            self.succeeded += 1
        else:
            self.kinds[kind] += 1
        if self.reason is not None or self.succeeded or self.done < self.attempts:
            return None
        causes = ", ".join(f"{kind_label(k)} x{n}" for k, n in self.kinds.most_common())
        who = "the only bot" if self.done == 1 else f"none of the first {self.done} bots"
        self.reason = f"{who} could{' not' if self.done == 1 else ''} connect ({causes})"
        return self.reason
