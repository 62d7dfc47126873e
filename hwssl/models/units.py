"""Spec-driven building blocks shared by the model families.

A *conv spec* is a plain dict (JSON-serialisable)::

    {"name": "conv1", "in": 1, "out": 20, "kernel": 5, "stride": 1, "padding": 0,
     "bias": true, "bn": false, "act": "none",
     "in_index": null, "columns": null, "bias_map": null}

``act`` is ``none``, ``relu`` or ``relu6``. A depthwise conv (MobileNetV2) also has
``"groups": <in>``; the key is absent for ordinary convs (``groups`` = 1).
``in_index``/``columns``/``bias_map`` are only set in compacted networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwssl.models.layers import CompactConv2d

ConvSpec = dict[str, Any]


ACTIVATIONS = ("none", "relu", "relu6")


def conv_spec(name: str, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
              bias: bool = False, bn: bool = True, act: str = "relu", groups: int = 1) -> ConvSpec:
    spec = {"name": name, "in": cin, "out": cout, "kernel": kernel, "stride": stride,
            "padding": padding, "bias": bias, "bn": bn, "act": act,
            "in_index": None, "columns": None, "bias_map": None}
    if groups != 1:
        spec["groups"] = groups
    return spec


def make_act(act: str) -> nn.Module | None:
    if act == "relu":
        return nn.ReLU(inplace=False)
    if act == "relu6":
        return nn.ReLU6(inplace=False)
    return None


def is_compact(spec: ConvSpec) -> bool:
    return any(spec.get(k) is not None for k in ("in_index", "columns", "bias_map"))


def make_conv(spec: ConvSpec) -> nn.Module:
    """nn.Conv2d for a dense spec, :class:`CompactConv2d` for a compacted one."""
    if not is_compact(spec):
        return nn.Conv2d(spec["in"], spec["out"], spec["kernel"], spec["stride"], spec["padding"],
                         bias=spec["bias"], groups=spec.get("groups", 1))
    if spec.get("groups", 1) != 1:
        raise ValueError(f"conv {spec.get('name')}: a grouped conv cannot gather channels or columns")
    return CompactConv2d(spec["in"], spec["out"], spec["kernel"], spec["stride"], spec["padding"],
                         bias=spec["bias"], in_index=spec.get("in_index"), columns=spec.get("columns"),
                         bias_map_shape=spec.get("bias_map"))


class ConvUnit(nn.Module):
    """conv -> optional BatchNorm -> optional ReLU."""

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__()
        self.conv = make_conv(spec)
        self.bn = nn.BatchNorm2d(spec["out"]) if spec["bn"] else None
        self.act = make_act(spec["act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearUnit(nn.Module):
    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.act = nn.ReLU(inplace=False) if act == "relu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.act(x) if self.act is not None else x
