"""The environment a run is stored with: machine, OS, Python, package versions, BLAS, GPUs, git commit.

No framework is imported here: versions come from package metadata (importlib.metadata), GPUs from
nvidia-smi. Facts only a framework knows (torch's CUDA build, cuDNN, the device a worker really
used) are gathered by the workers that import it. Every probe degrades to None (or [] for GPUs)
instead of raising: metadata must never cost a run.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "TF_DISTRIBUTIONS", "THREAD_COUNT_VARS", "THREAD_ENV_VARS", "COMPARED_FIELDS", "environment",
           "thread_env", "git_info", "gpus", "same_machine", "lookup", "usable_cpus", "peak_rss_reset",
           "peak_rss_bytes"]

# The packages whose versions are recorded: fwbench's dependencies and the frameworks it can run.
PACKAGES = ("numpy", "pandas", "matplotlib", "click", "torch", "tensorflow", "keras", "jax", "jaxlib", "scikit-learn")

# The distributions that provide the `tensorflow` module (the tensorflow adapter reads its version from them).
TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly", "tf-nightly-cpu")

# Environment variables that set thread counts or otherwise change speed (or numerics) of the
# frameworks and their BLAS, OpenMP and oneDNN runtimes.
# The variables that set a pool's thread count: a `bench run` worker sets each to its thread count.
THREAD_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
THREAD_ENV_VARS = (
    # thread counts
    *THREAD_COUNT_VARS, "TF_NUM_INTEROP_THREADS",
    # how threads wait and where they run
    "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES", "OMP_DYNAMIC", "GOMP_SPINCOUNT", "KMP_AFFINITY",
    "KMP_BLOCKTIME", "MKL_DYNAMIC", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE",
    # the C allocator (harness.workers.ALLOCATOR_ENV)
    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES",
    # kernels and compilers
    "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "TF_XLA_FLAGS",
    "XLA_FLAGS", "TF_DETERMINISTIC_OPS", "KERAS_BACKEND", "TORCHINDUCTOR_MAX_AUTOTUNE",
    # GPUs
    "CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_CUDA_ALLOC_CONF",
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "JAX_PLATFORMS", "JAX_ENABLE_X64",
)

# The fields of environment() that make two runs' timings incomparable when they differ (dotted paths).
COMPARED_FIELDS = (
    "cpu.model", "cpu.logical_cores", "cpu.affinity_cores", "gpus", "blas.name", "blas.version",
    *(f"packages.{name}" for name in PACKAGES if name not in ("pandas", "matplotlib", "click", "scikit-learn")),
)

_TIMEOUT_S = 10.0  # for git and nvidia-smi: a hung tool must not hang the run
_REPO = Path(__file__).resolve().parents[1]  # the checkout fwbench runs from, when it runs from one


def environment(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """The machine and software a run measures on, as a JSON-ready dict.

    Keys: cpu {model, machine, logical_cores, affinity_cores, physical_cores}, memory_bytes, os
    {system, release, version, platform}, hostname, python {version, implementation, executable},
    packages {name: version or None} (PACKAGES; 'tensorflow' is the version of whichever
    distribution provides it, named in tensorflow_distribution), fwbench (harness.__version__),
    blas {name, version} or None (NumPy's), gpus [{name, driver_version, memory_bytes}] (from
    nvidia-smi, [] without it), git {commit, dirty} or None, thread_env (thread_env()).

    `repo` is the folder whose git commit is recorded; by default fwbench's own checkout (None
    when fwbench is installed rather than run from a checkout).
    """
    from harness import __version__

    tf_dist = next((d for d in TF_DISTRIBUTIONS if _version(d)), None)
    packages = {name: _version(name) for name in PACKAGES}
    packages["tensorflow"] = _version(tf_dist) if tf_dist else None
    return {
        "cpu": _cpu(),
        "memory_bytes": _memory_bytes(),
        "os": {"system": platform.system(), "release": platform.release(), "version": platform.version(),
               "platform": platform.platform()},
        "hostname": socket.gethostname(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": packages,
        "tensorflow_distribution": tf_dist,
        "fwbench": __version__,
        "blas": _numpy_blas(),
        "gpus": gpus(),
        "git": _git_of(repo),
        "thread_env": thread_env(),
    }


def thread_env() -> dict[str, str | None]:
    """THREAD_ENV_VARS as set now: {name: value, or None when unset}."""
    return {name: os.environ.get(name) for name in THREAD_ENV_VARS}


def _git_of(repo: str | os.PathLike | None) -> dict[str, Any] | None:
    if repo is not None:
        return git_info(repo)
    # NOTE: only fwbench's own checkout: installed into site-packages, the folder above `harness` may
    # lie inside some other project's git checkout, whose commit says nothing about fwbench.
    return git_info(_REPO) if (_REPO / ".git").exists() else None


def git_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """{commit: HEAD's sha, dirty: uncommitted changes or untracked files} of the checkout holding
    path; None when path is not in a git checkout, git is not installed or does not answer."""
    head = _git(path, "rev-parse", "HEAD")
    if head is None:
        return None
    status = _git(path, "status", "--porcelain")
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip())}


def _git(path: str | os.PathLike, *args: str) -> str | None:
    # NOTE: GIT_OPTIONAL_LOCKS=0: `git status` would otherwise refresh the index under a lock, and
    # fail or block someone committing in the same checkout while the run starts.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.run(["git", *args], cwd=path, env=env, capture_output=True, text=True,
                              timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, no such folder, a timeout
        return None
    return proc.stdout if proc.returncode == 0 else None


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs as nvidia-smi lists them: [{name, driver_version, memory_bytes}]; [] without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:  # installed, but no driver or no device
        return []
    found = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        # A GPU's name may hold a comma; the last two fields never do.
        parts = [part.strip() for part in line.rsplit(",", 2)]
        name, driver, memory = parts if len(parts) == 3 else (line.strip(), None, None)
        found.append({"name": name, "driver_version": driver, "memory_bytes": _mib_to_bytes(memory)})
    return found


def _mib_to_bytes(text: str | None) -> int | None:
    try:
        return int(float(text)) * 2**20 if text else None
    except ValueError:  # '[N/A]'
        return None


def same_machine(env_a: Mapping, env_b: Mapping) -> list[str]:
    """The fields of COMPARED_FIELDS that differ between two environment() dicts: [] when timings of
    the two runs may be compared. A field missing from either (an older run) is not counted."""
    differ = []
    for field in COMPARED_FIELDS:
        a, b = lookup(env_a, field), lookup(env_b, field)
        if a is _MISSING or b is _MISSING:
            continue
        if field == "gpus":
            a, b = _gpu_names(a), _gpu_names(b)
        if a != b:
            differ.append(field)
    return differ


_MISSING = object()


def lookup(env: Mapping, dotted: str, default: Any = _MISSING) -> Any:
    """The value at a dotted path of an environment() dict ('cpu.model'), or default where there is none."""
    value: Any = env
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def _gpu_names(found: Any) -> list:
    return [g.get("name") if isinstance(g, Mapping) else g for g in found or []]


# ------------------------------------------------------------------------------------------------
# probes


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU; [] where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if sep:
                entry[name.strip()] = value.strip()
        cpus.append(entry)
    return cpus


def _cpu() -> dict[str, Any]:
    info = _cpuinfo()
    model = next((c["model name"] for c in info if c.get("model name")), None)
    model = model or platform.processor() or None
    cores = {(c.get("physical id"), c.get("core id")) for c in info if "core id" in c}
    affinity = usable_cpus(default=None)
    return {"model": model, "machine": platform.machine(), "logical_cores": os.cpu_count(),
            "affinity_cores": affinity, "physical_cores": len(cores) or None}


def usable_cpus(default: int | None = 1) -> int | None:
    """The CPUs this process may run on (its affinity mask), or os.cpu_count() where the OS has no
    such mask (macOS, Windows) and default is not None; default when neither is known."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        return None if default is None else (os.cpu_count() or default)


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # the kernel's 'kB' is KiB
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _numpy_blas() -> dict[str, str | None] | None:
    """The BLAS NumPy was built with: {name, version}; None with a NumPy older than 1.26."""
    try:
        import numpy as np

        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except (ImportError, TypeError, ValueError, KeyError, AttributeError):
        return None
    return {"name": blas.get("name"), "version": blas.get("version")}


def peak_rss_reset() -> None:
    """Reset the process's peak RSS (Linux 4.0+), so that each cell's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size since it started or since peak_rss_reset (VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None
