"""The mypyc build (setup.py, shared/_compiled.py): compiled where it should be, and the pure
fallback still right.

On CI (``CI=true``) the build must have compiled every module of ``MODULES``: a silent
fallback to pure Python (a missing compiler, a mypyc error at install time) fails here. The
pure source of those modules runs the golden vectors and the wire / limits tests in a
child pytest with ``GAMESERVER_PURE=1`` (which imports the ``.py`` files even where the
extension is installed), so both builds are tested on every run.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import _compiled

ROOT = Path(__file__).resolve().parent.parent
PURE_TESTS = [
    "tests/test_vectors.py",
    "tests/test_vectors_v2.py",
    "tests/test_vectors_v3.py",
    "tests/test_wire.py",
    "tests/test_limits.py",
]


def test_every_listed_module_has_its_source() -> None:
    for name in _compiled.MODULES:
        assert _compiled.source_path(name).is_file(), name
    assert not any(m.startswith("gameserver.games") for m in _compiled.MODULES)


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI=true only: a dev may build pure")
def test_ci_build_is_compiled() -> None:
    assert not _compiled.pure_requested(), "GAMESERVER_PURE=1 is set on CI"
    missing = [
        name
        for name in _compiled.MODULES
        if not _compiled.is_compiled(importlib.import_module(name))
    ]
    assert not missing, f"not compiled by mypyc (a silent fallback at install?): {missing}"


def test_pure_finder_imports_the_source() -> None:
    code = (
        "import sys, gameserver.limits, shared.state, shared.wsframe\n"
        "from shared import _compiled\n"
        "mods = [sys.modules[m] for m in _compiled.MODULES]\n"
        "assert not any(map(_compiled.is_compiled, mods)), [m.__file__ for m in mods]\n"
        "assert all(m.__file__.endswith('.py') for m in mods)\n"
    )
    env = {**os.environ, "GAMESERVER_PURE": "1"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def test_pure_source_passes_the_golden_vectors() -> None:
    env = {**os.environ, "GAMESERVER_PURE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *PURE_TESTS]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_a_compiled_module_older_than_its_source_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edited (or checked-out) source newer than its extension: the old compiled code
    must not run; the finder takes the source instead (stale_modules names it)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for i, name in enumerate(_compiled.MODULES):
        src = tmp_path / f"{name}.py"
        ext = tmp_path / f"{name}{suffix}"
        src.write_text("")
        ext.write_bytes(b"")
        newer, older = (src, ext) if i == 1 else (ext, src)
        os.utime(older, (1_000_000, 1_000_000))
        os.utime(newer, (2_000_000, 2_000_000))
    monkeypatch.setattr(_compiled, "source_path", lambda name: tmp_path / f"{name}.py")
    assert _compiled.stale_modules() == [_compiled.MODULES[1]]
    (tmp_path / f"{_compiled.MODULES[1]}{suffix}").unlink()  # pure build: nothing is stale
    assert _compiled.stale_modules() == []
