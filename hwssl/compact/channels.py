"""Which channels survive between a producer conv and its consumer, and what removed ones leave behind.

A producer channel is kept iff its filter is non-zero *and* its consumer reads
it (non-zero channel column). A removed channel whose filter is zero but whose
consumer reads it still emits a constant: ``act(bn(bias))`` -- a zeroed conv
followed by BatchNorm is *not* a zero branch. That constant is folded exactly
into the consumer: as a per-output-channel bias when the consumer sees it
uniformly, or as a constant ``bias_map`` where zero padding makes the border
differ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hwssl.sparsity.regularizer import conv_group_sumsq


def round_up_keep(keep: torch.Tensor, scores: torch.Tensor, multiple: int) -> torch.Tensor:
    """Grow a boolean keep mask to a multiple of ``multiple`` (and >= 1) by adding the
    highest-scoring removed channels. Keeping more is always exact: the kept zero
    filters just compute their constant."""
    keep = keep.clone()
    total = keep.numel()
    n = int(keep.sum())
    target = max(1, n)
    if multiple > 1:
        target = min(total, int(math.ceil(target / multiple) * multiple))
    if target > n:
        candidates = torch.nonzero(~keep).flatten()
        order = torch.argsort(scores[candidates], descending=True, stable=True)
        keep[candidates[order[: target - n]]] = True
    return keep


@torch.no_grad()
def removed_filter_constants(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool) -> torch.Tensor:
    """What each output channel of ``conv -> bn -> relu`` emits when its filter is zero (eval mode)."""
    value = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
    if bn is not None:
        value = (value - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return value.clamp_min(0) if relu else value


def conv_keep_masks(conv: nn.Conv2d, consumer_uses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, fold): kept channels, and removed channels whose constant must be folded."""
    nz_filter = conv_group_sumsq(conv.weight.detach(), "filter") > 0
    keep = nz_filter & consumer_uses
    fold = (~nz_filter) & consumer_uses
    return keep, fold


@torch.no_grad()
def constant_contribution_conv(consumer: nn.Conv2d, channels: torch.Tensor, values: torch.Tensor,
                               in_hw: tuple[int, int]) -> torch.Tensor:
    """Exact output (out, Ho, Wo) of ``consumer`` fed a constant ``values[k]`` on input channel
    ``channels[k]`` and zero elsewhere (zero padding included)."""
    w = consumer.weight.detach()[:, channels]
    x = values.view(1, -1, 1, 1).expand(1, len(channels), *in_hw).to(w.dtype)
    return F.conv2d(x, w, None, consumer.stride, consumer.padding)[0]


def split_uniform(contribution: torch.Tensor, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(per-channel bias, residual map or None): a map that is spatially uniform becomes a bias."""
    bias = contribution.mean(dim=(1, 2))
    spread = (contribution - bias.view(-1, 1, 1)).abs().max()
    scale = contribution.abs().max().clamp_min(1e-30)
    if spread <= rtol * scale:
        return bias, None
    return torch.zeros_like(bias), contribution
