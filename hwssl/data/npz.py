"""A NumPy ``.npz`` file of the user's own images (``[data] name = "npz"``, ``path = "my.npz"``).

Arrays: ``x_train`` and ``y_train`` (required), ``x_test`` and ``y_test`` (optional, both or
neither; without them the test split is a stratified hold-out of the training data). Images are
(N, H, W) greyscale, (N, H, W, C) or (N, C, H, W) with C = 1 or 3; ``uint8`` (0..255) or float
in [0, 1]. Labels are integers 0..K-1. The file is read into memory once (cached while
unchanged).
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np

from hwssl.data._types import DatasetCorrupt, DatasetInfo, DatasetUnavailable, _Raw, _readonly, _stamp

_FIX = ("write the file with numpy.savez(path, x_train=images, y_train=labels[, x_test=..., y_test=...]); "
        "images (N,H,W), (N,H,W,C) or (N,C,H,W), C in 1 or 3")


def _bad(path: Path, detail: str) -> DatasetCorrupt:
    return DatasetCorrupt("npz", path, _FIX, detail)


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise _bad(path, f"array '{key}' has shape {x.shape}; expected (N,H,W), (N,H,W,C) or (N,C,H,W) "
                         f"with C in 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise _bad(path, f"array '{key}': integer pixels must be in 0..255")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise _bad(path, f"array '{key}' has dtype {x.dtype}; expected uint8 or float")
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise _bad(path, f"array '{key}': float pixels must be finite and in [0, 1]")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise _bad(path, f"array '{key}' must be 1-D integers, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise _bad(path, f"array '{key}' has {len(y)} labels for {n} images")
    if y.size and y.min() < 0:
        raise _bad(path, f"array '{key}': labels must be >= 0")
    return y.astype(np.int64)


@functools.lru_cache(maxsize=2)
def _load_cached(file: str, stamp: tuple) -> _Raw:
    path = Path(file)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(path, f"not a NumPy .npz file ({exc})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise _bad(path, f"array '{key}' is missing (found {sorted(arrays)})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise _bad(path, "give both 'x_test' and 'y_test' or neither")
    tx = _images(arrays["x_train"], "x_train", path)
    ty = _labels(arrays["y_train"], len(tx), "y_train", path)
    if len(tx) == 0:
        raise _bad(path, "array 'x_train' holds no images")
    vx = vy = None
    if "x_test" in arrays:
        vx = _images(arrays["x_test"], "x_test", path)
        vy = _labels(arrays["y_test"], len(vx), "y_test", path)
        if vx.shape[1:] != tx.shape[1:] or vx.dtype != tx.dtype:
            raise _bad(path, f"array 'x_test' is {vx.dtype} {vx.shape[1:]}, 'x_train' {tx.dtype} {tx.shape[1:]}")
    scale = 255.0 if tx.dtype == np.uint8 else 1.0
    return _Raw(_readonly(tx), _readonly(ty), None if vx is None else _readonly(vx),
                None if vy is None else _readonly(vy), scale, str(path))


def check_npz(path: str | None) -> Path:
    if not path:
        raise DatasetUnavailable("npz", "(no path)", "set [data] path to the .npz file", "no file given")
    file = Path(path)
    if not file.is_file():
        raise DatasetUnavailable("npz", file, "set [data] path to an existing .npz file", "file not found")
    return file


def load_npz(path: str | None) -> _Raw:
    file = check_npz(path).resolve()
    return _load_cached(str(file), _stamp(file))


def npz_info(path: str | None) -> DatasetInfo:
    raw = load_npz(path)
    labels = raw.train_y if raw.test_y is None else np.concatenate([raw.train_y, raw.test_y])
    k = int(labels.max()) + 1
    return DatasetInfo("npz", int(raw.train_x.shape[1]), tuple(int(v) for v in raw.train_x.shape[2:]), k,
                       f"NumPy arrays from {raw.origin}", tuple(str(i) for i in range(k)))
