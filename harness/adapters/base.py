"""The adapter contract: how fwbench builds, runs and reads back a model in one framework.

An adapter is a small stateless object per framework. Its `build` makes a `BuiltModel` from a
neutral ModelSpec and canonical weights; everything that crosses the contract is NumPy in the
canonical layout and names (see docs/adapters.md), so that checks and timings never need to know
the framework. Framework imports happen inside the adapter's methods, never at module import.
`Adapter` is also the shared template: an adapter names its package, distributions, install hint
and model class, and gets availability() and build() from it.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import ClassVar

import numpy as np

from reference_impl.spec import ModelSpec, OptimizerSpec

from ..cells import DTYPES, PHASES, parse_device

__all__ = ["Adapter", "BuiltModel", "Availability", "Unavailable", "DTYPES", "PHASES", "parse_device",
           "phase_readback", "layer_ends"]


class Unavailable(Exception):
    """A framework, device or mode that cannot run here; the message is the reason, for a skip."""


@dataclass(frozen=True, slots=True)
class Availability:
    available: bool
    version: str | None = None
    reason: str = ""  # why not, and how to fix it, when not available


class BuiltModel(ABC):
    """One model in one framework, on one device, in one dtype and mode, with its own weights.

    Inputs are NumPy arrays in the canonical layout (images NCHW); targets are what the spec's loss
    takes (int64 class labels, or floats shaped like the output). Everything returned is NumPy,
    canonical layout and names, on the host, and the caller's own: never a view of framework
    memory that a later call could overwrite (torch's .numpy() on the CPU is such a view).
    """

    spec: ModelSpec
    device: str
    dtype: str
    mode: str

    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs (probabilities after a final softmax or sigmoid, else raw values)."""

    @abstractmethod
    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The mean loss and the gradient of every parameter ('<layer>.weight', '<layer>.bias')
        and of the input ('input'), in the canonical layout."""

    @abstractmethod
    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        """Use this optimizer, with exactly these hyperparameters and the reference's update rule
        (reference_impl.optim), for the following train_step calls; its state starts empty."""

    @abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer update from this batch's gradients; returns the loss before the update."""

    @abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """The current parameters, canonical layout and names."""

    @abstractmethod
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Overwrite every parameter from canonical weights (cast to the model's dtype)."""

    @abstractmethod
    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output (after its activation), keyed by layer name, NCHW for images.

        Used to find the first layer where a framework parts from the reference. A compiled mode
        may answer from its eager model (compilers fuse layers); say so in the adapter's docs.
        """

    def layer_output_grads(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray] | None:
        """dLoss/d(each spec layer's output, after its activation), keyed by layer name, canonical
        layout (NCHW), for the mean loss of the batch; the last layer left out when the loss takes
        logits (the loss sees that layer before its final activation). Optional: the checks use it
        to name a backward error at the layer whose backward computes it (a wrong input gradient
        inside conv2 shows first in conv1's output gradient, not in conv1's parameters). None, the
        default: not provided, and the checks localise by parameter and input gradients alone.
        Like layer_outputs, a compiled mode may answer from its eager model."""
        return None

    def sync(self) -> None:  # noqa: B027 (a no-op is the right default for synchronous devices)
        """Wait until the device has finished all queued work (a no-op on the CPU)."""

    def reset_device_memory(self) -> None:  # noqa: B027 (nothing to reset on the CPU)
        """Start a new peak for device_memory (called before a phase is timed)."""

    def device_memory(self) -> tuple[int, str] | None:
        """(peak bytes on the device since reset_device_memory, how it was measured), or None when
        the device has no allocator to ask (the CPU: `bench run` then reports the worker's peak RSS)."""
        return None

    def knobs(self) -> dict:
        """Every setting of this model that changes its speed (compiler, TF32, oneDNN, ...)."""
        return {"mode": self.mode}

    def timing_phase(self, phase: str, x: np.ndarray, y: np.ndarray):
        """A harness.timing.Phase that runs `phase` on this batch, for `bench run` to time.

        Phases: 'forward' (inference, no gradient tape), 'forward_backward' (the loss and every
        parameter gradient), 'backward' (the backward alone: its `prepare` runs the forward
        untimed before each call), 'train_step' (forward_backward plus the update of the spec's
        default optimizer). Built-in adapters override this to move the batch onto the device once
        and time native calls only. This default goes through the NumPy methods above, so its
        times include host-device copies and conversions; it says so in `how`, and it cannot
        separate a backward (raises Unavailable).
        """
        from harness.timing import Phase

        if phase == "forward":
            return Phase(lambda: self.forward(x), sync=self.sync, how="forward(x) through the NumPy contract",
                         readback=phase_readback(self, phase, output=lambda out: out))
        if phase == "forward_backward":
            return Phase(lambda: self.loss_and_grads(x, y), sync=self.sync,
                         how="loss_and_grads(x, y) through the NumPy contract (input gradient included)",
                         readback=phase_readback(self, phase, grads=lambda r: r[1], loss=lambda r: r[0]))
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)
            return Phase(lambda: self.train_step(x, y), sync=self.sync,
                         how="train_step(x, y) through the NumPy contract",
                         readback=phase_readback(self, phase, loss=lambda loss: loss))
        if phase == "backward":
            raise Unavailable(f"{type(self).__name__} does not time a backward pass on its own")
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")


def output_ends(layers: list[str]) -> list[int]:
    """For layer_outputs: the indices in `layers` (the spec layer of each op, in order) where a spec
    layer's output is complete (a layer with an activation is two ops)."""
    return [i for i, layer in enumerate(layers) if i + 1 == len(layers) or layers[i + 1] != layer]


def layer_ends(spec: ModelSpec, layers: list[str]) -> list[int]:
    """For layer_output_grads: output_ends of the ops the loss sees, leaving out the last layer
    when the loss takes logits."""
    last = spec.layers[-1].name if spec.loss_takes_logits else None
    return [i for i in output_ends(layers) if layers[i] != last]


def phase_readback(model: BuiltModel, phase: str, *, output=None, grads=None, loss=None):
    """A Phase.readback for `phase` of `model`, from the adapter's converters of what the phase's
    run returns: output(result) the canonical output (forward); grads(result) {param: canonical
    gradient} (forward_backward, backward; read from the result or from where the framework left
    them); loss(result) the loss, or None (forward_backward, train_step). A train step's parameters
    are read through get_weights(): the state the timed step left."""
    def readback(result) -> dict:
        out: dict[str, np.ndarray] = {}
        if phase == "forward":
            out["output"] = np.asarray(output(result))
        elif phase in ("forward_backward", "backward"):
            out.update({f"grad:{name}": np.asarray(g) for name, g in grads(result).items() if name != "input"})
        elif phase == "train_step":
            out.update({f"param:{name}": w for name, w in model.get_weights().items()})
        value = loss(result) if loss is not None and phase in ("forward_backward", "train_step") else None
        if value is not None:
            out["loss"] = np.asarray(float(value), dtype=np.float64)
        return out

    return readback


class Adapter(ABC):
    """A framework: whether it is here, what it can run, and how to build a model in it.

    The template: an adapter sets `name`, `modes`, `package`, `install_hint`, `model_class` (and
    `distributions` when several provide the package), and writes devices(); availability() and
    build() come from here. It overrides unavailable_reason() to add its own conditions, and
    availability() or build() only where its framework differs (a third-party adapter may still
    write both itself, as before the template).
    """

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]  # the first is the default, and must be 'eager'
    # The mode the framework's users train in (torch eager, Keras's model.fit, JAX's jit): what a
    # suite's `modes = ["idiomatic"]` times. docs/adapters.md says which, and why, for each built-in.
    idiomatic_mode: ClassVar[str] = "eager"
    package: ClassVar[str | None] = None  # the top-level module the framework is imported as: "torch"
    distributions: ClassVar[tuple[str, ...]] = ()  # the pip distributions that provide it; () means (package,)
    install_hint: ClassVar[str] = ""  # the fix when it is missing: "pip install -e '.[torch]'"
    model_class: ClassVar[type[BuiltModel] | None] = None  # what build() makes (see build)
    # Environment variables the framework must see before it is first imported (KERAS_BACKEND=jax):
    # `bench run` sets them in the adapter's worker, `bench check` runs the adapter in a worker of its own.
    environment: ClassVar[dict[str, str]] = {}
    # Why the framework does not compute float64 models in float64, where that is known (Keras 3 on
    # JAX and torch). A float32 cell whose float64 check (bench run's float64 part) then fails is
    # left unverified with this reason, not failed: its float32 parts still decide, and nothing
    # said here can make a cell pass.
    float64_limitation: ClassVar[str | None] = None

    def availability(self) -> Availability:
        """Whether `package` can be imported here, with the version of the first of `distributions`
        installed. From find_spec and package metadata only: the framework is not imported (that
        takes seconds, and `bench list` must work with NumPy alone). Never raises."""
        if self.package is None:
            return Availability(False, None, f"{type(self).__name__} names no package: set `package` "
                                             "or override availability()")
        try:
            found = importlib.util.find_spec(self.package) is not None
        except (ImportError, ValueError):  # a broken parent package, or a module without a spec
            found = False
        fix = f": {self.install_hint}" if self.install_hint else ""
        for dist in self.distributions or (self.package,):
            try:
                ver = version(dist)
            except PackageNotFoundError:
                continue
            if found:
                return Availability(True, ver)
            return Availability(False, ver, f"{dist} {ver} is installed but module {self.package!r} is not "
                                            f"importable; reinstall{fix}")
        if found:  # a build from source, or an install without metadata
            return Availability(True, None)
        return Availability(False, None, f"not installed{fix}")

    @abstractmethod
    def devices(self) -> list[str]:
        """The devices usable now, 'cpu' first, then 'cuda:0', 'cuda:1', ..."""

    def configure_threads(self, threads: int) -> dict:
        """Use `threads` CPU threads from now on, in this process (a `bench run` worker, where the
        BLAS and OpenMP environment variables are already set); return the counts the framework
        reports back, so that the setting is verified, not assumed: key "threads" is the number
        of threads the framework says its computations will use (None when it cannot tell)."""
        return {"threads": None}

    def unavailable_reason(self, device: str, dtype: str, mode: str) -> str | None:
        """Why this device, dtype and mode cannot run here, or None when they can."""
        status = self.availability()
        if not status.available:
            return status.reason
        if mode not in self.modes:
            return f"{self.name} has no mode {mode!r}; valid: {', '.join(self.modes)}"
        if dtype not in DTYPES:
            return f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}"
        kind, index = parse_device(device)
        usable = self.devices()
        if kind == "cuda" and not any(d.startswith("cuda") for d in usable):
            return f"{self.name} sees no CUDA device here"
        if index is not None and device not in usable:
            return f"{self.name} has no device {device!r}; usable: {', '.join(usable)}"
        return None

    def build(self, spec: ModelSpec, weights: dict[str, np.ndarray], *, device: str = "cpu",
              dtype: str = "float32", mode: str = "eager") -> BuiltModel:
        """The model of `spec` with (a copy of) `weights`, cast to dtype, placed on device.

        Raises Unavailable with unavailable_reason() when this device, dtype or mode cannot run
        here; otherwise returns model_class(spec, weights, device=device, dtype=dtype, mode=mode),
        with the device 'cuda' given as 'cuda:0'.
        """
        if self.model_class is None:
            raise NotImplementedError(f"{type(self).__name__} sets no model_class: set it or override build()")
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        return self.model_class(spec, weights, device="cuda:0" if device == "cuda" else device, dtype=dtype,
                                mode=mode)
