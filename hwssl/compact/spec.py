"""Architecture specs: summaries, stable keys, and save/load of a compacted net.

A compacted net is stored as two files: ``arch.json`` (the spec, plain JSON)
and ``weights.pt`` (a state dict loadable with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwssl.compact.shapes import spec_summary
from hwssl.models import build_model


def arch_key(spec: dict[str, Any]) -> str:
    """Stable short hash of an architecture (same structure -> same key, weights ignored)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def architecture_summary(spec: dict[str, Any]) -> dict[str, Any]:
    """Per conv layer kept filters/channels/columns, and removed blocks."""
    layers: dict[str, Any] = {}
    removed: list[str] = []
    if spec["family"] == "plain":
        for layer in spec["layers"]:
            if layer["kind"] == "conv":
                layers[layer["name"]] = spec_summary(layer)
    elif spec["family"] == "mobilenetv2":
        for conv in (spec["stem"], spec["head"]):
            layers[conv["name"]] = spec_summary(conv)
        for i, block in enumerate(spec["blocks"]):
            if block["removed"]:
                removed.append(f"blocks.{i}")
                continue
            for part in ("expand", "dw", "project"):
                if block.get(part) is not None:
                    layers[f"blocks.{i}.{part}"] = spec_summary(block[part])
    else:
        layers["conv1"] = spec_summary(spec["stem"])
        for s, blocks in enumerate(spec["stages"]):
            for b, block in enumerate(blocks):
                prefix = f"layer{s + 1}.{b}"
                if block["removed"]:
                    removed.append(prefix)
                else:
                    layers[f"{prefix}.conv1"] = spec_summary(block["conv1"])
                    layers[f"{prefix}.conv2"] = spec_summary(block["conv2"])
    return {"layers": layers, "blocks_removed": removed}


def conv_layer_count(spec: dict[str, Any]) -> int:
    """Weighted layers on the longest path, the paper's 'ResNet-20 -> 18 layers' count
    (convs of live blocks + stem + fc; shortcut convs are not counted)."""
    if spec["family"] == "plain":
        return sum(1 for layer in spec["layers"] if layer["kind"] in ("conv", "linear"))
    if spec["family"] == "mobilenetv2":  # stem, head, classifier + the convs of live blocks
        return 3 + sum(2 + (b.get("expand") is not None) for b in spec["blocks"] if not b["removed"])
    live = sum(1 for blocks in spec["stages"] for b in blocks if not b["removed"])
    return 2 + 2 * live


def save_compacted(model: nn.Module, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "arch.json").write_text(json.dumps(model.spec, indent=1))
    torch.save(model.state_dict(), directory / "weights.pt")
    return directory


def load_compacted(directory: str | Path) -> nn.Module:
    directory = Path(directory)
    spec = json.loads((directory / "arch.json").read_text())
    model = build_model(spec)
    model.load_state_dict(torch.load(directory / "weights.pt", weights_only=True))
    return model.eval()
