"""Compaction of MobileNetV2: hidden channels per block, expand-input gathers, head filters,
stem shape columns and identity-block removal. Block outputs (the stream) never change width.

Hidden channel ``h`` of a block goes when the projection does not read it (its column is zero:
what a zeroed coupled filter group leaves), or when its depthwise filter is zero: then the
depthwise unit emits the uniform constant ``relu6(bn(0))``, folded exactly into the projection's
bias. An identity block left with no hidden channel is a constant branch: it becomes
``x + const`` (nothing at all when the constant is zero). Other blocks keep at least one
hidden channel, since their output does not contain their input.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from hwssl.compact.channels import round_up_keep, split_uniform
from hwssl.compact.probe import input_shapes
from hwssl.compact.shapes import compact_conv
from hwssl.sparsity.coupled import coupled_sumsq
from hwssl.sparsity.regularizer import conv_group_sumsq


def unit_constant(unit: nn.Module) -> torch.Tensor:
    """What each output channel of a ConvUnit (conv -> bn -> act) emits when its filter is zero."""
    conv = unit.conv
    value = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.weight.shape[0])
    if unit.bn is not None:
        bn = unit.bn
        value = (value - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return unit.act(value) if unit.act is not None else value


def _copy(state: dict[str, torch.Tensor], prefix: str, module: nn.Module, keep: torch.Tensor | None = None) -> None:
    for key, value in module.state_dict().items():
        state[f"{prefix}.{key}"] = value[keep].clone() if (keep is not None and value.dim() >= 1) else value.clone()


def _block_input_shapes(model: nn.Module) -> dict[int, tuple[int, ...]]:
    return input_shapes(model, dict(enumerate(model.blocks)))


def _hidden_masks(block: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, fold) over a block's hidden channels. Without an expand conv the hidden channels
    are the stream itself: they are kept whole unless none is left (a removable branch)."""
    reads = conv_group_sumsq(block.project.conv.weight.detach(), "channel") > 0
    dw_live = conv_group_sumsq(block.dw.conv.weight.detach(), "filter") > 0
    keep, fold = reads & dw_live, reads & ~dw_live
    if block.expand is None and bool(keep.any()):
        return torch.ones_like(keep), torch.zeros_like(fold)
    return keep, fold


