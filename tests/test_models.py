"""The spec-driven model zoo and the layers compacted nets are built from."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hwssl.models import available_models, build_model, model_spec
from hwssl.models.layers import ChannelConstant, CompactConv2d, canonical_columns, group_columns_by_offset
from hwssl.models.resnet import resnet_cifar_spec

# name -> (in_channels, image_size, width)
SMALL = {
    "lenet": (1, (16, 16), 0.5),
    "convnet": (3, (32, 32), 0.25),
    "resnet20": (3, (16, 16), 0.25),
    "resnet32": (3, (16, 16), 0.25),
    "resnet56": (3, (16, 16), 0.25),
    "resnet18": (3, (32, 32), 0.125),
}


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


# --------------------------------------------------------------------------- registry and specs
def test_registry_lists_the_zoo() -> None:
    assert available_models() == sorted(["lenet", "convnet", "resnet20", "resnet32", "resnet56", "resnet18",
                                         "mobilenetv2"])


@pytest.mark.parametrize("name", list(SMALL))
def test_every_zoo_model_builds_from_its_spec_and_classifies(name: str) -> None:
    c, hw, width = SMALL[name]
    spec = model_spec(name, c, hw, 7, width=width)
    assert spec["model"] == name and spec["input"] == [c, *hw] and spec["num_classes"] == 7
    model = build_model(spec)
    assert model.spec is spec
    with torch.no_grad():
        y = model.eval()(torch.randn(3, c, *hw))
    assert y.shape == (3, 7) and bool(torch.isfinite(y).all())


@pytest.mark.parametrize("name", list(SMALL))
def test_spec_is_plain_json_and_rebuilds_the_same_network(name: str) -> None:
    c, hw, width = SMALL[name]
    spec = model_spec(name, c, hw, 10, width=width)
    text = json.dumps(spec)
    assert json.loads(text) == spec
    a = build_model(spec)
    b = build_model(json.loads(text))
    b.load_state_dict(a.state_dict())        # strict: same module names and shapes
    x = torch.randn(2, c, *hw)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg16'.*lenet"):
        model_spec("vgg16", 3, (32, 32), 10)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        build_model({"family": "transformer"})


@pytest.mark.parametrize(("name", "c", "size"), [
    ("lenet", 1, (8, 8)),        # digits' native size: conv2 (5x5) has nothing left to see
    ("lenet", 1, (12, 12)),
    ("convnet", 3, (8, 8)),
])
def test_too_small_input_is_a_clear_error(name: str, c: int, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=rf"{name}: input .* too small for layer"):
        model_spec(name, c, size, 10)


def test_lenet_smallest_input_is_16x16() -> None:
    spec = model_spec("lenet", 1, (16, 16), 10)
    assert spec["layers"][5]["in"] == 50 * 1 * 1


def test_lenet_is_caffes_lenet() -> None:
    spec = model_spec("lenet", 1, (28, 28), 10)
    convs = [layer for layer in spec["layers"] if layer["kind"] == "conv"]
    assert [(c["out"], c["kernel"], c["bn"], c["act"], c["bias"]) for c in convs] == [
        (20, 5, False, "none", True), (50, 5, False, "none", True)]
    fcs = [layer for layer in spec["layers"] if layer["kind"] == "linear"]
    assert [(f["in"], f["out"], f["act"]) for f in fcs] == [(800, 500, "relu"), (500, 10, "none")]
    model = build_model(spec)
    assert list(dict(model.body.named_children())) == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"]


def test_width_scales_every_layer() -> None:
    lenet = model_spec("lenet", 1, (28, 28), 10, width=0.5)
    assert [layer["out"] for layer in lenet["layers"] if layer["kind"] in ("conv", "linear")] == [10, 25, 250, 10]
    resnet = model_spec("resnet20", 3, (32, 32), 10, width=0.25)
    assert resnet["stem"]["out"] == 4
    assert [blocks[-1]["out"] for blocks in resnet["stages"]] == [4, 8, 16]
    tiny = model_spec("resnet18", 3, (32, 32), 10, width=0.001)
    assert [blocks[-1]["out"] for blocks in tiny["stages"]] == [1, 1, 1, 1]   # never zero-width


@pytest.mark.parametrize(("name", "per_stage"), [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)])
def test_cifar_resnet_depth_sets_blocks_per_stage(name: str, per_stage: int) -> None:
    spec = model_spec(name, 3, (32, 32), 10)
    assert [len(s) for s in spec["stages"]] == [per_stage] * 3
    assert spec["stem"]["kernel"] == 3 and not spec["maxpool"]
    strides = [[b["stride"] for b in s] for s in spec["stages"]]
    assert strides == [[1] * per_stage, [2] + [1] * (per_stage - 1), [2] + [1] * (per_stage - 1)]
    # option-B shortcuts exactly where the shape changes
    assert [[b["downsample"] for b in s] for s in spec["stages"]] == [
        [False] * per_stage, [True] + [False] * (per_stage - 1), [True] + [False] * (per_stage - 1)]


def test_cifar_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        resnet_cifar_spec(21)


def test_resnet20_has_the_papers_parameter_count() -> None:
    # He et al.'s ResNet-20 has 0.27M parameters with option-A shortcuts; option B adds two
    # 1x1 conv + BN shortcuts (16*32 + 2*32 and 32*64 + 2*64 parameters).
    model = build_model(model_spec("resnet20", 3, (32, 32), 10))
    option_a = 269_722
    assert sum(p.numel() for p in model.parameters()) == option_a + 16 * 32 + 64 + 32 * 64 + 128


# --------------------------------------------------------------------------- torchvision equivalence
def test_resnet18_spec_loads_a_torchvision_state_dict_and_matches_its_outputs() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10)
    randomize_bn(reference, 1)
    ours = build_model(model_spec("resnet18", 3, (64, 64), 10))
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not missing and not unexpected
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)
    # and the other way round: same module names, same shapes
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


# --------------------------------------------------------------------------- CompactConv2d
def _dense_reference(cin: int, cout: int, k: int, stride: int, padding: int, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, stride, padding, bias=True)


@pytest.mark.parametrize(("k", "stride", "padding"), [(3, 1, 1), (3, 2, 1), (5, 1, 2), (7, 2, 3), (5, 1, 0)])
def test_lowered_conv_equals_the_dense_conv_with_zero_columns(k: int, stride: int, padding: int) -> None:
    cin, cout = 4, 6
    dense = _dense_reference(cin, cout, k, stride, padding, seed=k + stride)
    gen = torch.Generator().manual_seed(k * 10 + padding)
    keep = torch.rand(cin, k, k, generator=gen) < 0.5
    keep[0, 0, 0] = True
    with torch.no_grad():
        dense.weight[:, ~keep] = 0
    cols = canonical_columns(torch.nonzero(keep).tolist()[::-1])      # any order in, canonical out
    lowered = CompactConv2d(cin, cout, k, stride, padding, bias=True, columns=cols)
    assert lowered.lowered and lowered.weight.shape == (cout, len(cols), 1, 1)
    idx = torch.tensor(cols)
    with torch.no_grad():
        lowered.weight.copy_(dense.weight[:, idx[:, 0], idx[:, 1], idx[:, 2]].view(cout, -1, 1, 1))
        lowered.bias.copy_(dense.bias)
    x = torch.randn(2, cin, 11, 13)      # not square, odd: strided slicing must match conv's output size
    with torch.no_grad():
        torch.testing.assert_close(lowered(x), dense(x), atol=1e-5, rtol=1e-5)
    ho = (11 + 2 * padding - k) // stride + 1
    wo = (13 + 2 * padding - k) // stride + 1
    assert lowered.macs_per_image((ho, wo)) == cout * len(cols) * ho * wo


def test_canonical_columns_order_offsets_then_channels() -> None:
    cols = [(2, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 0), (3, 0, 1)]
    assert group_columns_by_offset(cols) == [(0, 1, [0, 3]), (1, 0, [0, 1, 2])]
    assert canonical_columns(cols) == [(0, 0, 1), (3, 0, 1), (0, 1, 0), (1, 1, 0), (2, 1, 0)]


def test_gather_conv_equals_the_dense_conv_with_zero_input_channels() -> None:
    dense = _dense_reference(8, 5, 3, 2, 1, seed=3)
    keep = [1, 4, 5, 7]
    with torch.no_grad():
        mask = torch.ones(8, dtype=torch.bool)
        mask[keep] = False
        dense.weight[:, mask] = 0
    gather = CompactConv2d(8, 5, 3, 2, 1, bias=True, in_index=keep)
    with torch.no_grad():
        gather.weight.copy_(dense.weight[:, keep])
        gather.bias.copy_(dense.bias)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(gather(x), dense(x), atol=1e-5, rtol=1e-5)
    assert gather.weight.shape == (5, 4, 3, 3)


def test_bias_map_adds_a_constant_map_after_the_conv() -> None:
    conv = CompactConv2d(2, 3, 3, 1, 1, bias=False, bias_map_shape=[3, 4, 4])
    with torch.no_grad():
        conv.bias_map.copy_(torch.randn(3, 4, 4))
    x = torch.randn(2, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 1, 1) + conv.bias_map)
    assert "bias_map" in conv.state_dict()


def test_channel_constant_adds_its_value() -> None:
    const = ChannelConstant([3, 1, 1])
    with torch.no_grad():
        const.value.copy_(torch.tensor([1.0, -2.0, 0.5]).view(3, 1, 1))
    x = torch.zeros(1, 3, 2, 2)
    assert torch.equal(const(x)[0, :, 0, 0], torch.tensor([1.0, -2.0, 0.5]))
    assert list(dict(const.named_parameters())) == []     # a buffer, not a trainable parameter
