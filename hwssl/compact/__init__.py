"""Physical removal of zero groups, with verified output equivalence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwssl.compact.mobilenet import compact_mobilenet
from hwssl.compact.plain import compact_plain
from hwssl.compact.resnet import compact_resnet
from hwssl.compact.spec import (arch_key, architecture_summary, conv_layer_count, load_compacted,
                                save_compacted)
from hwssl.models import build_model
from hwssl.models.layers import CompactConv2d

__all__ = ["CompactionError", "CompactResult", "compact_model", "compacted_spec", "max_abs_diff", "arch_key",
           "architecture_summary", "conv_layer_count", "load_compacted", "save_compacted"]


class CompactionError(RuntimeError):
    """Compaction could not produce an equivalent network."""


@dataclass
class CompactResult:
    model: nn.Module
    spec: dict[str, Any]
    max_abs_diff: float
    summary: dict[str, Any]


@torch.no_grad()
def max_abs_diff(a: nn.Module, b: nn.Module, inputs: torch.Tensor) -> float:
    a.eval()
    b.eval()
    return float((a(inputs) - b(inputs)).abs().max())


def _compact_parts(model: nn.Module, channel_round: int, min_shape_sparsity: float
                   ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if any(isinstance(m, CompactConv2d) for m in model.modules()):
        raise CompactionError("model is already compacted; compact the sparse dense-architecture model")
    family = model.spec["family"]
    if family == "plain":
        return compact_plain(model, channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
    if family == "resnet":
        return compact_resnet(model, channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
    if family == "mobilenetv2":
        return compact_mobilenet(model, channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
    raise CompactionError(f"no compaction for model family {family!r}")


@torch.no_grad()
def compacted_spec(model: nn.Module, *, channel_round: int = 1, min_shape_sparsity: float = 0.25) -> dict[str, Any]:
    """The architecture spec :func:`compact_model` would produce for ``model``'s current zero
    pattern, without building, loading or checking the compacted module (same decisions: it runs
    the same compaction code and drops the weights). Cheap enough to call during training."""
    was_training = model.training
    model.eval()
    try:
        return _compact_parts(model, channel_round, min_shape_sparsity)[0]
    finally:
        model.train(was_training)


@torch.no_grad()
def compact_model(model: nn.Module, *, channel_round: int = 1, min_shape_sparsity: float = 0.25,
                  check_inputs: torch.Tensor | None = None, tolerance: float | None = None) -> CompactResult:
    """Physically remove every zero group of a sparse zoo model.

    ``channel_round`` rounds kept channels up to a multiple (hardware-friendly
    widths, fewer distinct kernels to tune); ``min_shape_sparsity`` is the
    fraction of zero columns from which a conv is lowered (im2col over the kept
    columns) instead of kept dense with its zero columns. The result is checked
    against ``model`` in eval mode on ``check_inputs`` (random normal inputs if
    none); with ``tolerance`` set, a larger difference raises CompactionError.
    """
    was_training = model.training
    model.eval()
    try:
        spec, state = _compact_parts(model, channel_round, min_shape_sparsity)
        small = build_model(spec)
        target = small.state_dict()
        unknown = sorted(set(state) - set(target))
        missing = sorted(k for k in set(target) - set(state) if not k.rsplit(".", 1)[-1].startswith(("_cols", "in_index")))
        if unknown or missing:
            raise CompactionError(f"state mismatch: unknown {unknown[:5]}, missing {missing[:5]}")
        for key, value in state.items():
            if target[key].shape != value.shape:
                raise CompactionError(f"{key}: shape {tuple(value.shape)} vs spec {tuple(target[key].shape)}")
            target[key] = value
        small.load_state_dict(target)
        small.eval()
        if check_inputs is None:
            gen = torch.Generator().manual_seed(0)
            check_inputs = torch.randn(8, *spec["input"], generator=gen)
        diff = max_abs_diff(model, small, check_inputs)
        if tolerance is not None and not diff <= tolerance:
            raise CompactionError(f"compacted outputs differ from the sparse model by {diff:.3g} > {tolerance}")
        return CompactResult(small, spec, diff, architecture_summary(spec))
    finally:
        model.train(was_training)
