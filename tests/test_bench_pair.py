"""tools/bench_pair.py's pure parts, and its refusal of a tree that is not a checkout."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
bp: Any = importlib.import_module("bench_pair")


def test_seated_bots_from_a_report() -> None:
    assert bp.seated_bots({"players": {"target": 160, "connected": 160, "failed": 0}}) == 160
    assert bp.seated_bots({"players": {"target": 160, "connected": 150, "failed": 3}}) == 147
    assert bp.seated_bots({"players": None}) is None
    assert bp.seated_bots({}) is None


def test_ratio_summary() -> None:
    assert bp.ratio_summary([1.0, 0.9, 1.2]) == (1.0, 0.9, 1.2)
    with pytest.raises(bp.PairError, match="no round"):
        bp.ratio_summary([])


def test_a_tree_that_is_no_checkout_gets_one_line(tmp_path: Path) -> None:
    here = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, str(TOOLS / "bench_pair.py"), str(tmp_path), str(here)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "not a checkout" in run.stderr
    assert "Traceback" not in run.stderr
