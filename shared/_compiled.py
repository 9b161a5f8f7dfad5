"""Which modules the build compiles with mypyc, and a way to run their pure-Python source.

The build (``setup.py``) compiles :data:`MODULES` when the project is installed, unless
``GAMESERVER_PURE=1`` is set at install time or no C compiler works; then the ``.py`` files
are what is imported. At run time, ``GAMESERVER_PURE=1`` in the environment makes
``shared`` (and ``gameserver``) import the ``.py`` source of these modules even where the
compiled extension is installed (:func:`install_pure_finder`), for tests and benchmarks.
It is all or none: compiled modules call each other's compiled code directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

#: the modules compiled with mypyc, chosen by tools/bench_mypyc.py (see BENCHMARKS.md)
MODULES: Final[tuple[str, ...]] = (
    "shared.wire",
    "shared.wsframe",
    "shared.state",
    "shared.delta_v3",
    "shared.messages",
    "gameserver.limits",
)

_ROOT: Final = Path(__file__).resolve().parent.parent


def source_path(module: str) -> Path:
    """The ``.py`` file of one of :data:`MODULES` in this checkout."""
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was imported from a compiled extension (not from its ``.py``)."""
    origin = getattr(module, "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def pure_requested() -> bool:
    """Whether ``GAMESERVER_PURE=1`` is set (at install time: build nothing; at run time:
    import the ``.py`` source)."""
    return os.environ.get("GAMESERVER_PURE", "") == "1"


class PureFinder(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of :data:`MODULES`, ahead of any compiled extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def stale_modules() -> list[str]:
    """The modules whose ``.py`` is newer than the compiled extension beside it (edited or
    checked out since the last install): importing the extension would run old code."""
    stale = []
    for module in MODULES:
        src = source_path(module)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            ext = src.with_name(src.stem + suffix)
            try:
                if ext.stat().st_mtime < src.stat().st_mtime:
                    stale.append(module)
                break
            except FileNotFoundError:
                continue
    return stale


def install_pure_finder() -> None:
    """Import the modules' pure source from now on (once) with ``GAMESERVER_PURE=1``, or when
    a compiled module is older than its source (then with a one-line warning: reinstall, e.g.
    ``make .venv/.installed``, to compile again)."""
    if any(isinstance(f, PureFinder) for f in sys.meta_path):
        return
    if pure_requested():
        sys.meta_path.insert(0, PureFinder())
        return
    stale = stale_modules()
    if stale:
        print(
            f"gameserver: compiled {', '.join(stale)} older than the source: using the pure-Python"
            " modules (reinstall to compile again)",
            file=sys.stderr,
        )
        sys.meta_path.insert(0, PureFinder())
