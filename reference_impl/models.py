"""The model catalogue: the networks of the documents fwbench started from, as ModelSpecs."""

from __future__ import annotations

from .spec import LayerSpec, ModelSpec, OptimizerSpec

__all__ = ["names", "get", "all_specs"]


def _dense(name, units, activation=None):
    return LayerSpec(name, "dense", out_features=units, activation=activation)


def _conv(name, channels, kernel, activation=None, stride=1, padding="valid"):
    return LayerSpec(name, "conv2d", out_channels=channels, kernel_size=kernel, stride=stride,
                     padding=padding, activation=activation)


def _pool(name, size):
    return LayerSpec(name, "max_pool2d", kernel_size=size)


_ADAM = OptimizerSpec("adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7)
_SGD = OptimizerSpec("sgd", lr=0.1, momentum=0.0)

_CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mlp",
            input_shape=(100,),
            layers=(_dense("fc1", 64, "relu"), _dense("fc2", 10, "softmax")),
            loss="sparse_categorical_crossentropy",
            optimizer=_ADAM,
            summary="Dense(64, relu) -> Dense(10, softmax) on 100 features",
            source="the Keras/PyTorch MLP tutorial of the project's documents",
        ),
        ModelSpec(
            name="sigmoid_mlp",
            input_shape=(64,),
            layers=(_dense("hidden", 32, "sigmoid"), _dense("output", 10, "sigmoid")),
            loss="mse",
            optimizer=_SGD,
            summary="Dense(32, sigmoid) -> Dense(10, sigmoid), MSE, SGD",
            source="the NumPy tutorial network (weights_input_hidden, weights_hidden_output)",
        ),
        ModelSpec(
            name="mnist_cnn",
            input_shape=(1, 28, 28),
            layers=(
                _conv("conv1", 32, 3, "relu"),
                _pool("pool1", 2),
                _conv("conv2", 64, 3, "relu"),
                _pool("pool2", 2),
                _conv("conv3", 64, 3, "relu"),
                LayerSpec("flatten", "flatten"),
                _dense("dense1", 64, "relu"),
                _dense("dense2", 10),
            ),
            loss="sparse_categorical_crossentropy",
            optimizer=_ADAM,
            summary="the Keras MNIST CNN: 3 conv + 2 pool + 2 dense, logits",
            source="the Keras 'simple MNIST convnet' tutorial",
        ),
        ModelSpec(
            name="lenet5",
            input_shape=(1, 32, 32),
            layers=(
                _conv("conv1", 6, 5, "relu"),
                _pool("pool1", 2),
                _conv("conv2", 16, 5, "relu"),
                _pool("pool2", 2),
                LayerSpec("flatten", "flatten"),
                _dense("fc1", 120, "relu"),
                _dense("fc2", 84, "relu"),
                _dense("fc3", 10),
            ),
            loss="sparse_categorical_crossentropy",
            optimizer=OptimizerSpec("sgd", lr=0.01, momentum=0.9),
            summary="LeNet-5 with ReLU and max pooling, as in the PyTorch tutorial, logits",
            source="the PyTorch 'neural networks' tutorial",
        ),
        ModelSpec(
            name="linear_regression",
            input_shape=(13,),
            layers=(_dense("linear", 1),),
            loss="mse",
            optimizer=OptimizerSpec("sgd", lr=0.01, momentum=0.0),
            summary="Dense(1) on 13 features, MSE, SGD",
            source="linear regression as the tutorials teach it",
        ),
        ModelSpec(
            name="logistic_regression",
            input_shape=(30,),
            layers=(_dense("linear", 1, "sigmoid"),),
            loss="binary_crossentropy",
            optimizer=OptimizerSpec("sgd", lr=0.01, momentum=0.0),
            summary="Dense(1) -> sigmoid on 30 features, binary cross-entropy, SGD",
            source="logistic regression as the tutorials teach it",
        ),
    )
}


def names() -> list[str]:
    """The catalogue's model names, in catalogue order."""
    return list(_CATALOGUE)


def get(name: str) -> ModelSpec:
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(_CATALOGUE)}") from None


def all_specs() -> list[ModelSpec]:
    return list(_CATALOGUE.values())
