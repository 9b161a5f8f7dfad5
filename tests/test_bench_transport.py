"""tools/bench_transport.py runs end to end: a short run of each path over TLS and plain TCP.

The tool measures the transport alone (the takeover as the server runs it, and trio-websocket
as documented); when the server's handshake API changed, its takeover path broke without a
test noticing. This runs it for a second with a few players and reads its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in ("tws", "takeover"):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_each_path_sends_and_receives_over_tls_and_plain_tcp() -> None:
    cmd = [
        sys.executable, str(ROOT / "tools" / "bench_transport.py"), "--players", "4",
        "--seconds", "1", "--size", "70", "--input-size", "11",
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rows = _rows(run.stdout)
    assert set(rows) == {(p, t) for p in ("tws", "takeover") for t in ("TLS", "plain")}
    for (path, transport), cells in rows.items():
        sent, received = (float(c.replace(",", "")) for c in cells[3:5])
        # 4 players at 20 Hz each way: about 80 messages a second out and in
        assert 40 < sent < 120, (path, transport, cells)
        assert 40 < received < 120, (path, transport, cells)
        assert float(cells[5]) > 0  # µs of CPU per message
