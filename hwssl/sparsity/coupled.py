"""Norms and shrinking of coupled groups: group ``g`` is slice ``g`` along a given dim of
several tensors (MobileNetV2's hidden channels span expand rows, depthwise filters and
projection columns)."""

from __future__ import annotations

from typing import Sequence

import torch


def coupled_sumsq(members: Sequence[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Squared norm of every coupled group: sum over members of the slice norms along ``dim``."""
    total = None
    for tensor, dim in members:
        dims = [d for d in range(tensor.dim()) if d != dim]
        sq = tensor.pow(2).sum(dim=dims)
        total = sq if total is None else total + sq
    return total


def coupled_size(members: Sequence[tuple[torch.Tensor, int]]) -> int:
    """Weights in one coupled group."""
    return sum(t.numel() // t.shape[dim] for t, dim in members)


@torch.no_grad()
def coupled_scale_(members: Sequence[tuple[torch.Tensor, int]], factor: torch.Tensor) -> None:
    """Multiply slice ``g`` of every member by ``factor[g]`` in place."""
    for tensor, dim in members:
        shape = [1] * tensor.dim()
        shape[dim] = -1
        tensor.mul_(factor.view(shape))
