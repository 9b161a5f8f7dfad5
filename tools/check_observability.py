"""Try docs/grafana-dashboard.json and docs/alerts.yml against a real Prometheus.

Starts a gameserver (metrics on 127.0.0.1), a Prometheus that scrapes it every second with
docs/alerts.yml loaded, and a few gamebots; then evaluates every query of every Grafana panel
through Prometheus's HTTP API (``$instance`` as ``.*``, ``$__rate_interval`` as ``15s``) and
reads the state of every alerting rule; first ``promtool check rules`` and the rules' unit
tests (``docs/alerts.test.yml``: the alerts fire on synthetic series). Prints one line per query and exits 1 if a query is
rejected, a query that should have data has none, or a rule does not load healthy.

Needs ``prometheus`` and ``promtool`` (Debian: ``apt-get install prometheus``). Not part of
``make test``: it is a check to run by hand when the dashboard or the rules change::

    .venv/bin/python tools/check_observability.py
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: queries that may rightly be empty in a healthy run (nothing refused, dropped or resumed)
MAY_BE_EMPTY = (
    "refused",
    "protocol_errors",
    "resumes",
    "seats_expired",
    "desync",
    "dropped",
    "slow_disconnects",
    "ticks_late",
    "ticks_skipped",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(prom: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return dict(json.load(r))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))


def get(prom: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{prom}{path}", timeout=5) as r:
        return dict(json.load(r))


def main() -> int:
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            print(f"check_observability: {tool} not found (apt-get install prometheus)")
            return 2
    rules = ROOT / "docs" / "alerts.yml"
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True
    )
    print(check.stdout.strip() or check.stderr.strip())
    if check.returncode:
        return 1
    unit = subprocess.run(
        ["promtool", "test", "rules", str(ROOT / "docs" / "alerts.test.yml")],
        capture_output=True,
        text=True,
    )
    print((unit.stdout + unit.stderr).strip())
    if unit.returncode:
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port, metrics, prom = free_port(), free_port(), free_port()
        state = work / "state"
        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{rules}']\n"
            "scrape_configs:\n"
            f"  - job_name: gameserver\n    static_configs: [{{targets: ['127.0.0.1:{metrics}']}}]\n"
        )
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "gameserver"), "serve", "--port", str(port), "--metrics-port",
                     str(metrics), "--state-dir", str(state), "--max-connections-per-ip", "0",
                     "--log-level", "WARNING"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            procs.append(
                subprocess.Popen(
                    ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                     f"--storage.tsdb.path={work / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            time.sleep(3)
            bots = subprocess.run(
                [str(BIN / "gamebots"), "--url", f"wss://127.0.0.1:{port}", "--state-dir",
                 str(state), "--rooms", "4", "--players", "8", "--duration", "25",
                 "--drop-every", "5"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            print(f"gamebots: exit {bots.returncode}")
            failures = 0
            dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
            for panel in dash["panels"]:
                for target in panel.get("targets", []):
                    expr = (
                        target["expr"].replace("$instance", ".*").replace("$__rate_interval", "15s")
                    )
                    res = query(prom, expr)
                    if res.get("status") != "success":
                        failures += 1
                        print(f"FAIL {panel['title']}: {res.get('error')}: {expr}")
                        continue
                    series = res["data"]["result"]
                    values = [s["value"][1] for s in series]
                    empty = not series
                    optional = any(word in expr for word in MAY_BE_EMPTY)
                    ok = not empty or optional
                    failures += not ok
                    mark = "ok  " if ok else "FAIL"
                    print(f"{mark} {panel['title']}: {len(series)} series {values[:4]}  {expr}")
            groups = get(prom, "/api/v1/rules")["data"]["groups"]
            for group in groups:
                for rule in group["rules"]:
                    ok = rule.get("health") == "ok"
                    failures += not ok
                    print(
                        f"{'ok  ' if ok else 'FAIL'} rule {rule['name']}: health "
                        f"{rule.get('health')}, state {rule.get('state')}"
                    )
            if not groups:
                failures += 1
                print("FAIL no rule groups loaded")
            print("PASS" if not failures else f"{failures} failure(s)")
            return 1 if failures else 0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
