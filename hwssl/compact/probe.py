"""Per-module input shapes of a compacted-to-be network, read from one forward pass of zeros
(constants folded at a padded border need the feature-map size each block sees)."""

from __future__ import annotations

from typing import Hashable, Mapping

import torch
from torch import nn


def input_shapes(model: nn.Module, modules: Mapping[Hashable, nn.Module]) -> dict[Hashable, tuple[int, ...]]:
    """The input shape (without batch) of each of ``modules`` in one forward pass of ``model``."""
    shapes: dict[Hashable, tuple[int, ...]] = {}
    hooks = [module.register_forward_hook(lambda mod, inp, out, k=key: shapes.__setitem__(k, tuple(inp[0].shape[1:])))
             for key, module in modules.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.spec["input"]))
    finally:
        for h in hooks:
            h.remove()
    return shapes
