"""Splits held in memory (the built-in sets and .npz files): normalised float32 tensors.

8-bit images at their own size take the exact route: per-channel statistics from a histogram
of the training split and a per-channel lookup table. Float images, or any images resized to
``image_size`` (torchvision ``transforms.v2.functional.resize``, antialiased), are converted
to float32 in [0, 1], resized in chunks, and normalised with the training split's mean/std.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hwssl.data._types import _Raw
from hwssl.data.splits import SplitPlan

_CHUNK = 2048


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


def _scaled(x: np.ndarray, scale: float, size: tuple[int, int]) -> torch.Tensor:
    """Images in [0, 1] as float32 (N,C,H,W), resized to ``size``."""
    from torchvision.transforms.v2 import functional as TF

    parts = []
    for s in range(0, len(x), _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(x[s:s + _CHUNK], dtype=np.float32)) / scale
        if tuple(chunk.shape[2:]) != tuple(size):
            chunk = TF.resize(chunk, list(size), antialias=True)
        parts.append(chunk)
    return torch.cat(parts) if parts else torch.empty(0, x.shape[1], *size)


def _float_stats(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    xd = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    mean = xd.mean(dim=1).numpy()
    std = xd.std(dim=1, unbiased=False).numpy()
    return mean, np.where(std > 1e-12, std, 1.0)


def in_memory_splits(raw: _Raw, plan: SplitPlan, size: tuple[int, int]
                     ) -> tuple[TensorDataset, TensorDataset, TensorDataset, np.ndarray, np.ndarray]:
    """(train, val, test, mean, std) for the rows ``plan`` picks out of ``raw``."""
    test_x = raw.test_x if raw.test_x is not None else raw.train_x
    test_y = raw.test_y if raw.test_y is not None else raw.train_y
    rows = {"train": (raw.train_x, raw.train_y, plan.train), "val": (raw.train_x, raw.train_y, plan.val),
            "test": (test_x, test_y, plan.test)}
    if raw.train_x.dtype == np.uint8 and tuple(raw.train_x.shape[2:]) == tuple(size):
        mean, std = _channel_stats(raw.train_x[plan.train], raw.scale)
        sets = [_to_tensor(x[idx], y[idx], raw.scale, mean, std) for x, y, idx in rows.values()]
        return (*sets, mean, std)
    scaled = {k: (_scaled(x[idx], raw.scale, size), y[idx]) for k, (x, y, idx) in rows.items()}
    mean, std = _float_stats(scaled["train"][0])
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    sets = [TensorDataset(((x - m) / s).contiguous(), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
            for x, y in scaled.values()]
    return (*sets, mean, std)