@torch.no_grad()
def _removed_block(block: nn.Module, bspec: dict[str, Any], in_shape: tuple[int, ...]
                   ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    const = block.branch(torch.zeros(1, *in_shape))[0]
    bias, residual = split_uniform(const)
    if residual is not None:  # cannot happen: 1x1 projection of uniform constants
        raise ValueError(f"block {bspec['dw']['name']}: removed branch is not uniform")
    spec = {"removed": True, "in": bspec["in"], "out": bspec["out"], "stride": 1, "residual": True,
            "stage": bspec["stage"], "const": None}
    if bool((bias != 0).any()):
        spec["const"] = [len(bias), 1, 1]
        return spec, {"const.value": bias.view(-1, 1, 1).clone()}
    return spec, {}


@torch.no_grad()
def _compact_block(block: nn.Module, bspec: dict[str, Any], prefix: str, keep: torch.Tensor, fold: torch.Tensor,
                   channel_round: int, min_shape_sparsity: float
                   ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    state: dict[str, torch.Tensor] = {}
    new = copy.deepcopy(bspec)
    if block.expand is not None:
        keep = round_up_keep(keep, coupled_sumsq([(block.expand.conv.weight, 0), (block.dw.conv.weight, 0),
                                                  (block.project.conv.weight, 1)]), channel_round)
        fold = fold & ~keep
    else:  # no gather for a depthwise conv over the stream: all of it stays
        keep, fold = torch.ones_like(keep), torch.zeros_like(fold)
    mid = torch.nonzero(keep).flatten()
    if block.expand is not None:
        used = conv_group_sumsq(block.expand.conv.weight.detach()[mid], "channel") > 0
        stream_keep = torch.nonzero(round_up_keep(used, used.float(), 1)).flatten()
        new["expand"], t = compact_conv(bspec["expand"], block.expand.conv, mid, stream_keep, gather=True,
                                        min_shape_sparsity=min_shape_sparsity)
        state.update({f"{prefix}.expand.conv.{k}": v for k, v in t.items()})
        _copy(state, f"{prefix}.expand.bn", block.expand.bn, mid)
    n = len(mid)
    new["dw"] = dict(bspec["dw"], **{"in": n, "out": n, "groups": n})
    _copy(state, f"{prefix}.dw.conv", block.dw.conv, mid)
    _copy(state, f"{prefix}.dw.bn", block.dw.bn, mid)
    extra_bias = None
    if bool(fold.any()):
        folded = torch.nonzero(fold).flatten()
        w = block.project.conv.weight.detach()[:, folded, 0, 0]
        extra_bias = w @ unit_constant(block.dw)[folded]
    new["project"], t = compact_conv(bspec["project"], block.project.conv, torch.arange(bspec["out"]), mid,
                                     gather=False, extra_bias=extra_bias, min_shape_sparsity=min_shape_sparsity)
    state.update({f"{prefix}.project.conv.{k}": v for k, v in t.items()})
    _copy(state, f"{prefix}.project.bn", block.project.bn)
    return new, state


@torch.no_grad()
def compact_mobilenet(model: nn.Module, *, channel_round: int = 1, min_shape_sparsity: float = 0.25
                      ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """New spec and state dict of the compacted MobileNetV2 (``model`` in eval mode)."""
    spec = model.spec
    new_spec = copy.deepcopy(spec)
    state: dict[str, torch.Tensor] = {}
    stem = spec["stem"]
    new_spec["stem"], t = compact_conv(stem, model.stem.conv, torch.arange(stem["out"]), torch.arange(stem["in"]),
                                       gather=False, min_shape_sparsity=min_shape_sparsity)
    state.update({f"stem.conv.{k}": v for k, v in t.items()})
    _copy(state, "stem.bn", model.stem.bn)

    shapes = _block_input_shapes(model)
    for i, (bspec, block) in enumerate(zip(spec["blocks"], model.blocks)):
        prefix = f"blocks.{i}"
        if bspec["removed"]:
            _copy(state, prefix, block)
            continue
        keep, fold = _hidden_masks(block)
        if bspec["residual"] and not bool(keep.any()):
            new_spec["blocks"][i], t = _removed_block(block, bspec, shapes[i])
            state.update({f"{prefix}.{k}": v for k, v in t.items()})
            continue
        new_spec["blocks"][i], t = _compact_block(block, bspec, prefix, keep, fold, channel_round,
                                                  min_shape_sparsity)
        state.update(t)

    head, fc = model.head, model.classifier
    reads = fc.weight.detach().pow(2).sum(dim=0) > 0
    live = conv_group_sumsq(head.conv.weight.detach(), "filter") > 0
    keep = round_up_keep(live & reads, conv_group_sumsq(head.conv.weight.detach(), "filter"), channel_round)
    fold = reads & ~live & ~keep
    hk = torch.nonzero(keep).flatten()
    new_spec["head"], t = compact_conv(spec["head"], head.conv, hk, torch.arange(spec["head"]["in"]), gather=False,
                                       min_shape_sparsity=min_shape_sparsity)
    state.update({f"head.conv.{k}": v for k, v in t.items()})
    _copy(state, "head.bn", head.bn, hk)
    bias = fc.bias.detach().clone()
    if bool(fold.any()):
        folded = torch.nonzero(fold).flatten()
        bias += fc.weight.detach()[:, folded] @ unit_constant(head)[folded]
    state["classifier.weight"] = fc.weight.detach()[:, hk].clone()
    state["classifier.bias"] = bias
    return new_spec, state
