"""Compaction is exact: the compacted net computes what the sparse net computes.

The central property test (the project's acceptance criterion): for every zoo
model and several seeds, randomise BatchNorm statistics and affine parameters
(so a zeroed conv followed by BN emits a *non-zero* constant), zero random
groups of every type the model has, compact, and check that

* the compacted net's eval-mode outputs equal the sparse net's to 1e-5, on the
  check inputs and on fresh inputs;
* it really got smaller (MACs and parameters);
* ``blocks_removed`` lists exactly the blocks whose residual branch became a
  constant;
* the spec round-trips through JSON and ``save_compacted``/``load_compacted``;
* ``channel_round`` and ``min_shape_sparsity`` change the architecture as
  documented while staying exact.

Plus the edge cases that break naive pruners: a conv1 with every filter zero
(its BN constant reaches conv2 through zero padding: a constant *map*), a whole
conv2 zero, every block of a stage removed (including the downsampling one),
nothing zero, and everything zero in LeNet's conv2.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hwssl.compact import (CompactionError, arch_key, compact_model, conv_layer_count, load_compacted,
                           save_compacted)
from hwssl.models import build_model, model_spec
from hwssl.models.layers import CompactConv2d
from hwssl.sparsity import count_macs, count_params, ssl_sites

ATOL = 1e-5

# name -> (in_channels, image_size, width): small but every structural feature present
ZOO = {
    "lenet": (1, (16, 16), 0.5),
    "convnet": (3, (32, 32), 0.25),
    "resnet20": (3, (16, 16), 0.25),
    "resnet32": (3, (16, 16), 0.25),
    "resnet18": (3, (32, 32), 0.125),
    "mobilenetv2": (3, (16, 16), 0.25),   # small-image strides; width 0.25 has a t=1 identity block
}
SEEDS = (0, 1, 2)
RESNETS = ("resnet20", "resnet32", "resnet18")
WITH_DEPTH = (*RESNETS, "mobilenetv2")


# --------------------------------------------------------------------------- helpers
@torch.no_grad()
def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN: random affine params (gamma of both signs, beta far from 0), running
    statistics measured on random inputs (so activations stay O(1) through deep ResNets) and
    then perturbed. A zeroed conv followed by such a BN emits a non-zero constant."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        n = m.num_features
        sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
        m.weight.copy_(sign * (torch.rand(n, generator=gen) + 0.5))
        m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
        m.reset_running_stats()
        m.momentum = None          # cumulative average over the calibration batch
    model.train()
    model(torch.randn(16, *model.spec["input"], generator=gen))
    model.eval()
    for m in bns:
        n = m.num_features
        m.momentum = 0.1
        m.running_mean.add_(torch.randn(n, generator=gen) * 0.3 * m.running_var.sqrt())
        m.running_var.mul_(torch.rand(n, generator=gen) + 0.7)


def make_model(name: str, seed: int) -> nn.Module:
    c, hw, width = ZOO[name]
    torch.manual_seed(seed)
    model = build_model(model_spec(name, c, hw, 10, width=width))
    randomize_bn(model, torch.Generator().manual_seed(1000 + seed))
    return model.eval()


def inputs(name: str, n: int, seed: int) -> torch.Tensor:
    c, hw, _ = ZOO[name]
    return torch.randn(n, c, *hw, generator=torch.Generator().manual_seed(seed))


def _random_mask(n: int, gen: torch.Generator, frac: float) -> torch.Tensor:
    """At least one and at most n-1 groups (when n > 1) chosen with probability ``frac``."""
    mask = torch.rand(n, generator=gen) < frac
    if not mask.any():
        mask[torch.randint(n, (1,), generator=gen)] = True
    if n > 1 and mask.all():
        mask[torch.randint(n, (1,), generator=gen)] = False
    return mask


@torch.no_grad()
def zero_group(weight: torch.Tensor, group_type: str, gen: torch.Generator) -> None:
    if group_type == "filter":
        weight[_random_mask(weight.shape[0], gen, 0.4)] = 0
    elif group_type == "channel":
        weight[:, _random_mask(weight.shape[1], gen, 0.4)] = 0
    elif group_type == "shape":
        frac = float(torch.rand(1, generator=gen)) * 0.6 + 0.1
        cols = _random_mask(weight[0].numel(), gen, frac).view(weight.shape[1:])
        weight[:, cols] = 0
    else:
        raise ValueError(group_type)


@torch.no_grad()
def zero_random_groups(model: nn.Module, seed: int) -> set[str]:
    """Zero random groups of every type the model has; return the types zeroed.

    Every (conv, type) pair is hit with probability 1/2 and every type at least
    once. Depth: at least two blocks lose their conv weights, the first also its
    BN affine parameters (a branch that is exactly zero), the second not (a
    branch that is a non-zero constant); other blocks are hit with probability 1/4.
    """
    gen = torch.Generator().manual_seed(seed)
    sites = ssl_sites(model)
    hit: set[str] = set()
    pairs = [(s, t) for s in sites.convs for t in s.types]
    for site, group_type in pairs:
        if torch.rand(1, generator=gen) < 0.5:
            zero_group(site.conv.weight, group_type, gen)
            hit.add(group_type)
    for n, site in enumerate(sites.coupled):   # MobileNetV2 hidden channels: every member at once
        if n == 0 or torch.rand(1, generator=gen) < 0.5:
            mask = _random_mask(site.members[0][0].shape[site.members[0][1]], gen, 0.4)
            for tensor, dim in site.members:
                tensor.index_fill_(dim, torch.nonzero(mask).flatten(), 0.0)
            hit.add(site.group_type)
    for group_type in sorted({t for _, t in pairs} - hit):
        candidates = [s for s, t in pairs if t == group_type]
        site = candidates[int(torch.randint(len(candidates), (1,), generator=gen))]
        zero_group(site.conv.weight, group_type, gen)
        hit.add(group_type)
    if sites.blocks:
        order = torch.randperm(len(sites.blocks), generator=gen).tolist()
        for rank, b in enumerate(order):
            block = sites.blocks[b]
            if rank >= 2 and torch.rand(1, generator=gen) >= 0.25:
                continue
            for p in block.params:   # the conv weights
                if p.dim() == 4:
                    p.zero_()
            if rank == 0 or (rank >= 2 and torch.rand(1, generator=gen) < 0.5):
                for p in block.params:   # the BN weights and biases
                    if p.dim() == 1:
                        p.zero_()
        hit.add("depth")
    return hit


def constant_branch_blocks(model: nn.Module) -> list[str]:
    """Blocks whose residual branch ignores its input: no mid channel has both a non-zero
    conv1 filter and a non-zero conv2 input channel (MobileNetV2: identity blocks where no hidden
    channel has both a non-zero depthwise filter and a non-zero projection column)."""
    out = []
    if model.spec["family"] == "mobilenetv2":
        for i, (bspec, block) in enumerate(zip(model.spec["blocks"], model.blocks)):
            if bspec["removed"] or not bspec["residual"]:
                continue
            dw = block.dw.conv.weight.detach().pow(2).sum(dim=(1, 2, 3)) > 0
            proj = block.project.conv.weight.detach().pow(2).sum(dim=(0, 2, 3)) > 0
            if not bool((dw & proj).any()):
                out.append(f"blocks.{i}")
        return out
    for s, layer in enumerate(model.stages):
        for b, block in enumerate(layer):
            if not hasattr(block, "conv1"):
                continue
            f1 = block.conv1.weight.detach().pow(2).sum(dim=(1, 2, 3)) > 0
            c2 = block.conv2.weight.detach().pow(2).sum(dim=(0, 2, 3)) > 0
            if not bool((f1 & c2).any()):
                out.append(f"layer{s + 1}.{b}")
    return out


@torch.no_grad()
def assert_same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, atol: float = ATOL) -> None:
    a.eval()
    b.eval()
    ya, yb = a(x), b(x)
    diff = float((ya - yb).abs().max())
    assert diff <= atol, f"outputs differ by {diff:.3g} (output scale {float(ya.abs().max()):.3g})"


def conv_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Compacted conv modules by the layer names of :func:`architecture_summary`."""
    if model.spec["family"] == "plain":
        return {layer["name"]: getattr(model.body, layer["name"]).conv
                for layer in model.spec["layers"] if layer["kind"] == "conv"}
    if model.spec["family"] == "mobilenetv2":
        return {name: model.get_submodule(name).conv for name in _conv_specs(model.spec)}
    out = {"conv1": model.conv1}
    for s, layer in enumerate(model.stages):
        for b, block in enumerate(layer):
            if hasattr(block, "conv1"):
                out[f"layer{s + 1}.{b}.conv1"] = block.conv1
                out[f"layer{s + 1}.{b}.conv2"] = block.conv2
    return out


