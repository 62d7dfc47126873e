"""Training loops on a tiny real model and real data."""

import math

import pytest
import torch

from hwssl.data import load_dataset
from hwssl.models import build_model, model_spec
from hwssl.sparsity import GroupLasso, sparsity_stats
from hwssl.train import TrainingDiverged, accuracy, recover_phase, train_phase


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k", train_subset=500, val_subset=200, test_subset=200)


def _lenet():
    return build_model(model_spec("lenet", 1, (28, 28), 10, width=0.5))


def test_dense_training_learns_real_digits(mnist):
    model = _lenet()
    before = accuracy(model, mnist.val)
    result = train_phase(model, mnist.train, phase="dense", epochs=2, lr=0.02, batch_size=32)
    assert result.steps == 2 * math.ceil(500 / 32)
    assert accuracy(model, mnist.val) > max(0.6, before + 0.3)
    assert result.step_ms > 0 and result.ssl_ms == 0


def test_training_is_deterministic_for_a_seed(mnist):
    a, b = _lenet(), _lenet()
    b.load_state_dict(a.state_dict())
    train_phase(a, mnist.train, phase="dense", epochs=0.5, lr=0.02, batch_size=32, seed=3)
    train_phase(b, mnist.train, phase="dense", epochs=0.5, lr=0.02, batch_size=32, seed=3)
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb)


def _filter_norms(model):
    return model.body.conv2.conv.weight.detach().flatten(1).norm(dim=1)


def test_proximal_ssl_reaches_exact_zero_filters_and_measures_its_overhead(mnist):
    model = _lenet()
    reg = GroupLasso(model, {"filter.conv2": 2.0})
    result = train_phase(model, mnist.train, phase="ssl", epochs=2, lr=0.02, batch_size=32, regularizer=reg,
                         mode="proximal", zero_threshold=1e-4)
    assert result.ssl_ms > 0 and result.ssl_step_overhead > 1.0
    assert sparsity_stats(model)["layers"]["conv2"]["filter"]["zero"] > 0


def test_subgradient_ssl_shrinks_the_penalised_groups_only(mnist):
    model = _lenet()
    before_conv1 = model.body.conv1.conv.weight.detach().flatten(1).norm(dim=1).clone()
    before = _filter_norms(model).clone()
    reg = GroupLasso(model, {"filter.conv2": 2.0})
    result = train_phase(model, mnist.train, phase="ssl", epochs=2, lr=0.02, batch_size=32, regularizer=reg,
                         mode="subgradient", zero_threshold=1e-4, weight_decay=0.0)
    assert result.ssl_step_overhead > 1.0
    assert float(_filter_norms(model).median()) < 0.5 * float(before.median())
    after_conv1 = model.body.conv1.conv.weight.detach().flatten(1).norm(dim=1)
    assert float(after_conv1.median()) > 0.5 * float(before_conv1.median())


def test_divergence_is_detected(mnist):
    model = _lenet()
    with pytest.raises(TrainingDiverged, match="loss became"):
        train_phase(model, mnist.train, phase="dense", epochs=1, lr=1e6, batch_size=32)


def test_a_diverging_recovery_restarts_from_its_weights_at_half_the_rate(mnist):
    model = _lenet()
    with pytest.raises(TrainingDiverged):
        recover_phase(model, mnist.train, phase="recover", epochs=1, lr=1e3, batch_size=32, retries=0)
    model = _lenet()
    result = recover_phase(model, mnist.train, phase="recover", epochs=2, lr=1e3, batch_size=32, retries=30)
    failed = result.record["diverged"]
    assert failed[0] == 1e3 and all(b == a / 2 for a, b in zip(failed, failed[1:]))
    assert result.record["lr"] == failed[-1] / 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert accuracy(model, mnist.val) > 0.6
    fine = recover_phase(_lenet(), mnist.train, phase="recover", epochs=0.5, lr=0.02, batch_size=32)
    assert fine.record == {}
