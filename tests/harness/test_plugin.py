"""A third-party adapter, installed as its own distribution, found through the entry points.

tests/plugin_adapter is the example plugin of docs/adapters.md: the distribution
fwbench-plugin-example, whose adapter `numpy_plugin` is registered under the entry-point group
'harness.adapters'. It is installed here with pip into a temporary directory (offline: no
dependencies, the venv's setuptools), and `bench` runs in subprocesses with that directory on
PYTHONPATH, exactly as for a user who pip-installed the plugin: fwbench itself is unchanged.

Broken plugins are declared by hand-written .dist-info metadata (what pip would install), so
that each kind of breakage is exercised on its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "tests" / "plugin_adapter"
CORRUPT_ENV = "FWBENCH_PLUGIN_CORRUPT"  # read by the plugin: parameters to corrupt on load
BUILTINS = ("reference", "torch", "tensorflow")


def _pip_install(src: Path, target: Path) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
            "--no-input", "--quiet", "--target", str(target)]
    # Offline first: no dependencies to fetch, and the build backend (setuptools) from this venv.
    done = subprocess.run([*base, "--no-build-isolation", "--no-index", str(src)], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0 and importlib.util.find_spec("setuptools") is None:
        # No setuptools here: an isolated build must download it (quickly given up without a network).
        shutil.rmtree(target, ignore_errors=True)
        try:
            done = subprocess.run([*base, "--timeout", "15", "--retries", "1", str(src)], capture_output=True,
                                  text=True, timeout=300)
        except subprocess.TimeoutExpired:
            done = subprocess.CompletedProcess([], 1, "", "pip timed out fetching the build backend")
    return done


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A directory holding the installed plugin (its package and its .dist-info)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not available in this Python, so the example plugin cannot be installed")
    root = tmp_path_factory.mktemp("plugin")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = root / "src"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    site = root / "site"
    done = _pip_install(src, site)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        if importlib.util.find_spec("setuptools") is None:
            pytest.skip("cannot install the example plugin: setuptools is not in this venv and the isolated "
                        f"build could not fetch it (no network?): {' | '.join(tail)}")
        pytest.fail(f"pip could not install tests/plugin_adapter: {' | '.join(tail)}")
    assert (site / "fwbench_plugin_example" / "adapter.py").is_file()
    assert list(site.glob("fwbench_plugin_example-*.dist-info/entry_points.txt"))
    return site


BROKEN_ENTRIES = {
    "broken_import": "fwbench_no_such_module_xyz.adapter:Adapter",
    "broken_attr": "fwbench_plugin_example.adapter:NoSuchAdapter",
    "not_an_adapter": "fwbench_plugin_example.adapter:NumpyPluginModel",
    "torch": "fwbench_plugin_example.adapter:NumpyPluginAdapter",  # may not replace the built-in
}


def _fake_dist(root: Path, name: str, entries: dict[str, str], modules: dict[str, str] | None = None) -> Path:
    """A directory with an installed distribution's metadata declaring `entries`, plus modules."""
    site = root / name
    dist = site / f"{name}-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[harness.adapters]\n{lines}")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)
    return site


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    return _fake_dist(tmp_path_factory.mktemp("broken"), "fwbench_broken_plugins", BROKEN_ENTRIES)


def _env(paths, extra=None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(CORRUPT_ENV, None)
    # The plugin directories first; the repository after them, so that harness is importable even
    # where fwbench is not installed (it is, editable, in the project's venv).
    parts = [str(p) for p in paths] + [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.update(extra or {})
    return env


def _bench(*args, paths=(), extra_env=None, cwd=None, script=False) -> subprocess.CompletedProcess:
    """`python -m harness.cli ARGS` (or the `bench` console script) in a fresh process."""
    if script:
        exe = Path(sys.executable).with_name("bench")
        if not exe.exists():
            pytest.skip(f"no `bench` console script next to {sys.executable}: fwbench is not installed there")
        cmd = [str(exe), *args]
    else:
        cmd = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(paths, extra_env), cwd=cwd,
                          timeout=300)


def _frameworks(done: subprocess.CompletedProcess) -> dict[str, dict]:
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["frameworks"]
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)), f"a framework is listed twice: {names}"
    return {r["name"]: r for r in rows}


