"""Compacted-net specs: stable architecture keys, summaries, layer counts, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hwssl.compact import (architecture_summary, arch_key, compact_model, conv_layer_count, load_compacted,
                           save_compacted)
from hwssl.models import build_model, model_spec


def _sparse_resnet20(seed: int = 0) -> nn.Module:
    """resnet20 (width 0.25, 16x16) with a removed block, a lowered conv, a gather and a BN constant."""
    torch.manual_seed(seed)
    model = build_model(model_spec("resnet20", 3, (16, 16), 10, width=0.25)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
        model.layer1[2].conv1.weight.zero_()            # removed, leaves a constant map
        model.layer2[0].conv1.weight[1] = 0             # a mid channel whose BN constant is folded
        model.layer2[0].bn1.bias[1] = 2.0               # ... and survives the ReLU
        model.layer2[1].conv1.weight[:, :3] = 0         # gather from the stream
        model.layer3[0].conv2.weight[:, :, 0, :] = 0    # lowered
    return model


# --------------------------------------------------------------------------- arch_key
def test_arch_key_is_a_stable_short_hash_of_the_structure() -> None:
    spec = model_spec("resnet20", 3, (32, 32), 10, width=0.5)
    key = arch_key(spec)
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert arch_key(json.loads(json.dumps(spec))) == key                 # survives JSON
    reordered = dict(reversed(list(spec.items())))
    assert arch_key(reordered) == key                                    # independent of key order
    assert arch_key(model_spec("resnet20", 3, (32, 32), 10, width=0.5)) == key
    assert arch_key(model_spec("resnet20", 3, (32, 32), 10, width=0.25)) != key
    assert arch_key(model_spec("resnet20", 3, (32, 32), 100, width=0.5)) != key


def test_arch_key_ignores_weights_but_not_kept_structure() -> None:
    a, b = _sparse_resnet20(0), _sparse_resnet20(1)      # same zero pattern, different weights
    ra, rb = compact_model(a), compact_model(b)
    assert ra.spec["stages"][1][0]["conv2"]["bias_map"] == [8, 8, 8]
    assert arch_key(ra.spec) == arch_key(rb.spec)
    with torch.no_grad():
        b.layer3[1].conv1.weight[0] = 0
    assert arch_key(compact_model(b).spec) != arch_key(ra.spec)


# --------------------------------------------------------------------------- summaries and counts
def test_architecture_summary_reports_kept_structure() -> None:
    model = _sparse_resnet20()
    result = compact_model(model)
    summary = result.summary
    assert summary == architecture_summary(result.spec)
    assert summary["blocks_removed"] == ["layer1.2"]
    layers = summary["layers"]
    assert "layer1.2.conv1" not in layers and "layer1.1.conv1" in layers
    assert layers["conv1"] == {"filters": 4, "channels": 3, "columns": 27, "lowered": False}
    assert layers["layer2.0.conv1"]["filters"] == 7
    assert layers["layer2.0.conv2"] == {"filters": 8, "channels": 7, "columns": 63, "lowered": False}
    assert layers["layer2.1.conv1"] == {"filters": 8, "channels": 5, "columns": 45, "lowered": False}
    assert layers["layer3.0.conv2"] == {"filters": 16, "channels": 16, "columns": 16 * 6, "lowered": True}


def test_architecture_summary_of_plain_nets() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec("lenet", 1, (28, 28), 10, width=0.5)).eval()
    with torch.no_grad():
        model.body.conv1.conv.weight[:3] = 0
        model.body.conv2.conv.weight[:, :, :, :2] = 0
    summary = compact_model(model).summary
    assert summary["blocks_removed"] == []
    assert summary["layers"]["conv1"] == {"filters": 7, "channels": 1, "columns": 25, "lowered": False}
    assert summary["layers"]["conv2"] == {"filters": 25, "channels": 7, "columns": 7 * 15, "lowered": True}


@pytest.mark.parametrize(("name", "layers"), [
    ("lenet", 4), ("convnet", 4), ("resnet20", 20), ("resnet32", 32), ("resnet56", 56), ("resnet18", 18)])
def test_conv_layer_count_of_dense_zoo_models_matches_their_names(name: str, layers: int) -> None:
    c, size = (1, (28, 28)) if name == "lenet" else (3, (32, 32))
    assert conv_layer_count(model_spec(name, c, size, 10)) == layers


def test_removing_one_block_makes_resnet20_an_18_layer_net() -> None:
    # the paper's "ResNet-20 -> 18 layers" after depth-wise SSL
    result = compact_model(_sparse_resnet20())
    assert conv_layer_count(result.spec) == 18


# --------------------------------------------------------------------------- save / load
def test_save_compacted_writes_plain_json_and_a_weights_only_state_dict(tmp_path) -> None:
    model = _sparse_resnet20()
    small = compact_model(model, tolerance=1e-5).model
    directory = save_compacted(small, tmp_path / "trial-0")
    assert sorted(p.name for p in directory.iterdir()) == ["arch.json", "weights.pt"]
    assert json.loads((directory / "arch.json").read_text()) == small.spec
    state = torch.load(directory / "weights.pt", weights_only=True)
    assert state.keys() == small.state_dict().keys()

    loaded = load_compacted(directory)
    assert not loaded.training
    assert arch_key(loaded.spec) == arch_key(small.spec)
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), small.eval()(x))
        assert float((loaded(x) - model(x)).abs().max()) <= 1e-5


def test_spec_json_round_trip_rebuilds_every_compacted_module_kind() -> None:
    model = _sparse_resnet20()
    result = compact_model(model)
    spec = json.loads(json.dumps(result.spec))
    rebuilt = build_model(spec)
    rebuilt.load_state_dict(result.model.state_dict())          # strict
    kinds = {type(m).__name__ for m in rebuilt.modules()}
    assert {"CompactConv2d", "RemovedBlock", "ChannelConstant", "BasicBlock"} <= kinds
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), result.model(x))


def test_load_compacted_of_a_plain_net(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(model_spec("convnet", 3, (32, 32), 10, width=0.25)).eval()
    with torch.no_grad():
        model.body.conv1.bn.bias.fill_(1.0)
        model.body.conv1.conv.weight[:2] = 0           # BN constants through zero padding: a bias map
        model.body.conv3.conv.weight[:, :, 1:4, 1:4] = 0
    small = compact_model(model, tolerance=1e-5).model
    assert small.spec["layers"][2]["bias_map"] is not None
    loaded = load_compacted(save_compacted(small, tmp_path / "c"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
