"""MobileNetV2 (Sandler et al. 2018) built from a spec, with torchvision's inverted residual blocks.

Block ``i`` is expand 1x1 (absent when the expansion ratio is 1) -> depthwise 3x3 -> linear
projection 1x1, each followed by BatchNorm, ReLU6 after the first two; the input is added back
when the block keeps its shape (``residual``: stride 1 and in == out), as in torchvision.
Channel counts follow torchvision's ``_make_divisible(c * width, 8)``.

Inputs smaller than 64 pixels (CIFAR's 32x32, Fashion-MNIST's 28x28) get the usual small-image
variant: stem stride 1 and the second stage (24 channels) at stride 1, an overall stride of 8
instead of 32 (a 32x32 input ends at 4x4, not 1x1).

Spec::

    {"family": "mobilenetv2", "model": "mobilenetv2", "input": [C, H, W], "num_classes": N,
     "stem": <conv spec>, "blocks": [<block spec>, ...], "head": <conv spec>, "dropout": 0.2}

A live block::

    {"removed": false, "in": 16, "out": 24, "stride": 2, "residual": false, "stage": 2,
     "expand": <conv spec> | null, "dw": <conv spec, "groups" = channels>, "project": <conv spec>}

A removed identity block (depth-wise compaction): ``{"removed": true, "in": C, "out": C,
"stride": 1, "residual": true, "stage": s, "const": null | [C, 1, 1]}`` computes ``x + const``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwssl.models.layers import ChannelConstant
from hwssl.models.units import ConvUnit, conv_spec

# torchvision's inverted residual setting: expansion t, channels c, repeats n, stride s
SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1))
SMALL_INPUT = 64  # below this (either side) the small-image stride variant is used


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def block_spec(index: int, stage: int, cin: int, cout: int, stride: int, expand_ratio: int) -> dict[str, Any]:
    hidden = int(round(cin * expand_ratio))
    prefix = f"blocks.{index}"
    return {
        "removed": False, "in": cin, "out": cout, "stride": stride, "stage": stage,
        "residual": stride == 1 and cin == cout,
        "expand": (conv_spec(f"{prefix}.expand", cin, hidden, 1, 1, 0, act="relu6")
                   if expand_ratio != 1 else None),
        "dw": conv_spec(f"{prefix}.dw", hidden, hidden, 3, stride, 1, act="relu6", groups=hidden),
        "project": conv_spec(f"{prefix}.project", hidden, cout, 1, 1, 0, act="none"),
    }


def mobilenetv2_spec(in_channels: int = 3, image_size: tuple[int, int] = (224, 224), num_classes: int = 1000,
                     width: float = 1.0, dropout: float = 0.2) -> dict[str, Any]:
    """torchvision's MobileNetV2 for ``image_size`` (small-image strides below 64 pixels)."""
    small = min(image_size) < SMALL_INPUT
    cin = make_divisible(32 * width)
    stem = conv_spec("stem", in_channels, cin, 3, 1 if small else 2, 1, act="relu6")
    blocks = []
    for stage, (t, c, n, s) in enumerate(SETTING, start=1):
        cout = make_divisible(c * width)
        if small and stage == 2:
            s = 1
        for i in range(n):
            blocks.append(block_spec(len(blocks), stage, cin, cout, s if i == 0 else 1, t))
            cin = cout
    last = make_divisible(1280 * max(1.0, width))
    head = conv_spec("head", cin, last, 1, 1, 0, act="relu6")
    return {"family": "mobilenetv2", "model": "mobilenetv2", "input": [in_channels, *image_size],
            "num_classes": num_classes, "stem": stem, "blocks": blocks, "head": head, "dropout": dropout}


class InvertedResidual(nn.Module):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.expand = ConvUnit(spec["expand"]) if spec.get("expand") is not None else None
        self.dw = ConvUnit(spec["dw"])
        self.project = ConvUnit(spec["project"])
        self.residual = bool(spec["residual"])

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand is not None:
            x = self.expand(x)
        return self.project(self.dw(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return x + out if self.residual else out


class RemovedInvertedResidual(nn.Module):
    """An identity block whose branch was removed: ``x + const`` (or just ``x``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.const = ChannelConstant(spec["const"]) if spec.get("const") is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.const(x) if self.const is not None else x


class MobileNetV2(nn.Module):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvUnit(spec["stem"])
        self.blocks = nn.Sequential(*[RemovedInvertedResidual(b) if b["removed"] else InvertedResidual(b)
                                      for b in spec["blocks"]])
        self.head = ConvUnit(spec["head"])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.get("dropout", 0.0))
        self.classifier = nn.Linear(spec["head"]["out"], spec["num_classes"])
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))
