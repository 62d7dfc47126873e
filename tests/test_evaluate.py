"""One candidate end to end on real (small) data."""

import json

from hwssl.config import load_search_space
from hwssl.evaluate import evaluate_candidate

REQUIRED = ["accuracy_dense", "accuracy", "accuracy_test", "flops_dense", "flops", "params_dense", "params",
            "layers", "blocks_removed", "max_abs_diff_compacted", "ssl_step_overhead", "arch", "arch_key",
            "wall_s", "sparsity"]


def test_evaluate_returns_every_field_and_reuses_the_dense_checkpoint(tiny_space_file):
    space = load_search_space(tiny_space_file)
    first = evaluate_candidate(space)
    json.dumps(first)  # serialisable
    for key in REQUIRED:
        assert key in first, key
    assert first["dense_cached"] is False and first["wall_s"]["dense"] > 0
    assert first["flops"] < first["flops_dense"] and first["params"] < first["params_dense"]
    assert first["max_abs_diff_compacted"] <= 1e-5
    assert first["layers"]["conv2"]["filters"] < first["layers"]["conv2"]["dense"]["filters"]
    assert first["accuracy_dense"] > 0.5

    second = evaluate_candidate(space, {"filter.conv2": 0.0})
    assert second["dense_cached"] is True and second["wall_s"]["dense"] == 0
    assert second["accuracy_dense"] == first["accuracy_dense"]
    assert second["flops"] == second["flops_dense"]