def input_shape(name: str) -> tuple[int, int, int]:
    c, hw, _ = ZOO[name]
    return (c, *hw)


# --------------------------------------------------------------------------- the property test
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(ZOO))
def test_random_structured_sparsity_compacts_exactly_and_smaller(name: str, seed: int, tmp_path) -> None:
    model = make_model(name, seed)
    dense_macs, _ = count_macs(model, input_shape(name))
    dense_params = count_params(model)
    hit = zero_random_groups(model, seed)
    expected_types = {t for s in ssl_sites(model).convs for t in s.types}
    expected_types |= {c.group_type for c in ssl_sites(model).coupled}
    if name in WITH_DEPTH:
        expected_types.add("depth")
    assert hit == expected_types

    check = inputs(name, 8, 10 + seed)
    result = compact_model(model, check_inputs=check, tolerance=ATOL)
    small = result.model
    assert result.max_abs_diff <= ATOL
    assert_same_outputs(model, small, check)
    assert_same_outputs(model, small, inputs(name, 16, 99 + seed))        # not the check inputs
    assert_same_outputs(model, small, 3 * inputs(name, 4, 7 + seed))      # nor their scale

    # it really got smaller
    macs, _ = count_macs(small, input_shape(name))
    assert macs < dense_macs
    assert count_params(small) < dense_params

    # blocks_removed = exactly the blocks whose branch became a constant
    if name in WITH_DEPTH:
        expected = constant_branch_blocks(model)
        assert result.summary["blocks_removed"] == expected
        assert expected, "the depth zeroing should have produced at least one constant branch"
        for prefix in expected:
            block = model.get_submodule(prefix)
            # a branch that ignores its input gives the same output for any input of the right shape
            first = block.conv1 if hasattr(block, "conv1") else (block.expand or block.dw).conv
            probe = torch.randn(2, first.weight.shape[1] * first.groups, *_block_hw(model, prefix, input_shape(name)))
            with torch.no_grad():
                out = block.branch(probe)
            torch.testing.assert_close(out[0], out[1], atol=1e-6, rtol=0)
        if name in RESNETS:
            live = sum(len(s) for s in model.spec["stages"]) - len(expected)
            assert conv_layer_count(result.spec) == 2 + 2 * live
        else:
            assert conv_layer_count(result.spec) == conv_layer_count(model.spec) - sum(
                2 + (model.spec["blocks"][int(p.split(".")[1])]["expand"] is not None) for p in expected)
    else:
        assert result.summary["blocks_removed"] == []

    # the spec is plain JSON and rebuilds the same net
    spec2 = json.loads(json.dumps(result.spec))
    assert spec2 == result.spec
    assert arch_key(spec2) == arch_key(result.spec)
    rebuilt = build_model(spec2)
    rebuilt.load_state_dict(small.state_dict())
    x = inputs(name, 4, 123)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), small(x))
    # ... and so do save_compacted / load_compacted (weights_only)
    loaded = load_compacted(save_compacted(small, tmp_path / "net"))
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    assert_same_outputs(model, loaded, x)


