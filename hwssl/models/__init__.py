"""Model zoo: LeNet, the paper's CIFAR ConvNet, CIFAR ResNet-20/32/56 and ResNet-18, all built from specs."""

from hwssl.models.registry import MODELS, available_models, build_model, model_spec

__all__ = ["MODELS", "available_models", "build_model", "model_spec"]
