"""reference_impl must stay importable with NumPy alone: it imports nothing but NumPy and the
standard library (the harness imports it, never the reverse)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = ["torch", "tensorflow", "pandas", "matplotlib", "scipy", "click", "harness"]

SCRIPT = """
import json, sys
before = {name.split(".")[0] for name in sys.modules}
import reference_impl
after = {name.split(".")[0] for name in sys.modules}
print(json.dumps({"loaded": sorted(after), "new": sorted(after - before)}))
"""


def _modules_after_import() -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reference_impl_imports_no_framework_or_harness():
    loaded = _modules_after_import()["loaded"]
    assert "reference_impl" in loaded and "numpy" in loaded
    assert [name for name in FORBIDDEN if name in loaded] == []


def test_reference_impl_imports_only_numpy_and_the_standard_library():
    new = _modules_after_import()["new"]
    assert sorted(set(new) - set(sys.stdlib_module_names) - {"numpy", "reference_impl"}) == []
