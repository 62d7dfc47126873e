"""ResNets built from a spec: CIFAR-style ResNet-20/32/56 and torchvision's ResNet-18.

Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` ...), so a torchvision ResNet-18 state dict loads
into the ``resnet18`` spec unchanged. Shortcuts that change shape are 1x1
conv + BN (option B) in every variant.

A block spec is either a live block::

    {"removed": false, "stride": 1, "in": 16, "out": 16, "downsample": false,
     "conv1": <conv spec>, "conv2": <conv spec>}

or, after depth-wise compaction, a removed one whose residual branch is gone::

    {"removed": true, "stride": 1, "in": 16, "out": 16, "downsample": false,
     "const": null | [C, 1, 1] | [C, H, W], "relu": true}
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from hwssl.models.layers import ChannelConstant
from hwssl.models.units import ConvSpec, conv_spec, make_conv


def _block_spec(cin: int, cout: int, stride: int, prefix: str) -> dict[str, Any]:
    return {
        "removed": False, "stride": stride, "in": cin, "out": cout,
        "downsample": stride != 1 or cin != cout,
        "conv1": conv_spec(f"{prefix}.conv1", cin, cout, 3, stride, 1, bias=False, bn=True, act="relu"),
        "conv2": conv_spec(f"{prefix}.conv2", cout, cout, 3, 1, 1, bias=False, bn=True, act="none"),
    }


def _resnet_spec(model: str, blocks_per_stage: Sequence[int], widths: Sequence[int], stem: ConvSpec,
                 maxpool: bool, input_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    stages = []
    cin = stem["out"]
    for s, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths)):
        blocks = []
        for b in range(n_blocks):
            stride = 2 if (b == 0 and s > 0) else 1
            blocks.append(_block_spec(cin, width, stride, f"layer{s + 1}.{b}"))
            cin = width
        stages.append(blocks)
    return {"family": "resnet", "model": model, "input": list(input_shape), "num_classes": num_classes,
            "stem": stem, "maxpool": maxpool, "stages": stages}


def resnet_cifar_spec(depth: int = 20, in_channels: int = 3, image_size: tuple[int, int] = (32, 32),
                      num_classes: int = 10, widths: Sequence[int] = (16, 32, 64)) -> dict[str, Any]:
    """He et al.'s CIFAR ResNet: 3 stages of (depth-2)/6 basic blocks, 3x3 stem, no max-pool."""
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    stem = conv_spec("conv1", in_channels, widths[0], 3, 1, 1, bias=False, bn=True, act="relu")
    return _resnet_spec(f"resnet{depth}", [n, n, n], widths, stem, False, (in_channels, *image_size),
                        num_classes)


def resnet18_spec(in_channels: int = 3, image_size: tuple[int, int] = (224, 224), num_classes: int = 1000,
                  widths: Sequence[int] = (64, 128, 256, 512)) -> dict[str, Any]:
    """torchvision's ResNet-18 (7x7/2 stem, 3x3/2 max-pool, 4 stages of 2 blocks)."""
    stem = conv_spec("conv1", in_channels, widths[0], 7, 2, 3, bias=False, bn=True, act="relu")
    return _resnet_spec("resnet18", [2, 2, 2, 2], widths, stem, True, (in_channels, *image_size), num_classes)


class BasicBlock(nn.Module):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = make_conv(spec["conv1"])
        self.bn1 = nn.BatchNorm2d(spec["conv1"]["out"])
        self.conv2 = make_conv(spec["conv2"])
        self.bn2 = nn.BatchNorm2d(spec["conv2"]["out"])
        self.relu = nn.ReLU(inplace=False)
        self.downsample = _downsample(spec)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.branch(x) + identity)


class RemovedBlock(nn.Module):
    """A block whose residual branch was removed: relu(shortcut(x) + constant)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.downsample = _downsample(spec)
        self.const = ChannelConstant(spec["const"]) if spec.get("const") is not None else None
        self.relu = nn.ReLU(inplace=False) if spec.get("relu", True) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.const is not None:
            x = self.const(x)
        return self.relu(x) if self.relu is not None else x


def _downsample(spec: dict[str, Any]) -> nn.Module | None:
    if not spec["downsample"]:
        return None
    return nn.Sequential(nn.Conv2d(spec["in"], spec["out"], 1, spec["stride"], bias=False),
                         nn.BatchNorm2d(spec["out"]))


class ResNet(nn.Module):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = make_conv(spec["stem"])
        self.bn1 = nn.BatchNorm2d(spec["stem"]["out"])
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if spec["maxpool"] else None
        for s, blocks in enumerate(spec["stages"]):
            layer = nn.Sequential(*[RemovedBlock(b) if b["removed"] else BasicBlock(b) for b in blocks])
            self.add_module(f"layer{s + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(spec["stages"][-1][-1]["out"], spec["num_classes"])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{s + 1}") for s in range(len(self.spec["stages"]))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for layer in self.stages:
            x = layer(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
