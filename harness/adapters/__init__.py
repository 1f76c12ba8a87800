"""The adapter registry: the built-in frameworks plus any registered through entry points.

A third-party package adds a framework by declaring, in its pyproject.toml,

    [project.entry-points."harness.adapters"]
    myframework = "my_package.adapter:MyAdapter"

where MyAdapter subclasses harness.adapters.base.Adapter. It is then listed by `bench list` and
usable in `bench check` and `bench run` exactly like the built-ins. Nothing is imported until it is
asked for. Without packaging, the environment variable FWBENCH_ADAPTERS registers adapters too
(worker processes inherit it): FWBENCH_ADAPTERS="myframework=my_module:MyAdapter,other=pkg.mod:Other".
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from importlib.metadata import entry_points

from ..errors import UnknownName
from .base import Adapter, Availability, BuiltModel, Unavailable

__all__ = ["Adapter", "Availability", "BuiltModel", "Unavailable", "ENTRY_POINT_GROUP", "names", "get"]

ENTRY_POINT_GROUP = "harness.adapters"
ENV_VAR = "FWBENCH_ADAPTERS"

_BUILTIN = {
    "reference": "harness.adapters.reference:ReferenceAdapter",
    "torch": "harness.adapters.torch_adapter:TorchAdapter",
    "tensorflow": "harness.adapters.tensorflow:TensorFlowAdapter",
    "jax": "harness.adapters.jax_adapter:JaxAdapter",
    "keras-jax": "harness.adapters.keras:KerasJaxAdapter",
    "keras-torch": "harness.adapters.keras:KerasTorchAdapter",
}


@cache
def _registered() -> dict[str, str]:
    """name -> 'module:Class' for the built-ins, then plugins (a plugin cannot replace a built-in)."""
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    for item in filter(None, (part.strip() for part in os.environ.get(ENV_VAR, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ValueError(f"{ENV_VAR}: expected name=module:Class, got {item!r}")
        found.setdefault(name.strip(), target.strip())
    return found


def names() -> list[str]:
    return list(_registered())


@cache
def get(name: str) -> Adapter:
    """The adapter called `name`; UnknownName (a KeyError) listing the valid names when there is none."""
    try:
        target = _registered()[name]
    except KeyError:
        raise UnknownName("framework", name, list(_registered())) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as e:  # a plugin's module may raise anything at import; it must not take bench down
        raise ImportError(f"adapter {name!r} ({target}) cannot be loaded: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"adapter {name!r} ({target}) is not a harness.adapters.base.Adapter")
    try:
        adapter = cls()
    except Exception as e:
        raise ImportError(f"adapter {name!r} ({target}) cannot be created: {e}") from e
    adapter.name = name  # the registered name is the one users type and results carry
    return adapter
