"""One candidate end to end on real (small) data."""

import dataclasses
import json

import pytest
import torch

from hwssl.compact import arch_key
from hwssl.config import load_search_space
from hwssl.evaluate import evaluate_candidate, finish_candidate, prepare, recovery_start, ssl_sparsify, sparsify_halving
from hwssl.methods import get_method
from hwssl.models import build_model
from hwssl.record import SCHEMA_VERSION, TrialRecord
from hwssl.sparsity import count_macs, count_params
from hwssl.train import TrainingDiverged


def test_evaluate_returns_every_field_and_reuses_the_dense_checkpoint(tiny_space_file):
    space = load_search_space(tiny_space_file)
    first = evaluate_candidate(space)
    assert json.loads(json.dumps(first)) == first  # serialisable as it is
    record = TrialRecord.from_dict(first)
    assert record.schema == SCHEMA_VERSION and record.to_dict() == first
    # the stored architecture is the network that was measured: its MACs, parameters and key agree
    small = build_model(first["arch"])
    assert count_macs(small, first["arch"]["input"])[0] == first["flops"]
    assert count_params(small) == first["params"] and first["arch_key"] == arch_key(first["arch"])
    assert 0 < first["accuracy"] <= 1 and 0 < first["accuracy_test"] <= 1
    assert first["ssl_step_overhead"] >= 1.0 and first["wall_s"]["total"] >= first["wall_s"]["ssl"] > 0
    assert first["sparsity"] and first["blocks_removed"] == []  # LeNet has no residual blocks
    assert first["dense_cached"] is False and first["wall_s"]["dense"] > 0
    assert first["flops"] < first["flops_dense"] and first["params"] < first["params_dense"]
    assert first["max_abs_diff_compacted"] <= 1e-5
    assert first["layers"]["conv2"]["filters"] < first["layers"]["conv2"]["dense"]["filters"]
    assert first["accuracy_dense"] > 0.5

    second = evaluate_candidate(space, {"filter.conv2": 0.0})
    assert second["dense_cached"] is True and second["wall_s"]["dense"] == 0
    assert second["accuracy_dense"] == first["accuracy_dense"]
    assert second["flops"] == second["flops_dense"]


def test_recovery_from_dense_keeps_the_ssl_architecture_and_starts_from_the_dense_weights(tiny_space_file):
    space = load_search_space(tiny_space_file, ["ssl.recover_from=dense"])
    start = prepare(space)
    sparse, phase = ssl_sparsify(start, dict(space.strengths))
    dense = start.dense_model()
    begin = recovery_start(start, sparse)
    removed = 0
    for (name, p), s, d in zip(begin.named_parameters(), sparse.parameters(), dense.parameters()):
        assert torch.equal(p[s == 0], torch.zeros_like(p[s == 0])), name     # SSL's zero pattern ...
        assert torch.equal(p[s != 0], d[s != 0]), name                       # ... on the dense weights
        removed += int((s == 0).sum())
    assert removed > 0
    from_dense = finish_candidate(start, sparse, method="ssl", params={}, sparsify=phase)
    paper = dataclasses.replace(start, space=dataclasses.replace(
        space, ssl=dataclasses.replace(space.ssl, recover_from="ssl")))
    assert recovery_start(paper, sparse) is sparse
    from_ssl = finish_candidate(paper, sparse, method="ssl", params={}, sparsify=phase)
    assert from_dense["recover_from"] == "dense" and from_ssl["recover_from"] == "ssl"
    assert from_dense["arch_key"] == from_ssl["arch_key"] and from_dense["flops"] < from_dense["flops_dense"]
    assert from_dense["accuracy_sparse"] == from_ssl["accuracy_sparse"]   # the SSL net's, before recovery
    assert from_dense["max_abs_diff_compacted"] <= 1e-5
    # the baselines already fine-tune from dense weights: the setting is SSL's alone
    l1_sparse, l1_phase, _ = get_method("l1").sparsify(start, {"ratio": 0.5}, None)
    assert "recover_from" not in finish_candidate(start, l1_sparse, method="l1", params={"ratio": 0.5},
                                                  sparsify=l1_phase)


@pytest.mark.parametrize("method,params", [("ssl", {"filter.conv2": 0.5}), ("l1", {"ratio": 0.5}),
                                           ("torch-pruning", {"ratio": 0.5})])
def test_a_diverging_sparsification_restarts_from_the_dense_net_at_half_the_rate(tiny_space_file, method, params):
    start = prepare(load_search_space(tiny_space_file))
    sparsify = get_method(method).sparsify
    with pytest.raises(TrainingDiverged):
        sparsify_halving(lambda s: sparsify(s, params, None), start.at_ssl_lr(1e4), retries=0)
    retried = sparsify_halving(lambda s: sparsify(s, params, None), start.at_ssl_lr(1e4), retries=40)
    assert retried.failed[0] == 1e4 and all(b == a / 2 for a, b in zip(retried.failed, retried.failed[1:]))
    assert retried.lr == retried.failed[-1] / 2 and retried.record() == {"diverged": retried.failed, "lr": retried.lr}
    sparse = retried.result[0]
    assert all(torch.isfinite(p).all() for p in sparse.parameters())
    assert start.space.train.ssl_lr == 0.02   # the start itself is untouched
    fine = sparsify_halving(lambda s: sparsify(s, params, None), start)
    assert fine.failed == [] and fine.record() == {} and fine.lr == 0.02
