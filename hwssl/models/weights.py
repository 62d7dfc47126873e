"""Starting weights from a local state dict (``[model] weights = "path.pt"``); nothing is downloaded.

Accepted files: a state dict saved with ``torch.save(model.state_dict(), path)`` (or a dict
holding one under ``state_dict``, ``state`` or ``model``), loaded with ``weights_only=True``.
Names are hwssl's; the ResNet specs already use torchvision's names, and a torchvision
MobileNetV2 state dict (``features.*``, ``classifier.1.*``) is renamed onto the
``mobilenetv2`` spec. Anything that does not fit raises one :class:`WeightsError` naming the
file and the first tensor at fault.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the architecture."""

    def __init__(self, path: str | Path, message: str, tensor: str | None = None) -> None:
        self.path, self.tensor = str(path), tensor
        super().__init__(f"{path}: {f'tensor {tensor!r}: ' if tensor else ''}{message}")


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content (cache keys follow the content, not the path)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _torchvision_mobilenet_names(spec: dict[str, Any]) -> dict[str, str]:
    """torchvision MobileNetV2 module prefix -> hwssl prefix."""
    names = {"features.0.0": "stem.conv", "features.0.1": "stem.bn", "classifier.1": "classifier",
             f"features.{len(spec['blocks']) + 1}.0": "head.conv",
             f"features.{len(spec['blocks']) + 1}.1": "head.bn"}
    for i, block in enumerate(spec["blocks"]):
        tv, ours = f"features.{i + 1}.conv", f"blocks.{i}"
        parts = (["expand"] if block.get("expand") is not None else []) + ["dw"]
        for n, part in enumerate(parts):
            names[f"{tv}.{n}.0"] = f"{ours}.{part}.conv"
            names[f"{tv}.{n}.1"] = f"{ours}.{part}.bn"
        names[f"{tv}.{len(parts)}"] = f"{ours}.project.conv"
        names[f"{tv}.{len(parts) + 1}"] = f"{ours}.project.bn"
    return names


def _rename(spec: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if spec.get("family") != "mobilenetv2" or not any(k.startswith("features.") for k in state):
        return state
    names = _torchvision_mobilenet_names(spec)
    out = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        out[f"{names.get(prefix, prefix)}.{leaf}"] = value
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: not a plain state dict
        raise WeightsError(path, f"not a PyTorch state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                           ) from None
    for key in ("state_dict", "state", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise WeightsError(path, "expected a state dict (a mapping of names to tensors)")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` (built from a spec); exact names and shapes required."""
    state = _rename(model.spec, read_state_dict(path))
    target = model.state_dict()
    for key, value in target.items():
        if key not in state:
            raise WeightsError(path, f"missing from the file (the {model.spec.get('model')} spec needs it, "
                                     f"shape {list(value.shape)})", key)
        if state[key].shape != value.shape:
            raise WeightsError(path, f"shape {list(state[key].shape)} in the file, {list(value.shape)} in the "
                                     f"{model.spec.get('model')} spec", key)
    for key in state:
        if key not in target:
            raise WeightsError(path, f"not part of the {model.spec.get('model')} spec", key)
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in target.items()})
