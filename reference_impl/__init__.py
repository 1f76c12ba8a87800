"""fwbench's reference: the models of the documents in pure NumPy, forward and backward.

    >>> import reference_impl as ri
    >>> spec = ri.models.get("lenet5")
    >>> model = ri.build(spec, ri.init_weights(spec, seed=0))
    >>> x, y = ri.random_batch(spec, 8)
    >>> loss, grads = model.loss_and_grads(x, y)
"""

from . import data, functional, layers, losses, models, optim
from .data import random_batch
from .model import Sequential, build
from .spec import LayerSpec, ModelSpec, OptimizerSpec
from .weights import WeightsError, check_weights, init_weights, load_weights, save_weights

__all__ = [
    "data",
    "functional",
    "layers",
    "losses",
    "models",
    "optim",
    "build",
    "Sequential",
    "LayerSpec",
    "ModelSpec",
    "OptimizerSpec",
    "init_weights",
    "save_weights",
    "load_weights",
    "check_weights",
    "WeightsError",
    "random_batch",
]
