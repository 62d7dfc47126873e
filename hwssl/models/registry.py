"""Model registry: a name -> spec factory, and spec -> nn.Module."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from hwssl.models.mobilenet import MobileNetV2, mobilenetv2_spec
from hwssl.models.plain import PlainCNN, convnet_spec, lenet_spec
from hwssl.models.resnet import ResNet, resnet18_spec, resnet_cifar_spec


def _width_list(base: tuple[int, ...], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(b * width)) for b in base)


def _resnet_cifar(depth: int) -> Callable[..., dict[str, Any]]:
    def factory(in_channels: int, image_size: tuple[int, int], num_classes: int, width: float = 1.0):
        return resnet_cifar_spec(depth, in_channels, image_size, num_classes, _width_list((16, 32, 64), width))
    factory.__doc__ = f"CIFAR-style ResNet-{depth} (widths 16/32/64 x width)."
    return factory


def _resnet18(in_channels: int, image_size: tuple[int, int], num_classes: int, width: float = 1.0):
    return resnet18_spec(in_channels, image_size, num_classes, _width_list((64, 128, 256, 512), width))


MODELS: dict[str, Callable[..., dict[str, Any]]] = {
    "lenet": lenet_spec,
    "convnet": convnet_spec,
    "resnet20": _resnet_cifar(20),
    "resnet32": _resnet_cifar(32),
    "resnet56": _resnet_cifar(56),
    "resnet18": _resnet18,
    "mobilenetv2": mobilenetv2_spec,
}

FAMILIES = ("plain", "resnet", "mobilenetv2")


def available_models() -> list[str]:
    return sorted(MODELS)


def model_spec(name: str, in_channels: int, image_size: tuple[int, int], num_classes: int,
               width: float = 1.0) -> dict[str, Any]:
    """The dense architecture spec of a registered model for a given input."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {available_models()}")
    return MODELS[name](in_channels=in_channels, image_size=tuple(image_size), num_classes=num_classes,
                        width=width)


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Instantiate a (dense or compacted) network from its spec."""
    family = spec.get("family")
    if family == "plain":
        return PlainCNN(spec)
    if family == "resnet":
        return ResNet(spec)
    if family == "mobilenetv2":
        return MobileNetV2(spec)
    raise ValueError(f"unknown model family {family!r} in spec")
