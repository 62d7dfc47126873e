"""Where SSL's groups live (ssl_sites) and how strength keys map onto them (resolve_strengths).

Pins the residual-coupling decision of :mod:`hwssl.sparsity.groups`: filters that
feed a residual add (stem, each block's conv2, shortcut convs) are never grouped,
so stage widths never change; filter/channel groups act inside blocks only.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hwssl.models import build_model, model_spec
from hwssl.sparsity import GROUP_TYPES, GroupLasso, StrengthError, resolve_strengths, ssl_sites


def _model(name: str, width: float = 0.25, c: int = 3, size: tuple[int, int] = (32, 32)) -> nn.Module:
    return build_model(model_spec(name, c, size, 10, width=width))


# --------------------------------------------------------------------------- sites
def test_group_types_are_the_papers_four() -> None:
    assert GROUP_TYPES == ("filter", "channel", "shape", "depth")


def test_plain_first_conv_has_no_channel_groups() -> None:
    for name, c, size in (("lenet", 1, (28, 28)), ("convnet", 3, (32, 32))):
        model = _model(name, 0.5, c, size)
        sites = ssl_sites(model)
        assert sites.blocks == []
        assert sites.convs[0].name == "conv1" and sites.convs[0].types == ("filter", "shape")
        assert all(s.types == ("filter", "channel", "shape") for s in sites.convs[1:])
        conv_layers = [layer["name"] for layer in model.spec["layers"] if layer["kind"] == "conv"]
        assert [s.name for s in sites.convs] == conv_layers
        assert all(s.stage == "" for s in sites.convs)
        # the sites hold the model's own modules: zeroing through them zeroes the model
        assert sites.convs[0].conv is model.body.conv1.conv


@pytest.mark.parametrize(("name", "n_blocks", "stem_kernel"),
                         [("resnet20", 9, 3), ("resnet32", 15, 3), ("resnet18", 8, 7)])
def test_resnet_sites_respect_residual_coupling(name: str, n_blocks: int, stem_kernel: int) -> None:
    model = _model(name, 0.125)
    sites = ssl_sites(model)
    by_name = {s.name: s for s in sites.convs}
    # the stem only loses shape columns: its filters are the residual stream
    assert by_name["conv1"].types == ("shape",) and by_name["conv1"].stage == "stem"
    assert by_name["conv1"].conv.kernel_size == (stem_kernel, stem_kernel)
    assert len(sites.blocks) == n_blocks
    for block in sites.blocks:
        conv1, conv2 = by_name[f"{block.name}.conv1"], by_name[f"{block.name}.conv2"]
        assert conv1.types == ("filter", "channel", "shape")
        assert conv2.types == ("channel", "shape")        # conv2's filters feed the residual add
        assert conv1.stage == conv2.stage == block.stage == f"stage{int(block.name[5])}"
    # shortcut convs are never SSL sites
    shortcut_convs = {id(m[0]) for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 2
                      and isinstance(m[0], nn.Conv2d)}
    assert shortcut_convs and not shortcut_convs & {id(s.conv) for s in sites.convs}
    assert len(sites.convs) == 1 + 2 * n_blocks


def test_depth_group_holds_both_convs_and_both_bn_affines() -> None:
    model = _model("resnet20")
    sites = ssl_sites(model)
    block = model.layer2[0]
    site = next(b for b in sites.blocks if b.name == "layer2.0")
    expected = [block.conv1.weight, block.conv2.weight, block.bn1.weight, block.bn1.bias,
                block.bn2.weight, block.bn2.bias]
    assert len(site.params) == 6 and all(p is q for p, q in zip(site.params, expected))
    # the shortcut is not part of the branch
    assert not {id(p) for p in block.downsample.parameters()} & {id(p) for p in site.params}


def test_ssl_sites_needs_a_spec_built_model() -> None:
    with pytest.raises(TypeError, match="spec"):
        ssl_sites(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_scopes_list_layers_and_stages_per_type() -> None:
    sites = ssl_sites(_model("resnet20"))
    names, stages = sites.scopes("filter")
    assert "conv1" not in names and "layer1.0.conv1" in names and "layer1.0.conv2" not in names
    assert stages == ["stage1", "stage2", "stage3"]
    names, stages = sites.scopes("shape")
    assert "conv1" in names and "stem" in stages
    names, stages = sites.scopes("depth")
    assert names[0] == "layer1.0" and len(names) == 9 and stages == ["stage1", "stage2", "stage3"]
    assert ssl_sites(_model("lenet", 0.5, 1, (28, 28))).scopes("depth") == ([], [])


# --------------------------------------------------------------------------- strengths
def test_most_specific_strength_key_wins_layer_over_stage_over_type() -> None:
    sites = ssl_sites(_model("resnet20"))
    lam = resolve_strengths(sites, {
        "filter": 1.0, "filter.stage2": 2.0, "filter.layer2.1.conv1": 3.0,
        "depth": 0.1, "depth.stage3": 0.2, "depth.layer3.2": 0.0,
        "shape.conv1": 5.0,
    })
    assert lam["filter"]["layer1.0.conv1"] == 1.0
    assert lam["filter"]["layer2.0.conv1"] == 2.0
    assert lam["filter"]["layer2.1.conv1"] == 3.0
    assert lam["filter"]["layer3.2.conv1"] == 1.0
    assert set(lam["filter"]) == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert lam["depth"]["layer1.0"] == 0.1 and lam["depth"]["layer3.0"] == 0.2
    assert "layer3.2" not in lam["depth"]            # a specific 0 switches a site off
    assert lam["shape"] == {"conv1": 5.0}            # only the stem: no shape key for the blocks
    assert lam["channel"] == {}


def test_key_order_does_not_matter() -> None:
    sites = ssl_sites(_model("resnet20"))
    a = {"channel.layer1.1.conv2": 4.0, "channel.stage1": 2.0, "channel": 1.0}
    b = dict(reversed(list(a.items())))
    assert resolve_strengths(sites, a) == resolve_strengths(sites, b)
    assert resolve_strengths(sites, a)["channel"]["layer1.1.conv2"] == 4.0
    assert resolve_strengths(sites, a)["channel"]["layer1.1.conv1"] == 2.0


def test_plain_layer_keys() -> None:
    sites = ssl_sites(_model("lenet", 0.5, 1, (28, 28)))
    lam = resolve_strengths(sites, {"filter": 1e-3, "filter.conv2": 2e-3, "channel": 3e-3, "depth": 0})
    assert lam["filter"] == {"conv1": 1e-3, "conv2": 2e-3}
    assert lam["channel"] == {"conv2": 3e-3}        # conv1 reads the image: no channel groups
    assert lam["depth"] == {}


@pytest.mark.parametrize(("model", "strengths", "bad_key", "match"), [
    ("resnet20", {"filter": 1.0, "width": 1.0}, "width", "unknown group type"),
    ("resnet20", {"filter.layer9.0.conv1": 1.0}, "filter.layer9.0.conv1", "unknown scope"),
    ("resnet20", {"depth.stage4": 1.0}, "depth.stage4", "unknown scope"),
    ("resnet20", {"filter.conv1": 1.0}, "filter.conv1", "unknown scope"),           # stem filters: coupled
    ("resnet20", {"filter.layer1.0.conv2": 1.0}, "filter.layer1.0.conv2", "unknown scope"),  # conv2 filters
    ("resnet20", {"shape": 1.0, "channel": -0.5}, "channel", "non-negative"),
    ("resnet20", {"depth": float("nan")}, "depth", "non-negative"),
    ("resnet20", {"shape": True}, "shape", "non-negative"),
    ("resnet20", {"shape": "1e-3"}, "shape", "non-negative"),
    ("lenet", {"depth": 1e-3}, "depth", "no depth groups"),
    ("lenet", {"channel.conv1": 1e-3}, "channel.conv1", "unknown scope"),
    # an empty scope used to pass validation and then match no site: the strength was silently dropped
    ("resnet20", {"filter.": 1.0}, "filter.", "unknown scope"),
    ("lenet", {"shape.": 1e-3}, "shape.", "unknown scope"),
])
def test_bad_strength_keys_raise_strength_error_naming_the_key(model: str, strengths: dict, bad_key: str,
                                                                match: str) -> None:
    sites = ssl_sites(_model(model, 0.25, 1 if model == "lenet" else 3, (28, 28) if model == "lenet" else (32, 32)))
    with pytest.raises(StrengthError, match=match) as info:
        resolve_strengths(sites, strengths)
    assert info.value.key == bad_key
    assert isinstance(info.value, ValueError)


def test_group_lasso_validates_its_strengths_too() -> None:
    model = _model("resnet20")
    with pytest.raises(StrengthError) as info:
        GroupLasso(model, {"filter.stage7": 1.0})
    assert info.value.key == "filter.stage7"


def test_zero_strength_for_absent_type_is_accepted() -> None:
    # a search space shared by plain and residual nets may set depth to 0 for LeNet
    sites = ssl_sites(_model("lenet", 0.5, 1, (28, 28)))
    assert resolve_strengths(sites, {"depth": 0.0}) == {t: {} for t in GROUP_TYPES}
    assert not GroupLasso(_model("lenet", 0.5, 1, (28, 28)), {"depth": 0.0, "filter": 0.0}).active


def test_removed_blocks_are_no_longer_sites() -> None:
    from hwssl.compact import compact_model

    model = _model("resnet20").eval()
    with torch.no_grad():
        model.layer1[1].conv2.weight.zero_()
    small = compact_model(model).model
    sites = ssl_sites(small)
    assert "layer1.1" not in [b.name for b in sites.blocks] and len(sites.blocks) == 8
    assert "layer1.1.conv1" not in [s.name for s in sites.convs]
    with pytest.raises(StrengthError):
        resolve_strengths(sites, {"depth.layer1.1": 1.0})
    assert math.isclose(resolve_strengths(sites, {"depth.stage1": 0.5})["depth"]["layer1.2"], 0.5)
