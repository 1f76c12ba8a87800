"""Real datasets for `bench train`, from files that ship in a package: never downloaded at run time.

    digits               scikit-learn's 8x8 handwritten digits: 1,797 images, 64 features, 10 classes
    breast-cancer        scikit-learn's Wisconsin breast cancer set: 569 samples, 30 features, 2 classes
    fashion-mnist        Zalando's Fashion-MNIST (Debian's dataset-fashion-mnist): 70,000 28x28 images, 10 classes
    fashion-mnist-32     the same, zero-padded to 32x32 (LeNet-5's input)
    fashion-mnist-10x10  the same, its central 20x20 pixels averaged 2x2 into 100 features (the MLP's input)

Fashion-MNIST has MNIST's format (IDX files) and shapes; MNIST itself cannot be fetched on machines
without internet access, which is why the tutorials' MNIST is replaced by it. Preprocessing is done
here, once, in float64 NumPy, so every framework is handed the same numbers (a framework in float32
gets them rounded): pixels scaled to [0, 1], tabular features standardised with the training
split's mean and standard deviation. The scikit-learn sets have no test split: 20% of each class is
held out, drawn with a fixed seed (the same split on every machine, whatever the training seed).

The folder of the Fashion-MNIST files is `--data-dir`, else $FWBENCH_DATA, else Debian's
/usr/share/datasets (a folder holding `fashion-mnist/`, or the four files themselves).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference_impl.spec import ModelSpec

from .errors import BadInput, UnknownName

__all__ = ["Dataset", "DatasetMissing", "DATASETS", "MODEL_DATASETS", "NO_DATASET", "read_idx", "load",
           "for_model", "data_dirs", "targets_for", "fits", "FASHION_FILES", "INSTALL_FASHION", "INSTALL_SKLEARN"]

DATA_ENV = "FWBENCH_DATA"
DEBIAN_DIR = Path("/usr/share/datasets")
INSTALL_FASHION = "sudo apt-get install dataset-fashion-mnist  (Debian/Ubuntu; or put the four IDX files in --data-dir)"
INSTALL_SKLEARN = "pip install scikit-learn  (or pip install -e '.[data]')"
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
_SPLIT_SEED = 20131  # the held-out 20% of the scikit-learn sets: fixed, whatever the training seed


class DatasetMissing(BadInput):
    """A dataset whose files are not here; the message says how to install them."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset, preprocessed, float64 inputs and int64 class labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray  # class labels, int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str  # where the files came from
    preprocessing: str  # what was done to them, in words

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "preprocessing": self.preprocessing,
                "train": len(self.x_train), "test": len(self.x_test), "input_shape": list(self.input_shape),
                "classes": self.classes}

    def limited(self, train: int | None, test: int | None) -> Dataset:
        """The first `train` training and `test` test samples (the files are already shuffled)."""
        def head(a, n):
            return a if n is None else a[:n]

        name = self.name if train is None and test is None else f"{self.name}[{train or 'all'}/{test or 'all'}]"
        return Dataset(name, head(self.x_train, train), head(self.y_train, train), head(self.x_test, test),
                       head(self.y_test, test), self.classes, self.source, self.preprocessing)


# ------------------------------------------------------------------------------------------------
# IDX files


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzipped when its name ends in .gz) as an array.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32. Raises BadInput naming the file for a bad magic, an unknown type or a size
    that does not match the header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise BadInput(f"cannot read the IDX file: {e}", source=str(path)) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadInput("not an IDX file: it must start with two zero bytes", source=str(path))
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise BadInput(f"unknown IDX type code 0x{code:02x}; valid: "
                       + ", ".join(f"0x{c:02x}" for c in _IDX_TYPES), source=str(path))
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadInput(f"the header declares {ndim} dimensions but the file ends first", source=str(path))
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise BadInput(f"the header says shape {shape} ({expected} bytes of data), the file holds "
                       f"{len(data) - header}", source=str(path))
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order: data_dir, $FWBENCH_DATA, Debian's folder."""
    if data_dir is not None:
        return [Path(data_dir)]
    env = os.environ.get(DATA_ENV)
    return [Path(env)] if env else [DEBIAN_DIR]


