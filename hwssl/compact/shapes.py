"""Conv weight surgery: keep some output filters and input channels, and realise
shape-wise sparsity as a lowered convolution over the kept columns only."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwssl.models.layers import canonical_columns
from hwssl.models.units import ConvSpec


@torch.no_grad()
def compact_conv(spec: ConvSpec, conv: nn.Conv2d, out_keep: torch.Tensor, in_keep: torch.Tensor, *,
                 gather: bool, extra_bias: torch.Tensor | None = None, extra_map: torch.Tensor | None = None,
                 min_shape_sparsity: float = 0.25) -> tuple[ConvSpec, dict[str, torch.Tensor]]:
    """Compact one conv.

    ``out_keep``/``in_keep`` are index tensors into the dense conv's output and
    input channels. With ``gather`` the compacted conv still receives every
    input channel (a residual stream) and selects ``in_keep`` itself; otherwise
    its input already holds only ``in_keep``. ``extra_bias`` (dense out,) and
    ``extra_map`` (dense out, Ho, Wo) carry folded constants. Returns the new
    conv spec and its tensors, keyed by local name (weight, bias, bias_map).
    """
    w = conv.weight.detach()[out_keep][:, in_keep]
    k = spec["kernel"]
    new = dict(spec)
    new.update(out=len(out_keep), in_index=None, columns=None, bias_map=None)
    new["in"] = spec["in"] if gather else len(in_keep)
    tensors: dict[str, torch.Tensor] = {}

    bias = conv.bias.detach()[out_keep].clone() if conv.bias is not None else None
    if extra_bias is not None:
        bias = (bias if bias is not None else torch.zeros(len(out_keep))) + extra_bias[out_keep]
    if bias is not None:
        new["bias"] = True
        tensors["bias"] = bias
    if extra_map is not None:
        new["bias_map"] = list(extra_map[out_keep].shape)
        tensors["bias_map"] = extra_map[out_keep].clone()

    col_nonzero = w.pow(2).sum(dim=0) > 0  # (C', k, k)
    total = col_nonzero.numel()
    kept = int(col_nonzero.sum())
    shape_sparsity = 1 - kept / total if total else 0.0
    if k > 1 and kept > 0 and shape_sparsity > 0 and shape_sparsity >= min_shape_sparsity:
        channel_ids = in_keep.tolist() if gather else list(range(len(in_keep)))
        cols = [(channel_ids[c], i, j) for c, i, j in torch.nonzero(col_nonzero).tolist()]
        cols = canonical_columns(cols)
        local = {cid: n for n, cid in enumerate(channel_ids)}
        idx_c = torch.tensor([local[c] for c, _, _ in cols])
        idx_i = torch.tensor([i for _, i, _ in cols])
        idx_j = torch.tensor([j for _, _, j in cols])
        new["columns"] = [list(c) for c in cols]
        tensors["weight"] = w[:, idx_c, idx_i, idx_j].reshape(len(out_keep), len(cols), 1, 1).clone()
    else:
        if gather and len(in_keep) < spec["in"]:
            new["in_index"] = in_keep.tolist()
        tensors["weight"] = w.clone()
    return new, tensors


def spec_summary(spec: ConvSpec) -> dict[str, Any]:
    """Kept structure of one compacted conv, for reports."""
    k = spec["kernel"]
    if spec.get("columns") is not None:
        cols = len(spec["columns"])
        channels = len({c for c, _, _ in spec["columns"]})
    else:
        channels = len(spec["in_index"]) if spec.get("in_index") is not None else spec["in"]
        cols = channels // spec.get("groups", 1) * k * k  # a depthwise filter sees one channel
    return {"filters": spec["out"], "channels": channels, "columns": cols, "lowered": spec.get("columns") is not None}
