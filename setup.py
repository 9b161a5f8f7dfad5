"""Compiles the pure hot modules (shared/_compiled.py: MODULES) with mypyc, if it can.

Everything else about the project is in pyproject.toml. With ``GAMESERVER_PURE=1`` at install
time, or when mypyc or the C compiler fails, nothing is compiled and the ``.py`` modules are
used: the install still succeeds (with a warning).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """MODULES from shared/_compiled.py, read without importing the package."""
    tree = ast.parse((HERE / "shared" / "_compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODULES":
            assert node.value is not None
            return list(ast.literal_eval(node.value))
    raise RuntimeError("shared/_compiled.py defines no MODULES")


def warn(message: str) -> None:
    print(f"gameserver: {message}; using the pure-Python modules", file=sys.stderr)


def ext_modules() -> list[Any]:
    if os.environ.get("GAMESERVER_PURE", "") == "1":
        warn("GAMESERVER_PURE=1")
        return []
    paths = [m.replace(".", "/") + ".py" for m in compiled_modules()]
    try:
        from mypyc.build import mypycify

        return list(mypycify(paths, opt_level="3", group_name="shared__mypyc_group"))
    except (Exception, SystemExit) as exc:  # no mypy, a type error (mypyc exits): stay pure
        warn(f"mypyc failed ({type(exc).__name__}: {exc})")
        return []


class OptionalBuildExt(build_ext):
    """build_ext that, when compiling fails, removes what it built and leaves the modules
    pure (all or nothing: a compiled module needs the group's shared library)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, a compile error
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            warn(f"compiling failed ({type(exc).__name__}: {exc})")


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
