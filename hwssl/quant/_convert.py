"""Fp32 compacted zoo network -> integer network (:class:`Int8Net`), post-training.

Steps: fold every BatchNorm into the preceding convolution; run the fp32
network on a few hundred calibration images and record the range of every
tensor that becomes an int8/uint8 tensor; quantise weights per output
channel; build the integer layers of :mod:`hwssl.quant._layers`.

The converter walks the two model families of :mod:`hwssl.models` (plain
CNNs: LeNet, the ConvNet; ResNets) module by module, including the
compaction layers (:class:`CompactConv2d` in gather and lowered form,
``bias_map``, removed blocks with their constants). Anything else raises
:class:`QuantError` naming the module.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from hwssl.models.layers import CompactConv2d
from hwssl.models.plain import PlainCNN
from hwssl.models.resnet import BasicBlock, RemovedBlock, ResNet
from hwssl.models.units import ConvUnit, LinearUnit
from hwssl.quant._fixedpoint import (QSpec, QuantError, activation_spec, conv_accumulator_bound, quantize_weight,
                                     weight_scales)
from hwssl.quant._layers import (INT32_MAX, ConvRequant, DequantLogits, QBasicBlock, QConv, QLinear,
                                 QRemovedBlock, QuantizeInput, Requant, SumPool)

CALIBRATIONS = ("max", "percentile")
IO_MODES = ("float", "int")
INT32_HEADROOM_BITS = 20  # int32 logits keep 2^20 steps over the calibrated range (io="int")


class Int8Net(nn.Module):
    """A post-training int8 network.

    ``io="float"``: float32 images in, float32 logits out (a drop-in for the
    fp32 model; input quantisation and the logits' dequantisation are the
    only float ops). ``io="int"``: int8 images in (quantise them with
    :meth:`quantize_input`), int32 logits out on one common scale
    (``logit_scale``), so argmax needs no float at all.
    """

    def __init__(self, body: nn.Sequential, input_spec: QSpec, io: str, info: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.input_quant = QuantizeInput(input_spec)
        self.io = io
        self.info = info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.io == "float":
            x = self.input_quant(x)
        return self.body(x)

    @torch.no_grad()
    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_quant(x)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float logits for float images, whatever ``io`` is (int32 logits are rescaled)."""
        if self.io == "float":
            return self(x)
        return self(self.quantize_input(x)).to(torch.float64).mul(self.info["logit_scale"]).float()


# --------------------------------------------------------------------------- calibration
class _Range:
    """Running range of one tensor: max/min, or the mean over batches of a high percentile of |x|."""

    def __init__(self, mode: str, percentile: float) -> None:
        self.mode, self.q = mode, percentile
        self.lo, self.hi = math.inf, -math.inf
        self.tops: list[float] = []
        self.shape: tuple[int, ...] = ()

    def update(self, t: torch.Tensor) -> None:
        t = t.detach().float()
        self.shape = tuple(t.shape[1:])
        self.lo = min(self.lo, float(t.min()))
        self.hi = max(self.hi, float(t.max()))
        if self.mode == "percentile":
            flat = t.abs().flatten()
            k = min(flat.numel(), max(1, math.ceil(self.q / 100.0 * flat.numel())))
            self.tops.append(float(flat.kthvalue(k).values))

    def spec(self) -> QSpec:
        if self.mode == "percentile" and self.tops:
            top = sum(self.tops) / len(self.tops)
            lo = 0.0 if self.lo >= 0 else -min(top, abs(self.lo))
            return activation_spec(lo, min(top, max(self.hi, 0.0)))
        return activation_spec(self.lo, self.hi)


@torch.no_grad()
def _observe(model: nn.Module, calib_x: torch.Tensor, points: dict[str, tuple[nn.Module, bool]],
             mode: str, percentile: float, batch: int = 128) -> dict[str, _Range]:
    """Run ``model`` on ``calib_x`` and record the output range of each point's module
    (``relu=True``: the range after a ReLU applied by the parent, e.g. ``relu(bn1(x))``)."""
    ranges = {name: _Range(mode, percentile) for name in points}
    ranges["input"] = _Range(mode, percentile)
    handles = []
    for name, (module, relu) in points.items():
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name, relu: bool = relu) -> None:
            ranges[name].update(torch.relu(out) if relu else out)
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calib_x), batch):
            xb = calib_x[start:start + batch]
            ranges["input"].update(xb)
            model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ranges


