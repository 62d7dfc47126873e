"""Which rows go to train, val and test: stratified, seeded, and never tuned on the test set.

* test: an official test split when the source has one; otherwise a stratified
  ``test_fraction`` hold-out drawn with a *fixed* seed, independent of ``seed``, so no search
  seed can ever train or tune on the report set.
* val: an official validation split (an image folder's ``val/``) or a stratified
  ``val_fraction`` of the remaining training data, drawn with ``seed``; train is the rest.
* ``*_subset``: a deterministic stratified subset of a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Seed of the fixed test hold-out for data sets without an official test split.
_HOLDOUT_SEED = 20_240_917
# Stream ids so each random decision draws from its own independent stream.
_STREAM_VAL, _STREAM_TRAIN_SUB, _STREAM_VAL_SUB, _STREAM_TEST_SUB, _STREAM_HOLDOUT = range(5)


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


@dataclass(frozen=True)
class SplitPlan:
    """Row indices of each split into its source (``sources``: "official-train", "official-val",
    "official-test" or "all") and a sentence per split for the split note."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    sources: dict[str, str]
    val_desc: str
    test_desc: str
    subsets: str


def plan_splits(train_y: np.ndarray, test_y: np.ndarray | None, *, val_fraction: float, test_fraction: float,
                seed: int, val_y: np.ndarray | None = None, train_subset: int | None = None,
                val_subset: int | None = None, test_subset: int | None = None) -> SplitPlan:
    """Stratified train/val/test rows for labels ``train_y`` (and official ``test_y``/``val_y``)."""
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if test_y is not None:
        pool_idx = np.arange(len(train_y))
        test_idx, test_src = np.arange(len(test_y)), test_y
        src_train, src_test = "official-train", "official-test"
        test_desc = f"official test split ({len(test_idx)})"
    else:
        n_test = int(round(test_fraction * len(train_y)))
        if n_test < 1 or n_test >= len(train_y):
            raise ValueError(f"test_fraction={test_fraction} leaves an empty train or test split "
                             f"(pool of {len(train_y)})")
        test_idx, pool_idx = _stratified_take(train_y, n_test, _rng(_HOLDOUT_SEED, _STREAM_HOLDOUT))
        test_src = train_y
        src_train = src_test = "all"
        test_desc = (f"stratified hold-out of {len(test_idx)} ({test_fraction:g} of {len(train_y)}, "
                     f"fixed seed {_HOLDOUT_SEED}, independent of seed=)")
    if val_y is not None:
        val_idx, train_idx, val_src, src_val = np.arange(len(val_y)), pool_idx, val_y, "official-val"
        val_desc = "official validation split"
    else:
        n_val = int(round(val_fraction * len(pool_idx)))
        if n_val < 1 or n_val >= len(pool_idx):
            raise ValueError(f"val_fraction={val_fraction} leaves an empty train or val split "
                             f"(pool of {len(pool_idx)})")
        v, t = _stratified_take(train_y[pool_idx], n_val, _rng(seed, _STREAM_VAL))
        val_idx, train_idx, val_src, src_val = pool_idx[v], pool_idx[t], train_y, src_train
        val_desc = (f"stratified {val_fraction:g} carved from the "
                    f"{'official train split' if test_y is not None else 'non-test pool'} with seed={seed}")
    train_idx = _subset(train_idx, train_y, train_subset, "train", _rng(seed, _STREAM_TRAIN_SUB))
    val_idx = _subset(val_idx, val_src, val_subset, "val", _rng(seed, _STREAM_VAL_SUB))
    test_idx = _subset(test_idx, test_src, test_subset, "test", _rng(_HOLDOUT_SEED, _STREAM_TEST_SUB))
    subs = ", ".join(f"{k}_subset={v}" for k, v in
                     (("train", train_subset), ("val", val_subset), ("test", test_subset)) if v is not None)
    return SplitPlan(train_idx, val_idx, test_idx, {"train": src_train, "val": src_val, "test": src_test},
                     val_desc, test_desc, subs)


def split_note(name: str, origin: str, plan: SplitPlan, mean: np.ndarray, std: np.ndarray, extra: str = "") -> str:
    """The sentence stored with every trial saying which rows each split holds."""
    return (
        f"{name} from {origin}: "
        f"train={len(plan.train)}, val={len(plan.val)} ({plan.val_desc}; "
        f"the search objective uses val), test={len(plan.test)} = {plan.test_desc}, used only for the "
        f"final report"
        + (f"; subsets: {plan.subsets} (stratified)" if plan.subsets else "")
        + f"; normalised per channel with train mean={np.round(mean, 4).tolist()} "
        f"std={np.round(std, 4).tolist()}" + extra + "."
    )
