"""fwbench's harness: framework probes, checks, timing, results and the `bench` command line.

Frameworks are imported lazily, where they are used: `import harness` needs only NumPy.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fwbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
