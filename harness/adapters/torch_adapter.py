"""The `torch` adapter: the spec as a torch.nn.Sequential, NCHW, eager or torch.compile'd.

Layouts: conv weights are already canonical (out, in, kh, kw); Linear.weight is (out, in), the
transpose of the canonical (in, out): `to_canonical` / `from_canonical` are the one place that
converts. Modules are named after the spec's layers, so state_dict keys are the canonical names.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict

import numpy as np

from reference_impl.functional import conv_geometry, pool_geometry
from reference_impl.spec import ModelSpec, OptimizerSpec

from .base import Adapter, BuiltModel, layer_ends, parse_device, phase_readback

__all__ = ["TorchAdapter", "TorchModel", "to_canonical", "from_canonical"]


def _is_dense_weight(spec: ModelSpec, name: str) -> bool:
    layer, _, kind = name.rpartition(".")
    return kind == "weight" and spec.layer(layer).kind == "dense"


def to_canonical(spec: ModelSpec, name: str, array: np.ndarray) -> np.ndarray:
    """A torch parameter (or its gradient) as the canonical array: Linear.weight is transposed."""
    return np.ascontiguousarray(array.T) if _is_dense_weight(spec, name) else array


def from_canonical(spec: ModelSpec, name: str, array: np.ndarray) -> np.ndarray:
    """The inverse of to_canonical."""
    return np.ascontiguousarray(array.T) if _is_dense_weight(spec, name) else np.asarray(array)


def _torch():
    import torch

    return torch


def _modules(spec: ModelSpec):
    """(module name, module, spec layer name) in order; the final activation is returned apart
    when the loss takes logits (cross-entropy after softmax, binary cross-entropy after sigmoid)."""
    nn = _torch().nn
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": lambda: nn.Softmax(dim=-1)}
    mods: list[tuple[str, object, str]] = []
    for layer, in_shape, _ in spec.layer_shapes():
        name, kind = layer.name, layer.kind
        if kind in ("conv2d", "max_pool2d"):
            geo = (conv_geometry if kind == "conv2d" else pool_geometry)(
                in_shape[1:], layer.kernel_size, layer.stride, layer.padding)
            top, bottom, left, right = geo.pads
            symmetric = top == bottom and left == right and (
                kind == "conv2d" or (2 * top <= layer.kernel_size[0] and 2 * left <= layer.kernel_size[1]))
            if not symmetric:
                # Asymmetric ('same' with an even total) or too wide for MaxPool2d: pad explicitly,
                # with zeros for a convolution and -inf for pooling, as the reference does.
                fill = 0.0 if kind == "conv2d" else float("-inf")
                mods.append((f"{name}_pad", nn.ConstantPad2d((left, right, top, bottom), fill), name))
                pad = (0, 0)
            else:
                pad = (top, left)
            if kind == "conv2d":
                mods.append((name, nn.Conv2d(in_shape[0], layer.out_channels, layer.kernel_size,
                                             layer.stride, pad, bias=layer.use_bias), name))
            else:
                mods.append((name, nn.MaxPool2d(layer.kernel_size, layer.stride, pad), name))
        elif kind == "dense":
            mods.append((name, nn.Linear(in_shape[0], layer.out_features, bias=layer.use_bias), name))
        elif kind == "flatten":
            mods.append((name, nn.Flatten(), name))
        else:
            mods.append((name, acts[kind](), name))
        if layer.activation:
            mods.append((f"{name}_{layer.activation}", acts[layer.activation](), name))
    return mods


class TorchModel(BuiltModel):
    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], device: str, dtype: str,
                 mode: str) -> None:
        torch = _torch()
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
        self._torch_dtype = getattr(torch, dtype)
        mods = _modules(spec)
        self._fused = spec.loss_takes_logits
        final = mods.pop() if self._fused else None
        self.module = torch.nn.Sequential(OrderedDict((n, m) for n, m, _ in mods))
        self._final = final[1] if final else None
        # Which module ends each spec layer, for layer_outputs.
        self._ends = {n: layer for n, _, layer in mods}
        if final:
            self._ends[final[0]] = final[2]
        self.module.to(device=device, dtype=self._torch_dtype)
        self.set_weights(weights)
        if mode == "compile":
            # NOTE: every nn.Sequential shares one forward code object, and dynamo's cache is keyed
            # on it: after 8 models (its recompile limit) the next one silently runs eager.
            # Each compiled model therefore starts from an empty cache.
            torch._dynamo.reset()
            # dynamic=False: one graph specialised per input shape, as a benchmark of a fixed batch
            # wants; otherwise a second batch size (the check's, then the timed one) switches dynamo
            # to a dynamic-shape graph, and that slower graph is what would be timed.
            self._run = torch.compile(self.module, dynamic=False)
        else:
            self._run = self.module
        self._optimizer = None
        F = torch.nn.functional
        self._loss_fn = {
            "sparse_categorical_crossentropy": F.cross_entropy,
            "binary_crossentropy": F.binary_cross_entropy_with_logits,
            "mse": F.mse_loss,
        }[spec.loss]

    # -- conversion ---------------------------------------------------------------------------

    def _tensor(self, a: np.ndarray, dtype=None):
        torch = _torch()
        return torch.as_tensor(np.asarray(a), device=self.device).to(dtype or self._torch_dtype)

    def _target(self, y):
        if self.spec.loss == "sparse_categorical_crossentropy":
            return self._tensor(y, _torch().int64)
        return self._tensor(y)

    @staticmethod
    def _numpy(t) -> np.ndarray:
        # A copy: on the CPU .numpy() shares the tensor's memory, which the next update overwrites.
        return np.array(t.detach().cpu().numpy(), copy=True)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        torch = _torch()
        params = dict(self.module.named_parameters())
        missing = set(params) ^ set(weights)
        if missing:
            raise ValueError(f"weights do not match the torch model: {sorted(missing)}")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(self._tensor(from_canonical(self.spec, name, weights[name])))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {n: to_canonical(self.spec, n, self._numpy(p)) for n, p in self.module.named_parameters()}

    # -- computation --------------------------------------------------------------------------

    def forward(self, x):
        torch = _torch()
        # Grad mode on: in compile mode this reuses the graph loss_and_grads compiles.
        with torch.enable_grad():
            out = self._run(self._tensor(x))
            if self._final is not None:
                out = self._final(out)
        return self._numpy(out)

    def _loss(self, x, y):
        return self._loss_fn(self._run(x), self._target(y))

    def loss_and_grads(self, x, y):
        tx = self._tensor(x).requires_grad_(True)
        self.module.zero_grad(set_to_none=True)
        loss = self._loss(tx, y)
        loss.backward()
        grads = {n: to_canonical(self.spec, n, self._numpy(p.grad)) for n, p in self.module.named_parameters()}
        grads["input"] = self._numpy(tx.grad)
        return float(loss.detach()), grads

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        torch = _torch()
        hp, params = optimizer.params, self.module.parameters()
        # Every hyperparameter explicit; these are the reference's update rules (reference_impl.optim).
        if optimizer.kind == "sgd":
            self._optimizer = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], dampening=0.0,
                                              nesterov=False, weight_decay=0.0)
        elif optimizer.kind == "rmsprop":
            self._optimizer = torch.optim.RMSprop(params, lr=hp["lr"], alpha=hp["rho"], eps=hp["eps"],
                                                  momentum=0.0, centered=False, weight_decay=0.0)
        else:
            self._optimizer = torch.optim.Adam(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                               eps=hp["eps"], weight_decay=0.0, amsgrad=False)

    def train_step(self, x, y):
        if self._optimizer is None:
            raise RuntimeError("call set_optimizer before train_step")
        tx = self._tensor(x).requires_grad_(True)  # as in loss_and_grads: one compiled graph
        self._optimizer.zero_grad(set_to_none=True)
        loss = self._loss(tx, y)
        loss.backward()
        self._optimizer.step()
        return float(loss.detach())

    def layer_outputs(self, x):
        """From the eager module, also in compile mode: a compiled graph has no per-layer outputs."""
        torch = _torch()
        outputs = {}
        h = self._tensor(x)
        with torch.no_grad():
            modules = list(self.module.named_children())
            if self._final is not None:
                modules.append((next(reversed(self._ends)), self._final))
            for i, (name, module) in enumerate(modules):
                h = module(h)
                nxt = modules[i + 1][0] if i + 1 < len(modules) else None
                layer = self._ends[name]
                if nxt is None or self._ends[nxt] != layer:
                    outputs[layer] = self._numpy(h)
        return outputs

    def layer_output_grads(self, x, y):
        """From the eager module, module by module, each layer's output kept with retain_grad()."""
        modules = list(self.module.named_children())  # the final activation is not among them when fused
        h, kept = self._tensor(x), {}
        ends = set(layer_ends(self.spec, [self._ends[name] for name, _ in modules]))
        for i, (name, module) in enumerate(modules):
            h = module(h)
            if i in ends:
                h.retain_grad()
                kept[self._ends[name]] = h
        self._loss_fn(h, self._target(y)).backward()
        self.module.zero_grad(set_to_none=True)
        return {layer: self._numpy(t.grad) for layer, t in kept.items()}

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            _torch().cuda.synchronize(self.device)

    def reset_device_memory(self) -> None:
        if self.device.startswith("cuda"):
            _torch().cuda.reset_peak_memory_stats(self.device)

    def device_memory(self) -> tuple[int, str] | None:
        """The CUDA caching allocator's peak since the last reset; None on the CPU (RSS is used)."""
        if not self.device.startswith("cuda"):
            return None
        return int(_torch().cuda.max_memory_allocated(self.device)), "cuda_allocator"

    def knobs(self) -> dict:
        torch = _torch()
        knobs = {
            "mode": self.mode,
            "torch.compile": self.mode == "compile",
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "mkldnn": torch.backends.mkldnn.is_available(),
        }
        if self.device.startswith("cuda"):
            knobs.update({
                "cudnn.benchmark": torch.backends.cudnn.benchmark,
                "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            })
        return knobs

    def timing_phase(self, phase, x, y):
        """Native calls on tensors already on the device; the batch is moved there once."""
        from harness.timing import Phase

        torch = _torch()
        tx, ty = self._tensor(x), self._target(y)
        params = list(self.module.parameters())

        def forward():
            with torch.no_grad():
                out = self._run(tx)
                return self._final(out) if self._final is not None else out

        def zero_grad():
            for p in params:
                p.grad = None

        def forward_backward():
            zero_grad()
            loss = self._loss_fn(self._run(tx), ty)
            loss.backward()
            return loss

        def param_grads(_):
            return {n: to_canonical(self.spec, n, self._numpy(p.grad)) for n, p in self.module.named_parameters()}

        if phase == "forward":
            return Phase(forward, sync=self.sync, how="module(x) under torch.no_grad()",
                         readback=phase_readback(self, phase, output=self._numpy))
        if phase == "forward_backward":
            return Phase(forward_backward, sync=self.sync,
                         how="zero grads, loss(module(x), y), loss.backward(): every parameter gradient",
                         readback=phase_readback(self, phase, grads=param_grads, loss=lambda loss: loss.item()))
        if phase == "backward":
            pending = []

            def prepare():
                zero_grad()
                pending.append(self._loss_fn(self._run(tx), ty))

            return Phase(lambda: pending.pop().backward(), prepare=prepare, sync=self.sync,
                         how="loss.backward() alone; the forward under autograd runs untimed before each call",
                         readback=phase_readback(self, phase, grads=param_grads))
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)
            optimizer = self._optimizer

            def train_step():
                loss = forward_backward()
                optimizer.step()
                return loss

            return Phase(train_step, sync=self.sync,
                         how=f"forward_backward then torch.optim {self.spec.optimizer.kind} step()",
                         readback=phase_readback(self, phase, loss=lambda loss: loss.item()))
        return super().timing_phase(phase, x, y)


class TorchAdapter(Adapter):
    name = "torch"
    modes = ("eager", "compile")
    package = "torch"
    install_hint = "pip install -e '.[torch]' (README: CPU-only or CUDA)"
    model_class = TorchModel

    def devices(self) -> list[str]:
        if not self.availability().available:
            return []
        torch = _torch()
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def configure_threads(self, threads: int) -> dict:
        torch = _torch()
        torch.set_num_threads(threads)
        return {"threads": torch.get_num_threads(), "torch.get_num_threads": torch.get_num_threads(),
                "torch.get_num_interop_threads": torch.get_num_interop_threads()}

    def unavailable_reason(self, device, dtype, mode):
        reason = super().unavailable_reason(device, dtype, mode)
        if reason is None and mode == "compile" and parse_device(device)[0] == "cpu":
            if shutil.which("g++") is None and shutil.which("c++") is None:
                return "torch.compile on the CPU needs a C++ compiler (g++), and none is on PATH"
        return reason
