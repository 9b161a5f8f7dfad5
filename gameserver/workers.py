"""What the supervisor of ``gameserver serve --workers N`` decides (pure: no trio, no I/O).

- :func:`parse_workers`: ``N`` or ``auto``.
- :func:`plan_workers`: each worker's ports, node id, public URL and command line.
- :class:`Backoff`: how long to wait before restarting a worker that exited.
- :class:`Supervision`: the workers' states, events in (started, a line on its stdout,
  exited, a signal), decisions out (restart after a delay, give up, forward a signal to these
  pids, announce readiness).

The trio layer that carries the decisions out is :mod:`gameserver.supervisor`.
"""

from __future__ import annotations

import enum
import signal
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from gameserver.setting import Kind, Setting

#: the most workers ``--workers`` accepts
MAX_WORKERS = 256
#: settings the supervisor sets per worker (the user's values for them are not passed on).
#: A ``--directory`` the user gave reaches the workers as the user gave it (a flag is passed
#: on; the environment and the config file are theirs too), so a Redis password given in
#: $GAMESERVER_DIRECTORY never shows in a worker's command line.
OVERRIDDEN = frozenset({"workers", "port", "metrics-port", "node-id", "public-url"})
#: the line a worker prints last once it serves (``gameserver serve``'s ready line)
READY_PREFIX = "listening on "


class PlanError(ValueError):
    """The workers cannot be laid out as asked (the user's settings; one line)."""


def parse_workers(text: str, cpu_count: int | None) -> int:
    """``--workers``: a number from 1 to :data:`MAX_WORKERS`, or ``auto`` (one per core)."""
    value = str(text).strip().lower()
    if value == "auto":
        return max(1, min(cpu_count or 1, MAX_WORKERS))
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise PlanError(
            f"--workers {text}: must be a number from 1 to {MAX_WORKERS}, or auto (one per core)"
        )
    return int(value)


def wanted_ports(base: int, count: int, what: str = "--port") -> list[int]:
    """The workers' own ports: ``base + 1 + i``, or all 0 (free ones) when ``base`` is 0."""
    if base == 0:
        return [0] * count
    if base + count > 65535:
        raise PlanError(
            f"{what} {base}: with --workers {count} the workers need ports {base + 1} to "
            f"{base + count}, past 65535; pick a lower {what}"
        )
    return [base + 1 + i for i in range(count)]


def check_disjoint(game: Sequence[int], metrics: Sequence[int]) -> None:
    """The game ports (base and the workers') and the metrics ports must not overlap."""
    both = sorted(set(p for p in game if p) & set(p for p in metrics if p))
    if both:
        raise PlanError(
            f"--port and --metrics-port overlap with --workers (port {both[0]} is needed by "
            "both); each needs its value plus one port per worker"
        )


