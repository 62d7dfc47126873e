"""A folder of the user's own images (``[data] name = "folder"``), streamed from disk.

Layout (torchvision ``ImageFolder``, one folder per class)::

    path/train/<class>/*.png|jpg|...     required
    path/val/<class>/...                 optional: else val is carved from train (val_fraction)
    path/test/<class>/...                optional: else a fixed stratified hold-out (test_fraction)

Classes are the folders of ``train/`` (sorted); ``val/`` and ``test/`` may hold a subset of
them. Images are converted to greyscale when the first training image is greyscale, else to
RGB, resized to ``image_size`` (default: the first training image's size) and normalised with
per-channel statistics of the training split (up to :data:`STATS_IMAGES` of its images, a
seeded sample). Nothing is held in memory but file names: every image is read when a batch
needs it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hwssl.data._types import DatasetCorrupt, DatasetInfo, DatasetUnavailable

STATS_IMAGES = 5000
_FIX = "give [data] path a folder with train/<class>/<image> files (optional val/ and test/ alike)"
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P")


def _extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return tuple(IMG_EXTENSIONS)


def _open(path: str, mode: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetCorrupt("folder", path, "replace or delete this file", f"unreadable image ({exc})") from None


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    """{class: image files} of one split folder; every class must hold at least one image."""
    if not split_dir.is_dir():
        raise DatasetUnavailable("folder", split_dir, _FIX, "folder not found")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetUnavailable("folder", split_dir, _FIX, "no class folders (empty)")
    ext = _extensions()
    out = {}
    for c in classes:
        files = sorted(f for f in (split_dir / c).rglob("*") if f.is_file() and f.name.lower().endswith(ext))
        if not files:
            raise DatasetUnavailable("folder", split_dir / c, _FIX, f"class '{c}' has no images ({', '.join(ext)})")
        out[c] = files
    return out


class FolderImages(Dataset):
    """torchvision ImageFolder over one split folder with the train split's classes, normalised."""

    def __init__(self, split_dir: Path, classes: list[str], mode: str, size: tuple[int, int],
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import v2

        class _Fixed(ImageFolder):  # the train split decides the classes and their labels
            def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
                return classes, {c: i for i, c in enumerate(classes)}

        self.transform = v2.Compose([v2.ToImage(), v2.Resize(list(size), antialias=True),
                                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
        self.folder = _Fixed(str(split_dir), loader=functools.partial(_open, mode=mode), allow_empty=True)
        self.targets = np.asarray(self.folder.targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.folder[i]
        return self.transform(image), label


class Layout:
    """The split folders of an image tree, checked: classes, images, colour mode and size."""

    def __init__(self, path: str | None) -> None:
        if not path:
            raise DatasetUnavailable("folder", "(no path)", _FIX, "no folder given")
        self.root = Path(path)
        if not self.root.is_dir():
            raise DatasetUnavailable("folder", self.root, _FIX, "folder not found")
        if not any(self.root.iterdir()):
            raise DatasetUnavailable("folder", self.root, _FIX, "folder is empty")
        self.files = {"train": _class_files(self.root / "train")}
        self.classes = list(self.files["train"])
        for split in ("val", "test"):
            if (self.root / split).is_dir():
                self.files[split] = _class_files(self.root / split)
                extra = sorted(set(self.files[split]) - set(self.classes))
                if extra:
                    raise DatasetUnavailable("folder", self.root / split / extra[0], _FIX,
                                             f"class '{extra[0]}' is not a class of train/")
        for files in self.files.values():  # headers only: a file PIL cannot identify fails here
            for f in (f for fs in files.values() for f in fs):
                _identify(str(f))
        from PIL import Image
        with Image.open(self.files["train"][self.classes[0]][0]) as first:
            self.native_size = (first.height, first.width)
            self.mode = "L" if first.mode in _GREY_MODES else "RGB"

    def info(self, size: tuple[int, int] | None) -> DatasetInfo:
        return DatasetInfo("folder", 1 if self.mode == "L" else 3, tuple(size or self.native_size),
                           len(self.classes), f"image folder {self.root}", tuple(self.classes))

    def split(self, name: str, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
              ) -> FolderImages | None:
        if name not in self.files:
            return None
        return FolderImages(self.root / name, self.classes, self.mode, size, mean, std)


def _identify(path: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetCorrupt("folder", path, "replace or delete this file", f"unreadable image ({exc})") from None


def folder_stats(images: Dataset, indices: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std in [0, 1] of (a seeded sample of up to STATS_IMAGES) training images,
    loaded with ``images`` set to identity normalisation."""
    if len(indices) > STATS_IMAGES:
        indices = np.random.default_rng(seed).choice(indices, STATS_IMAGES, replace=False)
    total = sq = None
    count = 0
    for i in indices:
        x = images[int(i)][0].double().flatten(1)
        total = x.sum(1) if total is None else total + x.sum(1)
        sq = x.pow(2).sum(1) if sq is None else sq + x.pow(2).sum(1)
        count += x.shape[1]
    mean = (total / count).numpy()
    std = np.sqrt(np.maximum((sq / count).numpy() - mean ** 2, 0.0))
    return mean, np.where(std > 1e-6, std, 1.0)


@functools.lru_cache(maxsize=4)
def layout(path: str, stamp: tuple) -> Layout:
    """The checked layout, cached while the tree's folders are unchanged."""
    return Layout(path)


def tree_stamp(path: str | None) -> tuple:
    """(name, mtime) of the root and of every split and class folder: adding or removing an image
    changes its folder's mtime."""
    if not path or not Path(path).is_dir():
        return ()
    root = Path(path)
    dirs = [root] + [d for s in ("train", "val", "test") if (root / s).is_dir()
                     for d in [root / s, *sorted(p for p in (root / s).iterdir() if p.is_dir())]]
    return tuple((str(d), d.stat().st_mtime_ns) for d in dirs)
