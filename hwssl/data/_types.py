"""Errors and records shared by every data source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset


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
    """Normalised train/val/test sets plus a note saying which split is which.

    ``train``/``val``/``test`` are datasets of (float32 (C,H,W), int64) pairs: TensorDatasets
    for sets held in memory, streaming sets (:mod:`hwssl.data.sets`) for image folders and for
    augmented training. Read them through :mod:`hwssl.data.sets` (``batches``, ``images``,
    ``plain``), never through ``.tensors``.
    ``indices[split]`` are row indices into the split's source array
    (``sources[split]``: "official-train", "official-test" or "all"), so callers
    can verify disjointness or trace an example back to the raw file.
    """

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset
    split_note: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    augment: str = "none"


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