def format_url(scheme: str, host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def worker_url(public_url: str | None, scheme: str, host: str, port: int) -> str:
    """Worker's public URL: the machine's ``--public-url`` with the worker's own port, or
    (without one) the worker's listening address."""
    if not public_url:
        return format_url(scheme, host, port)
    parts = urllib.parse.urlsplit(public_url)
    name = parts.hostname or host
    netloc = format_url("x", name, port)[len("x://") :]
    if parts.username is not None or parts.password is not None:
        raise PlanError(f"--public-url {public_url}: must not hold a user name or password")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def check_public_url(public_url: str) -> None:
    parts = urllib.parse.urlsplit(public_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise PlanError(f"--public-url {public_url}: must be a ws:// or wss:// URL with a host")


def check_settings(count: int, port: int, metrics_port: int | None, public_url: str | None) -> None:
    """What can be checked of ``--workers N``'s layout before anything starts (PlanError)."""
    if public_url:
        check_public_url(public_url)
    own = wanted_ports(port, count)
    if metrics_port is not None:
        metrics = wanted_ports(metrics_port, count, "--metrics-port")
        check_disjoint([port, *own], [metrics_port, *metrics])


def user_args(
    given: Mapping[str, Any], settings: Sequence[Setting], config_file: Path | None
) -> list[str]:
    """The user's ``serve`` flags (as parsed) as a command line again, without the ones the
    supervisor sets per worker. Rebuilt from the parsed values, never from the raw argv
    (abbreviations and ``--flag=value`` forms need no special case)."""
    out: list[str] = [] if config_file is None else [f"--config={config_file}"]
    for s in settings:
        if s.name in OVERRIDDEN or s.name not in given:
            continue
        value = given[s.name]
        if s.kind is Kind.BOOL:
            out.append(s.flag if value else f"--no-{s.name}")
        elif isinstance(value, list | tuple):
            out += [f"{s.flag}={v}" for v in value]
        else:
            out.append(f"{s.flag}={value}")
    return out


@attrs.frozen
class WorkerSpec:
    """One worker: its index, own port, metrics port, node id, public URL and command."""

    index: int
    port: int
    metrics_port: int | None
    node_id: str
    public_url: str
    argv: tuple[str, ...]


def worker_argv(
    executable: str,
    args: Sequence[str],
    *,
    index: int,
    port: int,
    shared_port: int,
    node_id: str,
    public_url: str,
    directory: str | None,
    metrics_port: int | None,
) -> tuple[str, ...]:
    """A worker's command line. ``directory``: the supervisor's embedded one (``unix:PATH``),
    or None when the user gave one (it is in ``args``, the environment or the config file)."""
    argv = [executable, "-m", "gameserver", "serve", *args]
    argv += [f"--port={port}", f"--shared-port={shared_port}", f"--worker-index={index}"]
    argv += [f"--node-id={node_id}", f"--public-url={public_url}"]
    if directory is not None:
        argv.append(f"--directory={directory}")
    if metrics_port is not None:
        argv.append(f"--metrics-port={metrics_port}")
    return tuple(argv)


def plan_workers(
    *,
    executable: str,
    args: Sequence[str],
    host: str,
    scheme: str,
    shared_port: int,
    ports: Sequence[int],
    metrics_ports: Sequence[int] | None,
    directory: str | None,
    node_id: str,
    public_url: str | None,
) -> tuple[WorkerSpec, ...]:
    """Every worker's spec, the ports already chosen (none 0). Node ids are ``<node>/w<i>``."""
    specs = []
    for i, port in enumerate(ports):
        mport = None if metrics_ports is None else metrics_ports[i]
        nid = f"{node_id}/w{i}"
        url = worker_url(public_url, scheme, host, port)
        argv = worker_argv(
            executable,
            args,
            index=i,
            port=port,
            shared_port=shared_port,
            node_id=nid,
            public_url=url,
            directory=directory,
            metrics_port=mport,
        )
        specs.append(WorkerSpec(i, port, mport, nid, url, argv))
    return tuple(specs)


# ------------------------------------------------------------------ restarts
@attrs.define
class Backoff:
    """Restart delays: ``initial`` doubling to ``maximum``; back to ``initial`` once a worker
    ran ``reset_after`` seconds before exiting."""

    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0
    _next: float | None = None

    def after_exit(self, uptime: float) -> float:
        """The delay before restarting a worker that exited after ``uptime`` seconds up."""
        if self._next is None or uptime >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay


class State(enum.Enum):
    STARTING = "starting"  # started, not yet listening
    READY = "ready"  # printed its ready line
    BACKOFF = "backoff"  # exited; waiting to be restarted
    DONE = "done"  # exited and will not be restarted (stopping)


@attrs.define
class Slot:
    spec: WorkerSpec
    backoff: Backoff = attrs.Factory(Backoff)
    state: State = State.STARTING
    pid: int | None = None
    url: str = ""
    started_at: float = 0.0
    ever_ready: bool = False
    restarts: int = 0
    #: its own /readyz, when the supervisor polls it (metrics on)
    probe_ready: bool = True


@attrs.frozen
class Restart:
    """Start the worker again after ``delay`` seconds."""

    index: int
    delay: float


@attrs.frozen
class GiveUp:
    """A worker could not start at all: stop everything and report ``message``."""

    message: str


@attrs.frozen
class Finished:
    """The worker exited while stopping: it is done."""


Decision = Restart | GiveUp | Finished


@attrs.frozen
class WorkerReady:
    """A worker printed its ready line (``first``: for the first time since it started)."""

    index: int
    pid: int | None
    url: str
    first: bool


@attrs.frozen
class WorkerOutput:
    """Another line of a worker's stdout (echoed with its index)."""

    index: int
    text: str


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class Supervision:
    """The supervisor's decisions about its workers (events in, decisions out)."""

    def __init__(self, specs: Sequence[WorkerSpec], backoff: Backoff | None = None) -> None:
        template = backoff or Backoff()
        self.slots = [Slot(spec, attrs.evolve(template)) for spec in specs]
        #: set by the first SIGTERM/SIGINT: no more restarts
        self.stopping = False
        #: set once every worker has been ready (the supervisor printed its ready line)
        self.announced = False
        self.signals = 0

    def started(self, index: int, pid: int, now: float) -> None:
        slot = self.slots[index]
        slot.state, slot.pid, slot.started_at, slot.url = State.STARTING, pid, now, ""
        slot.probe_ready = True

    def output(self, index: int, line: str) -> WorkerReady | WorkerOutput:
        slot = self.slots[index]
        if line.startswith(READY_PREFIX):
            first = slot.state is State.STARTING
            slot.url = line[len(READY_PREFIX) :].strip()
            slot.state = State.READY
            slot.ever_ready = True
            return WorkerReady(index, slot.pid, slot.url, first)
        return WorkerOutput(index, line)

    def all_ready(self) -> bool:
        """Every worker is ready: the first time, the supervisor prints its ready line."""
        return all(s.state is State.READY for s in self.slots)

    def exited(self, index: int, returncode: int, now: float) -> Decision:
        slot = self.slots[index]
        was_ready = slot.ever_ready
        slot.pid = None
        if self.stopping:
            slot.state = State.DONE
            return Finished()
        if not self.announced and not was_ready:
            slot.state = State.DONE
            return GiveUp(
                f"worker {index} exited before it was listening ({describe_exit(returncode)}); "
                "its error is above"
            )
        slot.state = State.BACKOFF
        slot.restarts += 1
        return Restart(index, slot.backoff.after_exit(now - slot.started_at))

    def signal(self, signum: int) -> list[int]:
        """A SIGTERM or SIGINT for the supervisor: stop restarting, and forward it to every
        running worker (the first SIGTERM drains them; a second, or a SIGINT, stops them at
        once: what each worker does with it). The pids to send ``signum`` to."""
        self.signals += 1
        return self.give_up()

    def give_up(self) -> list[int]:
        """Stop everything (a signal, or a worker could not start): no more restarts; the
        pids still running."""
        self.stopping = True
        for slot in self.slots:
            if slot.state is State.BACKOFF:
                slot.state = State.DONE
        return [s.pid for s in self.slots if s.pid is not None]

    def all_done(self) -> bool:
        return all(s.state is State.DONE for s in self.slots)

    def running(self) -> list[int]:
        return [s.pid for s in self.slots if s.pid is not None]

    def healthy(self) -> bool:
        """The supervisor's ``/healthz``: not stopping, and some worker serves."""
        return not self.stopping and any(s.state is State.READY for s in self.slots)

    def ready(self) -> bool:
        """The supervisor's ``/readyz``: not stopping, and every worker is ready (listening,
        and its own ``/readyz`` said so at the last poll)."""
        return not self.stopping and all(
            s.state is State.READY and s.probe_ready for s in self.slots
        )
