"""Compaction of ResNets: stem shape columns, per-block mid channels (conv1 filters =
conv2 channels), conv1 input-channel gathers from the residual stream, shape
columns, and whole-block removal. Stage widths (the residual stream) never
change -- see :mod:`hwssl.sparsity.groups` for why."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from hwssl.compact.channels import (conv_keep_masks, constant_contribution_conv, removed_filter_constants,
                                    round_up_keep, split_uniform)
from hwssl.compact.depth import removed_block_spec
from hwssl.compact.probe import input_shapes
from hwssl.compact.shapes import compact_conv
from hwssl.sparsity.regularizer import conv_group_sumsq


def _block_input_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Input shape of every block, and of every block's conv2 (``layer1.0.conv2``)."""
    modules: dict[str, nn.Module] = {}
    for s, layer in enumerate(model.stages):
        for b, block in enumerate(layer):
            modules[f"layer{s + 1}.{b}"] = block
            if hasattr(block, "conv2"):
                modules[f"layer{s + 1}.{b}.conv2"] = block.conv2
    return input_shapes(model, modules)


def _copy_bn(state: dict[str, torch.Tensor], prefix: str, bn: nn.BatchNorm2d, keep: torch.Tensor | None) -> None:
    for key, value in bn.state_dict().items():
        state[f"{prefix}.{key}"] = value[keep].clone() if (keep is not None and value.dim() == 1) else value.clone()


@torch.no_grad()
def compact_resnet(model: nn.Module, *, channel_round: int = 1, min_shape_sparsity: float = 0.25
                   ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    spec = model.spec
    new_spec = copy.deepcopy(spec)
    shapes = _block_input_shapes(model)
    state: dict[str, torch.Tensor] = {}

    stem_all = torch.arange(spec["stem"]["out"])
    stem, tensors = compact_conv(spec["stem"], model.conv1, stem_all, torch.arange(spec["stem"]["in"]),
                                 gather=False, min_shape_sparsity=min_shape_sparsity)
    new_spec["stem"] = stem
    state.update({f"conv1.{k}": v for k, v in tensors.items()})
    _copy_bn(state, "bn1", model.bn1, None)

    for s, layer in enumerate(model.stages):
        for b, block in enumerate(layer):
            prefix = f"layer{s + 1}.{b}"
            bspec = spec["stages"][s][b]
            if bspec["removed"]:
                state.update({f"{prefix}.{k}": v for k, v in block.state_dict().items()})
                continue
            uses = conv_group_sumsq(block.conv2.weight.detach(), "channel") > 0
            keep, fold = conv_keep_masks(block.conv1, uses)
            if not bool(keep.any()):
                new_block, tensors = removed_block_spec(block, bspec, shapes[prefix])
                new_spec["stages"][s][b] = new_block
                state.update({f"{prefix}.{k}": v for k, v in tensors.items()})
                continue
            keep = round_up_keep(keep, conv_group_sumsq(block.conv1.weight.detach(), "filter"), channel_round)
            fold &= ~keep
            mid = torch.nonzero(keep).flatten()
            stream_used = conv_group_sumsq(block.conv1.weight.detach()[mid], "channel") > 0
            stream_keep = torch.nonzero(round_up_keep(stream_used, stream_used.float(), 1)).flatten()

            conv1, t1 = compact_conv(bspec["conv1"], block.conv1, mid, stream_keep, gather=True,
                                     min_shape_sparsity=min_shape_sparsity)
            extra_bias = extra_map = None
            if bool(fold.any()):
                values = removed_filter_constants(block.conv1, block.bn1, relu=True)
                folded = torch.nonzero(fold).flatten()
                contribution = constant_contribution_conv(block.conv2, folded, values[folded],
                                                          shapes[f"{prefix}.conv2"][1:])
                extra_bias, extra_map = split_uniform(contribution)
            out_all = torch.arange(bspec["conv2"]["out"])
            conv2, t2 = compact_conv(bspec["conv2"], block.conv2, out_all, mid, gather=False,
                                     extra_bias=extra_bias, extra_map=extra_map,
                                     min_shape_sparsity=min_shape_sparsity)
            new_spec["stages"][s][b] = dict(bspec, conv1=conv1, conv2=conv2)
            state.update({f"{prefix}.conv1.{k}": v for k, v in t1.items()})
            state.update({f"{prefix}.conv2.{k}": v for k, v in t2.items()})
            _copy_bn(state, f"{prefix}.bn1", block.bn1, mid)
            _copy_bn(state, f"{prefix}.bn2", block.bn2, None)
            if block.downsample is not None:
                state.update({f"{prefix}.downsample.{k}": v.clone() for k, v in block.downsample.state_dict().items()})
    state.update({f"fc.{k}": v.clone() for k, v in model.fc.state_dict().items()})
    return new_spec, state
