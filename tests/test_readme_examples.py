"""The README's "Testing a game" example is a real test suite: extract it and run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Testing a game"
#: a fenced block whose first line names the file it is, e.g. "# tests/test_pong.py"
BLOCK = re.compile(r"```(?:python|toml)\n# ([\w./-]+)\n(.*?)```", re.DOTALL)


def example_files() -> dict[str, str]:
    """The files the section shows, by the path its first line names."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end >= 0 else len(readme)]
    return {path: f"# {path}\n{body}" for path, body in BLOCK.findall(section)}


def test_the_section_shows_a_complete_suite() -> None:
    files = example_files()
    assert set(files) == {"pyproject.toml", "tests/conftest.py", "tests/test_pong.py"}
    assert 'pytest_plugins = ["gameserver.testing.pytest_plugin"]' in files["tests/conftest.py"]
    tests = files["tests/test_pong.py"]
    assert "RoomHarness(Pong" in tests and "await game_server(Pong)" in tests


def test_the_testing_example_passes(tmp_path: Path) -> None:
    for path, text in example_files().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
    assert counts.get("passed", 0) >= 2, out
    assert set(counts) == {"passed"}, out  # nothing failed, skipped or errored
    # every test the example defines ran and passed, the pure one and the one over WSS
    defined = set(
        re.findall(r"^(?:async )?def (test_\w+)", example_files()["tests/test_pong.py"], re.M)
    )
    passed = set(re.findall(r"^PASSED tests/test_pong\.py::(\w+)", out, re.M))
    assert passed == defined and len(defined) >= 2, out
