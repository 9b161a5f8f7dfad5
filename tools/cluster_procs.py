"""Processes, ports, certificates and tokens for tools/bench_cluster.py."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clusterlib as cl

import bench as bm

CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"bench_cluster: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> NoReturn:
    say(msg)
    raise SystemExit(2)


# ------------------------------------------------------------------ ports, certificates, tokens
def free_port(host: str = "127.0.0.1", block: int = 1) -> int:
    """A port P such that P..P+block-1 are free on ``host`` (now; a race is unlikely)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            base = int(s.getsockname()[1])
        if base + block > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for p in range(base, base + block):
                    s2 = stack.enter_context(socket.socket())
                    s2.bind((host, p))
            return base
        except OSError:
            continue
    fail(f"no block of {block} free ports on {host}")


@dataclass
class Tls:
    ca_file: Path
    certs: dict[str, tuple[Path, Path]]  # host -> (chain, key)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def node_certificates(work: Path, hosts: Sequence[str]) -> Tls:
    """A throwaway CA and one certificate per node address (trustme, a dev dependency)."""
    try:
        import trustme
    except ImportError:
        fail("the nodes need trustme for their certificates: pip install -e '.[dev]'")
    ca = trustme.CA()
    ca_file = work / "nodes-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certs = {}
    for host in hosts:
        issued = ca.issue_cert(host)
        chain, key = work / f"{host}.pem", work / f"{host}-key.pem"
        chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        certs[host] = (chain, key)
    return Tls(ca_file, certs)


class Tokens:
    def __init__(self, secret_file: Path) -> None:
        from gameserver.auth import mint_token, read_secret_file

        self._secret = read_secret_file(secret_file)
        self._mint = mint_token

    def __call__(self, player: str) -> str:
        return self._mint(self._secret, player, ttl=3600.0)


# ------------------------------------------------------------------ processes
def cpu_ticks(pids: Sequence[int]) -> int:
    """utime+stime of these processes and their children (bm.tree_cpu)."""
    return sum(bm.tree_cpu(pid) for pid in pids)


@dataclass
class Server:
    """One started server process (a plain server, a supervisor or a node)."""

    proc: subprocess.Popen[str]
    cmd: list[str]
    out: Path
    err: Path
    url: str = ""
    workers: list[cl.WorkerLine] = field(default_factory=list)


def start_server(
    procs: bm.Procs,
    argv: list[str],
    work: Path,
    tag: str,
    *,
    port: int | None = None,
    workers: int = 0,
    timeout: float = 60.0,
) -> Server:
    """Start ``gameserver serve ARGV`` and wait for its ``listening on URL`` line (the one on
    ``port``, if given: workers sharing stdout print their own) and, with ``workers``, for
    that many ``worker I (pid P) listening on URL`` lines (at most 3 s more: a server without
    workers never prints them)."""
    cmd = [str(bm.VENV_PY), "-m", "gameserver.cli", "serve", *argv]
    out, err = work / f"{tag}.out", work / f"{tag}.err"
    with out.open("w") as o, err.open("w") as e:
        proc = procs.start(cmd, o, e)
    bm.log(f"{tag}: {shlex.join(cmd)} (pid {proc.pid})")
    deadline = time.monotonic() + timeout
    seen: float | None = None
    while True:
        text = out.read_text()
        url = cl.listening_url(text, port)
        lines = cl.parse_worker_lines(text)
        if url is not None:
            seen = seen or time.monotonic()
            if len(lines) >= workers or time.monotonic() - seen > 3.0:
                return Server(proc, cmd, out, err, url, lines)
        if proc.poll() is not None:
            tail = err.read_text().strip().splitlines()[-1:] or [""]
            fail(f"{tag}: the server exited with {proc.returncode} before it listened: {tail[0]}")
        if time.monotonic() > deadline:
            fail(f"{tag}: the server did not print 'listening on' within {timeout:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def redis_server(procs: bm.Procs, work: Path) -> Iterator[tuple[str, int]]:
    """A redis-server on a free port of 127.0.0.1, no persistence; stopped by PID."""
    exe = shutil.which("redis-server")
    if exe is None:
        fail("redis-server is not installed (bash tools/ensure_redis.sh installs it)")
    port = free_port()
    cmd = [
        str(exe), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(work), "--protected-mode", "yes",
    ]  # fmt: skip
    with (work / "redis.log").open("w") as log:
        proc = procs.start(cmd, log, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                fail(f"redis-server did not answer on port {port}; see {work / 'redis.log'}")
            time.sleep(0.05)
        bm.log(f"redis-server on 127.0.0.1:{port} (pid {proc.pid})")
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        procs.stop(proc, signal.SIGTERM, 5.0)
