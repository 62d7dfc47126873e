"""Fitting: per-kind regressions of kernel time on work, and the network-level calibration.

Small, explainable, robust with few points:

* per kernel kind, ``ms = c0 + c1 * x`` with non-negative coefficients, fitted by weighted least
  squares on relative error (rows weighted by 1/ms). ``c0`` is the kernel's fixed cost (its
  dispatch and loop set-up), ``x`` its work: for conv and dense kernels the multiply-accumulates,
  for memory kernels (slices, takes, concatenations, pools, reshapes) the elements read and
  written. There is no vector-lane term: MetaSchedule vectorises whichever axis suits a width, and
  on the x86 profile the time per MAC of 4-, 11-, 12-, 13- or 50-filter convs stays within the
  2-6x spread that tuning luck gives one kernel (a ``macs / largest divisor of the width <= lanes``
  term priced a 31-filter conv 16x dearer than a 32-filter one, so every filter group of ResNet-20's
  32- and 64-wide stages "saved" a negative time and latency-weighted SSL never pushed them). A
  width's real staircase, where there is one, comes from measured neighbours (below). 1x1 convs
  (GEMMs) and spatial convs are separate kinds. A kind measured at one work value only gets its
  group's (compute or memory) fixed cost and the slope through that point; a kind never measured
  borrows its group's line, and an empty group is a constant (the median kernel time seen). An
  unseen kernel's regression value is multiplied by the residual ratio (measured / regression) of
  its nearest measured neighbours of the same geometry (same spatial sizes and window, other
  channel counts), so it follows the measured staircase;
* per network, ``measured = s * sum(kernels) + a + b * n_kernels`` (the VM's per-call bookkeeping
  that per-kernel timing leaves out), with a ridge prior pulling ``s`` to 1 and ``a``, ``b`` to 0
  so one or two networks cannot swing it. The overheads' prior is the stronger one: with one or two
  networks the gap between their kernel sum and their time goes into the scale. Put into a fixed
  per-network cost instead, a model seeded with the dense net alone priced ResNet-20 candidates of
  0.11x and 0.55x the dense latency at 0.36x and 0.65x, so budget targets overshot (the cold models
  of the stored LeNet and ResNet comparisons: mean error of the predicted latency ratio of the
  search's later candidates 0.32 with this prior, 0.40 with the old one).
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hwssl.latency.kernels import COMPUTE, KernelDesc, elements, macs


def work(k: KernelDesc) -> float:
    """The regression's work term of a kernel (see the module docstring)."""
    return float(macs(k) if k.kind in COMPUTE else elements(k))


def fit_kind(k: KernelDesc) -> str:
    """The regression a kernel belongs to: its kind, with 1x1 convs (the lowered path's GEMM and
    shortcut convs) apart from spatial convs (their loops and data reuse differ)."""
    if k.kind == "conv" and len(k.args) > 1 and len(k.args[1]) == 4 and k.args[1][2] * k.args[1][3] == 1:
        return "gemm"
    return k.kind


def geometry(k: KernelDesc) -> tuple[object, ...]:
    """Kernels that differ only in channel counts share a geometry (fit kind, spatial sizes, window):
    the neighbours whose residuals correct an unseen kernel's regression (HALP's staircase)."""
    first = k.args[0] if k.args else ()
    window = tuple(k.args[1][2:]) if k.kind == "conv" and len(k.args) > 1 else ()
    return (fit_kind(k), tuple(first[2:]), tuple(k.out[2:]), window)


def group_of(kind: str) -> str:
    return "compute" if kind in (*COMPUTE, "gemm") else "memory"


