"""Latency-weighted group Lasso: each group's lambda is scaled by the cost its removal saves, read
off a cost oracle at the current widths (MACs, and hardware-like oracles with a staircase in
width or a slow lowered conv)."""

from __future__ import annotations

import math

import pytest
import torch

from hwssl.budget import LatencyWeighting, group_savings, normalised_weights, spec_macs
from hwssl.models import build_model, model_spec
from hwssl.sparsity import GroupLasso


def lenet(width: float = 1.0, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_spec("lenet", 1, (28, 28), 10, width=width))


def convs(spec):
    return [layer for layer in spec["layers"] if layer["kind"] == "conv"]


def staircase(cost_per_step: dict[str, float], step: int = 8):
    """A per-layer cost that only drops when a conv's width crosses a multiple of ``step``
    (a kernel blocked by SIMD width), per layer a different price per step."""
    def predict(spec):
        return sum(cost_per_step[c["name"]] * math.ceil(c["out"] / step) for c in convs(spec))
    return predict


def by_key(savings):
    return {(s.group_type, s.site): s.per_group for s in savings}


def test_mac_savings_are_the_producer_and_consumer_drop_per_channel():
    model = lenet()  # conv1 20 filters 1x5x5 -> 24x24, pool, conv2 50 filters 20x5x5 -> 8x8, pool, fc1 800->500
    reg = GroupLasso(model, {"filter": 1.0, "channel": 1.0})
    s = by_key(group_savings(model, reg, spec_macs))
    conv1_filter = 25 * 24 * 24 + 50 * 25 * 8 * 8      # its own output plane + conv2's input channel
    conv2_filter = 20 * 25 * 8 * 8 + 4 * 4 * 500       # its own output plane + fc1's 16 inputs
    assert s[("filter", "conv1")] == conv1_filter
    assert s[("filter", "conv2")] == conv2_filter
    assert s[("channel", "conv2")] == conv1_filter      # the channel takes conv1's filter with it
    w = normalised_weights(group_savings(model, reg, spec_macs))
    mean = (20 * conv1_filter + 50 * conv2_filter) / 70
    assert w[("filter", "conv1")] == pytest.approx(conv1_filter / mean)
    assert w[("filter", "conv2")] == pytest.approx(conv2_filter / mean)
    assert (20 * w[("filter", "conv1")] + 50 * w[("filter", "conv2")]) / 70 == pytest.approx(1.0)
    assert w[("channel", "conv2")] == pytest.approx(1.0)


def test_savings_follow_the_current_widths():
    model = lenet()
    reg = GroupLasso(model, {"filter": 1.0})
    with torch.no_grad():
        model.body.conv1.conv.weight[:10] = 0            # half of conv1's filters gone
    s = by_key(group_savings(model, reg, spec_macs))
    assert s[("filter", "conv2")] == 10 * 25 * 8 * 8 + 4 * 4 * 500
    assert int((model.body.conv1.conv.weight[10:] != 0).sum()) > 0   # weights restored after probing


@pytest.mark.parametrize("width, expensive", [(0.85, "conv1"), (0.82, "conv2")])
def test_a_group_that_saves_more_latency_gets_a_larger_lambda(width, expensive):
    # width 0.85: conv1 17 filters (one removal crosses 16), conv2 42 (41 is the same step of 8)
    # width 0.82: conv1 16 (15 is the same step), conv2 41 (one removal crosses 40)
    model = lenet(width)
    widths = {c["name"]: c["out"] for c in convs(model.spec)}
    assert widths == ({"conv1": 17, "conv2": 42} if width == 0.85 else {"conv1": 16, "conv2": 41})
    predict = staircase({"conv1": 1.0, "conv2": 10.0})
    reg = GroupLasso(model, {"filter": 0.5})
    weighting = LatencyWeighting(model, reg, predict)
    w = weighting.refresh()
    cheap = "conv2" if expensive == "conv1" else "conv1"
    assert w[("filter", expensive)] > 0 and w[("filter", cheap)] == 0
    n = widths[expensive] + widths[cheap]
    assert w[("filter", expensive)] == pytest.approx(n / widths[expensive])   # mean 1 over all filter groups
    # the weighted proximal step shrinks only the filters whose removal pays
    before = {name: getattr(model.body, name).conv.weight.detach().clone() for name in widths}
    reg.proximal_step(lr=0.01)
    assert torch.equal(getattr(model.body, cheap).conv.weight, before[cheap])
    assert getattr(model.body, expensive).conv.weight.norm() < before[expensive].norm()


def test_a_lowered_conv_that_is_no_faster_gets_no_shape_push():
    model = lenet(0.5)

    def slow_lowering(spec):  # MACs, plus a gather that costs more than any lowering saves
        return spec_macs(spec) + 1e9 * sum(c.get("columns") is not None for c in convs(spec))

    reg = GroupLasso(model, {"shape": 1.0})
    w = LatencyWeighting(model, reg, slow_lowering).refresh()
    assert w[("shape", "conv1")] == 0 and w[("shape", "conv2")] == 0
    before = [c.detach().clone() for c in (model.body.conv1.conv.weight, model.body.conv2.conv.weight)]
    reg.proximal_step(lr=0.1)
    assert torch.equal(model.body.conv1.conv.weight, before[0])
    assert torch.equal(model.body.conv2.conv.weight, before[1])
    # with plain MACs the lowered conv saves, so shape groups are pushed
    w = LatencyWeighting(model, GroupLasso(model, {"shape": 1.0}), spec_macs).refresh()
    assert w[("shape", "conv2")] > 0


def test_depth_weights_are_the_blocks_costs():
    torch.manual_seed(0)
    model = build_model(model_spec("resnet20", 3, (16, 16), 10, width=0.25))   # widths 4/8/16
    reg = GroupLasso(model, {"depth": 1.0})
    s = by_key(group_savings(model, reg, spec_macs))
    size = {1: 16, 2: 8, 3: 4}
    width = {1: 4, 2: 8, 3: 16}
    for stage in (1, 2, 3):
        for b in range(3):
            cin = width[stage - 1] if (b == 0 and stage > 1) else width[stage]
            hw = size[stage] ** 2
            expected = (cin + width[stage]) * width[stage] * 9 * hw
            assert s[("depth", f"layer{stage}.{b}")] == expected
    w = normalised_weights(group_savings(model, reg, spec_macs))
    assert sum(w.values()) / len(w) == pytest.approx(1.0)


def test_shape_probe_crosses_the_lowering_threshold_of_the_channels_still_read():
    model = lenet()
    with torch.no_grad():
        model.body.conv2.conv.weight[:, 3:] = 0      # conv2 reads 3 of 20 channels: 75 live columns
    reg = GroupLasso(model, {"shape.conv2": 1.0})
    saving = by_key(group_savings(model, reg, spec_macs))[("shape", "conv2")]
    # the probe zeroes ceil(0.25 * 75) = 19 columns, so the lowered conv keeps 56: 50 filters x 8x8 per column
    assert saving == 50 * 8 * 8
