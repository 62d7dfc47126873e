"""Cost counters (MACs, parameters) and sparsity statistics, against hand-computed values."""

from __future__ import annotations

import torch
from torch import nn

from hwssl.compact import compact_model
from hwssl.models import build_model, model_spec
from hwssl.sparsity import count_macs, count_params, sparsity_stats, ssl_sites


def test_count_macs_of_dense_lenet_28x28_matches_hand_count() -> None:
    model = build_model(model_spec("lenet", 1, (28, 28), 10))
    total, per_layer = count_macs(model, (1, 28, 28))
    expected = {
        "body.conv1.conv": 20 * 25 * 24 * 24,         # 20 filters of 1x5x5 on a 24x24 output
        "body.conv2.conv": 50 * 20 * 25 * 8 * 8,      # 50 filters of 20x5x5 on 8x8
        "body.fc1.linear": 800 * 500,
        "body.fc2.linear": 500 * 10,
    }
    assert per_layer == expected
    assert total == 2_293_000 == sum(expected.values())


def test_count_params_of_lenet_is_caffes_431k() -> None:
    model = build_model(model_spec("lenet", 1, (28, 28), 10))
    assert count_params(model) == (20 * 25 + 20) + (50 * 20 * 25 + 50) + (800 * 500 + 500) + (500 * 10 + 10)
    assert count_params(model) == 431_080


def test_count_macs_of_convnet_matches_hand_count() -> None:
    model = build_model(model_spec("convnet", 3, (32, 32), 10))
    total, per_layer = count_macs(model, (3, 32, 32))
    # 5x5 convs with padding 2 keep the size; 3x3/2 pools: 32 -> 15 -> 7 -> 3
    assert per_layer == {
        "body.conv1.conv": 32 * 3 * 25 * 32 * 32,
        "body.conv2.conv": 32 * 32 * 25 * 15 * 15,
        "body.conv3.conv": 64 * 32 * 25 * 7 * 7,
        "body.fc1.linear": 64 * 3 * 3 * 10,
    }
    assert total == sum(per_layer.values())


def test_count_macs_of_resnet20_is_the_papers_41m_plus_option_b_shortcuts() -> None:
    model = build_model(model_spec("resnet20", 3, (32, 32), 10))
    total, per_layer = count_macs(model, (3, 32, 32))
    conv3x3 = lambda cout, cin, hw: cout * cin * 9 * hw * hw   # noqa: E731
    option_a = (conv3x3(16, 3, 32) + 6 * conv3x3(16, 16, 32)
                + conv3x3(32, 16, 16) + 5 * conv3x3(32, 32, 16)
                + conv3x3(64, 32, 8) + 5 * conv3x3(64, 64, 8) + 64 * 10)
    shortcuts = 32 * 16 * 16 * 16 + 64 * 32 * 8 * 8
    assert option_a == 40_551_040
    assert total == option_a + shortcuts
    assert per_layer["layer2.0.downsample.0"] == 32 * 16 * 16 * 16


def test_count_macs_of_resnet18_at_224_is_torchvisions_1_81_gmacs() -> None:
    model = build_model(model_spec("resnet18", 3, (224, 224), 1000))
    total, _ = count_macs(model, (3, 224, 224))
    assert total == 1_814_073_344


def test_count_macs_counts_what_compacted_convs_really_compute() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec("resnet20", 3, (16, 16), 10, width=0.25)).eval()
    with torch.no_grad():
        model.layer1[1].conv2.weight.zero_()                     # block removed
        model.layer1[0].conv1.weight[:, :, 0, :] = 0             # 1/3 of the columns: lowered
        model.layer2[1].conv1.weight[:, :2] = 0                  # 2 of 8 stream channels: gathered
    _, dense = count_macs(model, (3, 16, 16))
    small = compact_model(model).model
    _, per_layer = count_macs(small, (3, 16, 16))
    assert "layer1.1.conv1" not in per_layer and "layer1.1.conv2" not in per_layer
    assert per_layer["layer1.0.conv1"] == 4 * (4 * 6) * 16 * 16          # 4 filters x 24 kept columns
    assert per_layer["layer2.1.conv1"] == 8 * 6 * 9 * 8 * 8              # 6 gathered channels
    assert per_layer["layer1.0.conv2"] == dense["layer1.0.conv2"]
    assert per_layer["layer2.0.downsample.0"] == dense["layer2.0.downsample.0"]


def test_count_macs_leaves_mode_and_bn_statistics_alone() -> None:
    model = build_model(model_spec("convnet", 3, (32, 32), 10, width=0.25))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (3, 32, 32))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_count_params_counts_trainable_tensors_not_buffers() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    assert count_params(model) == 3 * 2 * 9 + 3 + 3 + 3


def test_sparsity_stats_counts_zero_groups_of_every_type() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec("lenet", 1, (16, 16), 10, width=0.5))
    with torch.no_grad():
        w1 = model.body.conv1.conv.weight       # (10, 1, 5, 5)
        w2 = model.body.conv2.conv.weight       # (25, 10, 5, 5)
        w1[[1, 4]] = 0
        w2[[0, 2, 3]] = 0
        w2[:, [5, 9]] = 0
        w2[:, :, 4, :] = 0                      # 10 channels x 5 offsets of the last kernel row
        w2[7, 1, 1, 1] = 0                      # a lone zero weight is no zero group
    stats = sparsity_stats(model)
    c1, c2 = stats["layers"]["conv1"], stats["layers"]["conv2"]
    assert c1["filter"] == {"total": 10, "zero": 2}
    assert c1["shape"] == {"total": 25, "zero": 0}
    assert c1["weights"] == {"total": 250, "zero": 50}
    assert c2["filter"] == {"total": 25, "zero": 3}
    assert c2["channel"] == {"total": 10, "zero": 2}
    # zero columns: the 2 zero channels' 25 each, plus the last row (5) of the 8 other channels
    assert c2["shape"] == {"total": 250, "zero": 2 * 25 + 8 * 5}
    zero_w = int((w2 == 0).sum())
    assert c2["weights"] == {"total": 6250, "zero": zero_w}
    assert stats["zero_blocks"] == [] and stats["blocks"] == 0


def test_sparsity_stats_lists_depth_zeroed_blocks() -> None:
    model = build_model(model_spec("resnet20", 3, (16, 16), 10, width=0.25))
    sites = ssl_sites(model)
    with torch.no_grad():
        for name in ("layer1.2", "layer3.0"):
            site = next(b for b in sites.blocks if b.name == name)
            site.params[0].zero_()
            site.params[1].zero_()          # BN affine left alone: still a zero-weight block
        model.layer2[1].conv1.weight[0] = 0   # a partly sparse block is not a zero block
    stats = sparsity_stats(model)
    assert stats["zero_blocks"] == ["layer1.2", "layer3.0"]
    assert stats["blocks"] == 9
    assert stats["layers"]["layer2.1.conv1"]["filter"]["zero"] == 1
    assert "conv1" in stats["layers"] and stats["layers"]["conv1"]["filter"]["zero"] == 0
