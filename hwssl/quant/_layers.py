"""Integer layers of a quantised network, written with ordinary PyTorch integer ops.

Every layer here runs in PyTorch eager on CPU (PyTorch 2.14 has int32
convolutions and matmuls) and exports with ``torch.export``; the same graph
is what TVM compiles, so PyTorch's result is a bit-exact reference for the
integer part. Convolutions and matmuls are written as ``op(x.to(int32),
w.to(int32))`` on int8/uint8 tensors: exact int32 arithmetic in PyTorch, and
:mod:`hwssl.quant.importer` turns each into an int8 x int8 -> int32 op in
Relax (TVM's own converter would compute them in float32).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hwssl.models.layers import gather_kept_columns
from hwssl.quant._fixedpoint import QSpec, QuantError, choose_shift, fixed_point

INT32_MAX = 2**31 - 1


class QuantizeInput(nn.Module):
    """float -> int8 at the network's input (the one float op on the way in)."""

    def __init__(self, spec: QSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inv_scale = 1.0 / spec.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x * self.inv_scale)
        return torch.clamp(q, self.spec.qmin, self.spec.qmax).to(self.spec.dtype)


class QConv(nn.Module):
    """int8/uint8 input -> int32 accumulator of a convolution with int8 weights.

    Mirrors :class:`hwssl.models.layers.CompactConv2d`: an input-channel
    gather (``in_index``) or the lowered form (zero pad, one strided slice per
    kept kernel offset, channel gather, concat, 1x1 conv). Biases are not
    added here: they go, in higher precision, into the following
    :class:`Requant`'s constant.
    """

    def __init__(self, weight_q: torch.Tensor, *, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 groups: int = 1, in_index: torch.Tensor | None = None,
                 offsets: list[tuple[int, int, torch.Tensor | None]] | None = None, kernel_size: int = 1) -> None:
        super().__init__()
        if weight_q.dtype != torch.int8:
            raise QuantError(f"QConv needs int8 weights, got {weight_q.dtype}")
        self.register_buffer("weight", weight_q.contiguous())
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.kernel_size = kernel_size
        self.lowered = offsets is not None
        self._offsets: list[tuple[int, int, str | None]] = []
        if in_index is not None:
            self.register_buffer("in_index", in_index.clone().to(torch.long))
        else:
            self.in_index = None
        for n, (i, j, chs) in enumerate(offsets or []):
            name = None
            if chs is not None:
                name = f"_cols{n}"
                self.register_buffer(name, chs.clone().to(torch.long))
            self._offsets.append((int(i), int(j), name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lowered:
            cols = gather_kept_columns(x, self, self._offsets, self.kernel_size, int(self.stride), int(self.padding))
            return F.conv2d(cols.to(torch.int32), self.weight.to(torch.int32))
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        return F.conv2d(x.to(torch.int32), self.weight.to(torch.int32), None, self.stride, self.padding, 1,
                        self.groups)


class QLinear(nn.Module):
    """int8/uint8 (N, K) -> int32 (N, M) with int8 weights stored (K, M)."""

    def __init__(self, weight_q: torch.Tensor) -> None:
        super().__init__()
        if weight_q.dtype != torch.int8:
            raise QuantError(f"QLinear needs int8 weights, got {weight_q.dtype}")
        self.register_buffer("weight_t", weight_q.t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x.to(torch.int32), self.weight_t.to(torch.int32))


class Requant(nn.Module):
    """Integer rescale of a sum of integer terms to the next tensor's int8/uint8 (or int32) grid.

    ``y = clamp(floor((sum_i t_i * m_i + c) / 2^s), lo, hi)`` in int64, where
    ``m_i = round(M_i 2^s)`` and ``c = round(C 2^s) + 2^(s-1)`` (the rounding
    half). ``M_i`` is term i's scale over the output scale and ``C`` the real
    constant (biases, folded BatchNorm shifts, constant maps of removed
    channels) over the output scale. A ReLU is the clamp at 0 of a uint8 output.
    """

    def __init__(self, multipliers: Sequence[torch.Tensor], term_bounds: Sequence[float], out: QSpec | None,
                 *, const: torch.Tensor | None = None, relu: bool = False, out_int32_scale: float | None = None
                 ) -> None:
        super().__init__()
        if (out is None) == (out_int32_scale is None):
            raise QuantError("Requant needs exactly one of an int8/uint8 output spec or an int32 output scale")
        self.out = out
        out_scale = out.scale if out is not None else float(out_int32_scale)
        reals = [m.double() / out_scale for m in multipliers]
        const_real = const.double() / out_scale if const is not None else None
        const_bound = float(const_real.abs().max()) if const_real is not None and const_real.numel() else 0.0
        self.shift = choose_shift(reals, list(term_bounds), const_bound)
        for n, r in enumerate(reals):
            self.register_buffer(f"m{n}", fixed_point(r, self.shift))
        half = 2 ** (self.shift - 1)
        c = fixed_point(const_real, self.shift) + half if const_real is not None else torch.tensor(half)
        self.register_buffer("c", c.to(torch.int64))
        self.register_buffer("den", torch.tensor(2**self.shift, dtype=torch.int64))
        self.n_terms = len(reals)
        if out is not None:
            self.lo, self.hi, self.dtype = (0 if relu else out.qmin), out.qmax, out.dtype
        else:
            self.lo, self.hi, self.dtype = (0 if relu else -INT32_MAX - 1), INT32_MAX, torch.int32

    def forward(self, *terms: torch.Tensor) -> torch.Tensor:
        if len(terms) != self.n_terms:
            raise ValueError(f"Requant expects {self.n_terms} terms, got {len(terms)}")
        num = terms[0].to(torch.int64) * self.m0
        for n in range(1, self.n_terms):
            num = num + terms[n].to(torch.int64) * getattr(self, f"m{n}")
        num = num + self.c
        y = torch.div(num, self.den, rounding_mode="floor")
        return torch.clamp(y, self.lo, self.hi).to(self.dtype)


class ConvRequant(nn.Module):
    """One integer conv (or linear) followed by its requantisation: a ConvUnit / LinearUnit."""

    def __init__(self, op: nn.Module, requant: Requant) -> None:
        super().__init__()
        self.op = op
        self.requant = requant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.requant(self.op(x))


class SumPool(nn.Module):
    """Average pooling as an integer sum (depthwise all-ones int8 conv, or a global sum) + requantisation."""

    def __init__(self, requant: Requant, *, conv: QConv | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.requant = requant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(x) if self.conv is not None else x.to(torch.int32).sum(dim=(2, 3), keepdim=True)
        return self.requant(s)


class QBasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), all in integers; the add happens inside the
    output requantisation (both terms rescaled to the output grid at once, no intermediate rounding)."""

    def __init__(self, unit1: ConvRequant, conv2: QConv, downsample: QConv | None, out: Requant) -> None:
        super().__init__()
        self.unit1 = unit1
        self.conv2 = conv2
        self.downsample = downsample
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(self.unit1(x))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.out(branch, identity)


class QRemovedBlock(nn.Module):
    """A removed residual block: relu(shortcut(x) + constant), the constant in the requant."""

    def __init__(self, downsample: QConv | None, out: Requant) -> None:
        super().__init__()
        self.downsample = downsample
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.downsample(x) if self.downsample is not None else x)


class DequantLogits(nn.Module):
    """Last linear layer: int32 accumulator + int32 bias, then float logits (the one float op on the way out)."""

    def __init__(self, linear: QLinear, bias_q: torch.Tensor, scales: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("bias", bias_q.to(torch.int32).view(1, -1))
        self.register_buffer("scale", scales.to(torch.float32).view(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.linear(x) + self.bias).to(torch.float32) * self.scale
