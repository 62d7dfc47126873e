"""SSL's group-Lasso regulariser: penalty, gradient at zero, proximal step, group-size scaling,
zero_small, and a tiny SSL run that reaches exact structured zeros and compacts exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwssl.compact import compact_model
from hwssl.models import build_model, model_spec
from hwssl.sparsity import GroupLasso, count_macs, sparsity_stats, ssl_sites


def tiny_lenet(seed: int = 0) -> nn.Module:
    """LeNet at width 0.1: conv1 2 filters of 1x5x5, conv2 5 filters of 2x5x5."""
    torch.manual_seed(seed)
    model = build_model(model_spec("lenet", 1, (16, 16), 10, width=0.1))
    assert tuple(model.body.conv2.conv.weight.shape) == (5, 2, 5, 5)
    return model


def tiny_resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(model_spec("resnet20", 3, (16, 16), 10, width=0.25))


def hand_group_norms(w: torch.Tensor, group_type: str) -> list[float]:
    """Group norms by explicit loops over the lowered matrix (rows = filters, columns = (c, i, j))."""
    f, c, kh, kw = w.shape
    if group_type == "filter":
        return [math.sqrt(sum(float(w[a, b, i, j]) ** 2 for b in range(c) for i in range(kh) for j in range(kw)))
                for a in range(f)]
    if group_type == "channel":
        return [math.sqrt(sum(float(w[a, b, i, j]) ** 2 for a in range(f) for i in range(kh) for j in range(kw)))
                for b in range(c)]
    return [math.sqrt(sum(float(w[a, b, i, j]) ** 2 for a in range(f)))
            for b in range(c) for i in range(kh) for j in range(kw)]


# --------------------------------------------------------------------------- penalty
def test_penalty_of_hand_set_weights() -> None:
    model = tiny_lenet()
    with torch.no_grad():
        w1 = model.body.conv1.conv.weight
        w1[0] = 0.5                      # filter norm sqrt(25 * 0.25) = 2.5
        w1[1] = 0.0                      # an all-zero filter contributes nothing
    reg = GroupLasso(model, {"filter.conv1": 0.1, "shape.conv1": 0.01})
    # filters: 0.1 * (2.5 + 0); shape columns: 25 columns of norm sqrt(0.5^2 + 0^2) = 0.5
    assert float(reg.penalty().detach()) == pytest.approx(0.1 * 2.5 + 0.01 * 25 * 0.5, abs=1e-9)


def test_penalty_equals_hand_computed_group_lasso_on_every_type() -> None:
    model = tiny_lenet(1)
    with torch.no_grad():
        model.body.conv2.conv.weight[3] = 0          # a zero filter
        model.body.conv2.conv.weight[:, :, 0, 0] = 0  # zero shape columns
    strengths = {"filter.conv1": 0.05, "shape.conv1": 0.02,
                 "filter.conv2": 0.3, "channel.conv2": 0.2, "shape.conv2": 0.1}
    reg = GroupLasso(model, strengths)
    w1 = model.body.conv1.conv.weight.detach()
    w2 = model.body.conv2.conv.weight.detach()
    expected = (0.05 * sum(hand_group_norms(w1, "filter")) + 0.02 * sum(hand_group_norms(w1, "shape"))
                + 0.3 * sum(hand_group_norms(w2, "filter")) + 0.2 * sum(hand_group_norms(w2, "channel"))
                + 0.1 * sum(hand_group_norms(w2, "shape")))
    assert float(reg.penalty().detach()) == pytest.approx(expected, rel=1e-6)
    assert reg.active


def test_depth_penalty_is_the_norm_of_the_whole_branch() -> None:
    model = tiny_resnet()
    with torch.no_grad():
        for p in (model.layer2[1].bn1.weight, model.layer2[1].bn2.bias):
            p.uniform_(-1, 1)
    reg = GroupLasso(model, {"depth.layer2.1": 0.7})
    b = model.layer2[1]
    tensors = [b.conv1.weight, b.conv2.weight, b.bn1.weight, b.bn1.bias, b.bn2.weight, b.bn2.bias]
    expected = 0.7 * math.sqrt(sum(float(t.detach().pow(2).sum()) for t in tensors))
    assert float(reg.penalty().detach()) == pytest.approx(expected, rel=1e-6)


def test_inactive_regulariser_has_zero_penalty() -> None:
    reg = GroupLasso(tiny_lenet(), {})
    assert not reg.active
    assert float(reg.penalty().detach()) == 0.0


# --------------------------------------------------------------------------- gradient
def test_gradient_at_an_exactly_zero_group_is_zero_not_nan() -> None:
    model = tiny_lenet()
    with torch.no_grad():
        w1 = model.body.conv1.conv.weight
        w1[0] = 0.5
        w1[1] = 0.0
    reg = GroupLasso(model, {"filter.conv1": 0.1, "shape.conv1": 0.01})
    reg.penalty().backward()
    grad = model.body.conv1.conv.weight.grad
    assert bool(torch.isfinite(grad).all())
    assert torch.equal(grad[1], torch.zeros_like(grad[1]))
    # elsewhere d(lambda ||w_g||)/dw = lambda w / ||w_g||: 0.1 * 0.5/2.5 + 0.01 * 0.5/0.5
    torch.testing.assert_close(grad[0], torch.full_like(grad[0], 0.03), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("group_type", ["filter", "channel", "shape"])
def test_entirely_zero_conv_has_finite_zero_gradient(group_type: str) -> None:
    model = tiny_lenet()
    with torch.no_grad():
        model.body.conv2.conv.weight.zero_()
    GroupLasso(model, {f"{group_type}.conv2": 1.0}).penalty().backward()
    assert torch.equal(model.body.conv2.conv.weight.grad, torch.zeros(5, 2, 5, 5))


def test_gradient_at_a_zero_depth_group_is_zero() -> None:
    model = tiny_resnet()
    site = next(b for b in ssl_sites(model).blocks if b.name == "layer1.0")
    with torch.no_grad():
        for p in site.params:
            p.zero_()
    reg = GroupLasso(model, {"depth": 0.5})
    reg.penalty().backward()
    for p in site.params:
        assert torch.equal(p.grad, torch.zeros_like(p))
    live = model.layer1[1].conv1.weight
    assert bool(torch.isfinite(live.grad).all()) and float(live.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- proximal step
@torch.no_grad()
def _set_group_norms(w: torch.Tensor, group_type: str, norms: list[float]) -> None:
    """Rescale each group of ``w`` to the given norm."""
    current = torch.tensor(hand_group_norms(w, group_type))
    scale = torch.tensor(norms) / current
    if group_type == "filter":
        w.mul_(scale.view(-1, 1, 1, 1))
    elif group_type == "channel":
        w.mul_(scale.view(1, -1, 1, 1))
    else:
        w.mul_(scale.view(1, *w.shape[1:]))


@pytest.mark.parametrize(("group_type", "norms"), [
    ("filter", [0.05, 0.5, 1.0, 2.0, 0.099]),
    ("channel", [0.03, 0.4]),
    ("shape", [0.01 + 0.02 * k for k in range(50)]),
])
def test_proximal_step_zeroes_small_groups_and_shrinks_the_rest_exactly(group_type: str, norms: list) -> None:
    model = tiny_lenet(2)
    w = model.body.conv2.conv.weight
    _set_group_norms(w, group_type, norms)
    before = w.detach().clone()
    others = {k: v.clone() for k, v in model.state_dict().items() if k != "body.conv2.conv.weight"}
    lam, lr = 0.5, 0.2                     # threshold lr * lambda = 0.1
    GroupLasso(model, {f"{group_type}.conv2": lam}).proximal_step(lr)

    after_norms = hand_group_norms(w.detach(), group_type)
    for k, norm in enumerate(norms):
        if norm < lr * lam:
            assert after_norms[k] == 0.0, (k, norm)
        else:
            assert after_norms[k] == pytest.approx(norm - lr * lam, rel=1e-5, abs=1e-7)
    # each surviving group keeps its direction: w_g <- w_g * (1 - lr*lambda/||w_g||)
    factor = torch.tensor([max(0.0, 1 - lr * lam / n) for n in norms])
    if group_type == "filter":
        expected = before * factor.view(-1, 1, 1, 1)
    elif group_type == "channel":
        expected = before * factor.view(1, -1, 1, 1)
    else:
        expected = before * factor.view(1, 2, 5, 5)
    torch.testing.assert_close(w.detach(), expected, atol=1e-7, rtol=1e-6)
    assert any(n < lr * lam for n in norms) and any(n > lr * lam for n in norms)
    # unregularised tensors are untouched
    for k, v in model.state_dict().items():
        if k in others:
            assert torch.equal(v, others[k]), k


def test_proximal_step_on_depth_groups() -> None:
    model = tiny_resnet()
    sites = {b.name: b for b in ssl_sites(model).blocks}
    with torch.no_grad():
        for name, norm in (("layer1.0", 0.05), ("layer1.1", 3.0)):
            params = sites[name].params
            current = math.sqrt(sum(float(p.pow(2).sum()) for p in params))
            for p in params:
                p.mul_(norm / current)
    before = [p.detach().clone() for p in sites["layer1.1"].params]
    GroupLasso(model, {"depth.layer1.0": 1.0, "depth.layer1.1": 1.0}).proximal_step(0.1)
    assert all(bool((p == 0).all()) for p in sites["layer1.0"].params)
    for p, b in zip(sites["layer1.1"].params, before):
        torch.testing.assert_close(p.detach(), b * (1 - 0.1 / 3.0), atol=1e-7, rtol=1e-6)


def test_proximal_step_keeps_exact_zeros_exact() -> None:
    model = tiny_lenet()
    with torch.no_grad():
        model.body.conv2.conv.weight[1] = 0
    GroupLasso(model, {"filter": 0.01, "channel": 0.01, "shape": 0.01}).proximal_step(0.1)
    w = model.body.conv2.conv.weight
    assert bool(torch.isfinite(w).all()) and bool((w[1] == 0).all())


# --------------------------------------------------------------------------- group-size scaling
@pytest.mark.parametrize(("group_type", "size"), [("filter", 2 * 25), ("channel", 5 * 25), ("shape", 5)])
def test_scale_by_group_size_multiplies_by_sqrt_of_group_size(group_type: str, size: int) -> None:
    model = tiny_lenet(3)
    plain = GroupLasso(model, {f"{group_type}.conv2": 0.1})
    scaled = GroupLasso(model, {f"{group_type}.conv2": 0.1}, scale_by_group_size=True)
    expected = math.sqrt(size) * float(plain.penalty().detach())
    assert float(scaled.penalty().detach()) == pytest.approx(expected, rel=1e-6)


def test_scale_by_group_size_for_depth_counts_every_branch_parameter() -> None:
    model = tiny_resnet()
    block = model.layer3[0]
    size = sum(p.numel() for p in (block.conv1.weight, block.conv2.weight, block.bn1.weight, block.bn1.bias,
                                   block.bn2.weight, block.bn2.bias))
    plain = GroupLasso(model, {"depth.layer3.0": 0.1})
    scaled = GroupLasso(model, {"depth.layer3.0": 0.1}, scale_by_group_size=True)
    expected = math.sqrt(size) * float(plain.penalty().detach())
    assert float(scaled.penalty().detach()) == pytest.approx(expected, rel=1e-6)


def test_scale_by_group_size_scales_the_proximal_threshold_too() -> None:
    model = tiny_lenet(4)
    w = model.body.conv2.conv.weight
    size = 2 * 25
    thr = 0.1 * 0.01 * math.sqrt(size)               # lr * lambda * sqrt(|g|)
    _set_group_norms(w, "filter", [thr * 0.9, thr * 1.1, thr * 3, thr * 0.5, thr * 10])
    GroupLasso(model, {"filter.conv2": 0.01}, scale_by_group_size=True).proximal_step(0.1)
    norms = hand_group_norms(w.detach(), "filter")
    assert norms[0] == 0.0 and norms[3] == 0.0
    assert norms[1] == pytest.approx(thr * 0.1, rel=1e-4)
    assert norms[4] == pytest.approx(thr * 9, rel=1e-5)


# --------------------------------------------------------------------------- zero_small
def test_zero_small_zeroes_tiny_weights_of_regularised_tensors() -> None:
    model = tiny_lenet()
    w = model.body.conv2.conv.weight
    with torch.no_grad():
        w[0, 0, 0, 0] = 5e-5
        w[0, 0, 0, 1] = -9e-5
        w[0, 0, 0, 2] = 1e-4            # not below the threshold
        w[0, 0, 0, 3] = -2e-4
    before = w.detach().clone()
    reg = GroupLasso(model, {"filter.conv2": 1e-3})
    reg.zero_small(0.0)                 # a non-positive threshold is a no-op
    assert torch.equal(w.detach(), before)
    reg.zero_small()                    # Caffe SSL's default, 1e-4
    small = before.abs() < 1e-4
    assert bool((w.detach()[small] == 0).all())
    assert torch.equal(w.detach()[~small], before[~small])
    assert float(w[0, 0, 0, 2].detach()) == pytest.approx(1e-4)
    assert float(w[0, 0, 0, 3].detach()) == pytest.approx(-2e-4)


def test_zero_small_reaches_the_whole_depth_group() -> None:
    model = tiny_resnet()
    with torch.no_grad():
        model.layer1[0].bn2.bias[0] = 1e-6
        model.layer1[0].conv2.weight[0, 0, 0, 0] = -1e-6
    GroupLasso(model, {"depth.layer1.0": 1e-3}).zero_small(1e-4)
    assert float(model.layer1[0].bn2.bias[0].detach()) == 0.0
    assert float(model.layer1[0].conv2.weight[0, 0, 0, 0].detach()) == 0.0


# --------------------------------------------------------------------------- a tiny SSL run
@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, and the suite shares two cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tiny_ssl_run_reaches_exact_filter_zeros_and_compacts_exactly(one_thread) -> None:
    from hwssl.data import load_dataset

    data = load_dataset("digits")        # real 8x8 digits, upsampled: LeNet needs at least 16x16

    def upsample(ds):
        x, y = ds.tensors
        return F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False), y

    x_train, y_train = upsample(data.train)
    x_val, y_val = upsample(data.val)
    torch.manual_seed(0)
    model = build_model(model_spec("lenet", 1, (16, 16), 10, width=0.5))
    dense_macs, _ = count_macs(model, (1, 16, 16))
    lr = 0.05
    reg = GroupLasso(model, {"filter": 0.3})
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randint(len(x_train), (64,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        reg.proximal_step(lr)            # group soft-thresholding: exact zeros, not just small ones
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
    assert accuracy > 0.8                # it learnt something ...

    stats = sparsity_stats(model)
    zero_filters = {name: layer["filter"]["zero"] for name, layer in stats["layers"].items()}
    assert zero_filters["conv1"] >= 2 and zero_filters["conv2"] >= 1       # ... with structured zeros
    assert zero_filters["conv1"] < 10 and zero_filters["conv2"] < 25

    result = compact_model(model, check_inputs=x_val)
    with torch.no_grad():
        scale = float(model(x_val).abs().max())
    assert result.max_abs_diff <= 1e-5 * max(1.0, scale)
    assert result.summary["layers"]["conv1"]["filters"] == 10 - zero_filters["conv1"]
    assert count_macs(result.model, (1, 16, 16))[0] < dense_macs
    with torch.no_grad():
        compact_accuracy = float((result.model(x_val).argmax(1) == y_val).float().mean())
    assert compact_accuracy == accuracy


# --------------------------------------------------------------------------- hardware-aware options
def test_unit_weights_and_strength_leave_the_paper_penalty_and_step_unchanged() -> None:
    a, b = tiny_lenet(2), tiny_lenet(2)
    strengths = {"filter": 0.05, "channel.conv2": 0.02, "shape": 0.01}
    plain = GroupLasso(a, strengths)
    weighted = GroupLasso(b, strengths)
    weighted.set_weights({("filter", "conv1"): 1.0, ("shape", "conv2"): torch.ones(50)})
    assert float(weighted.penalty().detach()) == pytest.approx(float(plain.penalty().detach()), rel=1e-6)
    plain.proximal_step(0.5)
    weighted.proximal_step(0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb)


def test_per_group_weights_and_global_strength_scale_each_groups_lambda() -> None:
    model = tiny_lenet(3)
    w2 = model.body.conv2.conv.weight
    reg = GroupLasso(model, {"filter.conv2": 0.1})
    norms = torch.tensor(hand_group_norms(w2.detach(), "filter"))
    weights = torch.tensor([0.0, 1.0, 2.0, 0.5, 3.0])
    reg.set_weights({("filter", "conv2"): weights})
    reg.strength = 2.0
    assert float(reg.penalty().detach()) == pytest.approx(float((0.2 * weights * norms).sum()), rel=1e-6)
    before = w2.detach().clone()
    lr = float(norms.max()) / (0.2 * 3.0) * 1.01     # enough to zero exactly the weight-3 filter (and no other)
    reg.proximal_step(lr)
    after = torch.tensor(hand_group_norms(w2.detach(), "filter"))
    assert torch.equal(w2[0], before[0])             # weight 0: no push
    assert after[4] == 0
    expected = (norms - lr * 0.2 * weights).clamp_min(0)
    assert torch.allclose(after, expected, atol=1e-6)


def test_filter_blocks_group_consecutive_filters_and_channels() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec("lenet", 1, (28, 28), 10, width=0.4))   # conv1 8 filters, conv2 20
    w1, w2 = model.body.conv1.conv.weight, model.body.conv2.conv.weight
    reg = GroupLasso(model, {"filter.conv1": 0.1, "channel.conv2": 0.1}, filter_block=4)
    f = w1.detach().pow(2).sum(dim=(1, 2, 3))
    c = w2.detach().pow(2).sum(dim=(0, 2, 3))
    expected = 0.1 * (f.view(2, 4).sum(1).sqrt().sum() + c.view(2, 4).sum(1).sqrt().sum())
    assert float(reg.penalty().detach()) == pytest.approx(float(expected), rel=1e-6)
    lr = float(f.view(2, 4).sum(1).sqrt().min()) / 0.1 * 1.001   # zeroes the weaker block of 4 filters only
    reg.proximal_step(lr)
    zero = (w1.detach().pow(2).sum(dim=(1, 2, 3)) == 0).view(2, 4)
    assert zero.all(dim=1).sum() == 1 and (zero.any(dim=1) == zero.all(dim=1)).all()
    with pytest.raises(ValueError, match="filter_block"):
        GroupLasso(model, {"filter": 0.1}, filter_block=0)



def test_zero_small_never_empties_a_filter_inside_a_live_block() -> None:
    """Elementwise zeroing of a filter whose every weight is tiny would leave 3 of a block's 4 filters:
    kept widths would stop being multiples of the block. A block that is tiny throughout still goes."""
    torch.manual_seed(0)
    model = build_model(model_spec("lenet", 1, (28, 28), 10, width=0.4))   # conv1: 8 filters, blocks of 4
    w = model.body.conv1.conv.weight
    with torch.no_grad():
        w[1].fill_(5e-5)              # one tiny filter in the live first block
        w[4:].fill_(-5e-5)            # the whole second block tiny
    reg = GroupLasso(model, {"filter.conv1": 0.1, "channel.conv2": 0.1}, filter_block=4)
    reg.zero_small()
    live = (w.detach().flatten(1).abs().sum(1) > 0).tolist()
    assert live == [True] * 4 + [False] * 4
    unblocked = GroupLasso(model, {"filter.conv1": 0.1})
    unblocked.zero_small()
    assert not bool(w[1].detach().any())      # without blocks a tiny filter is zeroed as before


# --------------------------------------------------------------------------- BatchNorm in filter groups
def _conv1_and_bn(model: nn.Module) -> tuple[torch.Tensor, nn.BatchNorm2d]:
    block = model.stages[0][0]
    return block.conv1.weight, block.bn1


def test_filter_bn_puts_the_channels_batchnorm_scale_and_shift_into_its_filter_group() -> None:
    model = tiny_resnet(1)
    w, bn = _conv1_and_bn(model)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    strengths = {"filter.layer1.0.conv1": 0.1}
    rows = w.detach().pow(2).sum(dim=(1, 2, 3))
    with_bn = (rows + bn.weight.detach() ** 2 + bn.bias.detach() ** 2).sqrt()
    paper = float(GroupLasso(model, strengths).penalty().detach())
    assert paper == pytest.approx(0.1 * float(rows.sqrt().sum()), rel=1e-6)
    reg = GroupLasso(model, strengths, filter_bn=True)
    assert float(reg.penalty().detach()) == pytest.approx(0.1 * float(with_bn.sum()), rel=1e-6)

    before = [t.detach().clone() for t in (w, bn.weight, bn.bias)]
    lr = float(with_bn.min()) / 0.1 * 1.001              # zeroes the weakest group, shrinks the others
    reg.proximal_step(lr)
    weakest = int(with_bn.argmin())
    factor = (1 - lr * 0.1 / with_bn).clamp_min(0)
    assert bool((w[weakest] == 0).all()) and float(bn.weight[weakest].detach()) == 0 == float(bn.bias[weakest].detach())
    torch.testing.assert_close(w.detach(), before[0] * factor.view(-1, 1, 1, 1))
    torch.testing.assert_close(bn.weight.detach(), before[1] * factor)
    torch.testing.assert_close(bn.bias.detach(), before[2] * factor)


def test_filter_bn_gives_the_loss_a_say_against_the_penalty() -> None:
    """Why the option exists: BatchNorm makes the loss blind to a filter's scale, so its gradient
    has no component along the filter (nothing resists the shrinking); with the BatchNorm scale
    and shift in the group it has one."""
    model = tiny_resnet(2)
    model.train()
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    w, bn = _conv1_and_bn(model)
    along_filter = (w.grad * w.detach()).sum(dim=(1, 2, 3))
    along_bn = bn.weight.grad * bn.weight.detach() + bn.bias.grad * bn.bias.detach()
    scale = float((w.grad.pow(2).sum(dim=(1, 2, 3)).sqrt() * w.detach().pow(2).sum(dim=(1, 2, 3)).sqrt()).max())
    assert float(along_filter.abs().max()) < 1e-4 * scale
    assert float(along_bn.abs().max()) > 1e-2 * scale


def test_filter_bn_ssl_zeroes_whole_channels_and_compacts_exactly() -> None:
    model = tiny_resnet(3)
    reg = GroupLasso(model, {"filter": 1.0}, filter_bn=True)
    with torch.no_grad():
        for t in reg.conv_terms:                          # uneven group norms: the smallest die
            scale = torch.linspace(0.01, 1.0, t.weight.shape[0])
            t.weight.mul_(scale.view(-1, 1, 1, 1))
            for p in t.channel_params:
                p.mul_(scale)
                p.add_(0.1 * scale)                       # a non-zero shift too
    reg.proximal_step(0.05)
    _, bn = _conv1_and_bn(model)
    w = model.stages[0][0].conv1.weight
    dead = w.detach().pow(2).sum(dim=(1, 2, 3)) == 0
    assert 0 < int(dead.sum()) < len(dead)
    assert bool((bn.weight[dead] == 0).all()) and bool((bn.bias[dead] == 0).all())
    model.eval()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    result = compact_model(model, check_inputs=x)
    assert result.max_abs_diff <= 1e-5
    assert result.model.spec != model.spec