def _block_hw(model: nn.Module, prefix: str, shape: tuple[int, int, int]) -> tuple[int, int]:
    seen: dict[str, tuple[int, int]] = {}
    block = model.get_submodule(prefix)
    def record(module, inp, out) -> None:   # a hook must return None, or it replaces the output
        seen["hw"] = tuple(inp[0].shape[2:])

    h = block.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        h.remove()
    return seen["hw"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(ZOO))
def test_channel_round_gives_multiples_of_4_or_full_width_and_stays_exact(name: str, seed: int) -> None:
    model = make_model(name, seed)
    dense_spec = model.spec
    zero_random_groups(model, seed)
    result = compact_model(model, channel_round=4)
    assert_same_outputs(model, result.model, inputs(name, 8, 50 + seed))

    dense_convs = _conv_specs(dense_spec)
    for conv_name, conv in _conv_specs(result.spec).items():
        full = dense_convs[conv_name]["out"]
        assert conv["out"] % 4 == 0 or conv["out"] == full, (conv_name, conv["out"], full)
        assert 1 <= conv["out"] <= full
    # and rounding only ever keeps more than channel_round=1
    exact = compact_model(model, channel_round=1)
    for conv_name, conv in _conv_specs(result.spec).items():
        assert conv["out"] >= _conv_specs(exact.spec)[conv_name]["out"]


