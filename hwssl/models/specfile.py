"""Architecture specs read from a JSON file (``[model] spec = "my_net.json"``), validated.

The format is the one :func:`hwssl.compact.save_compacted` writes to ``arch.json``, so a
compacted net is a valid starting point. :func:`validate_spec` walks the spec the way the
network computes, checking every layer's widths against what reaches it, and raises one
:class:`SpecError` naming the layer and the key at fault.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from hwssl.models.units import ACTIVATIONS

PLAIN_KINDS = ("conv", "maxpool", "avgpool", "flatten", "linear")
_CONV_KEYS = ("name", "in", "out", "kernel", "stride", "padding", "bias", "bn", "act")


class SpecError(ValueError):
    """A spec that cannot describe a network; ``layer`` and ``key`` say where."""

    def __init__(self, layer: str | None, key: str | None, message: str, file: str | None = None) -> None:
        self.layer, self.key, self.message, self.file = layer, key, message, file
        where = ", ".join(p for p in (f"layer '{layer}'" if layer else "", f"key '{key}'" if key else "") if p)
        super().__init__(f"{file + ': ' if file else ''}{where + ': ' if where else ''}{message}")


def _int(table: dict[str, Any], key: str, layer: str, minimum: int = 1) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(layer, key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _table(value: Any, layer: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(layer, None, f"expected a JSON object, got {type(value).__name__}")
    return value


def _conv(conv: Any, where: str, cin: int) -> int:
    """Check one conv spec fed ``cin`` channels; returns its output channels."""
    conv = _table(conv, where)
    for key in _CONV_KEYS:
        if key not in conv:
            raise SpecError(where, key, "missing")
    name = conv["name"]
    for key in ("in", "out", "kernel", "stride"):
        _int(conv, key, name)
    _int(conv, "padding", name, minimum=0)
    if conv["in"] != cin:
        raise SpecError(name, "in", f"{conv['in']} input channels, but {cin} reach this layer")
    if conv["act"] not in ACTIVATIONS:
        raise SpecError(name, "act", f"expected one of {list(ACTIVATIONS)}, got {conv['act']!r}")
    groups = conv.get("groups", 1)
    if groups != 1 and (not isinstance(groups, int) or conv["in"] % groups or conv["out"] % groups):
        raise SpecError(name, "groups", f"{groups} does not divide in={conv['in']} and out={conv['out']}")
    index = conv.get("in_index")
    if index is not None and (not isinstance(index, list) or not all(isinstance(i, int) and 0 <= i < cin
                                                                       for i in index)):
        raise SpecError(name, "in_index", f"expected a list of channel indices in 0..{cin - 1}")
    cols = conv.get("columns")
    k = conv["kernel"]
    if cols is not None and (not isinstance(cols, list) or not all(
            isinstance(c, list) and len(c) == 3 and 0 <= c[0] < cin and 0 <= c[1] < k and 0 <= c[2] < k
            for c in cols)):
        raise SpecError(name, "columns", f"expected a list of [channel < {cin}, i < {k}, j < {k}]")
    return conv["out"]


def _plain(spec: dict[str, Any], channels: int) -> None:
    from hwssl.models.layers import conv_output_size

    h, w = spec["input"][1:]
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(None, "layers", "expected a non-empty list of layers")
    flat = False
    for n, layer in enumerate(layers):
        layer = _table(layer, f"layers[{n}]")
        where = str(layer.get("name", f"layers[{n}]"))
        kind = layer.get("kind")
        if kind not in PLAIN_KINDS:
            raise SpecError(where, "kind", f"unknown layer kind {kind!r}; expected one of {list(PLAIN_KINDS)}")
        if kind == "conv":
            channels = _conv(layer, where, channels)
            h, w = (conv_output_size(v, layer["kernel"], layer["stride"], layer["padding"]) for v in (h, w))
        elif kind == "linear":
            if not flat:
                raise SpecError(where, "kind", "a linear layer needs a flatten layer before it")
            if layer.get("in") != channels:
                raise SpecError(where, "in", f"{layer.get('in')} inputs, but {channels} features reach this layer")
            channels = _int(layer, "out", where)
        elif kind == "flatten":
            flat, channels = True, channels * h * w
        else:
            k, st = _int(layer, "kernel", where), _int(layer, "stride", where)
            h, w = (h - k) // st + 1, (w - k) // st + 1
        if h < 1 or w < 1:
            raise SpecError(where, "kernel", f"the input {spec['input']} is too small for this layer")
    if channels != spec["num_classes"]:
        raise SpecError(str(layers[-1].get("name")), "out", f"{channels} outputs but num_classes is "
                                                            f"{spec['num_classes']}")


def _resnet(spec: dict[str, Any], channels: int) -> None:
    stem = _conv(spec.get("stem"), "stem", channels)
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise SpecError(None, "stages", "expected a non-empty list of stages")
    cin = stem
    for s, blocks in enumerate(stages):
        for b, block in enumerate(blocks):
            where = f"layer{s + 1}.{b}"
            block = _table(block, where)
            if _int(block, "in", where) != cin:
                raise SpecError(where, "in", f"{block['in']} channels, but {cin} reach this block")
            out = _int(block, "out", where)
            shape_change = block.get("stride", 1) != 1 or block["in"] != out
            if bool(block.get("downsample")) != shape_change:
                raise SpecError(where, "downsample", f"must be {str(shape_change).lower()} for stride "
                                                     f"{block.get('stride')} and {block['in']} -> {out} channels")
            if not block.get("removed"):
                mid = _conv(block.get("conv1"), f"{where}.conv1", cin)
                conv2 = _table(block.get("conv2"), f"{where}.conv2")
                if _conv(conv2, f"{where}.conv2", mid) != out:
                    raise SpecError(f"{where}.conv2", "out", f"{conv2['out']} channels, but the block outputs {out}")
            cin = out
    if spec.get("maxpool") not in (True, False):
        raise SpecError(None, "maxpool", f"expected true or false, got {spec.get('maxpool')!r}")


def _mobilenet(spec: dict[str, Any], channels: int) -> None:
    cin = _conv(spec.get("stem"), "stem", channels)
    blocks = spec.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise SpecError(None, "blocks", "expected a non-empty list of blocks")
    for i, block in enumerate(blocks):
        where = f"blocks.{i}"
        block = _table(block, where)
        if _int(block, "in", where) != cin:
            raise SpecError(where, "in", f"{block['in']} channels, but {cin} reach this block")
        out = _int(block, "out", where)
        residual = bool(block.get("residual"))
        if residual and (block.get("stride") != 1 or out != cin):
            raise SpecError(where, "residual", f"a residual block needs stride 1 and in == out, got stride "
                                               f"{block.get('stride')}, {cin} -> {out}")
        if block.get("removed"):
            if not residual:
                raise SpecError(where, "removed", "only identity (residual) blocks can be removed")
        else:
            hidden = _conv(block["expand"], f"{where}.expand", cin) if block.get("expand") is not None else cin
            dw = _table(block.get("dw"), f"{where}.dw")
            _conv(dw, f"{where}.dw", hidden)
            if dw.get("groups", 1) != hidden or dw["out"] != hidden:
                raise SpecError(f"{where}.dw", "groups", f"a depthwise conv over {hidden} channels needs "
                                                         f"groups = out = {hidden}")
            project = _table(block.get("project"), f"{where}.project")
            if _conv(project, f"{where}.project", hidden) != out:
                raise SpecError(f"{where}.project", "out", f"{project['out']} channels, but the block outputs {out}")
        cin = out
    _conv(spec.get("head"), "head", cin)


_FAMILIES = {"plain": _plain, "resnet": _resnet, "mobilenetv2": _mobilenet}


def validate_spec(spec: Any) -> None:
    """Raise :class:`SpecError` unless ``spec`` describes a network :func:`build_model` can run."""
    from hwssl.models.registry import build_model

    spec = _table(spec, "")
    family = spec.get("family")
    if family not in _FAMILIES:
        raise SpecError(None, "family", f"unknown model family {family!r}; expected one of {list(_FAMILIES)}")
    shape = spec.get("input")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise SpecError(None, "input", f"expected [channels, height, width] of positive integers, got {shape!r}")
    _int(spec, "num_classes", "")
    _FAMILIES[family](spec, shape[0])
    try:
        with torch.no_grad():
            build_model(spec).eval()(torch.zeros(1, *shape))
    except Exception as exc:  # anything the structural walk did not foresee (e.g. an input too small)
        raise SpecError(None, None, f"the network does not run on a {shape} input: {exc}") from None


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read and validate an architecture spec; every problem is one SpecError naming the file."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(None, None, "file not found", str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(None, None, f"not a JSON architecture spec: {exc}", str(path)) from None
    try:
        validate_spec(spec)
    except SpecError as exc:
        raise SpecError(exc.layer, exc.key, exc.message, str(path)) from None
    return spec


def densify_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The dense network with a (possibly compacted) spec's widths: channel gathers, lowered
    columns and folded constant maps become ordinary convolutions over every input channel and
    kernel position, and removed blocks lose their constants (they start as identities). A
    dense spec comes back unchanged."""
    out = copy.deepcopy(spec)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "kernel" in node and "in" in node and "out" in node:
                node.update(in_index=None, columns=None, bias_map=None)
            if node.get("removed") and node.get("const") is not None:
                node["const"] = None
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(out)
    return out


def dense_model_spec(name: str, width: float, spec_file: str, in_channels: int, image_size: tuple[int, int],
                     num_classes: int) -> dict[str, Any]:
    """The dense spec a search space trains: from ``spec_file`` when given (checked against the
    data's shape and classes, then densified), else the registered model ``name``."""
    from hwssl.models.registry import model_spec

    if not spec_file:
        return model_spec(name, in_channels, image_size, num_classes, width)
    spec = load_spec_file(spec_file)
    expected = [in_channels, *image_size]
    if spec["input"] != expected:
        raise SpecError(None, "input", f"{spec['input']}, but the data set's images are {expected} "
                                       f"(set [data] image_size, or change the spec)", spec_file)
    if spec["num_classes"] != num_classes:
        raise SpecError(None, "num_classes", f"{spec['num_classes']}, but the data set has {num_classes} classes",
                        spec_file)
    return densify_spec(spec)
