"""Models as data: LayerSpec, OptimizerSpec and ModelSpec, with shape inference and analytic FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .functional import conv_geometry, pool_geometry

__all__ = [
    "LAYER_KINDS",
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "LayerSpec",
    "OptimizerSpec",
    "ModelSpec",
]

LAYER_KINDS = ("dense", "conv2d", "max_pool2d", "flatten", "relu", "sigmoid", "tanh", "softmax")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax")
LOSSES = ("mse", "sparse_categorical_crossentropy", "binary_crossentropy")
# (loss, final activation) pairs computed from the logits: see ModelSpec.loss_takes_logits.
_LOGIT_LOSSES = frozenset({("sparse_categorical_crossentropy", "softmax"), ("binary_crossentropy", "sigmoid")})
# Every hyperparameter must be given: frameworks' defaults differ (Adam's epsilon above all).
OPTIMIZERS = {
    "sgd": ("lr", "momentum"),
    "rmsprop": ("lr", "rho", "eps"),
    "adam": ("lr", "beta1", "beta2", "eps"),
}


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One layer. `activation` (on dense and conv2d) is applied after the layer, as in Keras.

    dense: out_features, use_bias. conv2d: out_channels, kernel_size, stride, padding, use_bias.
    max_pool2d: kernel_size, stride (defaults to kernel_size), padding. The others take nothing.
    padding: an int, a pair, 'valid' or 'same'.
    """

    name: str
    kind: str
    out_features: int | None = None
    out_channels: int | None = None
    kernel_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: str | tuple[int, int] = "valid"
    activation: str | None = None
    use_bias: bool = True

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"layer name must be non-empty and without '.', got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(LAYER_KINDS)}")
        if self.activation is not None:
            if self.kind not in ("dense", "conv2d"):
                raise ValueError(f"layer {self.name!r}: only dense and conv2d take an activation")
            if self.activation not in ACTIVATIONS:
                raise ValueError(f"layer {self.name!r}: unknown activation {self.activation!r}; "
                                 f"valid: {', '.join(ACTIVATIONS)}")
        for attr in ("kernel_size", "stride"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, _pair(value))
        if not isinstance(self.padding, str):
            object.__setattr__(self, "padding", _pair(self.padding))
        if self.kind == "dense" and not (self.out_features and self.out_features > 0):
            raise ValueError(f"dense layer {self.name!r} needs out_features > 0")
        if self.kind == "conv2d":
            if not (self.out_channels and self.out_channels > 0) or self.kernel_size is None:
                raise ValueError(f"conv2d layer {self.name!r} needs out_channels > 0 and kernel_size")
            if self.stride is None:
                object.__setattr__(self, "stride", (1, 1))
        if self.kind == "max_pool2d":
            if self.kernel_size is None:
                raise ValueError(f"max_pool2d layer {self.name!r} needs kernel_size")
            if self.stride is None:
                object.__setattr__(self, "stride", self.kernel_size)

    @property
    def has_params(self) -> bool:
        return self.kind in ("dense", "conv2d")

    def param_shapes(self, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Canonical shapes of this layer's parameters, keyed '<layer>.weight' and '<layer>.bias'."""
        if self.kind == "dense":
            shapes = {f"{self.name}.weight": (in_shape[0], self.out_features)}
            out = self.out_features
        elif self.kind == "conv2d":
            shapes = {f"{self.name}.weight": (self.out_channels, in_shape[0], *self.kernel_size)}
            out = self.out_channels
        else:
            return {}
        if self.use_bias:
            shapes[f"{self.name}.bias"] = (out,)
        return shapes

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape (no batch axis) for a per-sample input shape."""
        kind = self.kind
        if kind == "dense":
            if len(in_shape) != 1:
                raise ValueError(f"dense layer {self.name!r} needs a flat input, got {in_shape}: add a flatten layer")
            return (self.out_features,)
        if kind in ("conv2d", "max_pool2d"):
            if len(in_shape) != 3:
                raise ValueError(f"{kind} layer {self.name!r} needs a (C, H, W) input, got {in_shape}")
            if kind == "conv2d":
                geo = conv_geometry(in_shape[1:], self.kernel_size, self.stride, self.padding)
                return (self.out_channels, *geo.out_hw)
            geo = pool_geometry(in_shape[1:], self.kernel_size, self.stride, self.padding)
            return (in_shape[0], *geo.out_hw)
        if kind == "flatten":
            return (prod(in_shape),)
        return in_shape

    def flops(self, in_shape: tuple[int, ...]) -> int:
        """Forward FLOPs per sample: 2 per multiply-add, 1 per bias add, 1 per output of the rest."""
        out_shape = self.output_shape(in_shape)
        outputs = prod(out_shape)
        if self.kind == "dense":
            macs = in_shape[0] * self.out_features
        elif self.kind == "conv2d":
            macs = outputs * in_shape[0] * prod(self.kernel_size)
        elif self.kind == "max_pool2d":
            return outputs * (prod(self.kernel_size) - 1)
        elif self.kind == "flatten":
            return 0
        else:
            return outputs
        return 2 * macs + (outputs if self.use_bias else 0) + (outputs if self.activation else 0)


@dataclass(frozen=True, slots=True)
class OptimizerSpec:
    """An optimizer and all its hyperparameters, e.g. OptimizerSpec('adam', lr=1e-3, ...)."""

    kind: str
    hyperparams: tuple[tuple[str, float], ...]

    def __init__(self, kind: str, **hyperparams: float) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; valid: {', '.join(OPTIMIZERS)}")
        expected = set(OPTIMIZERS[kind])
        if set(hyperparams) != expected:
            raise ValueError(f"optimizer {kind!r} takes exactly {sorted(expected)}, got {sorted(hyperparams)}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "hyperparams", tuple((k, float(hyperparams[k])) for k in OPTIMIZERS[kind]))

    @property
    def params(self) -> dict[str, float]:
        return dict(self.hyperparams)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model: its layers in order, the per-sample input shape, its loss and default optimizer.

    The loss is taken on what the model outputs. When the last layer ends in softmax (with
    sparse_categorical_crossentropy) or sigmoid (with binary_crossentropy), implementations compute
    it from the logits, which is the same function, evaluated stably; with no final activation,
    the outputs are logits (Keras's from_logits=True).
    """

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    loss: str
    optimizer: OptimizerSpec
    summary: str = ""
    source: str = ""
    _shapes: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"model {self.name!r}: unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model {self.name!r}: layer names repeat: {sorted(dup)}")
        shapes = [tuple(self.input_shape)]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
            if "softmax" in (layer.kind, layer.activation) and len(shapes[-1]) != 1:
                # Frameworks disagree on the axis of an image softmax (channels, or the last axis).
                raise ValueError(f"model {self.name!r}: softmax at layer {layer.name!r} needs a flat "
                                 f"(features,) input, got {shapes[-1]}: add a flatten layer first")
        object.__setattr__(self, "_shapes", tuple(shapes))
        last = self.layers[-1]
        final_act = last.activation or (last.kind if last.kind in ACTIVATIONS else None)
        if self.loss == "sparse_categorical_crossentropy" and final_act not in (None, "softmax"):
            raise ValueError(f"model {self.name!r}: cross-entropy needs logits or softmax outputs, not {final_act}")
        if self.loss == "binary_crossentropy" and (final_act != "sigmoid" or shapes[-1] != (1,)):
            raise ValueError(f"model {self.name!r}: binary_crossentropy needs one sigmoid output")

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shapes[-1]

    def layer_shapes(self) -> list[tuple[LayerSpec, tuple[int, ...], tuple[int, ...]]]:
        """(layer, per-sample input shape, per-sample output shape) for every layer."""
        return [(layer, self._shapes[i], self._shapes[i + 1]) for i, layer in enumerate(self.layers)]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, in_shape, _ in self.layer_shapes():
            shapes.update(layer.param_shapes(in_shape))
        return shapes

    @property
    def num_params(self) -> int:
        return sum(prod(s) for s in self.param_shapes().values())

    @property
    def flops_per_sample(self) -> int:
        """Forward FLOPs for one sample, counted from the spec (see LayerSpec.flops)."""
        return sum(layer.flops(in_shape) for layer, in_shape, _ in self.layer_shapes())

    def phase_flops(self, phase: str, batch_size: int) -> int:
        """Analytic FLOPs of one call of a timing phase on a batch (F = forward FLOPs):
        forward F; backward 2F (each dense and conv layer does one product for its weight's
        gradient and one for its input's); forward_backward 3F; train_step 3F plus the optimizer's
        update (counted as 10 FLOPs per parameter for Adam and RMSprop, 3 for SGD)."""
        forward = self.flops_per_sample * batch_size
        per_param = {"sgd": 3, "rmsprop": 10, "adam": 10}[self.optimizer.kind]
        counts = {"forward": forward, "backward": 2 * forward, "forward_backward": 3 * forward,
                  "train_step": 3 * forward + per_param * self.num_params}
        try:
            return counts[phase]
        except KeyError:
            raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(counts)}") from None

    @property
    def final_activation(self) -> str | None:
        last = self.layers[-1]
        return last.activation or (last.kind if last.kind in ACTIVATIONS else None)

    @property
    def loss_takes_logits(self) -> bool:
        """Whether the loss is computed from the logits, the final activation left out: cross-entropy
        after a final softmax, binary cross-entropy after a final sigmoid (as every framework fuses them)."""
        return (self.loss, self.final_activation) in _LOGIT_LOSSES

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model {self.name!r} has no layer {name!r}; layers: {', '.join(l.name for l in self.layers)}")
