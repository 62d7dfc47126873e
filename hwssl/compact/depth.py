"""Depth-wise compaction: a residual block whose branch no longer depends on its input.

When no channel survives between a block's two convs (depth-wise SSL zeroed
the branch, or filter/channel sparsity emptied it), the branch is a constant.
We evaluate it once on a zero input -- exact, since it ignores its input --
and replace the block by ``relu(shortcut(x) + constant)``. A zero constant with
an identity shortcut leaves ``relu(x) = x`` (block inputs are post-ReLU), so
the block vanishes entirely.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwssl.compact.channels import split_uniform


@torch.no_grad()
def removed_block_spec(block: nn.Module, block_spec: dict[str, Any], in_shape: tuple[int, ...]
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Spec and tensors (local names) of the block that replaces a constant branch."""
    const = block.branch(torch.zeros(1, *in_shape))[0]
    bias, residual = split_uniform(const)
    spec = {"removed": True, "stride": block_spec["stride"], "in": block_spec["in"], "out": block_spec["out"],
            "downsample": block_spec["downsample"], "const": None, "relu": True}
    tensors: dict[str, torch.Tensor] = {}
    if residual is not None:
        spec["const"] = list(const.shape)
        tensors["const.value"] = const.clone()
    elif bool((bias != 0).any()):
        spec["const"] = [len(bias), 1, 1]
        tensors["const.value"] = bias.view(-1, 1, 1).clone()
    if spec["const"] is None and not spec["downsample"]:
        spec["relu"] = False  # relu(x) == x for post-ReLU inputs: the block is the identity
    if block.downsample is not None:
        for key, value in block.downsample.state_dict().items():
            tensors[f"downsample.{key}"] = value.clone()
    return spec, tensors
