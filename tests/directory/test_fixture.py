"""The Redis fixture's contract: without redis-server, a test that needs it fails on CI and
skips elsewhere, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NEEDS_REDIS = """
def test_needs_redis(redis_server):
    assert False, "must not run without redis-server"
"""


@pytest.mark.parametrize("ci", [True, False])
def test_missing_redis_server_fails_on_ci_and_skips_elsewhere(tmp_path: Path, ci: bool) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(
        "from tests.directory.conftest import redis_server  # noqa: F401\n"
    )
    test_file = project / "test_needs_redis.py"
    test_file.write_text(NEEDS_REDIS)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(empty)  # no redis-server on it
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test_file)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert "redis-server is not installed" in out, out
    if ci:
        assert proc.returncode == 1 and "1 error" in out, out
    else:
        assert proc.returncode == 0 and "1 skipped" in out, out
