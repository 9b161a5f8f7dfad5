"""Golden vectors of gamesync.v2: the tests of tests/test_vectors.py on protocol_v2.json.

This loads tests/test_vectors.py as a second module with ``VERSION = 2`` set before it runs, so
its module-level case lists, states and parametrized tests are built from the v2 file; its
test functions are then collected here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "tests._vectors_v2", Path(__file__).with_name("test_vectors.py")
)
assert _spec is not None and _spec.loader is not None
_v2 = importlib.util.module_from_spec(_spec)
_v2.VERSION = 2  # type: ignore[attr-defined]
_spec.loader.exec_module(_v2)

globals().update({k: v for k, v in vars(_v2).items() if k.startswith("test_")})
