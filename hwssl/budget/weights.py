"""Latency-weighted group Lasso: each group's lambda times the cost it would save.

The saving of a group type at one site is read off the cost oracle (``predict(spec)``) at the
current zero pattern, HALP-style: zero a few more groups of that site (the smallest non-zero
ones), map the pattern to the architecture compaction would build (:func:`compacted_spec`), and
credit ``(cost now - cost after) / groups zeroed`` to every group of the site:

* filter (block): the producer's and consumer's drop per removed channel at the current widths,
  for ``ceil(channel_round / block)`` blocks, so a step of the width staircase is removed;
* channel (block): likewise, from the consumer's side;
* shape column: the saving of the lowered conv; the step removes at least enough columns to
  cross ``min_shape_sparsity`` of the columns of the channels still read (where compaction
  lowers the conv), and a saving <= 0 (the lowered conv is no faster) means no push at all;
* depth: the whole block's cost.

Savings are clamped at 0 and normalised to mean 1 over each group type's groups, so the
strengths keep their meaning; a type whose groups save nothing gets weight 0 everywhere. The
savings are priced with the oracle's smooth part (:attr:`hwssl.budget.cost.CostOracle.weigh`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwssl.budget.oracle import Predict
from hwssl.compact import compacted_spec
from hwssl.sparsity.regularizer import ConvTerm, GroupLasso, conv_group_sumsq


@dataclass
class GroupSaving:
    """Cost saved per group of one (type, site) at the current zero pattern."""

    group_type: str
    site: str
    groups: int           # groups (blocks) of this site
    per_group: float      # cost saved per removed group (may be <= 0)


def _zero_groups(t: ConvTerm, order: torch.Tensor, count: int) -> None:
    """Zero the first ``count`` (blocked) groups of ``order`` on ``t.weight``."""
    w = t.weight
    for g in order[:count].tolist():
        if t.group_type == "shape":
            c, rest = divmod(g, w.shape[2] * w.shape[3])
            w[:, c, rest // w.shape[3], rest % w.shape[3]] = 0
        else:
            lo, hi = g * t.block, (g + 1) * t.block
            if t.group_type == "filter":
                w[lo:hi] = 0
            else:
                w[:, lo:hi] = 0


def _step_size(t: ConvTerm, nonzero: int, channel_round: int, min_shape_sparsity: float) -> int:
    if t.group_type == "shape":
        # compaction measures shape sparsity over the columns of the channels still read
        w = t.weight
        live = int((conv_group_sumsq(w, "channel") > 0).sum()) * w.shape[2] * w.shape[3]
        needed = math.ceil(min_shape_sparsity * live) - (live - nonzero)
        return max(1, math.ceil(0.1 * nonzero), needed)
    return max(1, math.ceil(channel_round / t.block))


@torch.no_grad()
def group_savings(model: nn.Module, reg: GroupLasso, predict: Predict, *, channel_round: int = 1,
                  min_shape_sparsity: float = 0.25) -> list[GroupSaving]:
    """The marginal saving of every penalised (type, site) of ``reg`` (weights restored after)."""
    spec_kw = dict(channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
    base = predict(compacted_spec(model, **spec_kw))
    out: list[GroupSaving] = []
    for t in reg.conv_terms:
        sumsq = t.sumsq()
        nonzero = torch.nonzero(sumsq > 0).flatten()
        total = sumsq.numel()
        saving = 0.0
        if len(nonzero) > 0:
            count = min(len(nonzero), _step_size(t, len(nonzero), channel_round, min_shape_sparsity))
            order = nonzero[torch.argsort(sumsq[nonzero], stable=True)]
            saved = t.weight.detach().clone()
            _zero_groups(t, order, count)
            try:
                saving = (base - predict(compacted_spec(model, **spec_kw))) / count
            finally:
                t.weight.copy_(saved)
        out.append(GroupSaving(t.group_type, t.name, total, saving))
    for d in reg.depth_terms:
        saving = 0.0
        if any(bool((p != 0).any()) for p in d.params[:2]):
            saved = [p.detach().clone() for p in d.params]
            for p in d.params:
                p.zero_()
            try:
                saving = base - predict(compacted_spec(model, **spec_kw))
            finally:
                for p, s in zip(d.params, saved):
                    p.copy_(s)
        out.append(GroupSaving("depth", d.name, 1, saving))
    return out


def normalised_weights(savings: list[GroupSaving]) -> dict[tuple[str, str], float]:
    """Savings clamped at 0, divided by their mean over each type's groups (mean weight 1)."""
    weights: dict[tuple[str, str], float] = {}
    for group_type in {s.group_type for s in savings}:
        of_type = [s for s in savings if s.group_type == group_type]
        groups = sum(s.groups for s in of_type)
        mean = sum(max(0.0, s.per_group) * s.groups for s in of_type) / max(groups, 1)
        for s in of_type:
            weights[(group_type, s.site)] = max(0.0, s.per_group) / mean if mean > 0 else 0.0
    return weights


class LatencyWeighting:
    """Recomputes ``reg``'s per-group weights from the oracle every ``every`` steps (widths
    change during SSL); call :meth:`refresh` once before training."""

    def __init__(self, model: nn.Module, reg: GroupLasso, predict: Predict, *, every: int = 100,
                 channel_round: int = 1, min_shape_sparsity: float = 0.25) -> None:
        self.model, self.reg, self.predict, self.every = model, reg, predict, max(1, every)
        self.kw: dict[str, Any] = dict(channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
        self.history: list[dict[str, Any]] = []

    def refresh(self, step: int = 0) -> dict[tuple[str, str], float]:
        weights = normalised_weights(group_savings(self.model, self.reg, self.predict, **self.kw))
        self.reg.set_weights(weights)
        self.history.append({"step": step, "weights": {f"{t}.{s}": round(w, 4) for (t, s), w in weights.items()}})
        return weights

    def __call__(self, step: int, total: int, loss: float) -> bool:
        if step % self.every == 0:
            self.refresh(step)
        return False

