"""Plain (non-residual) CNNs built from a layer-list spec: LeNet and the paper's CIFAR ConvNet."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from hwssl.models.units import ConvUnit, LinearUnit, conv_spec
from hwssl.models.layers import conv_output_size


def _pool_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _finish_spec(name: str, input_shape: tuple[int, int, int], num_classes: int,
                 layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Fill in the flatten size of the first linear layer by walking spatial sizes."""
    c, h, w = input_shape
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv":
            h = conv_output_size(h, layer["kernel"], layer["stride"], layer["padding"])
            w = conv_output_size(w, layer["kernel"], layer["stride"], layer["padding"])
            c = layer["out"]
        elif kind in ("maxpool", "avgpool"):
            h, w = _pool_size(h, layer["kernel"], layer["stride"]), _pool_size(w, layer["kernel"], layer["stride"])
        elif kind == "flatten":
            c, h, w = c * h * w, 1, 1
        elif kind == "linear":
            if layer["in"] is None:
                layer["in"] = c
            c = layer["out"]
        if h < 1 or w < 1:
            raise ValueError(f"{name}: input {input_shape} is too small for layer {layer.get('name', kind)}")
    return {"family": "plain", "model": name, "input": list(input_shape), "num_classes": num_classes,
            "layers": layers}


def _conv(name: str, cin: int, cout: int, k: int, pad: int, bn: bool, act: str) -> dict[str, Any]:
    return {"kind": "conv", **conv_spec(name, cin, cout, k, 1, pad, bias=not bn, bn=bn, act=act)}


def lenet_spec(in_channels: int = 1, image_size: tuple[int, int] = (28, 28), num_classes: int = 10,
               width: float = 1.0) -> dict[str, Any]:
    """Caffe's LeNet as used by the SSL paper: conv 20 and 50 filters of 5x5, max-pool after each,
    no non-linearity on the convolutions, fc 500 + ReLU, fc classes."""
    c1, c2 = max(1, round(20 * width)), max(1, round(50 * width))
    layers = [
        _conv("conv1", in_channels, c1, 5, 0, bn=False, act="none"),
        {"kind": "maxpool", "name": "pool1", "kernel": 2, "stride": 2},
        _conv("conv2", c1, c2, 5, 0, bn=False, act="none"),
        {"kind": "maxpool", "name": "pool2", "kernel": 2, "stride": 2},
        {"kind": "flatten", "name": "flatten"},
        {"kind": "linear", "name": "fc1", "in": None, "out": max(1, round(500 * width)), "act": "relu"},
        {"kind": "linear", "name": "fc2", "in": None, "out": num_classes, "act": "none"},
    ]
    # fc2's input is fc1's output
    spec = _finish_spec("lenet", (in_channels, *image_size), num_classes, layers)
    return spec


def convnet_spec(in_channels: int = 3, image_size: tuple[int, int] = (32, 32), num_classes: int = 10,
                 width: float = 1.0) -> dict[str, Any]:
    """The SSL paper's CIFAR-10 ConvNet (Caffe ``cifar10_full``): three 5x5 conv layers of
    32, 32, 64 filters with 3x3/2 pooling. Caffe's LRN layers are replaced by BatchNorm
    (LRN has no TVM-friendly equivalent and BN trains more robustly)."""
    w1, w2, w3 = (max(1, round(n * width)) for n in (32, 32, 64))
    layers = [
        _conv("conv1", in_channels, w1, 5, 2, bn=True, act="relu"),
        {"kind": "maxpool", "name": "pool1", "kernel": 3, "stride": 2},
        _conv("conv2", w1, w2, 5, 2, bn=True, act="relu"),
        {"kind": "avgpool", "name": "pool2", "kernel": 3, "stride": 2},
        _conv("conv3", w2, w3, 5, 2, bn=True, act="relu"),
        {"kind": "avgpool", "name": "pool3", "kernel": 3, "stride": 2},
        {"kind": "flatten", "name": "flatten"},
        {"kind": "linear", "name": "fc1", "in": None, "out": num_classes, "act": "none"},
    ]
    return _finish_spec("convnet", (in_channels, *image_size), num_classes, layers)


class PlainCNN(nn.Module):
    """Sequential CNN whose layers are named after the spec (``conv1``, ``pool1``, ``fc1`` ...)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        body: "OrderedDict[str, nn.Module]" = OrderedDict()
        for layer in spec["layers"]:
            kind = layer["kind"]
            if kind == "conv":
                body[layer["name"]] = ConvUnit(layer)
            elif kind == "maxpool":
                body[layer["name"]] = nn.MaxPool2d(layer["kernel"], layer["stride"])
            elif kind == "avgpool":
                body[layer["name"]] = nn.AvgPool2d(layer["kernel"], layer["stride"])
            elif kind == "flatten":
                body[layer["name"]] = nn.Flatten()
            elif kind == "linear":
                body[layer["name"]] = LinearUnit(layer["in"], layer["out"], layer["act"])
            else:
                raise ValueError(f"unknown layer kind {kind!r} in spec")
        self.body = nn.Sequential(body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
