"""The spec-only MAC oracle prices dense and compacted specs exactly as count_macs measures the
built modules, and compacted_spec is the spec compact_model builds."""

from __future__ import annotations

import pytest
import torch

from hwssl.budget import oracle, spec_macs
from hwssl.compact import compact_model, compacted_spec
from hwssl.models import build_model, model_spec
from hwssl.sparsity import count_macs


def _sparse(name: str, channels: int, size: tuple[int, int], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(model_spec(name, channels, size, 10, width=0.5))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.shape[2] > 1:
                m.weight[::3] = 0             # zero filters (producer removed or folded)
                m.weight[:, ::2, 0, :] = 0    # zero shape columns (lowered when sparse enough)
        if name.startswith("resnet"):
            block = model.layer2[1]           # a zero branch: depth-wise removal
            for p in (block.conv1.weight, block.conv2.weight, block.bn1.weight, block.bn1.bias,
                      block.bn2.weight, block.bn2.bias):
                p.zero_()
    return model


@pytest.mark.parametrize("name, channels, size", [("lenet", 1, (28, 28)), ("convnet", 3, (32, 32)),
                                                  ("resnet20", 3, (16, 16)), ("resnet18", 3, (64, 64))])
@pytest.mark.parametrize("channel_round", [1, 4])
def test_compacted_spec_and_its_macs_match_the_built_compacted_model(name, channels, size, channel_round):
    model = _sparse(name, channels, size)
    spec = compacted_spec(model, channel_round=channel_round)
    built = compact_model(model, channel_round=channel_round)
    assert spec == built.spec
    assert spec_macs(spec) == count_macs(built.model, spec["input"])[0]
    assert spec_macs(model.spec) == count_macs(model, spec["input"])[0]
    assert spec_macs(spec) < spec_macs(model.spec)
    if name.startswith("resnet"):
        assert spec["stages"][1][1]["removed"]


def test_compacted_spec_leaves_the_model_as_it_was():
    model = _sparse("lenet", 1, (28, 28))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compacted_spec(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unknown_oracle_and_family_are_named():
    assert oracle("macs") is spec_macs
    with pytest.raises(ValueError, match="unknown cost oracle 'flops'"):
        oracle("flops")
    with pytest.raises(ValueError, match="unknown model family"):
        spec_macs({"family": "mlp"})