def nnls_small(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares for a handful of columns: the best of the unconstrained fits on
    every column subset whose coefficients are all >= 0."""
    n_cols = x.shape[1]
    best, best_err = np.zeros(n_cols), float(np.sum(y * y))
    for size in range(1, n_cols + 1):
        for cols in itertools.combinations(range(n_cols), size):
            sub = x[:, cols]
            coef, *_ = np.linalg.lstsq(sub, y, rcond=None)
            if np.any(coef < 0) or not np.all(np.isfinite(coef)):
                continue
            err = float(np.sum((sub @ coef - y) ** 2))
            if err < best_err - 1e-15:
                full = np.zeros(n_cols)
                full[list(cols)] = coef
                best, best_err = full, err
    return best


@dataclass
class LineFit:
    """``ms = c0 + c1 * work``, fitted on ``points`` distinct kernels (0: a constant fallback)."""

    c0: float
    c1: float
    points: int
    source: str  # "kind", "group", "constant"

    def __call__(self, x: float) -> float:
        return self.c0 + self.c1 * x

    def to_json(self) -> dict[str, float | int | str]:
        return {"c0": self.c0, "c1": self.c1, "points": self.points, "source": self.source}


def fit_line(xs: Sequence[float], ys: Sequence[float], source: str) -> LineFit | None:
    """Relative-error NNLS of ``ys`` on ``[1, xs]``; None with fewer than two distinct ``xs``."""
    if len(set(xs)) < 2:
        return None
    x = np.array(xs, dtype=float)
    y = np.array(ys, dtype=float)
    scale = max(float(np.max(x)), 1e-12)
    w = 1.0 / np.maximum(y, 1e-9)
    a = np.stack([w, w * x / scale], axis=1)
    coef = nnls_small(a, np.ones_like(y))
    return LineFit(float(coef[0]), float(coef[1] / scale), len(xs), source)


@dataclass
class KernelFits:
    """Every kind's line, plus the fallbacks used for kinds never measured."""

    lines: dict[str, LineFit] = field(default_factory=dict)
    groups: dict[str, LineFit] = field(default_factory=dict)
    constant: float = 0.001

    def line(self, kind: str) -> LineFit:
        if kind in self.lines:
            return self.lines[kind]
        group = self.groups.get(group_of(kind))
        return group if group is not None else LineFit(self.constant, 0.0, 0, "constant")

    def to_json(self) -> dict[str, object]:
        return {"lines": {k: v.to_json() for k, v in self.lines.items()},
                "groups": {k: v.to_json() for k, v in self.groups.items()}, "constant": self.constant}


def fit_kernels(table: dict[str, tuple[KernelDesc, float]]) -> KernelFits:
    """Fit :class:`KernelFits` on the lookup table (one current time per distinct kernel key)."""
    fits = KernelFits()
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for desc, ms in table.values():
        by_kind.setdefault(fit_kind(desc), []).append((work(desc), ms))
    for kind, pts in by_kind.items():
        line = fit_line([p[0] for p in pts], [p[1] for p in pts], "kind")
        if line is not None:
            fits.lines[kind] = line
    for group in ("compute", "memory"):
        pts = [p for kind, ps in by_kind.items() if group_of(kind) == group for p in ps]
        line = fit_line([p[0] for p in pts], [p[1] for p in pts], "group")
        if line is None and pts:
            line = LineFit(float(statistics.median(p[1] for p in pts)), 0.0, len(pts), "group")
        if line is not None:
            fits.groups[group] = line
    for kind, pts in by_kind.items():  # one distinct work value: the group's fixed cost, a slope through it
        group = fits.groups.get(group_of(kind))
        if kind in fits.lines or group is None:
            continue
        x = statistics.median(p[0] for p in pts)
        y = statistics.median(p[1] for p in pts)
        c0 = min(group.c0, y)
        fits.lines[kind] = LineFit(c0, (y - c0) / x if x > 0 else 0.0, len(pts), "kind-point")
    all_ms = [ms for _, ms in table.values()]
    if all_ms:
        fits.constant = float(statistics.median(all_ms))
    return fits


@dataclass
class Calibration:
    """``network ms = scale * sum(kernel ms) + per_network + per_kernel * n_kernels``."""

    scale: float = 1.0
    per_network: float = 0.0
    per_kernel: float = 0.0
    points: int = 0

    def __call__(self, kernel_sum: float, n_kernels: int) -> float:
        return self.scale * kernel_sum + self.per_network + self.per_kernel * n_kernels

    def to_json(self) -> dict[str, float | int]:
        return {"scale": self.scale, "per_network": self.per_network, "per_kernel": self.per_kernel,
                "points": self.points}


#: prior strengths (in units of one network's relative-error row): scale -> 1, overheads -> 0
PRIOR_SCALE = 0.05
PRIOR_OVERHEAD = 1.0


def fit_calibration(rows: Sequence[tuple[float, int, float]]) -> Calibration:
    """Fit on (sum of predicted kernel ms, kernel count, measured network ms) per network."""
    rows = [r for r in rows if r[2] > 0]
    if not rows:
        return Calibration()
    ref = float(statistics.median(r[2] for r in rows))
    nref = float(statistics.median(r[1] for r in rows)) or 1.0
    a, y = [], []
    for ksum, n, measured in rows:
        w = 1.0 / measured
        a.append([w * ksum, w * ref, w * ref * n / nref])
        y.append(1.0)
    a += [[PRIOR_SCALE, 0.0, 0.0], [0.0, PRIOR_OVERHEAD, 0.0], [0.0, 0.0, PRIOR_OVERHEAD]]
    y += [PRIOR_SCALE, 0.0, 0.0]
    coef = nnls_small(np.array(a), np.array(y))
    return Calibration(float(coef[0]), float(coef[1] * ref), float(coef[2] * ref / nref), len(rows))
