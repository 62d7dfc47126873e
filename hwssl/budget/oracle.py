"""Cost oracles: a plain callable ``predict(spec) -> float`` over architecture specs.

Hardware-aware SSL only ever sees a cost through this callable, so the per-profile latency
model (``hwssl.latency``) plugs in where :func:`spec_macs` stands today. ``spec_macs`` walks
a dense or compacted spec (the format of :func:`hwssl.models.model_spec` and of a compacted
net's ``arch.json``) and counts multiply-accumulates per image exactly as
:func:`hwssl.sparsity.count_macs` does on the built module, without building it.
"""

from __future__ import annotations

from typing import Any, Callable

from hwssl.models.layers import conv_output_size

Predict = Callable[[dict[str, Any]], float]


def _conv_macs(conv: dict[str, Any], h: int, w: int) -> tuple[int, int, int]:
    """(MACs, Ho, Wo) of one conv spec (dense, gathered or lowered) on an h x w input."""
    k = conv["kernel"]
    ho = conv_output_size(h, k, conv["stride"], conv["padding"])
    wo = conv_output_size(w, k, conv["stride"], conv["padding"])
    if conv.get("columns") is not None:
        depth = len(conv["columns"])
    else:
        cin = len(conv["in_index"]) if conv.get("in_index") is not None else conv["in"]
        depth = cin * k * k
    return conv["out"] * depth * ho * wo, ho, wo


def _plain_macs(spec: dict[str, Any]) -> int:
    _, h, w = spec["input"]
    total = 0
    for layer in spec["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            macs, h, w = _conv_macs(layer, h, w)
            total += macs
        elif kind in ("maxpool", "avgpool"):
            h = (h - layer["kernel"]) // layer["stride"] + 1
            w = (w - layer["kernel"]) // layer["stride"] + 1
        elif kind == "linear":
            total += layer["in"] * layer["out"]
    return total


def _resnet_macs(spec: dict[str, Any]) -> int:
    _, h, w = spec["input"]
    total, h, w = _conv_macs(spec["stem"], h, w)
    if spec["maxpool"]:
        h, w = conv_output_size(h, 3, 2, 1), conv_output_size(w, 3, 2, 1)
    for blocks in spec["stages"]:
        for block in blocks:
            ho, wo = conv_output_size(h, 1, block["stride"], 0), conv_output_size(w, 1, block["stride"], 0)
            if block["downsample"]:
                total += block["in"] * block["out"] * ho * wo
            if not block["removed"]:
                m1, h1, w1 = _conv_macs(block["conv1"], h, w)
                m2, _, _ = _conv_macs(block["conv2"], h1, w1)
                total += m1 + m2
            h, w = ho, wo
    return total + spec["stages"][-1][-1]["out"] * spec["num_classes"]


def spec_macs(spec: dict[str, Any]) -> float:
    """MACs per image of the network a spec describes (the default cost oracle)."""
    family = spec.get("family")
    if family == "plain":
        return float(_plain_macs(spec))
    if family == "resnet":
        return float(_resnet_macs(spec))
    raise ValueError(f"spec_macs: unknown model family {family!r}")


ORACLES: dict[str, Predict] = {"macs": spec_macs}


def oracle(name: str) -> Predict:
    """The cost oracle a space's ``ssl.oracle`` names."""
    if name not in ORACLES:
        raise ValueError(f"unknown cost oracle {name!r}; known: {sorted(ORACLES)}")
    return ORACLES[name]