def _fashion_files(data_dir) -> dict[str, Path]:
    dirs = data_dirs(data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput("no such data directory; give a folder holding fashion-mnist/ or the four IDX files "
                       f"({', '.join(FASHION_FILES.values())}, gzipped or not)", source=str(data_dir))
    for base in dirs:
        for folder in (base / "fashion-mnist", base):
            found = {}
            for key, stem in FASHION_FILES.items():
                for name in (stem + ".gz", stem):
                    if (folder / name).is_file():
                        found[key] = folder / name
                        break
            if len(found) == len(FASHION_FILES):
                return found
    where = " or ".join(str(d) for d in dirs)
    raise DatasetMissing(f"Fashion-MNIST is not in {where} (looked for fashion-mnist/{FASHION_FILES['train_images']}"
                         f"[.gz] and its three siblings); install it: {INSTALL_FASHION}", key="dataset")


def _fashion_raw(data_dir) -> tuple[dict[str, np.ndarray], str]:
    files = _fashion_files(data_dir)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise BadInput(f"{part} images {images.shape} and labels {labels.shape} do not pair up "
                           "(expected (n, 28, 28) and (n,))", source=str(files[f"{part}_images"].parent))
    return arrays, str(files["train_images"].parent)


def _fashion(data_dir, transform: Callable[[np.ndarray], np.ndarray], name: str, how: str) -> Dataset:
    raw, source = _fashion_raw(data_dir)

    def prep(images):
        return transform(images.astype(np.float64)[:, None] / 255.0)

    return Dataset(name, prep(raw["train_images"]), raw["train_labels"].astype(np.int64), prep(raw["test_images"]),
                   raw["test_labels"].astype(np.int64), 10, source, "pixels / 255" + how)


def _pad32(x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))


def _center_10x10(x: np.ndarray) -> np.ndarray:
    c = x[:, 0, 4:24, 4:24]  # the central 20x20: Fashion-MNIST's borders are mostly empty
    return c.reshape(len(c), 10, 2, 10, 2).mean(axis=(2, 4)).reshape(len(c), 100)


def _split(x: np.ndarray, y: np.ndarray, test_share: float = 0.2):
    """A stratified, seeded hold-out: test_share of every class."""
    rng = np.random.default_rng(_SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test[rng.permutation(members)[: round(test_share * len(members))]] = True
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    # shuffled once, so that a subset (--limit-train) holds every class
    train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _sklearn(loader: str):
    try:
        import sklearn.datasets as skd
    except ImportError:
        raise DatasetMissing(f"this dataset ships with scikit-learn, which is not installed: {INSTALL_SKLEARN}",
                             key="dataset") from None
    bunch = getattr(skd, loader)()
    import sklearn

    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64), \
        f"scikit-learn {sklearn.__version__} sklearn.datasets.{loader}()"


def _digits(data_dir) -> Dataset:
    x, y, source = _sklearn("load_digits")
    xtr, ytr, xte, yte = _split(x / 16.0, y)
    return Dataset("digits", xtr, ytr, xte, yte, 10, source, "pixels / 16; 20% of each class held out (fixed seed)")


def _breast_cancer(data_dir) -> Dataset:
    x, y, source = _sklearn("load_breast_cancer")
    xtr, ytr, xte, yte = _split(x, y)
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    return Dataset("breast-cancer", (xtr - mean) / std, ytr, (xte - mean) / std, yte, 2, source,
                   "each feature standardised with the training split's mean and std; 20% of each class "
                   "held out (fixed seed)")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits,
    "breast-cancer": _breast_cancer,
    "fashion-mnist": lambda d: _fashion(d, lambda x: x, "fashion-mnist", ""),
    "fashion-mnist-32": lambda d: _fashion(d, _pad32, "fashion-mnist-32", ", zero-padded to 32x32"),
    "fashion-mnist-10x10": lambda d: _fashion(d, _center_10x10, "fashion-mnist-10x10",
                                              ", central 20x20 averaged over 2x2 blocks: 100 features"),
}
_SHAPES = {"digits": (64,), "breast-cancer": (30,), "fashion-mnist": (1, 28, 28), "fashion-mnist-32": (1, 32, 32),
           "fashion-mnist-10x10": (100,)}
