"""Integer-only deployment: int8 post-training quantisation compiled by TVM, checked on the real IR.

A small LeNet is trained on real MNIST (mnist5k), sparsified by zeroing SSL
groups (filters, shape columns), compacted (conv1 lowered to the im2col
form), quantised, compiled for this x86 CPU and timed. Accuracy must stay
within ``ACC_TOL`` of fp32 on the test split, TVM must reproduce PyTorch's
integer network exactly, and the IR check must find int8 x int8 -> int32
convolutions and matmuls, with float only at the input and output. The same
check must fail on the fp32 model, and on the integer graph imported with
TVM's own converters (which accumulate in float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hwssl.compact import compact_model
from hwssl.config.profile import load_profile
from hwssl.data import load_dataset
from hwssl.models import build_model, model_spec
from hwssl.models.layers import CompactConv2d
from hwssl.quant import QuantError, quantize_model
from hwssl.quant._fixedpoint import QSpec
from hwssl.quant._layers import Requant
from hwssl.sparsity import ssl_sites
from hwssl.train import train_phase

ACC_TOL = 0.01  # int8 test accuracy may lose at most one point against fp32
EIGHT_BIT = {"int8", "uint8"}


@torch.no_grad()
def zero_groups(model: nn.Module, filter_frac: float, shape_frac: float, depth: tuple[str, ...] = ()) -> None:
    """Zero the smallest-norm filters and shape columns at every SSL site, and whole residual branches."""
    sites = ssl_sites(model)
    for site in sites.convs:
        w = site.conv.weight
        if "filter" in site.types and filter_frac:
            norms = w.flatten(1).norm(dim=1)
            w[norms.argsort()[:int(filter_frac * len(norms))]] = 0
        if "shape" in site.types and shape_frac and w.shape[-1] > 1:
            norms = w.norm(dim=0).flatten()
            w.view(w.shape[0], -1)[:, norms.argsort()[:int(shape_frac * len(norms))]] = 0
    for block in sites.blocks:
        if block.name in depth:
            for p in block.params:
                p.zero_()


def profile_file(tmp_path: Path) -> Path:
    """This CPU, 1 thread, a short timing protocol."""
    path = tmp_path / "cpu_int8.toml"
    path.write_text("""
