"""Sparsity statistics of a sparse model and the cost (MACs, parameters) of any model.

FLOPs are reported as multiply-accumulates (MACs) of the conv and linear
layers for one image, the convention of the SSL paper's FLOP columns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwssl.models.layers import CompactConv2d
from hwssl.sparsity.groups import SSLSites, ssl_sites
from hwssl.sparsity.regularizer import conv_group_sumsq


def _zero_count(sumsq: torch.Tensor) -> int:
    return int((sumsq == 0).sum())


@torch.no_grad()
def sparsity_stats(model: nn.Module, sites: SSLSites | None = None) -> dict[str, Any]:
    """Per conv layer: total and zero filters / channels / shape columns; per block: zero or not."""
    sites = sites if sites is not None else ssl_sites(model)
    layers = {}
    for site in sites.convs:
        w = site.conv.weight
        entry = {}
        for group_type in ("filter", "channel", "shape"):
            sumsq = conv_group_sumsq(w, group_type)
            entry[group_type] = {"total": int(sumsq.numel()), "zero": _zero_count(sumsq)}
        entry["weights"] = {"total": int(w.numel()), "zero": int((w == 0).sum())}
        layers[site.name] = entry
    blocks = {b.name: bool(all(bool((p == 0).all()) for p in b.params[:2])) for b in sites.blocks}
    return {"layers": layers, "zero_blocks": [n for n, z in blocks.items() if z], "blocks": len(blocks)}


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] | list[int]) -> tuple[int, dict[str, int]]:
    """(total MACs per image, per-layer MACs) measured with forward hooks on a real forward pass."""
    per_layer: dict[str, int] = {}
    hooks = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(module, CompactConv2d):
                macs = module.macs_per_image((output.shape[2], output.shape[3]))
            elif isinstance(module, nn.Conv2d):
                k = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
                macs = module.out_channels * k * output.shape[2] * output.shape[3]
            else:  # nn.Linear
                macs = module.in_features * module.out_features
            per_layer[name] = per_layer.get(name, 0) + int(macs)
        return fn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, CompactConv2d)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return sum(per_layer.values()), per_layer
