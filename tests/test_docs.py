"""Docs that match the code: no file points outside the repository, and the README's gamebots
table lists real flags (and every real flag)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from clients.bots.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

# Material that sits beside the checkout and ships with no copy of the project. Spelled in
# pieces so that this file does not match itself.
OUTSIDE = tuple(
    s.encode()
    for s in (
        "../" + "shared",
        "/work/" + "shared",
        "stack-" + "limits",
        "peer-" + "bench",
        "STYLE" + ".md",
    )
)


def _project_files() -> list[Path]:
    """Tracked files, and new ones not yet committed (not the ignored ones)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:  # no git, or not a checkout
        pytest.fail(f"cannot list the project's files with git: {exc}")
    files = [ROOT / name.decode() for name in out.split(b"\0") if name]
    return [f for f in files if f.is_file()]


def test_no_file_points_outside_the_repository() -> None:
    files = _project_files()
    assert any(f.name == "_tws.py" for f in files)  # the listing really covers the tree
    hits = []
    for path in files:
        data = path.read_bytes()
        for needle in OUTSIDE:
            if needle in data:
                line = data[: data.index(needle)].count(b"\n") + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {needle.decode()}")
    assert not hits, "files that cite material outside the repository:\n" + "\n".join(hits)


def _gamebots_section() -> tuple[str, str]:
    """The README's gamebots paragraph and its flag table (the ``| flag | meaning |`` one)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("`gamebots --url")
    head = text.index("| flag | meaning |", start)
    end = text.index("\n\n", head)
    return text[start:head], text[head:end]


def _gamebots_options() -> set[str]:
    options = set()
    for action in build_parser()._actions:
        options.update(o for o in action.option_strings if o.startswith("--"))
    return options - {"--help"}


FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def test_every_flag_in_the_readme_gamebots_table_exists() -> None:
    _, table = _gamebots_section()
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    listed = {flag for row in rows for flag in FLAG.findall(row.split("|")[1])}
    assert "--state-dir" in listed and len(listed) >= 10
    unknown = listed - _gamebots_options()
    assert not unknown, f"the README's gamebots table lists flags gamebots lacks: {unknown}"


def test_every_gamebots_flag_is_in_the_readme() -> None:
    paragraph, table = _gamebots_section()
    mentioned = set(FLAG.findall(paragraph + table))
    missing = _gamebots_options() - mentioned
    assert not missing, f"gamebots flags the README's gamebots section does not mention: {missing}"