def _conv_specs(spec: dict) -> dict[str, dict]:
    if spec["family"] == "plain":
        return {layer["name"]: layer for layer in spec["layers"] if layer["kind"] == "conv"}
    if spec["family"] == "mobilenetv2":
        out = {"stem": spec["stem"], "head": spec["head"]}
        for i, block in enumerate(spec["blocks"]):
            if not block["removed"]:
                out.update({f"blocks.{i}.{part}": block[part] for part in ("expand", "dw", "project")
                            if block.get(part) is not None})
        return out
    out = {"conv1": spec["stem"]}
    for s, blocks in enumerate(spec["stages"]):
        for b, block in enumerate(blocks):
            if not block["removed"]:
                out[f"layer{s + 1}.{b}.conv1"] = block["conv1"]
                out[f"layer{s + 1}.{b}.conv2"] = block["conv2"]
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(ZOO))
def test_min_shape_sparsity_switches_between_lowered_and_dense_convs_both_exact(name: str, seed: int) -> None:
    model = make_model(name, seed)
    zero_random_groups(model, seed)
    x = inputs(name, 8, 70 + seed)

    dense = compact_model(model, min_shape_sparsity=1.0)      # never lowered (1.0 would need kept == 0)
    assert_same_outputs(model, dense.model, x)
    assert not any(v["lowered"] for v in dense.summary["layers"].values())
    assert not any(isinstance(m, CompactConv2d) and m.lowered for m in dense.model.modules())

    # fraction of zero columns of each kept conv, measured on the non-lowered compaction
    sparsity = {}
    for conv_name, conv in conv_modules(dense.model).items():
        w = conv.weight.detach()
        col_nz = w.pow(2).sum(dim=0) > 0
        if w.shape[-1] > 1 and bool(col_nz.any()):
            sparsity[conv_name] = 1 - int(col_nz.sum()) / col_nz.numel()
        else:
            sparsity[conv_name] = 0.0
    assert any(v > 0 for v in sparsity.values())

    for threshold in (0.0, 0.25, 0.5):
        result = compact_model(model, min_shape_sparsity=threshold)
        assert_same_outputs(model, result.model, x)
        layers = result.summary["layers"]
        assert set(layers) == set(sparsity)
        for conv_name, frac in sparsity.items():
            should_lower = frac > 0 and frac >= threshold
            assert layers[conv_name]["lowered"] == should_lower, (threshold, conv_name, frac)
            if should_lower:
                n_cols = dense.summary["layers"][conv_name]["columns"]
                assert layers[conv_name]["columns"] == round(n_cols * (1 - frac))
        macs, _ = count_macs(result.model, input_shape(name))
        dense_macs, _ = count_macs(dense.model, input_shape(name))
        assert macs < dense_macs if threshold == 0.0 else macs <= dense_macs


# --------------------------------------------------------------------------- edge cases
def _compact_and_check(model: nn.Module, name: str, **kw):
    result = compact_model(model, tolerance=ATOL, **kw)
    assert_same_outputs(model, result.model, inputs(name, 8, 31))
    assert_same_outputs(model, result.model, inputs(name, 8, 32))
    return result