# -- python -m harness.cli, and the plugin's registration ------------------------------------------


def test_python_m_harness_cli_runs_the_bench_command(tmp_path):
    done = _bench("list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Models (" in done.stdout and "Frameworks (" in done.stdout
    assert _bench("--help", cwd=tmp_path).returncode == 0
    assert _bench("frobnicate", cwd=tmp_path).returncode == 2


def test_without_the_plugin_it_is_not_listed(tmp_path):
    assert "numpy_plugin" not in _frameworks(_bench("list", "--format", "json", cwd=tmp_path))


def test_the_installed_plugin_is_listed_as_available(plugin_site, tmp_path):
    rows = _frameworks(_bench("list", "--format", "json", paths=[plugin_site], cwd=tmp_path))
    plugin = rows["numpy_plugin"]
    assert plugin["available"] is True
    assert plugin["version"] == "plugin 0.1.0"  # from the installed distribution's metadata
    assert plugin["modes"] == ["eager"]
    names = list(rows)
    assert names.index("numpy_plugin") > max(names.index(b) for b in BUILTINS)  # built-ins first

    table = _bench("list", paths=[plugin_site], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.split()[:1] == ["numpy_plugin"])
    assert "available" in line and "unavailable" not in line and "modes: eager" in line


def test_the_bench_console_script_finds_the_plugin(plugin_site, tmp_path):
    done = _bench("list", paths=[plugin_site], cwd=tmp_path, script=True)
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:2] == ["numpy_plugin", "available"] for line in done.stdout.splitlines())


# -- bench check on the plugin ----------------------------------------------------------------------


