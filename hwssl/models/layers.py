"""Layers that compacted networks are built from.

:class:`CompactConv2d` is a convolution whose input may be restricted to a
subset of channels (``in_index``, a gather) or to a subset of the columns of
the lowered weight matrix (``columns``: the paper's shape-wise sparsity,
realised as im2col restricted to the kept columns followed by a GEMM), plus an
optional constant ``bias_map`` that carries the exact contribution of removed
input channels whose producers emitted a constant (a zeroed filter followed by
BatchNorm/ReLU is a constant, not a zero).

The im2col step is written as at most ``kh*kw`` strided slices, one per kernel
offset, each gathering only the channels kept at that offset, concatenated and
fed to a 1x1 convolution. Only standard ops are used, so ``torch.export`` and
TVM's Relax frontend import it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def group_columns_by_offset(columns: Sequence[Sequence[int]]) -> list[tuple[int, int, list[int]]]:
    """[(c, i, j)] -> [(i, j, [c...])] in a canonical order (offsets row-major, channels ascending)."""
    by_offset: dict[tuple[int, int], list[int]] = defaultdict(list)
    for c, i, j in columns:
        by_offset[(int(i), int(j))].append(int(c))
    return [(i, j, sorted(chs)) for (i, j), chs in sorted(by_offset.items())]


def gather_kept_columns(x: torch.Tensor, owner: nn.Module, offsets: Sequence[tuple[int, int, str | None]],
                        kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """im2col restricted to the kept columns: one strided slice per kernel offset ``(i, j)``,
    gathering the channels in buffer ``owner.<name>`` (all channels when ``name`` is None),
    concatenated to (N, K, Ho, Wo) for a 1x1 convolution."""
    if padding:
        x = F.pad(x, (padding,) * 4)
    ho = (x.shape[2] - kernel_size) // stride + 1
    wo = (x.shape[3] - kernel_size) // stride + 1
    s = stride
    parts = []
    for i, j, name in offsets:
        patch = x[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s]
        if name is not None:
            patch = patch.index_select(1, getattr(owner, name))
        parts.append(patch)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def canonical_columns(columns: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Columns in the order the lowered weight matrix stores them."""
    return [(c, i, j) for i, j, chs in group_columns_by_offset(columns) for c in chs]


class CompactConv2d(nn.Module):
    """A convolution over a subset of its input (channels or lowered columns).

    ``weight`` is (out, in_kept, k, k) in gather mode and (out, K, 1, 1) in
    lowered mode, K = number of kept columns in :func:`canonical_columns` order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        in_index: Sequence[int] | None = None,
        columns: Sequence[Sequence[int]] | None = None,
        bias_map_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.lowered = columns is not None
        self._offsets: list[tuple[int, int, str | None]] = []
        if self.lowered:
            groups = group_columns_by_offset(columns)
            k_cols = sum(len(chs) for _, _, chs in groups)
            for n, (i, j, chs) in enumerate(groups):
                name = None
                if chs != list(range(in_channels)):
                    name = f"_cols{n}"
                    self.register_buffer(name, torch.tensor(chs, dtype=torch.long))
                self._offsets.append((i, j, name))
            self.weight = nn.Parameter(torch.empty(out_channels, k_cols, 1, 1))
            self.in_index = None
        else:
            if in_index is not None:
                self.register_buffer("in_index", torch.tensor(list(in_index), dtype=torch.long))
                n_in = len(in_index)
            else:
                self.in_index = None
                n_in = in_channels
            self.weight = nn.Parameter(torch.empty(out_channels, n_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if bias_map_shape is not None:
            self.register_buffer("bias_map", torch.zeros(*bias_map_shape))
        else:
            self.bias_map = None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lowered:
            cols = gather_kept_columns(x, self, self._offsets, self.kernel_size, self.stride, self.padding)
            out = F.conv2d(cols, self.weight, self.bias)
        else:
            if self.in_index is not None:
                x = x.index_select(1, self.in_index)
            out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        if self.bias_map is not None:
            out = out + self.bias_map
        return out

    def macs_per_image(self, out_hw: tuple[int, int]) -> int:
        k = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
        return self.out_channels * k * out_hw[0] * out_hw[1]

    def extra_repr(self) -> str:
        mode = f"lowered K={self.weight.shape[1]}" if self.lowered else (
            f"gather {self.weight.shape[1]}/{self.in_channels}" if self.in_index is not None else "dense")
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"p={self.padding}, {mode}, bias={self.bias is not None}, bias_map={self.bias_map is not None}")


class ChannelConstant(nn.Module):
    """Adds a constant (C,1,1) or (C,H,W) tensor: what is left of a removed residual branch."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value
