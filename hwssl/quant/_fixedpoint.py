"""Scales and fixed-point arithmetic for symmetric int8 quantisation.

Everything here is plain tensor maths (float64 for the real-valued scales, so
the integer constants do not depend on float32 rounding of intermediate
products). The conventions, shared by every quantised layer:

* weights: per output channel, symmetric, int8 in [-127, 127]
  (``s_w = max|w| / 127``; -128 is never used, so negating a weight cannot
  overflow);
* activations: per tensor, symmetric with zero point 0: int8 in [-128, 127]
  (``s = max|x| / 127``) or, where calibration never saw a negative value
  (after a ReLU), uint8 in [0, 255] (``s = max / 255``), one more bit for the
  same tensor. A zero point of 0 keeps zero padding exact and makes every
  convolution a plain integer convolution, with no zero-point correction terms;
* rescaling ("requantisation") of an int32 accumulator to the next layer's
  scale: ``y = floor((acc * m + c + 2^(s-1)) / 2^s)`` in int64, i.e. a
  multiplication by the integer ``m ~= M * 2^s`` and a rounding shift. The
  shift ``s`` is shared by all channels of a layer (TVM's PyTorch frontend
  has no right shift and its scalar constants are int32, so the shift is a
  floor division by a 0-d int64 constant, which LLVM turns into a shift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INT64_LIMIT = 2**62  # headroom below 2^63 for sums of a few terms
MULTIPLIER_BITS = 31  # integer multipliers stay below 2^31


class QuantError(RuntimeError):
    """A network cannot be quantised as asked (unsupported layer, scale range)."""


@dataclass(frozen=True)
class QSpec:
    """One quantised activation tensor: its scale and integer type."""

    scale: float
    unsigned: bool

    @property
    def qmin(self) -> int:
        return 0 if self.unsigned else -128

    @property
    def qmax(self) -> int:
        return 255 if self.unsigned else 127

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8 if self.unsigned else torch.int8

    @property
    def bound(self) -> int:
        """Largest magnitude an element can have."""
        return max(abs(self.qmin), self.qmax)

    def to_dict(self) -> dict[str, object]:
        return {"scale": self.scale, "dtype": "uint8" if self.unsigned else "int8"}


def activation_spec(lo: float, hi: float) -> QSpec:
    """Symmetric per-tensor spec from a calibrated range; uint8 when nothing negative was seen."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise QuantError(f"calibration range is not finite: [{lo}, {hi}]")
    if lo >= 0.0:
        return QSpec(hi / 255.0 if hi > 0 else 1.0, True)
    amax = max(abs(lo), abs(hi))
    return QSpec(amax / 127.0 if amax > 0 else 1.0, False)


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric scales (float64); all-zero channels get scale 1."""
    amax = weight.detach().double().flatten(1).abs().amax(dim=1)
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))


def quantize_weight(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 weights, per output channel (dim 0)."""
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.round(weight.detach().double() / scales.view(shape))
    return q.clamp(-127, 127).to(torch.int8)


def choose_shift(multipliers: list[torch.Tensor], term_bounds: list[float], const_bound: float) -> int:
    """Largest shift that keeps every integer multiplier below 2^31 and every sum inside int64.

    ``multipliers`` are the real factors M_i applied to the integer terms,
    ``term_bounds`` the largest magnitudes the terms can take, ``const_bound``
    the largest real constant (already divided by the output scale).
    """
    m_max = max(float(m.abs().max()) for m in multipliers)
    if m_max <= 0:
        return 1
    shift = min(62, math.floor(math.log2((2**MULTIPLIER_BITS - 1) / m_max)))

    def fits(s: int) -> bool:
        total = sum(b * round(float(m.abs().max()) * 2**s) for m, b in zip(multipliers, term_bounds))
        return total + const_bound * 2**s + 2**s < INT64_LIMIT

    while shift >= 1 and not fits(shift):
        shift -= 1
    if shift < 1:
        raise QuantError(f"rescale factor {m_max:.3g} is too large for a fixed-point multiplier "
                         "(the output scale is far finer than the input's)")
    return shift


def fixed_point(real: torch.Tensor, shift: int) -> torch.Tensor:
    """Integer multiplier ``round(real * 2^shift)`` as int64."""
    return torch.round(real.double() * 2.0**shift).to(torch.int64)


def conv_accumulator_bound(weight_q: torch.Tensor, in_spec: QSpec) -> int:
    """Largest |accumulator| an int8 conv/matmul can produce (sum over the reduction of |w|*|x|max)."""
    per_out = weight_q.to(torch.int64).flatten(1).abs().sum(dim=1)
    return int(per_out.max()) * in_spec.bound if per_out.numel() else 0
