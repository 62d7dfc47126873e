"""What every baseline shares: the filter sites it may prune, pruning ratios per site, and a
filter mask that plugs into :func:`hwssl.train.train_phase` like SSL's regulariser does.

Sites: exactly the convs whose *filters* SSL may remove (``ssl_sites(model)`` with
``"filter"`` in their types): LeNet's/ConvNet's convs; in ResNets only the first conv of
each block (filters feeding a residual add are coupled across a stage and are never
removed, see :mod:`hwssl.sparsity.groups`). A baseline zeroes whole filters (rows of the
lowered weight) at those sites; the shared compaction then removes them exactly, folding
what a zeroed filter still emits (its bias, or BatchNorm's constant) into the consumer.

Ratio keys mirror strength keys: ``ratio`` (every site), ``ratio.<stage>`` or
``ratio.<layer>``; the most specific wins. A ratio r keeps ``max(1, floor(F * (1 - r)))``
of a conv's F filters (Torch-Pruning's rounding for local pruning).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from hwssl.sparsity.groups import ConvSite, ssl_sites

RATIO = "ratio"


class MethodError(ValueError):
    """A baseline's parameters do not fit the model (unknown key, ratio outside [0, 1))."""


# Families whose filter sites are the whole story. MobileNetV2's hidden channels are coupled
# groups (expand rows + depthwise filters + projection columns) that these baselines do not model.
PRUNABLE_FAMILIES = ("plain", "resnet")


def check_family(method: str, family: str) -> None:
    """Refuse a filter-pruning baseline on a family it cannot prune as a whole."""
    if method in ("l1", "torch-pruning") and family not in PRUNABLE_FAMILIES:
        raise MethodError(f"{method} is not available for {family} networks (their hidden channels are coupled "
                          f"groups it does not prune); use ssl or dense")


def filter_sites(model: nn.Module) -> list[ConvSite]:
    """The convs whose filters SSL (and so every baseline) may remove."""
    return [s for s in ssl_sites(model).convs if "filter" in s.types]


def resolve_ratios(sites: list[ConvSite], params: Mapping[str, Any]) -> dict[str, float]:
    """{site name: pruning ratio} from ``ratio`` / ``ratio.<stage>`` / ``ratio.<layer>`` keys."""
    names = {s.name for s in sites}
    stages = {s.stage for s in sites if s.stage}
    ratios = {k: v for k, v in params.items() if k == RATIO or k.startswith(RATIO + ".")}
    for key, value in ratios.items():
        scope = key[len(RATIO) + 1:] if key != RATIO else ""
        if key != RATIO and scope not in names and scope not in stages:
            raise MethodError(f"{key}: unknown scope {scope!r}; expected one of {sorted(stages) + sorted(names)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 1.0):
            raise MethodError(f"{key}: expected a pruning ratio in [0, 1), got {value!r}")
    out = {}
    for site in sites:
        for key in (f"{RATIO}.{site.name}", f"{RATIO}.{site.stage}" if site.stage else None, RATIO):
            if key is not None and key in ratios:
                out[site.name] = float(ratios[key])
                break
        else:
            out[site.name] = 0.0
    return out


def kept_count(total: int, ratio: float) -> int:
    """Filters kept of ``total`` at pruning ``ratio`` (at least one)."""
    return max(1, math.floor(total * (1.0 - ratio) + 1e-9))


def filter_l1(conv: nn.Conv2d) -> torch.Tensor:
    """L1 norm of every filter (Li et al. 2017's ranking)."""
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))


class FilterMask:
    """Zeroed filters kept at zero through fine-tuning.

    Speaks the regulariser protocol of :func:`hwssl.train.train_phase` (``active``,
    ``penalty``, ``proximal_step``, ``zero_small``): run with ``mode="proximal"`` the
    loop calls :meth:`proximal_step` right after every optimiser step, which re-applies
    the masks, so momentum and weight decay can never revive a removed filter. The
    loop times that call as SSL's extra cost, so the mask overhead is measured too.
    """

    def __init__(self, masks: Mapping[str, tuple[nn.Conv2d, torch.Tensor]]) -> None:
        self.masks = dict(masks)   # site name -> (conv, bool keep mask over filters)

    @property
    def active(self) -> bool:
        return any(bool((~keep).any()) for _, keep in self.masks.values())

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())

    @torch.no_grad()
    def apply(self) -> None:
        for conv, keep in self.masks.values():
            conv.weight[~keep] = 0.0

    def proximal_step(self, lr: float) -> None:
        self.apply()

    def zero_small(self, threshold: float = 0.0) -> None:
        pass

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: {"filters": int(keep.numel()), "kept": int(keep.sum()),
                       "pruned": torch.nonzero(~keep).flatten().tolist()}
                for name, (conv, keep) in self.masks.items()}
