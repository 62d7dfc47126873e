"""``load_dataset``: any registered source -> normalised, stratified train/val/test splits."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from hwssl.data import folder as _folder
from hwssl.data._types import DataSplits
from hwssl.data.memory import in_memory_splits
from hwssl.data.registry import _entry, dataset_info
from hwssl.data.sets import AUGMENTS, ImageSet, augmented
from hwssl.data.splits import plan_splits, split_note


def image_size_of(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``32`` or ``[h, w]`` -> (h, w); None stays None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        size = (value, value)
    else:
        size = tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"image_size must be a positive integer or [height, width], got {value!r}")
    return size  # type: ignore[return-value]


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
    image_size: int | Sequence[int] | None = None,
    augment: str = "none",
) -> DataSplits:
    """Load ``name`` and return normalised, stratified train/val/test splits.

    * test: the official test split (fashion-mnist, cifar10, an npz with ``x_test``, a folder's
      ``test/``; ``test_fraction`` is then ignored) or a stratified ``test_fraction`` hold-out
      drawn with a fixed seed (independent of ``seed``).
    * val: a folder's ``val/``, or a stratified ``val_fraction`` of the remaining training data,
      drawn with ``seed``; train is the rest.
    * ``*_subset``: a deterministic stratified subset of that split (train and val subsets
      follow ``seed``; the test subset uses the fixed seed).
    * Pixels are scaled to [0, 1], resized to ``image_size`` when given, then normalised per
      channel with the mean and std of the returned train split.
    * ``augment``: train-time augmentation of the train split (``none`` | ``crop-flip``).

    ``path`` overrides the data location (fashion-mnist folder, mnist5k csv.gz file or folder,
    cifar10 folder) or names the user's data (image folder, .npz file). Missing files raise
    :class:`DatasetUnavailable`; undecodable files :class:`DatasetCorrupt`.
    """
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {list(AUGMENTS)}, got {augment!r}")
    size = image_size_of(image_size)
    subsets = dict(train_subset=train_subset, val_subset=val_subset, test_subset=test_subset)
    if _entry(name).info.name == "folder":
        splits = _load_folder(path, size, val_fraction, test_fraction, seed, subsets)
    else:
        info = dataset_info(name, path=path, image_size=size)
        raw = _entry(name).load(path)
        plan = plan_splits(raw.train_y, raw.test_y, val_fraction=val_fraction, test_fraction=test_fraction,
                           seed=seed, **subsets)
        train, val, test, mean, std = in_memory_splits(raw, plan, info.image_size)
        resized = "" if size is None or size == tuple(raw.train_x.shape[2:]) else \
            f"; resized to {info.image_size[0]}x{info.image_size[1]}"
        splits = DataSplits(info=info, train=train, val=val, test=test,
                            split_note=split_note(info.name, raw.origin, plan, mean, std, resized),
                            mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
                            indices={"train": plan.train, "val": plan.val, "test": plan.test},
                            sources=plan.sources)
    if augment != "none":
        splits = dataclasses.replace(splits, train=augmented(splits.train, augment, splits.info.image_size),
                                     augment=augment,
                                     split_note=splits.split_note[:-1] + f"; train-time augmentation {augment}.")
    return splits


def _load_folder(path: str | None, size: tuple[int, int] | None, val_fraction: float, test_fraction: float,
                 seed: int, subsets: dict) -> DataSplits:
    tree = _folder.layout(str(path) if path else "", _folder.tree_stamp(path))
    info = tree.info(size)
    size = info.image_size
    channels = info.in_channels
    identity = ((0.0,) * channels, (1.0,) * channels)
    train_all = tree.split("train", size, *identity)
    val_all = tree.split("val", size, *identity)
    test_all = tree.split("test", size, *identity)
    plan = plan_splits(train_all.targets, None if test_all is None else test_all.targets,
                       val_y=None if val_all is None else val_all.targets, val_fraction=val_fraction,
                       test_fraction=test_fraction, seed=seed, **subsets)
    mean, std = _folder.folder_stats(train_all, plan.train, seed)
    stats = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    train = tree.split("train", size, *stats)
    val = train if val_all is None else tree.split("val", size, *stats)
    test = train if test_all is None else tree.split("test", size, *stats)

    def view(base: _folder.FolderImages, idx: np.ndarray) -> ImageSet:
        return ImageSet(base, idx, base.targets[idx])

    note = split_note("folder", str(tree.root), plan, mean, std,
                      f"; {channels}x{size[0]}x{size[1]}, streamed from disk"
                      + (f" (statistics of {_folder.STATS_IMAGES} sampled training images)"
                         if len(plan.train) > _folder.STATS_IMAGES else ""))
    return DataSplits(info=info, train=view(train, plan.train), val=view(val, plan.val), test=view(test, plan.test),
                      split_note=note, mean=stats[0], std=stats[1],
                      indices={"train": plan.train, "val": plan.val, "test": plan.test},
                      sources={k: {"official-train": "train/", "official-val": "val/", "official-test": "test/",
                                   "all": "train/"}[v] for k, v in plan.sources.items()})
