"""The group-Lasso penalty of SSL, its proximal step, and the post-update zeroing.

Penalty: sum over groups g of lambda_g * s_g * ||W_g||_2, added to the mean
cross-entropy of a batch. By default ``s_g = 1`` (as in the paper's equation
and the original Caffe code, and as Distiller does); ``scale_by_group_size``
sets ``s_g = sqrt(|g|)`` (Yuan & Lin's group Lasso) so that strengths are
comparable across layers of different sizes.

Gradient at a zero group is taken as 0 (as in the Caffe code). The optional
proximal step (group soft-thresholding after each optimiser step,
``W_g <- W_g * max(0, 1 - lr*lambda_g*s_g/||W_g||)``) reaches exact zeros,
which plain sub-gradients only approach; with it the penalty is not also added
to the loss.

Hardware-aware options (off by default, leaving the paper's semantics): a global
``strength`` multiplier (what budget-targeted SSL adapts), per-group weights
(:meth:`GroupLasso.set_weights`, what latency weighting sets), and filter blocks
(``filter_block`` > 1: a filter group is ``filter_block`` consecutive filters and a channel
group ``filter_block`` consecutive input channels, the last block possibly shorter, so
kept widths come in multiples of the block), and ``filter_bn`` (a filter group of a conv followed
by BatchNorm also holds that channel's BatchNorm scale and shift; see :mod:`hwssl.sparsity.groups`
for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

import torch
from torch import nn

from hwssl.sparsity.coupled import coupled_scale_, coupled_size, coupled_sumsq
from hwssl.sparsity.groups import SSLSites, resolve_strengths, ssl_sites


def _safe_norm(sumsq: torch.Tensor) -> torch.Tensor:
    # clamp blocks the gradient where a group is exactly zero: d||W||/dW := 0 there.
    return sumsq.clamp_min(1e-24).sqrt()


def conv_group_sumsq(weight: torch.Tensor, group_type: str) -> torch.Tensor:
    """Squared norms of every group of one type on a conv weight (F, C, kh, kw)."""
    sq = weight.pow(2)
    if group_type == "filter":
        return sq.sum(dim=(1, 2, 3))
    if group_type == "channel":
        return sq.sum(dim=(0, 2, 3))
    if group_type == "shape":
        return sq.sum(dim=0).flatten()
    raise ValueError(group_type)


def conv_group_size(weight: torch.Tensor, group_type: str) -> int:
    f, c, kh, kw = weight.shape
    return {"filter": c * kh * kw, "channel": f * kh * kw, "shape": f}[group_type]


def block_sumsq(sumsq: torch.Tensor, block: int) -> torch.Tensor:
    """Per-group squared norms summed over blocks of ``block`` consecutive groups."""
    if block <= 1:
        return sumsq
    pad = (-sumsq.numel()) % block
    return torch.nn.functional.pad(sumsq, (0, pad)).view(-1, block).sum(dim=1)


Weight = Union[float, torch.Tensor]


def _bn_affine(bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, ...]:
    """The per-channel scale and shift of a BatchNorm (none without one, or without affine)."""
    if bn is None or bn.weight is None:
        return ()
    return (bn.weight, bn.bias)


@dataclass
class ConvTerm:
    """One (conv site, group type) of the penalty: ``lam`` already includes the group-size scale."""

    name: str
    weight: torch.Tensor
    group_type: str
    lam: float
    block: int = 1
    channel_params: tuple[torch.Tensor, ...] = ()   # filter groups: per-channel vectors in the group (BN affine)

    def sumsq(self) -> torch.Tensor:
        sq = conv_group_sumsq(self.weight, self.group_type)
        for p in self.channel_params:
            sq = sq + p.pow(2)
        return block_sumsq(sq, self.block)

    def tensors(self) -> list[torch.Tensor]:
        return [self.weight, *self.channel_params]


@dataclass
class CoupledTerm:
    """Coupled channel groups across several tensors (MobileNetV2's hidden channels)."""

    name: str
    group_type: str
    members: list
    lam: float


@dataclass
class DepthTerm:
    name: str
    params: list[nn.Parameter]
    lam: float


class GroupLasso:
    """SSL's regulariser bound to one model and one strength mapping."""

    def __init__(self, model: nn.Module, strengths: Mapping[str, float], *,
                 scale_by_group_size: bool = False, sites: SSLSites | None = None, filter_block: int = 1,
                 filter_bn: bool = False) -> None:
        if filter_block < 1:
            raise ValueError(f"filter_block must be >= 1, got {filter_block}")
        self.sites = sites if sites is not None else ssl_sites(model)
        self.lambdas = resolve_strengths(self.sites, strengths)
        self.scale_by_group_size = scale_by_group_size
        self.filter_block = filter_block
        self.strength = 1.0                       # global multiplier (budget-targeted SSL adapts it)
        self.weights: dict[tuple[str, str], Weight] = {}   # (type, site) -> per-group weights
        self.conv_terms: list[ConvTerm] = []
        for site in self.sites.convs:
            for group_type in site.types:
                lam = self.lambdas[group_type].get(site.name, 0.0)
                if lam > 0:
                    block = filter_block if group_type in ("filter", "channel") else 1
                    extra = _bn_affine(site.bn) if filter_bn and group_type == "filter" else ()
                    size = (conv_group_size(site.conv.weight, group_type) + len(extra)) * block
                    scale = size ** 0.5 if scale_by_group_size else 1.0
                    self.conv_terms.append(ConvTerm(site.name, site.conv.weight, group_type, lam * scale, block,
                                                    extra))
        self.coupled_terms: list[CoupledTerm] = []   # MobileNetV2's hidden channels (no filter blocks)
        for site in self.sites.coupled:
            lam = self.lambdas[site.group_type].get(site.name, 0.0)
            if lam > 0:
                scale = coupled_size(site.members) ** 0.5 if scale_by_group_size else 1.0
                self.coupled_terms.append(CoupledTerm(site.name, site.group_type, site.members, lam * scale))
        self.depth_terms: list[DepthTerm] = []
        for block in self.sites.blocks:
            lam = self.lambdas["depth"].get(block.name, 0.0)
            if lam > 0:
                size = sum(p.numel() for p in block.params)
                self.depth_terms.append(DepthTerm(block.name, block.params,
                                                  lam * (size ** 0.5 if scale_by_group_size else 1.0)))

    @property
    def active(self) -> bool:
        return bool(self.conv_terms or self.depth_terms or self.coupled_terms)

    def set_weights(self, weights: Mapping[tuple[str, str], Weight]) -> None:
        """Per-group multipliers of lambda, keyed ``(group type, site name)``: a number for every
        group of that site, or a tensor with one entry per (blocked) group. Missing keys mean 1."""
        self.weights = dict(weights)

    def _lam(self, group_type: str, name: str, lam: float) -> Weight:
        w = self.weights.get((group_type, name), 1.0)
        return lam * self.strength * w

    def penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        for t in self.conv_terms:
            total = total + (self._lam(t.group_type, t.name, t.lam) * _safe_norm(t.sumsq())).sum()
        for c in self.coupled_terms:
            total = total + (self._lam(c.group_type, c.name, c.lam) * _safe_norm(coupled_sumsq(c.members))).sum()
        for t in self.depth_terms:
            total = total + self._lam("depth", t.name, t.lam) * _safe_norm(sum(p.pow(2).sum() for p in t.params))
        return total

    @torch.no_grad()
    def proximal_step(self, lr: float) -> None:
        """Group soft-thresholding with threshold lr*lambda, one group type after another."""
        for t in self.conv_terms:
            weight = t.weight
            norms = t.sumsq().sqrt()
            factor = (1 - lr * self._lam(t.group_type, t.name, t.lam) / norms.clamp_min(1e-30)).clamp_min(0)
            if t.block > 1:
                n = weight.shape[0] if t.group_type == "filter" else weight.shape[1]
                factor = factor.repeat_interleave(t.block)[:n]
            if t.group_type == "filter":
                weight.mul_(factor.view(-1, 1, 1, 1))
                for p in t.channel_params:
                    p.mul_(factor)
            elif t.group_type == "channel":
                weight.mul_(factor.view(1, -1, 1, 1))
            else:
                weight.mul_(factor.view(1, *weight.shape[1:]))
        for c in self.coupled_terms:
            norms = coupled_sumsq(c.members).sqrt()
            coupled_scale_(c.members, (1 - lr * self._lam(c.group_type, c.name, c.lam) / norms.clamp_min(1e-30))
                           .clamp_min(0))
        for t in self.depth_terms:
            norm = torch.sqrt(sum(p.pow(2).sum() for p in t.params))
            factor = (1 - lr * self._lam("depth", t.name, t.lam) / norm.clamp_min(1e-30)).clamp_min(0)
            for p in t.params:
                p.mul_(factor)

    @torch.no_grad()
    def zero_small(self, threshold: float = 1e-4) -> None:
        """Caffe SSL's post-update step: weights with |w| < threshold become exactly 0. With filter or
        channel blocks, a filter (channel) whose every weight is that small is left alone while the
        rest of its block lives: zeroing it would remove a filter from inside a block, and kept
        widths would no longer be multiples of the block."""
        if threshold <= 0:
            return
        tensors = [x for t in self.conv_terms for x in t.tensors()] + [p for t in self.depth_terms for p in t.params]
        tensors += [t for c in self.coupled_terms for t, _ in c.members]
        small = {key: (t, t.abs() < threshold) for key, t in {id(t): t for t in tensors}.items()}
        lone = [(id(t.weight), _lone_small_units(small[id(t.weight)][1], t.group_type, t.block))
                for t in self.conv_terms if t.block > 1 and t.group_type in ("filter", "channel")]
        for key, units in lone:
            small[key][1].logical_and_(~units)
        for t, mask in small.values():
            t.masked_fill_(mask, 0.0)


def _lone_small_units(small: torch.Tensor, group_type: str, block: int) -> torch.Tensor:
    """Of a conv weight's below-threshold mask ``small``: the mask of the filters (channels) that
    elementwise zeroing would empty while another member of their block stays."""
    dim = 0 if group_type == "filter" else 1
    empty = small.transpose(0, dim).flatten(1).all(1)
    n = empty.numel()
    padded = torch.cat([empty, empty.new_ones((-n) % block)])
    whole = padded.view(-1, block).all(1).repeat_interleave(block)[:n]
    shape = [1] * small.dim()
    shape[dim] = -1
    return (empty & ~whole).view(shape).expand_as(small)