# --------------------------------------------------------------------------- folding
def _fold(conv: nn.Module, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(weight, bias (C,), bias_map (C,h,w) or None) of conv followed by BatchNorm, in float64."""
    w = conv.weight.detach().double()
    c = w.shape[0]
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(c, dtype=torch.float64)
    bm = getattr(conv, "bias_map", None)
    bm = bm.detach().double() if bm is not None else None
    if bn is not None:
        a = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.detach().double() - bn.running_mean.double() * a
        w = w * a.view(-1, *([1] * (w.dim() - 1)))
        b = a * b + shift
        if bm is not None:
            bm = bm * a.view(-1, *([1] * (bm.dim() - 1)))
    return w, b, bm


def _geometry(conv: nn.Module) -> dict[str, Any]:
    """QConv keyword arguments reproducing ``conv``'s input handling."""
    if isinstance(conv, CompactConv2d):
        if conv.lowered:
            offsets = [(i, j, getattr(conv, name) if name else None) for i, j, name in conv._offsets]
            return {"stride": conv.stride, "padding": conv.padding, "offsets": offsets,
                    "kernel_size": conv.kernel_size}
        return {"stride": conv.stride, "padding": conv.padding, "in_index": conv.in_index}
    if isinstance(conv, nn.Conv2d):
        if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros" or isinstance(
                conv.padding, str):
            raise QuantError(f"unsupported Conv2d {conv} (groups, dilation, padding mode)")
        return {"stride": tuple(conv.stride), "padding": tuple(conv.padding)}
    raise QuantError(f"unsupported convolution module {type(conv).__name__}")


