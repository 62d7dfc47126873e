"""Where the time goes: measured kernels mapped back to the layers of a spec, and what a lowered
(shape-sparse) layer would cost as a plain conv of the same kept widths."""

from __future__ import annotations

from typing import Any, Sequence

from hwssl.latency.kernels import KernelDesc, from_measured, kind_of, plain_conv_alternative, spec_kernels
from hwssl.latency.model import LatencyModel

OTHER = "(other kernels)"


def _batch(rows: Sequence[dict[str, Any]]) -> int:
    for row in rows:
        shape = row.get("out_shape")
        if shape:
            return int(shape[0])
    return 1


def layer_times(spec: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Measured ms per spec layer from a per-kernel breakdown (``per_layer`` rows of a measurement).

    Each measured kernel is matched to a kernel the spec lowers to with the same shapes (the same
    key), else with the same kind and output shape; what matches nothing is summed under
    ``(other kernels)``. A removed block's constant add fuses into its predecessor's kernel and is
    counted there.
    """
    predicted = spec_kernels(spec, _batch(rows))
    by_key: dict[str, list[str]] = {}
    by_out: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for k in predicted:
        by_key.setdefault(k.key, []).append(k.layer)
        by_out.setdefault((k.kind, k.out), []).append(k.layer)
    out: dict[str, float] = {k.layer: 0.0 for k in predicted}
    for row in rows:
        ms = row.get("ms")
        if ms is None:
            continue
        desc = from_measured(row)
        layer = None
        if desc is not None and by_key.get(desc.key):
            layer = by_key[desc.key].pop(0)
        else:
            kind = desc.kind if desc is not None else kind_of(str(row.get("name", "")))
            pool = by_out.get((kind, tuple(int(d) for d in row.get("out_shape") or ())))
            if pool:
                layer = pool.pop(0)
        out[layer or OTHER] = out.get(layer or OTHER, 0.0) + float(ms)
    return {k: v for k, v in out.items() if v > 0 or k != OTHER}


def _conv_layers(spec: dict[str, Any], batch: int) -> list[tuple[str, dict[str, Any], tuple[int, ...]]]:
    """(layer name, conv spec, input shape) of every lowered conv of ``spec``."""
    found = []
    first_in: dict[str, tuple[int, ...]] = {}
    for k in spec_kernels(spec, batch):  # a lowered layer's first kernel (pad or slice) reads its input
        if k.layer not in first_in and k.args:
            first_in[k.layer] = k.args[0]
    convs: list[tuple[str, dict[str, Any]]] = []
    if spec["family"] == "plain":
        convs = [(layer["name"], layer) for layer in spec["layers"] if layer["kind"] == "conv"]
    elif spec["family"] == "mobilenetv2":
        convs = [("stem", spec["stem"]), ("head", spec["head"])]
        convs += [(f"blocks.{i}.{part}", block[part]) for i, block in enumerate(spec["blocks"])
                  if not block["removed"] for part in ("expand", "dw", "project") if block.get(part) is not None]
    else:
        convs = [("conv1", spec["stem"])]
        for s, blocks in enumerate(spec["stages"]):
            for b, block in enumerate(blocks):
                if not block["removed"]:
                    convs += [(f"layer{s + 1}.{b}.conv1", block["conv1"]), (f"layer{s + 1}.{b}.conv2", block["conv2"])]
    for name, conv in convs:
        if conv.get("columns") is not None and name in first_in:
            found.append((name, conv, first_in[name]))
    return found


def lowered_alternatives(model: LatencyModel, spec: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per lowered conv: the model's time for its lowered path (gathers + GEMM) and for a plain conv
    of the same kept widths (every channel that keeps a column, the full window)."""
    batch = model.identity.batch
    explained = model.explain(spec).by_layer()
    out = {}
    for name, conv, in_shape in _conv_layers(spec, batch):
        plain: KernelDesc = plain_conv_alternative(conv, in_shape)
        out[name] = {"lowered_ms": explained.get(name, 0.0), "plain_ms": model.kernel_ms(plain)}
    return out
