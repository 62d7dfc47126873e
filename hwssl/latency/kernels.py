"""The TVM kernels a network runs, described by shapes: from an architecture spec (predicted) or
from a compiled build's per-kernel breakdown and tuning database (measured).

Both sides go through :class:`KernelDesc`, so a measured kernel and the kernel the spec walker
predicts for the same layer have the same :attr:`KernelDesc.key` and the same features.

What the spec walker knows about TVM's Relax lowering (checked on LeNet and ResNet-20 builds,
tvm 0.27, llvm): a conv, its bias/BatchNorm/ReLU, a ``bias_map`` add and a ResNet block's
residual add are one fused kernel; ``in_index`` adds a ``take`` kernel before the conv; a lowered
(shape-sparse) conv becomes a ``pad`` kernel (padding > 0), one strided-slice kernel per kept
kernel offset, a ``take`` per offset that keeps a channel subset, a ``concatenate`` (more than
one offset; the slices of offsets that keep every channel fuse into it) and a 1x1 conv over the
kept columns; a removed block without a shortcut conv adds
no kernel (its constant add and ReLU fuse into the previous kernel), with one it is a 1x1 conv;
pools, ``flatten`` (reshape), global average pooling (``mean`` + reshape) and linear layers are
one kernel each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from hwssl.models.layers import conv_output_size

Shape = tuple[int, ...]

COMPUTE = ("conv", "dense")
#: kernel kinds in the order :func:`kind_of` tests a kernel name
_NAME_KINDS = (("conv2d", "conv"), ("matmul", "dense"), ("dense", "dense"), ("pool", "pool"), ("mean", "reduce"),
               ("sum", "reduce"), ("concatenate", "concat"), ("strided_slice", "slice"), ("take", "take"),
               ("pad", "pad"), ("reshape", "reshape"))


def kind_of(name: str) -> str:
    """Kernel kind from a fused kernel name (``fused_conv2d1_add1`` -> ``conv``); ``ewise`` otherwise."""
    for needle, kind in _NAME_KINDS:
        if needle in name:
            return kind
    return "ewise"


@dataclass(frozen=True)
class KernelDesc:
    """One kernel call: kind, argument shapes (data first, then weights/indices) and output shape."""

    kind: str
    args: tuple[Shape, ...]
    out: Shape
    layer: str = ""          # the spec layer it belongs to (spec side only)
    role: str = ""           # within a layer: "conv", "gather", "slice", "concat", "pad", "gemm" ...

    @property
    def key(self) -> str:
        """Lookup key: kind, data shape, weight shape (conv/dense), output shape, input count (concat)."""
        args = self.args
        first = args[0] if args else ()
        weight = args[1] if self.kind in COMPUTE and len(args) > 1 else ()
        extra = f"|{len(args)}" if self.kind == "concat" else ""
        return f"{self.kind}|{_s(first)}|{_s(weight)}|{_s(self.out)}{extra}"

    def to_json(self) -> list[Any]:
        return [self.kind, [list(a) for a in self.args], list(self.out), self.layer, self.role]

    @staticmethod
    def from_json(row: Sequence[Any]) -> "KernelDesc":
        kind, args, out = row[0], row[1], row[2]
        return KernelDesc(str(kind), tuple(tuple(int(d) for d in a) for a in args), tuple(int(d) for d in out),
                          str(row[3]) if len(row) > 3 else "", str(row[4]) if len(row) > 4 else "")


def _s(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def macs(k: KernelDesc) -> int:
    """Multiply-accumulates of a conv (N*O*Ho*Wo*I*kh*kw) or dense (N*in*out) kernel; 0 otherwise."""
    if k.kind == "conv" and len(k.args) > 1:
        w = k.args[1]
        return _prod(k.out) * _prod(w[1:])
    if k.kind == "dense" and len(k.args) > 1:
        return _prod(k.out) * int(k.args[1][0])
    return 0


def elements(k: KernelDesc) -> int:
    """Activation elements read and written (data inputs and output; weights excluded)."""
    data = [a for i, a in enumerate(k.args) if not (k.kind in COMPUTE and i == 1)
            and not (k.kind == "take" and i == 1)]
    return sum(_prod(a) for a in data) + _prod(k.out)


# -- measured side ---------------------------------------------------------------------------------------------


def from_measured(row: dict[str, Any]) -> KernelDesc | None:
    """A per-kernel breakdown row (``name``, ``args``, ``out_shape``) as a :class:`KernelDesc`; None
    for rows recorded without argument shapes."""
    if "args" not in row or "out_shape" not in row:
        return None
    return KernelDesc(kind_of(str(row["name"])), tuple(tuple(int(d) for d in a) for a in row["args"]),
                      tuple(int(d) for d in row["out_shape"]))


# -- spec side -------------------------------------------------------------------------------------------------


def _offset_counts(columns: Sequence[Sequence[int]]) -> list[int]:
    """Kept channels per kernel offset, offsets in the lowered weight's (row-major) order: the
    counting part of :func:`hwssl.models.layers.group_columns_by_offset`, fast enough to run on
    every prediction."""
    counts: dict[tuple[int, int], int] = {}
    for col in columns:
        off = (col[1], col[2])
        counts[off] = counts.get(off, 0) + 1
    return [counts[off] for off in sorted(counts)]


class _Walker:
    def __init__(self, batch: int) -> None:
        self.n = int(batch)
        self.kernels: list[KernelDesc] = []

    def add(self, kind: str, args: Sequence[Shape], out: Shape, layer: str, role: str) -> None:
        self.kernels.append(KernelDesc(kind, tuple(args), out, layer, role))

    def conv(self, c: dict[str, Any], shape: Shape, name: str) -> Shape:
        """Kernels of one conv (plain, channel-gathered or lowered) on input ``shape`` (N, C, H, W)."""
        n, cin, h, w = shape
        k, s, p = int(c["kernel"]), int(c["stride"]), int(c["padding"])
        ho, wo = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        out = (n, int(c["out"]), ho, wo)
        if c.get("columns") is not None:
            hp, wp = h + 2 * p, w + 2 * p
            src = (n, cin, hp, wp)
            if p:
                self.add("pad", [shape], src, name, "pad")
            counts = _offset_counts(c["columns"])
            concat_args: list[Shape] = []
            kcols = 0
            for kept in counts:
                sliced = (n, cin, ho, wo)
                kcols += kept
                full = kept == cin
                if full and len(counts) > 1:
                    # a slice that keeps every channel fuses into the concatenation, which then
                    # reads the (padded) input itself, once, as its first argument
                    if src not in concat_args:
                        concat_args.insert(0, src)
                    continue
                self.add("slice", [src], sliced, name, "gather")
                if not full:
                    self.add("take", [sliced, (kept,)], (n, kept, ho, wo), name, "gather")
                concat_args.append((n, kept, ho, wo))
            if len(counts) > 1:
                self.add("concat", concat_args, (n, kcols, ho, wo), name, "gather")
            self.add("conv", [(n, kcols, ho, wo), (out[1], kcols, 1, 1)], out, name, "gemm")
            return out
        if c.get("in_index") is not None:
            kept = len(c["in_index"])
            self.add("take", [shape, (kept,)], (n, kept, h, w), name, "gather")
            cin = kept
            shape = (n, kept, h, w)
        self.add("conv", [shape, (out[1], cin // int(c.get("groups", 1)), k, k)], out, name, "conv")
        return out

    def pool(self, layer: dict[str, Any], shape: Shape) -> Shape:
        n, c, h, w = shape
        k, s = int(layer["kernel"]), int(layer["stride"])
        out = (n, c, (h - k) // s + 1, (w - k) // s + 1)
        self.add("pool", [shape], out, layer["name"], "pool")
        return out

    def linear(self, name: str, cin: int, cout: int) -> Shape:
        out = (self.n, cout)
        self.add("dense", [(self.n, cin), (cin, cout)], out, name, "dense")
        return out


def spec_kernels(spec: dict[str, Any], batch: int = 1) -> list[KernelDesc]:
    """The kernels TVM runs for ``spec`` at ``batch`` images, in call order, each tagged with its layer."""
    walk = _Walker(batch)
    c, h, w = (int(d) for d in spec["input"])
    shape: Shape = (walk.n, c, h, w)
    if spec["family"] == "plain":
        for layer in spec["layers"]:
            kind = layer["kind"]
            if kind == "conv":
                shape = walk.conv(layer, shape, layer["name"])
            elif kind in ("maxpool", "avgpool"):
                shape = walk.pool(layer, shape)
            elif kind == "flatten":
                flat = (walk.n, _prod(shape[1:]))
                walk.add("reshape", [shape], flat, layer["name"], "reshape")
                shape = flat
            elif kind == "linear":
                shape = walk.linear(layer["name"], int(shape[1]), int(layer["out"]))
        return walk.kernels
    if spec["family"] == "mobilenetv2":
        return _mobilenet_kernels(walk, spec, shape)
    shape = walk.conv(spec["stem"], shape, "conv1")
    if spec.get("maxpool"):
        n, ch, hh, ww = shape
        out = (n, ch, conv_output_size(hh, 3, 2, 1), conv_output_size(ww, 3, 2, 1))
        walk.add("pool", [shape], out, "maxpool", "pool")
        shape = out
    for s_idx, blocks in enumerate(spec["stages"]):
        for b_idx, block in enumerate(blocks):
            prefix = f"layer{s_idx + 1}.{b_idx}"
            n, ch, hh, ww = shape
            stride = int(block["stride"])
            short = (n, int(block["out"]), conv_output_size(hh, 1, stride, 0), conv_output_size(ww, 1, stride, 0))
            if block["downsample"]:
                walk.add("conv", [shape, (int(block["out"]), ch, 1, 1)], short, f"{prefix}.downsample", "conv")
            if not block["removed"]:
                mid = walk.conv(block["conv1"], shape, f"{prefix}.conv1")
                shape = walk.conv(block["conv2"], mid, f"{prefix}.conv2")
            else:
                shape = short
    n, ch = shape[0], shape[1]
    walk.add("reduce", [shape], (n, ch, 1, 1), "avgpool", "pool")
    walk.add("reshape", [(n, ch, 1, 1)], (n, ch), "avgpool", "reshape")
    walk.linear("fc", int(ch), int(spec["num_classes"]))
    return walk.kernels


def _mobilenet_kernels(walk: _Walker, spec: dict[str, Any], shape: Shape) -> list[KernelDesc]:
    """MobileNetV2: stem, per live block expand / depthwise / projection, head, pool, classifier
    (removed identity blocks run no kernel of their own)."""
    shape = walk.conv(spec["stem"], shape, "stem")
    for i, block in enumerate(spec["blocks"]):
        if block["removed"]:
            continue
        x = shape
        for part in ("expand", "dw", "project"):
            if block.get(part) is not None:
                x = walk.conv(block[part], x, f"blocks.{i}.{part}")
        shape = x
    shape = walk.conv(spec["head"], shape, "head")
    n, ch = shape[0], shape[1]
    walk.add("reduce", [shape], (n, ch, 1, 1), "pool", "pool")
    walk.add("reshape", [(n, ch, 1, 1)], (n, ch), "pool", "reshape")
    walk.linear("classifier", int(ch), int(spec["num_classes"]))
    return walk.kernels


def plain_conv_alternative(c: dict[str, Any], in_shape: Shape) -> KernelDesc:
    """The ordinary conv a lowered layer would be with the same kept widths: every channel that
    keeps at least one column, the full kernel window."""
    n, _, h, w = in_shape
    k, s, p = int(c["kernel"]), int(c["stride"]), int(c["padding"])
    kept = len({int(col[0]) for col in c["columns"]}) if c.get("columns") is not None else int(c["in"])
    out = (n, int(c["out"]), conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))
    return KernelDesc("conv", ((n, kept, h, w), (int(c["out"]), kept, k, k)), out, c.get("name", ""), "conv")