_CLASSES = {"digits": 10, "breast-cancer": 2, "fashion-mnist": 10, "fashion-mnist-32": 10, "fashion-mnist-10x10": 10}

# Each catalogue model's dataset: the tutorial's, or the shipped one closest to it.
MODEL_DATASETS = {"sigmoid_mlp": "digits", "logistic_regression": "breast-cancer", "mnist_cnn": "fashion-mnist",
                  "lenet5": "fashion-mnist-32", "mlp": "fashion-mnist-10x10"}
NO_DATASET = {"linear_regression": "no dataset that ships in a package has 13 features and a real-valued target: "
              "Boston housing (the tutorials' 13 features) was removed from scikit-learn 1.2, its diabetes set has "
              "10 features, and California housing is downloaded at run time"}


def fits(spec: ModelSpec, name: str) -> str | None:
    """Why the dataset `name` cannot train `spec` (its input shape, or its targets for the spec's
    loss), or None when it can."""
    shape, classes = _SHAPES[name], _CLASSES[name]
    if tuple(spec.input_shape) != shape:
        return f"dataset {name!r} has inputs of shape {shape}, model {spec.name!r} takes {tuple(spec.input_shape)}"
    out = tuple(spec.output_shape)
    if spec.loss == "binary_crossentropy" and (classes != 2 or out != (1,)):
        return f"binary cross-entropy needs 2 classes and one output; {name!r} has {classes} classes, the model {out}"
    if spec.loss in ("sparse_categorical_crossentropy", "mse") and out != (classes,):
        return f"dataset {name!r} has {classes} classes, model {spec.name!r} has {out[0]} outputs"
    return None


def for_model(spec: ModelSpec, name: str | None = None) -> str:
    """The dataset that trains `spec`: `name` if it fits, else the model's own; BadInput otherwise."""
    if name is None:
        if spec.name in NO_DATASET:
            raise BadInput(f"model {spec.name!r} has no dataset: {NO_DATASET[spec.name]}; models with one: "
                           f"{', '.join(MODEL_DATASETS)}", key="model", value=spec.name)
        name = MODEL_DATASETS.get(spec.name)
        if name is None:
            raise BadInput(f"model {spec.name!r} has no default dataset; give --data, one of "
                           f"{', '.join(n for n in DATASETS if fits(spec, n) is None) or 'none fits'}",
                           key="--data")
    if name not in DATASETS:
        raise UnknownName("dataset", name, list(DATASETS), key="--data")
    why = fits(spec, name)
    if why:
        fitting = [n for n in DATASETS if fits(spec, n) is None]
        raise BadInput(f"{why}; datasets that fit {spec.name}: {', '.join(fitting) or 'none'}", key="--data",
                       value=name, choices=fitting)
    return name


def load(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The dataset `name`, preprocessed. DatasetMissing (exit 2, with the install command) when its
    files are not here."""
    if name not in DATASETS:
        raise UnknownName("dataset", name, list(DATASETS), key="--data")
    return DATASETS[name](data_dir)


def targets_for(spec: ModelSpec, labels: np.ndarray) -> np.ndarray:
    """What the spec's loss takes for these class labels: the labels (sparse cross-entropy), a
    one-hot float64 matrix (MSE on one output per class), or a float64 column (binary)."""
    if spec.loss == "sparse_categorical_crossentropy":
        return labels
    if spec.loss == "binary_crossentropy":
        return labels.astype(np.float64)[:, None]
    return np.eye(spec.output_shape[0])[labels]


def available(name: str, data_dir=None) -> str | None:
    """None when the dataset can be loaded here, else why not (with the install command), cheaply."""
    try:
        if name.startswith("fashion-mnist"):
            _fashion_files(data_dir)
        else:
            import importlib.util

            if importlib.util.find_spec("sklearn") is None:
                return f"scikit-learn is not installed: {INSTALL_SKLEARN}"
    except BadInput as e:
        return str(e)
    return None