class _ConvTerm:
    """An integer conv of a folded conv+BN: its QConv, accumulator scale, bound and real constant."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d | None, in_spec: QSpec) -> None:
        w, b, bm = _fold(conv, bn)
        s_w = weight_scales(w)
        w_q = quantize_weight(w, s_w)
        self.qconv = QConv(w_q, **_geometry(conv))
        c = w.shape[0]
        self.scale = (in_spec.scale * s_w).view(1, c, 1, 1)
        self.bound = conv_accumulator_bound(w_q, in_spec)
        if self.bound > INT32_MAX:
            raise QuantError(f"int32 accumulator of {conv} could overflow (bound {self.bound})")
        self.const = b.view(1, c, 1, 1) + (bm.unsqueeze(0) if bm is not None else 0.0)
        self.weight_error = float(((w_q.double() * s_w.view(-1, *([1] * (w.dim() - 1)))) - w).abs().max())


def _conv_unit(conv: nn.Module, bn: nn.BatchNorm2d | None, in_spec: QSpec, out_spec: QSpec, relu: bool
               ) -> ConvRequant:
    term = _ConvTerm(conv, bn, in_spec)
    return ConvRequant(term.qconv, Requant([term.scale], [term.bound], out_spec, const=term.const, relu=relu))


def _linear_parts(linear: nn.Linear, in_spec: QSpec) -> tuple[QLinear, torch.Tensor, int, torch.Tensor]:
    w = linear.weight.detach().double()
    b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    s_w = weight_scales(w)
    w_q = quantize_weight(w, s_w)
    bound = conv_accumulator_bound(w_q, in_spec)
    if bound > INT32_MAX:
        raise QuantError(f"int32 accumulator of {linear} could overflow (bound {bound})")
    return QLinear(w_q), in_spec.scale * s_w, bound, b


def _last_linear(linear: nn.Linear, in_spec: QSpec, io: str, logits: "_Range") -> tuple[nn.Module, float | None]:
    """The classifier: float logits (io="float") or int32 logits on one scale (io="int")."""
    qlin, scale, bound, b = _linear_parts(linear, in_spec)
    if io == "float":
        bias_q = torch.round(b / scale)
        if float(bias_q.abs().max()) + bound > INT32_MAX:
            raise QuantError("classifier bias does not fit the int32 accumulator")
        return DequantLogits(qlin, bias_q, scale), None
    amax = max(abs(logits.lo), abs(logits.hi), 1e-12)
    logit_scale = amax / 2**INT32_HEADROOM_BITS
    req = Requant([scale.view(1, -1)], [bound], None, const=b.view(1, -1), out_int32_scale=logit_scale)
    return ConvRequant(qlin, req), logit_scale


# --------------------------------------------------------------------------- families
def _plain(model: PlainCNN, calib_x: torch.Tensor, io: str, mode: str, pct: float
           ) -> tuple[list[nn.Module], QSpec, dict[str, Any]]:
    children = list(model.body.named_children())
    linears = [n for n, m in children if isinstance(m, LinearUnit)]
    if not linears:
        raise QuantError("a plain network must end in a linear layer")
    points: dict[str, tuple[nn.Module, bool]] = {}
    for name, m in children:
        if isinstance(m, (ConvUnit, LinearUnit, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)):
            points[name] = (m, False)
        else:
            raise QuantError(f"unsupported layer {name}: {type(m).__name__}")
    ranges = _observe(model, calib_x, points, mode, pct)
    spec_in = ranges["input"].spec()
    cur, layers, info = spec_in, [], {}
    prev_shape: tuple[int, ...] = tuple(calib_x.shape[1:])
    for name, m in children:
        if isinstance(m, ConvUnit):
            out = ranges[name].spec()
            layers.append(_conv_unit(m.conv, m.bn, cur, out, relu=m.act is not None))
            cur = out
        elif isinstance(m, nn.MaxPool2d):
            layers.append(nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode))
        elif isinstance(m, nn.AvgPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            if m.padding not in (0, (0, 0)) or m.ceil_mode or not isinstance(m.kernel_size, int):
                raise QuantError(f"{name}: only square, unpadded, floor-mode average pooling is supported")
            c = prev_shape[0]
            out = ranges[name].spec()
            ones = QConv(torch.ones(c, 1, k, k, dtype=torch.int8), stride=m.stride, groups=c)
            layers.append(SumPool(Requant([torch.tensor(cur.scale / (k * k))], [k * k * cur.bound], out), conv=ones))
            cur = out
        elif isinstance(m, nn.Flatten):
            layers.append(nn.Flatten(m.start_dim, m.end_dim))
        elif isinstance(m, LinearUnit):
            if name == linears[-1]:
                if m.act is not None:
                    raise QuantError(f"{name}: the classifier must not end in a ReLU")
                head, logit_scale = _last_linear(m.linear, cur, io, ranges[name])
                layers.append(head)
                info["logit_scale"] = logit_scale
            else:
                qlin, scale, bound, b = _linear_parts(m.linear, cur)
                out = ranges[name].spec()
                req = Requant([scale.view(1, -1)], [bound], out, const=b.view(1, -1), relu=m.act is not None)
                layers.append(ConvRequant(qlin, req))
                cur = out
        prev_shape = ranges[name].shape
    info["points"] = {name: r.spec().to_dict() for name, r in ranges.items()}
    return layers, spec_in, info


def _resnet(model: ResNet, calib_x: torch.Tensor, io: str, mode: str, pct: float
            ) -> tuple[list[nn.Module], QSpec, dict[str, Any]]:
    if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d) or model.avgpool.output_size not in (1, (1, 1)):
        raise QuantError("ResNet must end in a global average pool")
    points: dict[str, tuple[nn.Module, bool]] = {"stem": (model.bn1, True), "avgpool": (model.avgpool, False),
                                                 "fc": (model.fc, False)}
    blocks: list[tuple[str, nn.Module]] = []
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            name = f"layer{s + 1}.{b}"
            blocks.append((name, block))
            if isinstance(block, BasicBlock):
                points[f"{name}.mid"] = (block.bn1, True)
            elif not isinstance(block, RemovedBlock):
                raise QuantError(f"unsupported block {name}: {type(block).__name__}")
            points[name] = (block, False)
    ranges = _observe(model, calib_x, points, mode, pct)
    spec_in = ranges["input"].spec()
    cur = ranges["stem"].spec()
    layers: list[nn.Module] = [_conv_unit(model.conv1, model.bn1, spec_in, cur, relu=True)]
    if model.maxpool is not None:
        mp = model.maxpool
        layers.append(nn.MaxPool2d(mp.kernel_size, mp.stride, mp.padding, mp.dilation, ceil_mode=mp.ceil_mode))
    for name, block in blocks:
        out = ranges[name].spec()
        down = None
        if block.downsample is not None:
            down = _ConvTerm(block.downsample[0], block.downsample[1], cur)
        if isinstance(block, BasicBlock):
            mid = ranges[f"{name}.mid"].spec()
            unit1 = _conv_unit(block.conv1, block.bn1, cur, mid, relu=True)
            t2 = _ConvTerm(block.conv2, block.bn2, mid)
            if down is not None:
                req = Requant([t2.scale, down.scale], [t2.bound, down.bound], out, const=t2.const + down.const,
                              relu=True)
            else:
                req = Requant([t2.scale, torch.tensor(cur.scale)], [t2.bound, cur.bound], out, const=t2.const,
                              relu=True)
            layers.append(QBasicBlock(unit1, t2.qconv, down.qconv if down is not None else None, req))
        else:
            const = block.const.value.detach().double().unsqueeze(0) if block.const is not None else None
            relu = block.relu is not None
            if down is not None:
                total = down.const + const if const is not None else down.const
                req = Requant([down.scale], [down.bound], out, const=total, relu=relu)
            else:
                req = Requant([torch.tensor(cur.scale)], [cur.bound], out, const=const, relu=relu)
            layers.append(QRemovedBlock(down.qconv if down is not None else None, req))
        cur = out
    hw = ranges[blocks[-1][0]].shape[1:] if blocks else ranges["stem"].shape[1:]
    n = int(math.prod(hw))
    pooled = ranges["avgpool"].spec()
    layers.append(SumPool(Requant([torch.tensor(cur.scale / n)], [n * cur.bound], pooled)))
    layers.append(nn.Flatten(1))
    head, logit_scale = _last_linear(model.fc, pooled, io, ranges["fc"])
    layers.append(head)
    info = {"logit_scale": logit_scale, "points": {k: r.spec().to_dict() for k, r in ranges.items()}}
    return layers, spec_in, info


_FAMILIES: dict[type, Callable[..., tuple[list[nn.Module], QSpec, dict[str, Any]]]] = {
    PlainCNN: _plain, ResNet: _resnet}


@torch.no_grad()
def quantize_model(model: nn.Module, calib_x: torch.Tensor, *, calibration: str = "max",
                   percentile: float = 99.99, io: str = "float") -> Int8Net:
    """Post-training int8 version of a (compacted) zoo network.

    ``calib_x``: a few hundred training images (normalised like the model's
    inputs). ``calibration``: activation ranges from the observed extremes
    ("max") or from the mean per-batch ``percentile`` of |x| ("percentile",
    clips rare outliers). ``io``: see :class:`Int8Net`.
    """
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    if io not in IO_MODES:
        raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
    if calib_x.dim() != 4 or len(calib_x) == 0:
        raise ValueError(f"calib_x must be a non-empty (N, C, H, W) batch, got shape {tuple(calib_x.shape)}")
    convert = next((f for cls, f in _FAMILIES.items() if isinstance(model, cls)), None)
    if convert is None:
        raise QuantError(f"no int8 converter for {type(model).__name__} (supported: PlainCNN, ResNet)")
    layers, spec_in, info = convert(model, calib_x.float(), io, calibration, percentile)
    info.update(io=io, calibration=calibration, calib_images=len(calib_x),
                percentile=percentile if calibration == "percentile" else None,
                input=spec_in.to_dict())
    return Int8Net(nn.Sequential(*layers), spec_in, io, info).eval()
