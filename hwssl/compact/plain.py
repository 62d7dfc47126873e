"""Compaction of plain CNNs (LeNet, ConvNet): filters, channels and shape columns."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from hwssl.compact.channels import (conv_keep_masks, constant_contribution_conv, removed_filter_constants,
                                    round_up_keep, split_uniform)
from hwssl.compact.shapes import compact_conv
from hwssl.sparsity.regularizer import conv_group_sumsq


def _input_shapes(model: nn.Module, input_shape: list[int]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=name: shapes.__setitem__(n, tuple(inp[0].shape[1:])))
             for name, m in model.body.named_children()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return shapes


@torch.no_grad()
def compact_plain(model: nn.Module, *, channel_round: int = 1, min_shape_sparsity: float = 0.25
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """New spec and state dict of the compacted plain CNN (``model`` in eval mode)."""
    spec = model.spec
    layers = spec["layers"]
    shapes = _input_shapes(model, spec["input"])
    compute = [n for n, layer in enumerate(layers) if layer["kind"] in ("conv", "linear")]
    new_layers = copy.deepcopy(layers)
    state: dict[str, torch.Tensor] = {}

    in_keep = torch.arange(spec["input"][0])          # channels reaching the next compute layer
    extra_bias: torch.Tensor | None = None            # folded constants for the next compute layer
    extra_map: torch.Tensor | None = None
    for pos, n in enumerate(compute):
        layer = layers[n]
        name = layer["name"]
        unit = getattr(model.body, name)
        nxt = layers[compute[pos + 1]] if pos + 1 < len(compute) else None
        if layer["kind"] == "linear":
            lin = unit.linear
            w, b = lin.weight.detach(), lin.bias.detach().clone()
            if extra_bias is not None:
                b += extra_bias
            w = w[:, in_keep]
            new_layers[n]["in"] = w.shape[1]
            out_keep = torch.arange(lin.out_features)
            state[f"body.{name}.linear.weight"] = w.clone()
            state[f"body.{name}.linear.bias"] = b
            in_keep, extra_bias, extra_map = out_keep, None, None
            continue

        conv = unit.conv
        # -- which of this conv's filters survive: decided with the consumer
        if nxt is None:
            out_keep_mask = torch.ones(conv.out_channels, dtype=torch.bool)
            fold_mask = torch.zeros_like(out_keep_mask)
            consumer = None
        else:
            consumer = getattr(model.body, nxt["name"])
            if nxt["kind"] == "conv":
                uses = conv_group_sumsq(consumer.conv.weight.detach(), "channel") > 0
            else:  # linear after flatten: channel c owns a contiguous slice of features
                hw = shapes[nxt["name"]][0] // conv.out_channels
                uses = consumer.linear.weight.detach().view(-1, conv.out_channels, hw).pow(2).sum(dim=(0, 2)) > 0
            keep_mask, fold_mask = conv_keep_masks(conv, uses)
            scores = conv_group_sumsq(conv.weight.detach(), "filter")
            out_keep_mask = round_up_keep(keep_mask, scores, channel_round)
            fold_mask &= ~out_keep_mask
        out_keep = torch.nonzero(out_keep_mask).flatten()

        new_conv, tensors = compact_conv(layer, conv, out_keep, in_keep, gather=False,
                                         extra_bias=extra_bias, extra_map=extra_map,
                                         min_shape_sparsity=min_shape_sparsity)
        new_layers[n].update(new_conv)
        for key, t in tensors.items():
            state[f"body.{name}.conv.{key}"] = t
        if unit.bn is not None:
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"body.{name}.bn.{key}"] = getattr(unit.bn, key).detach()[out_keep].clone()
            state[f"body.{name}.bn.num_batches_tracked"] = unit.bn.num_batches_tracked.clone()

        # -- constants of removed-but-read channels, folded into the consumer
        extra_bias, extra_map = None, None
        if consumer is not None and bool(fold_mask.any()):
            values = removed_filter_constants(conv, unit.bn, unit.act is not None)
            folded = torch.nonzero(fold_mask).flatten()
            # pools between producer and consumer (max / avg without padding) keep constants constant
            if nxt["kind"] == "conv":
                contribution = constant_contribution_conv(consumer.conv, folded, values[folded],
                                                          shapes[nxt["name"]][1:])
                extra_bias, extra_map = split_uniform(contribution)
            else:
                hw = shapes[nxt["name"]][0] // conv.out_channels
                w = consumer.linear.weight.detach().view(-1, conv.out_channels, hw)
                extra_bias = (w[:, folded, :].sum(dim=2) * values[folded]).sum(dim=1)
        if nxt is not None and nxt["kind"] == "linear":
            hw = shapes[nxt["name"]][0] // conv.out_channels
            in_keep = (out_keep.view(-1, 1) * hw + torch.arange(hw)).flatten()
        else:
            in_keep = out_keep
    new_spec = dict(spec, layers=new_layers)
    return new_spec, state