name = "cpu_int8"
threads = 1
target = { kind = "llvm", mcpu = "host", num-cores = 1 }
[timing]
warmup = 2
number = 5
repeat = 3
min_repeat_ms = 2
""")
    return path


@pytest.fixture(scope="module")
def lenet():
    """A trained, sparsified, compacted LeNet (width 0.5) on mnist5k, and its data."""
    torch.manual_seed(0)
    splits = load_dataset("mnist5k", train_subset=1500, val_subset=200, test_subset=600, seed=0)
    model = build_model(model_spec("lenet", 1, (28, 28), 10, 0.5))
    train_phase(model, splits.train, phase="dense", epochs=2, lr=0.02, batch_size=32)
    zero_groups(model, filter_frac=0.4, shape_frac=0.4)
    small = compact_model(model, check_inputs=splits.val.tensors[0][:32], tolerance=1e-4).model.eval()
    assert any(isinstance(m, CompactConv2d) and m.lowered for m in small.modules())  # the im2col form is covered
    return small, splits


def test_lenet_int8_accuracy_latency_and_integer_kernels(lenet, tmp_path: Path) -> None:
    from hwssl.quant import quantize_and_measure

    model, splits = lenet
    profile = load_profile(profile_file(tmp_path))
    r = quantize_and_measure(model, splits.train.tensors[0][:256], splits.test, profile, val_dataset=splits.val,
                             check_images=16, torch_timing=False, cache_dir=tmp_path)
    json.dumps(r)  # JSON-serialisable, ready for the trial record
    assert r["accuracy_fp32_test"] > 0.8  # a real classifier, not chance
    assert r["accuracy_int8_test"] >= r["accuracy_fp32_test"] - ACC_TOL
    assert r["accuracy_int8"] >= r["accuracy_fp32"] - 2 * ACC_TOL  # validation; 200 images: 1 image = 0.5 pt
    assert 0 < r["max_abs_diff_vs_fp32_logits"] < 1.0
    # the compiled module computes exactly PyTorch's integer network
    assert r["tvm_vs_torch_int8"]["argmax_agree"] == r["tvm_vs_torch_int8"]["images"] == 16
    assert r["tvm_vs_torch_int8"]["max_abs_diff"] <= 1e-5
    assert r["latency_ms_int8"]["tvm"] > 0 and r["latency_ms_int8"]["threads"] == 1
    # integer-only verdict, from the IR: 2 convs + 2 linear layers are int8 x int8 -> int32
    assert r["integer_only"] is True and r["route"] == "explicit-integer-graph"
    macs = [op for op in r["int_ops"] if op["op"] in ("conv2d", "matmul")]
    assert sorted(op["op"] for op in macs) == ["conv2d", "conv2d", "matmul", "matmul"]
    assert all(set(op["operands"]) <= EIGHT_BIT and op["accumulator"] == "int32" for op in macs)
    assert r["integer_counts"]["float_macs"] == 0
    # what stays float: quantising the input image and scaling the logits, nothing in between
    assert r["float_ops"] and {op["where"] for op in r["float_ops"]} == {"input", "output"}
    assert r["strict_integer_only"] is False


def test_checker_reports_float_for_the_fp32_model(lenet) -> None:
    from hwssl.deploy.compile import import_model, prepare
    from hwssl.deploy.target import make_target
    from hwssl.quant import check_module

    model, splits = lenet
    profile = load_profile(Path(__file__).resolve().parent.parent / "hardware_profiles" / "x86_cpu.toml")
    target = make_target(profile)
    x = splits.test.tensors[0][:1]
    r = check_module(prepare(import_model(model, x, profile), target), target)
    assert r["integer_only"] is False and r["strict_integer_only"] is False
    assert r["counts"]["int8_macs"] == 0 and r["counts"]["float_macs"] == 4
    assert r["counts"]["inner_float_blocks"] > 0
    assert all(op["op"].startswith("reduce") for op in r["int_ops"]) is True


def test_tvm_frontend_alone_accumulates_integer_graph_in_float(lenet) -> None:
    """Why hwssl.quant.importer exists: TVM's own converters give conv2d/matmul out_dtype float32."""
    from hwssl.deploy.compile import import_model, prepare
    from hwssl.deploy.target import make_target
    from hwssl.quant import check_module

    model, splits = lenet
    qnet = quantize_model(model, splits.train.tensors[0][:64])
    profile = load_profile(Path(__file__).resolve().parent.parent / "hardware_profiles" / "x86_cpu.toml")
    target = make_target(profile)
    r = check_module(prepare(import_model(qnet, splits.test.tensors[0][:1], profile), target), target)
    assert r["integer_only"] is False
    floats = [op for op in r["float_ops"] if op["op"] in ("conv2d", "matmul")]
    assert len(floats) == 4 and all(op["accumulator"] == "float32" for op in floats)


def test_integer_io_variant_has_no_float_at_all(lenet) -> None:
    from hwssl.quant import integer_io_report

    model, splits = lenet
    profile = load_profile(Path(__file__).resolve().parent.parent / "hardware_profiles" / "x86_cpu.toml")
    r = integer_io_report(model, splits.train.tensors[0][:64], profile)
    assert r["strict_integer_only"] is True and r["float_ops"] == [] and r["counts"]["int8_macs"] == 4
    # int32 logits on one scale rank classes like the float ones
    qint = quantize_model(model, splits.train.tensors[0][:64], io="int")
    qflt = quantize_model(model, splits.train.tensors[0][:64])
    x = splits.test.tensors[0][:200]
    assert qint(qint.quantize_input(x)).dtype == torch.int32
    assert (qint.logits(x).argmax(1) == qflt(x).argmax(1)).float().mean() >= 0.99


