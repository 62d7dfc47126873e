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
"""

from __future__ import annotations

from typing import Mapping

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


class GroupLasso:
    """SSL's regulariser bound to one model and one strength mapping."""

    def __init__(self, model: nn.Module, strengths: Mapping[str, float], *,
                 scale_by_group_size: bool = False, sites: SSLSites | None = None) -> None:
        self.sites = sites if sites is not None else ssl_sites(model)
        self.lambdas = resolve_strengths(self.sites, strengths)
        self.scale_by_group_size = scale_by_group_size
        self._conv_terms = []  # (weight, type, lambda*scale)
        for site in self.sites.convs:
            for group_type in site.types:
                lam = self.lambdas[group_type].get(site.name, 0.0)
                if lam > 0:
                    scale = conv_group_size(site.conv.weight, group_type) ** 0.5 if scale_by_group_size else 1.0
                    self._conv_terms.append((site.conv.weight, group_type, lam * scale))
        self._coupled_terms = []  # (members, lambda*scale): MobileNetV2's hidden channels
        for site in self.sites.coupled:
            lam = self.lambdas[site.group_type].get(site.name, 0.0)
            if lam > 0:
                scale = coupled_size(site.members) ** 0.5 if scale_by_group_size else 1.0
                self._coupled_terms.append((site.members, lam * scale))
        self._depth_terms = []
        for block in self.sites.blocks:
            lam = self.lambdas["depth"].get(block.name, 0.0)
            if lam > 0:
                size = sum(p.numel() for p in block.params)
                self._depth_terms.append((block.params, lam * (size ** 0.5 if scale_by_group_size else 1.0)))

    @property
    def active(self) -> bool:
        return bool(self._conv_terms or self._depth_terms or self._coupled_terms)

    def penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        for weight, group_type, lam in self._conv_terms:
            total = total + lam * _safe_norm(conv_group_sumsq(weight, group_type)).sum()
        for members, lam in self._coupled_terms:
            total = total + lam * _safe_norm(coupled_sumsq(members)).sum()
        for params, lam in self._depth_terms:
            total = total + lam * _safe_norm(sum(p.pow(2).sum() for p in params))
        return total

    @torch.no_grad()
    def proximal_step(self, lr: float) -> None:
        """Group soft-thresholding with threshold lr*lambda, one group type after another."""
        for weight, group_type, lam in self._conv_terms:
            norms = conv_group_sumsq(weight, group_type).sqrt()
            factor = (1 - lr * lam / norms.clamp_min(1e-30)).clamp_min(0)
            if group_type == "filter":
                weight.mul_(factor.view(-1, 1, 1, 1))
            elif group_type == "channel":
                weight.mul_(factor.view(1, -1, 1, 1))
            else:
                weight.mul_(factor.view(1, *weight.shape[1:]))
        for members, lam in self._coupled_terms:
            norms = coupled_sumsq(members).sqrt()
            coupled_scale_(members, (1 - lr * lam / norms.clamp_min(1e-30)).clamp_min(0))
        for params, lam in self._depth_terms:
            norm = torch.sqrt(sum(p.pow(2).sum() for p in params))
            factor = (1 - lr * lam / norm.clamp_min(1e-30)).clamp_min(0)
            for p in params:
                p.mul_(factor)

    @torch.no_grad()
    def zero_small(self, threshold: float = 1e-4) -> None:
        """Caffe SSL's post-update step: weights with |w| < threshold become exactly 0."""
        if threshold <= 0:
            return
        seen: set[int] = set()
        tensors = [w for w, _, _ in self._conv_terms] + [p for ps, _ in self._depth_terms for p in ps]
        tensors += [t for members, _ in self._coupled_terms for t, _ in members]
        for t in tensors:
            if id(t) in seen:
                continue
            seen.add(id(t))
            t.masked_fill_(t.abs() < threshold, 0.0)