@pytest.mark.parametrize("name", list(ZOO))
def test_nothing_zero_keeps_the_dense_architecture(name: str) -> None:
    model = make_model(name, 0)
    result = _compact_and_check(model, name)
    assert result.summary["blocks_removed"] == []
    assert not any(v["lowered"] for v in result.summary["layers"].values())
    assert _conv_specs(result.spec).keys() == _conv_specs(model.spec).keys()
    for conv_name, conv in _conv_specs(result.spec).items():
        assert conv["out"] == _conv_specs(model.spec)[conv_name]["out"]
        assert conv["in_index"] is None and conv["columns"] is None and conv["bias_map"] is None
    assert count_macs(result.model, input_shape(name))[0] == count_macs(model, input_shape(name))[0]
    assert count_params(result.model) == count_params(model)
    assert conv_layer_count(result.spec) == conv_layer_count(model.spec)


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("block", ["layer1.0", "layer2.0"])   # identity shortcut / downsampling shortcut
def test_all_conv1_filters_zero_removes_block_and_keeps_bn_constant_map(name: str, block: str) -> None:
    model = make_model(name, 3)
    target = model.get_submodule(block)
    with torch.no_grad():
        target.conv1.weight.zero_()
    result = _compact_and_check(model, name)
    assert result.summary["blocks_removed"] == [block]
    s, b = int(block[5]) - 1, int(block.split(".")[1])
    bspec = result.spec["stages"][s][b]
    assert bspec["removed"] and bspec["relu"]
    # relu(bn1 constant) enters conv2 whose zero padding makes the border differ: a (C, H, W) map
    assert bspec["const"] is not None and len(bspec["const"]) == 3 and bspec["const"][1:] != [1, 1]
    assert bspec["downsample"] == (block == "layer2.0")


@pytest.mark.parametrize("name", RESNETS)
def test_whole_conv2_zero_removes_block_with_per_channel_bn_constant(name: str) -> None:
    model = make_model(name, 4)
    with torch.no_grad():
        model.layer1[1].conv2.weight.zero_()
    result = _compact_and_check(model, name)
    assert result.summary["blocks_removed"] == ["layer1.1"]
    bspec = result.spec["stages"][0][1]
    assert bspec["const"] == [bspec["out"], 1, 1]   # bn2's beta - gamma*mu/sigma, uniform in space


@pytest.mark.parametrize("name", RESNETS)
def test_depth_zero_with_bn_affine_zero_makes_identity_block_vanish(name: str) -> None:
    model = make_model(name, 5)
    sites = {b.name: b for b in ssl_sites(model).blocks}
    with torch.no_grad():
        for prefix in ("layer1.1", "layer2.0"):
            for p in sites[prefix].params:
                p.zero_()
    result = _compact_and_check(model, name)
    assert result.summary["blocks_removed"] == ["layer1.1", "layer2.0"]
    identity, down = result.spec["stages"][0][1], result.spec["stages"][1][0]
    assert identity["const"] is None and identity["relu"] is False and not identity["downsample"]
    assert down["const"] is None and down["relu"] is True and down["downsample"]


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("zero_bn", [False, True])
def test_every_block_of_a_stage_removed(name: str, zero_bn: bool) -> None:
    model = make_model(name, 6)
    stage_blocks = [b for b in ssl_sites(model).blocks if b.stage == "stage2"]
    with torch.no_grad():
        for block in stage_blocks:
            for p in block.params if zero_bn else block.params[:2]:
                p.zero_()
    result = _compact_and_check(model, name)
    assert result.summary["blocks_removed"] == [b.name for b in stage_blocks]
    assert all(b["removed"] for b in result.spec["stages"][1])
    assert result.spec["stages"][1][0]["downsample"]          # the shortcut conv survives
    n_blocks = sum(len(s) for s in model.spec["stages"])
    assert conv_layer_count(result.spec) == 2 + 2 * (n_blocks - len(stage_blocks))
    assert count_macs(result.model, input_shape(name))[0] < count_macs(model, input_shape(name))[0]


