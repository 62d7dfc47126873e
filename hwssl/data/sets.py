"""How every consumer reads a split: in memory (TensorDataset) or streamed from disk alike.

A split is any ``torch.utils.data.Dataset`` of ``(image float32 (C,H,W), label)`` pairs. Sets
held in memory are TensorDatasets and keep their fast path (slicing tensors); image folders
and augmented training sets are :class:`ImageSet` views that load or transform one image at a
time, so a folder larger than memory still trains. The training loop, evaluation, int8
calibration and timing inputs all go through :func:`batches` and :func:`images`.

Augmentation (``crop-flip``: zero-pad by an eighth of the side and crop back at a random
offset, then a random horizontal flip; torchvision ``transforms.v2``) is applied to the training
set only; :func:`plain` returns the same split without it (for calibration and evaluation).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

AUGMENTS = ("none", "crop-flip")


class ImageSet(Dataset):
    """Items ``indices[i]`` of ``base`` with an optional per-image ``transform`` (augmentation)."""

    def __init__(self, base: Dataset, indices: Sequence[int] | np.ndarray, labels: np.ndarray,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 unaugmented: Dataset | None = None) -> None:
        self.base = base
        self._unaugmented = unaugmented
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[int(self.indices[i])]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(y)

    @property
    def plain(self) -> Dataset:
        """The same images without augmentation."""
        if self.transform is None:
            return self
        if self._unaugmented is not None:
            return self._unaugmented
        return ImageSet(self.base, self.indices, self.labels)


def augmentation(name: str, image_size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The train-time transform called ``name`` for normalised (C,H,W) tensors."""
    from torchvision.transforms import v2

    if name == "none":
        return None
    if name == "crop-flip":
        pad = max(1, min(image_size) // 8)
        return v2.Compose([v2.RandomCrop(list(image_size), padding=pad), v2.RandomHorizontalFlip()])
    raise ValueError(f"augment must be one of {list(AUGMENTS)}, got {name!r}")


def augmented(data: Dataset, name: str, image_size: tuple[int, int]) -> Dataset:
    """``data`` with train-time augmentation ``name`` (``data`` itself for ``none``)."""
    transform = augmentation(name, image_size)
    if transform is None:
        return data
    if isinstance(data, ImageSet):
        return ImageSet(data.base, data.indices, data.labels, transform)
    return ImageSet(data, np.arange(len(data)), labels_of(data), transform, unaugmented=data)


def plain(data: Dataset) -> Dataset:
    """``data`` without train-time augmentation."""
    return data.plain if isinstance(data, ImageSet) else data


def labels_of(data: Dataset) -> np.ndarray:
    if isinstance(data, TensorDataset):
        return data.tensors[1].numpy()
    if isinstance(data, ImageSet):
        return data.labels
    return np.asarray([int(data[i][1]) for i in range(len(data))])


def batches(data: Dataset, batch_size: int, generator: torch.Generator | None = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (images, labels): shuffled with ``generator``, in order without one."""
    if isinstance(data, TensorDataset):
        x, y = data.tensors
        order = torch.randperm(len(y), generator=generator) if generator is not None else None
        for start in range(0, len(y), batch_size):
            if order is None:
                yield x[start:start + batch_size], y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield x[idx], y[idx]
        return
    sampler = RandomSampler(data, generator=generator) if generator is not None else None
    yield from DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=0)


def images(data: Dataset, index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """The images at ``index`` (all when None) as one (N,C,H,W) tensor."""
    if isinstance(data, TensorDataset):
        x = data.tensors[0]
        return x if index is None else x[torch.as_tensor(index, dtype=torch.long)]
    idx = range(len(data)) if index is None else [int(i) for i in index]
    return torch.stack([data[i][0] for i in idx])


def first_images(data: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` images (fewer when the set is smaller): check inputs, timing inputs."""
    return images(data, torch.arange(min(n, len(data))))