def test_bench_check_runs_the_plugin_cells_and_passes(plugin_site, tmp_path):
    done = _bench("check", "mlp", "linear_regression", "--framework", "numpy_plugin", "--dtype", "float64",
                  paths=[plugin_site], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for model in ("mlp", "linear_regression"):
        line = next(line for line in done.stdout.splitlines() if line.split()[:2] == [model, "numpy_plugin"])
        assert " pass " in line and "bitwise" in line
    assert "2 pass, 0 fail, 0 error, 0 skip of 2 cells" in done.stdout


def test_bench_check_plugin_json_has_every_tensor_in_both_dtypes(plugin_site, tmp_path):
    done = _bench("check", "mlp", "--framework", "numpy_plugin", "--format", "json",
                  paths=[plugin_site], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    cells = json.loads(done.stdout)
    assert [(c["framework"], c["dtype"], c["status"]) for c in cells] == [
        ("numpy_plugin", "float32", "pass"), ("numpy_plugin", "float64", "pass")]
    names = {t["tensor"] for t in cells[0]["tensors"]}
    assert {"output", "loss", "layer:fc1", "layer:fc2", "grad:input", "grad:fc1.weight", "sgd:fc2.bias",
            "adam:fc1.weight"} <= names


def test_bench_check_skips_what_the_plugin_cannot_run(plugin_site, tmp_path):
    done = _bench("check", "lenet5", "--framework", "numpy_plugin", "--dtype", "float32",
                  paths=[plugin_site], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 pass, 0 fail, 0 error, 1 skip of 1 cells" in done.stdout
    assert "numpy_plugin runs fully connected models only; lenet5 has conv2d, max_pool2d" in done.stdout


def test_a_planted_bug_in_the_plugin_fails_the_check(plugin_site, tmp_path):
    done = _bench("check", "mlp", "linear_regression", "--framework", "numpy_plugin", "--dtype", "float64",
                  paths=[plugin_site], extra_env={CORRUPT_ENV: "fc2.bias"}, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL: mlp/numpy_plugin/cpu/float64/eager first divergence: fc2 (forward)" in done.stdout
    assert "1 pass, 1 fail, 0 error, 0 skip of 2 cells" in done.stdout  # linear_regression has no fc2
    failing = [line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("FAIL ")]
    assert "layer:fc2" in failing and "grad:fc2.bias" in failing and "layer:fc1" not in failing


# -- broken plugins ---------------------------------------------------------------------------------


def test_broken_entry_points_are_listed_unavailable_with_the_reason(plugin_site, broken_site, tmp_path):
    rows = _frameworks(_bench("list", "--format", "json", paths=[plugin_site, broken_site], cwd=tmp_path))
    assert rows["numpy_plugin"]["available"]  # a broken neighbour does not hide a good plugin
    for name in ("broken_import", "broken_attr", "not_an_adapter"):
        assert rows[name]["available"] is False and rows[name]["modes"] == [], name
        assert rows[name]["reason"].startswith(f"adapter {name!r} ({BROKEN_ENTRIES[name]})"), rows[name]
    assert "cannot be loaded" in rows["broken_import"]["reason"]
    assert "fwbench_no_such_module_xyz" in rows["broken_import"]["reason"]
    assert "cannot be loaded" in rows["broken_attr"]["reason"] and "NoSuchAdapter" in rows["broken_attr"]["reason"]
    assert "is not a harness.adapters.base.Adapter" in rows["not_an_adapter"]["reason"]
    # A plugin cannot replace a built-in: 'torch' is still the torch adapter.
    assert "compile" in rows["torch"]["modes"]

    table = _bench("list", paths=[plugin_site, broken_site], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.split()[:1] == ["broken_import"])
    assert line.split()[1] == "unavailable" and "fwbench_no_such_module_xyz" in line


def test_bench_check_of_a_broken_plugin_is_an_error_cell_not_a_crash(plugin_site, broken_site, tmp_path):
    done = _bench("check", "linear_regression", "--framework", "broken_import", "--framework", "numpy_plugin",
                  "--dtype", "float64", paths=[plugin_site, broken_site], cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "ERROR: linear_regression/broken_import/cpu/float64/-" in done.stdout
    assert "cannot be loaded" in done.stdout
    assert "1 pass, 0 fail, 1 error, 0 skip of 2 cells" in done.stdout

    # Broken plugins that are not selected are not loaded, and change nothing.
    done = _bench("check", "linear_regression", "--framework", "numpy_plugin", paths=[plugin_site, broken_site],
                  cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 pass, 0 fail, 0 error, 0 skip of 2 cells" in done.stdout


# Plugins whose module raises something other than ImportError while it is imported (a
# RuntimeError from a driver probe, a SyntaxError): docs/adapters.md promises "An entry point that
# fails to import is listed as unavailable with the error, never a crash".
RAISING_MODULES = {
    "fwbench_raises_runtime": 'raise RuntimeError("driver probe crashed at import")\n',
    "fwbench_raises_syntax": "def adapter(:\n",
}


@pytest.fixture(scope="module")
def raising_site(tmp_path_factory) -> Path:
    entries = {"raises_runtime": "fwbench_raises_runtime:Adapter", "raises_syntax": "fwbench_raises_syntax:Adapter"}
    return _fake_dist(tmp_path_factory.mktemp("raising"), "fwbench_raising_plugins", entries, RAISING_MODULES)


def test_a_plugin_that_raises_on_import_is_listed_unavailable(raising_site, tmp_path):
    done = _bench("list", "--format", "json", paths=[raising_site], cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-600:]
    rows = _frameworks(done)
    assert rows["raises_runtime"]["available"] is False
    assert "driver probe crashed at import" in rows["raises_runtime"]["reason"]
    assert rows["raises_syntax"]["available"] is False


def test_bench_check_with_a_plugin_that_raises_on_import_checks_the_others(raising_site, tmp_path):
    # (Without --framework, `bench check` loads every registered framework and meets the same error.)
    done = _bench("check", "linear_regression", "--framework", "raises_runtime", "--framework", "raises_syntax",
                  "--framework", "reference", "--dtype", "float64", "--format", "json",
                  paths=[raising_site], cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode == 1  # the broken plugins are error cells
    cells = {c["framework"]: c for c in json.loads(done.stdout)}
    assert cells["raises_runtime"]["status"] == "error"
    assert cells["reference"]["status"] == "skip"