@pytest.mark.parametrize("name", RESNETS)
def test_every_block_of_the_network_removed(name: str) -> None:
    model = make_model(name, 7)
    with torch.no_grad():
        for block in ssl_sites(model).blocks:
            block.params[1].zero_()   # conv2.weight: every branch is bn2's constant
    result = _compact_and_check(model, name)
    assert len(result.summary["blocks_removed"]) == sum(len(s) for s in model.spec["stages"])
    assert conv_layer_count(result.spec) == 2


def test_lenet_conv2_entirely_zero_compacts_to_a_constant_function() -> None:
    model = make_model("lenet", 0)
    with torch.no_grad():
        model.body.conv2.conv.weight.zero_()
    result = _compact_and_check(model, "lenet")
    with torch.no_grad():
        y = result.model(inputs("lenet", 4, 1))
    torch.testing.assert_close(y, y[:1].expand_as(y), atol=1e-6, rtol=0)
    # conv1 is read by nobody: a single channel survives (widths never reach 0)
    assert result.spec["layers"][0]["out"] == 1
    assert count_macs(result.model, input_shape("lenet"))[0] < count_macs(model, input_shape("lenet"))[0]


@pytest.mark.parametrize("name", ["lenet", "convnet"])
def test_all_filters_of_plain_conv1_zero_fold_their_constants_into_conv2(name: str) -> None:
    model = make_model(name, 1)
    with torch.no_grad():
        model.body.conv1.conv.weight.zero_()
        if name == "convnet":   # half the constants survive ReLU, half are clamped to 0
            model.body.conv1.bn.bias[::2] = 3.0
            model.body.conv1.bn.bias[1::2] = -30.0
    result = _compact_and_check(model, name)
    conv2 = result.spec["layers"][2]
    assert conv2["kind"] == "conv" and conv2["name"] == "conv2"
    if name == "convnet":
        # relu(bn1 const) -> maxpool -> conv2 with zero padding 2: the constant is a (C, H, W) bias map
        assert conv2["bias_map"] is not None and conv2["bias"]
    else:
        # LeNet's conv2 has no padding: the constant becomes a plain bias
        assert conv2["bias_map"] is None and conv2["bias"]


def test_convnet_filters_zero_before_flatten_fold_into_the_linear_bias() -> None:
    model = make_model("convnet", 2)
    with torch.no_grad():
        model.body.conv3.conv.weight[::2] = 0
    result = _compact_and_check(model, "convnet")
    conv3 = result.spec["layers"][4]
    assert conv3["name"] == "conv3" and conv3["out"] == model.spec["layers"][4]["out"] // 2
    fc = result.spec["layers"][-1]
    assert fc["in"] == model.spec["layers"][-1]["in"] // 2


def test_resnet_conv1_input_channels_become_a_gather_from_the_residual_stream() -> None:
    model = make_model("resnet20", 0)
    with torch.no_grad():
        model.layer2[1].conv1.weight[:, :3] = 0
    result = _compact_and_check(model, "resnet20", min_shape_sparsity=0.0)
    conv1 = result.spec["stages"][1][1]["conv1"]
    width = model.spec["stages"][1][1]["in"]
    assert conv1["in"] == width and conv1["in_index"] == list(range(3, width))
    assert conv1["columns"] is None       # removing whole channels leaves no zero column to lower
    assert count_macs(result.model, input_shape("resnet20"))[1]["layer2.1.conv1"] == \
        conv1["out"] * (width - 3) * 9 * 8 * 8


def test_resnet_lowered_conv1_columns_name_residual_stream_channels() -> None:
    model = make_model("resnet20", 0)
    with torch.no_grad():
        model.layer2[1].conv1.weight[:, :3] = 0
        model.layer2[1].conv1.weight[:, 3:, 0, :] = 0      # top kernel row of the kept channels
    result = _compact_and_check(model, "resnet20", min_shape_sparsity=0.25)
    conv1 = result.spec["stages"][1][1]["conv1"]
    width = model.spec["stages"][1][1]["in"]
    assert conv1["in"] == width and conv1["in_index"] is None
    cols = conv1["columns"]
    assert cols is not None and len(cols) == (width - 3) * 6
    assert {c for c, _, _ in cols} == set(range(3, width)) and {i for _, i, _ in cols} == {1, 2}


