"""One candidate end to end on real (small) data."""

import json

from hwssl.compact import arch_key
from hwssl.config import load_search_space
from hwssl.evaluate import evaluate_candidate
from hwssl.models import build_model
from hwssl.record import SCHEMA_VERSION, TrialRecord
from hwssl.sparsity import count_macs, count_params


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
