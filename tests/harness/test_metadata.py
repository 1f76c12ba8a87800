"""The environment record: its structure, no framework imports, git commit, GPUs, same_machine."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness import metadata

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env() -> dict:
    return metadata.environment()


def is_opt(value, kind) -> bool:
    return value is None or isinstance(value, kind)


def test_environment_structure_and_types(env):
    assert set(env) >= {"cpu", "memory_bytes", "os", "hostname", "python", "packages", "tensorflow_distribution",
                        "fwbench", "blas", "gpus", "git", "thread_env"}
    cpu = env["cpu"]
    assert set(cpu) == {"model", "machine", "logical_cores", "affinity_cores", "physical_cores"}
    assert is_opt(cpu["model"], str) and isinstance(cpu["machine"], str)
    for name in ("logical_cores", "affinity_cores", "physical_cores"):
        assert cpu[name] is None or (isinstance(cpu[name], int) and cpu[name] >= 1), name
    assert is_opt(env["memory_bytes"], int)
    assert all(isinstance(env["os"][k], str) for k in ("system", "release", "version", "platform"))
    assert isinstance(env["hostname"], str)
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(env["python"]["implementation"], str)
    assert set(env["packages"]) == set(metadata.PACKAGES)
    assert all(is_opt(v, str) for v in env["packages"].values())
    assert env["packages"]["numpy"] == __import__("numpy").__version__  # numpy is always there
    assert env["fwbench"] == harness.__version__
    assert env["blas"] is None or set(env["blas"]) == {"name", "version"}
    assert isinstance(env["gpus"], list)
    assert env["thread_env"] == metadata.thread_env()
    json.dumps(env, allow_nan=False)  # JSON-ready as it is


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_on_linux_cpu_and_memory_come_from_proc(env):
    assert env["cpu"]["model"] and env["cpu"]["logical_cores"] >= env["cpu"]["affinity_cores"] >= 1
    assert env["memory_bytes"] > 2**20


def test_framework_versions_come_from_package_metadata(env):
    for name in ("torch", "keras", "jax"):
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert env["packages"][name] == expected, name
    dist = env["tensorflow_distribution"]
    if dist is None:
        assert env["packages"]["tensorflow"] is None
    else:  # tensorflow-cpu provides the same module as tensorflow; the version is whichever is installed
        assert env["packages"]["tensorflow"] == importlib.metadata.version(dist)


def test_environment_imports_no_framework():
    code = ("import sys, json\nfrom harness import metadata\nmetadata.environment()\n"
            "print(json.dumps([m for m in ('torch', 'tensorflow', 'keras', 'jax', 'pandas') if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == []


def test_git_commit_is_this_checkouts_head(env):
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not run from a git checkout")
    assert env["git"]["commit"] == proc.stdout.strip()
    assert isinstance(env["git"]["dirty"], bool)
    assert metadata.git_info(ROOT / "harness") == metadata.git_info(ROOT)  # any folder of the checkout


def test_outside_a_git_checkout_git_is_none(tmp_path, monkeypatch):
    assert metadata.git_info(tmp_path) is None
    assert metadata.git_info(tmp_path / "no-such-folder") is None
    monkeypatch.chdir(tmp_path)
    assert metadata.environment(repo=tmp_path)["git"] is None


def test_without_git_installed_git_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: neither git nor nvidia-smi
    assert metadata.git_info(ROOT) is None


def test_without_nvidia_smi_gpus_is_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert metadata.gpus() == []
    assert metadata.environment(repo=tmp_path)["gpus"] == []


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_nvidia_smi_output_is_parsed(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 550.54.15, 81559'\n"
                    "echo 'Odd, Name GPU, 535.1, [N/A]'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert metadata.gpus() == [
        {"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "memory_bytes": 81559 * 2**20},
        {"name": "Odd, Name GPU", "driver_version": "535.1", "memory_bytes": None},
    ]
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed: no driver' >&2\nexit 9\n")
    assert metadata.gpus() == []


def test_thread_env_reports_set_and_unset_variables(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    found = metadata.thread_env()
    assert found["OMP_NUM_THREADS"] == "2" and found["TF_ENABLE_ONEDNN_OPTS"] is None
    assert {"MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
            "TF_XLA_FLAGS", "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT"} <= set(found)


def test_same_machine_names_the_fields_that_differ(env):
    assert metadata.same_machine(env, copy.deepcopy(env)) == []
    other = copy.deepcopy(env)
    other["cpu"]["model"] = "Some Other CPU"
    other["cpu"]["logical_cores"] = 512
    other["packages"]["torch"] = "0.0.1"
    other["gpus"] = [{"name": "NVIDIA H200", "driver_version": "1", "memory_bytes": 1}]
    other["hostname"] = "elsewhere"  # not a reason to refuse a comparison
    other["memory_bytes"] = 1
    assert metadata.same_machine(env, other) == ["cpu.model", "cpu.logical_cores", "gpus", "packages.torch"]


def test_same_machine_compares_gpu_names_only_and_skips_missing_fields(env):
    a = copy.deepcopy(env)
    a["gpus"] = [{"name": "NVIDIA H100", "driver_version": "550", "memory_bytes": 1}]
    b = copy.deepcopy(a)
    b["gpus"][0]["driver_version"] = "560"
    assert metadata.same_machine(a, b) == []
    older = copy.deepcopy(env)
    del older["blas"], older["packages"]["jax"]  # a run recorded before these fields existed
    assert metadata.same_machine(env, older) == []
    older["packages"]["keras"] = None if env["packages"]["keras"] else "3.0.0"
    assert metadata.same_machine(env, older) == ["packages.keras"]
