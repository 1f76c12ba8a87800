"""What a `bench train` run is: its recipe (model, dataset, epochs, batch, optimizer, target), its
contenders (framework x dtype x mode), and the batch order that every contender follows.

The recipe of each catalogue model is the tutorial's where it has one (the Keras MNIST CNN: batch
128, Adam, 5 epochs) and says why where it departs from it. The batch order is a function of the
seed and the epoch only, computed by `batch_indices` in each worker: every contender is handed the
very same samples at the very same step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from reference_impl import models
from reference_impl.spec import OptimizerSpec

from .. import datasets
from ..cells import DTYPES
from ..errors import BadInput

__all__ = ["Recipe", "RECIPES", "Contender", "TrainConfig", "batch_indices", "steps_per_epoch", "TRUTH"]


@dataclass(frozen=True, slots=True)
class Recipe:
    epochs: int
    batch_size: int
    target_accuracy: float  # the test accuracy whose time-to-reach is reported (MLPerf's time to train)
    optimizer: OptimizerSpec | None = None  # None: the spec's own
    why: str = ""


RECIPES: dict[str, Recipe] = {
    "mnist_cnn": Recipe(5, 128, 0.85, why="the Keras 'simple MNIST convnet' tutorial: batch 128, Adam (lr 1e-3, "
                        "eps 1e-7); 5 epochs instead of its 15, on Fashion-MNIST"),
    "lenet5": Recipe(5, 64, 0.85, why="the PyTorch tutorial's SGD with momentum 0.9, lr 0.01"),
    "mlp": Recipe(5, 128, 0.75, why="the spec's Adam at the Keras tutorial's batch size"),
    "sigmoid_mlp": Recipe(20, 16, 0.85, OptimizerSpec("sgd", lr=3.0, momentum=0.0),
                          why="the spec's MSE is averaged over the 10 outputs, which makes every gradient 10x "
                          "smaller than the NumPy tutorial's summed squared error: at the spec's lr 0.1 "
                          "digits reach 21% in 5 epochs; lr 3.0 at batch 16 reaches ~92% in 20"),
    "logistic_regression": Recipe(20, 16, 0.95, OptimizerSpec("sgd", lr=0.1, momentum=0.0),
                                  why="plain SGD on standardised features; lr 0.1 (the spec's 0.01 takes 10x "
                                  "the epochs)"),
}

TRUTH = ("reference", "float64", "eager")  # the contender every other one is compared with


@dataclass(frozen=True, slots=True, order=True)
class Contender:
    framework: str
    dtype: str
    mode: str
    device: str = "cpu"

    @property
    def key(self) -> str:
        return f"{self.framework}.{self.device}.{self.dtype}.{self.mode}"

    @property
    def label(self) -> str:
        return f"{self.framework} {self.mode} {self.dtype}" if self.framework != "reference" else \
            f"reference {self.dtype}"

    @property
    def is_truth(self) -> bool:
        return (self.framework, self.dtype, self.mode) == TRUTH

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Contender:
        return cls(d["framework"], d["dtype"], d["mode"], d.get("device", "cpu"))


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything a training run needs to be repeated, stored in its run.json."""

    model: str
    dataset: str
    epochs: int
    batch_size: int
    optimizer: OptimizerSpec
    contenders: tuple[Contender, ...]
    seed: int = 0
    target_accuracy: float = 0.9
    threads: int = 2
    limit_train: int | None = None
    limit_test: int | None = None
    eval_batch: int = 1000
    recipe_note: str = ""
    data_dir: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BadInput(f"epochs must be at least 1, got {self.epochs}", key="--epochs", value=self.epochs)
        if self.batch_size < 1:
            raise BadInput(f"batch size must be at least 1, got {self.batch_size}", key="--batch")
        if not 0 < self.target_accuracy <= 1:
            raise BadInput(f"the target accuracy is a fraction in (0, 1], got {self.target_accuracy}", key="--target")
        for n, key in ((self.limit_train, "--limit-train"), (self.limit_test, "--limit-test")):
            if n is not None and n < 1:
                raise BadInput(f"must be at least 1, got {n}", key=key)
        if sum(c.is_truth for c in self.contenders) != 1:
            raise ValueError("a training run has exactly one float64 reference contender")

    @property
    def spec(self):
        return models.get(self.model)

    @property
    def truth(self) -> Contender:
        return next(c for c in self.contenders if c.is_truth)

    def to_dict(self) -> dict:
        return {"model": self.model, "dataset": self.dataset, "epochs": self.epochs, "batch_size": self.batch_size,
                "optimizer": {"kind": self.optimizer.kind, **self.optimizer.params},
                "contenders": [c.to_dict() for c in self.contenders], "seed": self.seed,
                "target_accuracy": self.target_accuracy, "threads": self.threads, "limit_train": self.limit_train,
                "limit_test": self.limit_test, "eval_batch": self.eval_batch, "recipe_note": self.recipe_note,
                "data_dir": self.data_dir, "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        opt = dict(d["optimizer"])
        kind = opt.pop("kind")
        return cls(d["model"], d["dataset"], int(d["epochs"]), int(d["batch_size"]), OptimizerSpec(kind, **opt),
                   tuple(Contender.from_dict(c) for c in d["contenders"]), int(d.get("seed", 0)),
                   float(d.get("target_accuracy", 0.9)), int(d.get("threads", 2)), d.get("limit_train"),
                   d.get("limit_test"), int(d.get("eval_batch", 1000)), d.get("recipe_note", ""), d.get("data_dir"),
                   d.get("extra") or {})


def plan(model: str, *, data: str | None = None, epochs: int | None = None, batch_size: int | None = None,
         frameworks: tuple[str, ...] = (), dtypes: tuple[str, ...] = (), modes: tuple[str, ...] = (),
         seed: int = 0, target: float | None = None, threads: int = 2, limit_train: int | None = None,
         limit_test: int | None = None, data_dir: str | None = None) -> TrainConfig:
    """The config of `bench train MODEL ...`: the recipe's values where an option is not given, and
    the contenders: every named framework (default: every one available here) at each dtype
    (default float32), in each named mode (default: its idiomatic one), plus the float64 reference."""
    from .. import adapters
    from ..errors import UnknownName
    from ..suites import idiomatic_mode

    if model not in models.names():
        raise UnknownName("model", model, models.names(), key="MODEL")
    spec = models.get(model)
    dataset = datasets.for_model(spec, data)
    recipe = RECIPES.get(model, Recipe(5, 32, 0.9, why="no recipe for this model: 5 epochs at batch 32"))
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UnknownName("dtype", dtype, DTYPES, key="--dtype")
    registered = adapters.names()
    for name in frameworks:
        if name not in registered:
            raise UnknownName("framework", name, registered, key="--framework")
    chosen = list(frameworks) or [n for n in registered if adapters.get(n).availability().available]
    contenders = {Contender(*TRUTH)}
    for name in chosen:
        adapter = adapters.get(name)
        if not adapter.availability().available:
            raise BadInput(f"{name} is not available here: {adapter.availability().reason}", key="--framework",
                           value=name)
        wanted = [m for m in modes if m in adapter.modes] if modes else [idiomatic_mode(name)]
        if modes and not wanted:
            raise BadInput(f"{name} has none of the modes {', '.join(modes)}; its modes: "
                           f"{', '.join(adapter.modes)}", key="--mode")
        for dtype in dtypes or ("float32",):
            for mode in wanted:
                contenders.add(Contender(name, dtype, mode))
    ordered = sorted(contenders, key=lambda c: (not c.is_truth, c.framework != "reference", c.framework, c.dtype,
                                                c.mode))
    return TrainConfig(model, dataset, recipe.epochs if epochs is None else epochs,
                       recipe.batch_size if batch_size is None else batch_size, recipe.optimizer or spec.optimizer,
                       tuple(ordered), seed, recipe.target_accuracy if target is None else target, threads,
                       limit_train, limit_test, recipe_note=recipe.why, data_dir=data_dir)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Every sample once per epoch; the last batch is smaller when batch_size does not divide n."""
    return -(-n_train // batch_size)


def batch_indices(n_train: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The samples of each step of `epoch` (1-based): a permutation drawn from (seed, epoch) alone,
    cut into batches. Every contender computes the same list, in its own worker."""
    order = np.random.default_rng([seed, epoch]).permutation(n_train)
    return [order[i:i + batch_size] for i in range(0, n_train, batch_size)]