def test_lowered_stem_with_stride_and_padding_is_exact() -> None:
    model = make_model("resnet18", 0)    # 7x7/2 stem, padding 3
    with torch.no_grad():
        model.conv1.weight[:, :, ::2, :] = 0
        model.conv1.weight[:, 1, 3, 3] = 0
    result = _compact_and_check(model, "resnet18")
    stem = result.spec["stem"]
    assert stem["columns"] is not None and len(stem["columns"]) == 3 * 7 * 3 - 1
    assert stem["stride"] == 2 and stem["padding"] == 3


def test_recompacting_a_net_with_only_removed_blocks_is_exact() -> None:
    model = make_model("resnet20", 8)
    with torch.no_grad():
        model.layer3[2].conv2.weight.zero_()
    first = _compact_and_check(model, "resnet20")
    assert not any(isinstance(m, CompactConv2d) for m in first.model.modules())
    # a net whose only change is block removal can go on training and be compacted again
    assert [b.name for b in ssl_sites(first.model).blocks] == [
        b.name for b in ssl_sites(model).blocks if b.name != "layer3.2"]
    with torch.no_grad():
        first.model.layer1[0].conv1.weight[:2] = 0
    second = _compact_and_check(first.model, "resnet20")
    assert second.summary["blocks_removed"] == ["layer3.2"]
    assert second.spec["stages"][0][0]["conv1"]["out"] == model.spec["stages"][0][0]["conv1"]["out"] - 2


def test_compacting_an_already_compacted_net_is_refused() -> None:
    model = make_model("convnet", 0)
    with torch.no_grad():
        model.body.conv1.conv.weight[0] = 0           # its BN constant becomes conv2's bias map
        model.body.conv1.bn.bias[0] = 3.0             # ... a positive one, so ReLU keeps it
    small = compact_model(model).model
    assert any(isinstance(m, CompactConv2d) for m in small.modules())
    with pytest.raises(CompactionError, match="already compacted"):
        compact_model(small)


def test_recompacting_a_narrower_plain_net_is_exact() -> None:
    model = make_model("lenet", 0)
    with torch.no_grad():
        model.body.conv1.conv.weight[0] = 0           # LeNet: the constant folds into conv2's plain bias
    first = _compact_and_check(model, "lenet")
    assert not any(isinstance(m, CompactConv2d) for m in first.model.modules())
    with torch.no_grad():
        first.model.body.conv2.conv.weight[:3] = 0
    second = _compact_and_check(first.model, "lenet")
    assert second.spec["layers"][2]["out"] == first.spec["layers"][2]["out"] - 3


def test_compaction_restores_training_mode_and_leaves_weights_untouched() -> None:
    model = make_model("resnet20", 0)
    zero_random_groups(model, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    result = compact_model(model)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not result.model.training


def test_default_check_inputs_report_the_difference() -> None:
    model = make_model("convnet", 0)
    zero_random_groups(model, 0)
    result = compact_model(model)
    assert 0 <= result.max_abs_diff <= ATOL


def test_nan_outputs_never_pass_the_tolerance_check() -> None:
    model = make_model("lenet", 0)
    with torch.no_grad():
        model.body.conv1.conv.weight[0] = 0
        model.body.fc2.linear.bias[0] = float("nan")
    with pytest.raises(CompactionError, match="differ"):
        compact_model(model, tolerance=ATOL)


def test_folded_constants_tie_the_compacted_net_to_its_input_size() -> None:
    # exact folding through zero padding gives a constant *map* of the spec's spatial size
    model = make_model("resnet20", 0)
    with torch.no_grad():
        model.layer1[0].conv1.weight.zero_()
    result = _compact_and_check(model, "resnet20")
    assert result.spec["input"] == [3, 16, 16]
    assert result.spec["stages"][0][0]["const"] == [4, 16, 16]