@torch.no_grad()
def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


# name -> (in_channels, image size, width, filter/shape fractions, removed blocks)
ZOO_CASES = {
    # residual adds inside the requantisation, a removed block (constant + identity), a removed
    # downsampling block (constant + shortcut conv), lowered convs, the global sum pool
    "resnet20": (3, (16, 16), 0.25, 0.25, 0.3, ("layer1.1", "layer3.0")),
    # BatchNorm + ReLU units, max and average pooling (a depthwise all-ones int8 conv)
    "convnet": (3, (32, 32), 0.25, 0.3, 0.3, ()),
}


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_zoo_model_quantises_close_to_fp32_with_integer_kernels(name: str) -> None:
    from hwssl.deploy.compile import prepare
    from hwssl.deploy.target import make_target
    from hwssl.quant import check_module, import_integer_model

    cin, size, width, ffrac, sfrac, depth = ZOO_CASES[name]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(model_spec(name, cin, size, 10, width)).eval()
    randomize_bn(model, gen)
    zero_groups(model, filter_frac=ffrac, shape_frac=sfrac, depth=depth)
    x = torch.randn(256, cin, *size, generator=gen)
    small = compact_model(model, check_inputs=x[:16], tolerance=1e-4).model.eval()
    assert any(getattr(m, "lowered", False) for m in small.modules())
    qnet = quantize_model(small, x[:128])
    with torch.no_grad():
        ref, out = small(x[128:]), qnet(x[128:])
    assert float((out - ref).abs().max()) <= 0.1 * float(ref.abs().max())
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    profile = load_profile(Path(__file__).resolve().parent.parent / "hardware_profiles" / "x86_cpu.toml")
    target = make_target(profile)
    r = check_module(prepare(import_integer_model(qnet, x[:1]), target), target)
    assert r["integer_only"] is True and r["counts"]["float_mac_calls"] == 0
    convs = sum(1 for m in small.modules() if isinstance(m, (nn.Conv2d, CompactConv2d)))
    pools = sum(1 for m in small.modules() if isinstance(m, nn.AvgPool2d))
    # every conv (shortcut convs included), every average pool and the classifier, in int8;
    # identical layers share one PrimFunc, hence the count of calls
    assert r["counts"]["int8_mac_calls"] == convs + pools + 1


def test_requant_matches_exact_rounding() -> None:
    """The int64 multiplier + rounding shift is round-half-up of the exact real rescale."""
    gen = torch.Generator().manual_seed(0)
    acc = torch.randint(-2**20, 2**20, (1, 8, 5, 5), generator=gen, dtype=torch.int32)
    scale = torch.rand(1, 8, 1, 1, generator=gen, dtype=torch.float64) * 1e-4 + 1e-6
    const = torch.randn(1, 8, 1, 1, generator=gen, dtype=torch.float64)
    out = QSpec(0.05, False)
    y = Requant([scale], [2**20], out, const=const)(acc)
    exact = torch.floor(acc.double() * scale / out.scale + const / out.scale + 0.5).clamp(-128, 127)
    assert y.dtype == torch.int8
    assert int((y.double() - exact).abs().max()) <= 1
    assert float((y.double() == exact).double().mean()) > 0.99
    relu = Requant([scale], [2**20], QSpec(0.05, True), const=const, relu=True)(acc)
    assert relu.dtype == torch.uint8 and int(relu.min()) >= 0


def test_unsupported_networks_are_refused() -> None:
    with pytest.raises(QuantError, match="no int8 converter"):
        quantize_model(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(4, 1, 8, 8))
    model = build_model(model_spec("lenet", 1, (28, 28), 10, 0.25))
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, torch.randn(4, 1, 28, 28), calibration="mse")
