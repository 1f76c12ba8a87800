"""Benchmarks run only when asked for by path: `pytest tests/benchmarks --benchmark-only`."""

from pathlib import Path

_HERE = Path(__file__).parent.resolve()


def _asked_for(config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == _HERE or _HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return None if _asked_for(config) else True
    return None
