"""Budget-targeted SSL, regularisation paths and filter blocks on a real (tiny) LeNet run:
MNIST-5k subset, a few SSL epochs, the MAC oracle."""

from __future__ import annotations

import pytest
import torch

from hwssl.budget import evaluate_path, hw_ssl, spec_macs, ssl_path
from hwssl.compact import compacted_spec
from hwssl.config import load_search_space
from hwssl.evaluate import evaluate_candidate, prepare, ssl_sparsify

TOLERANCE = 0.05   # a met target is met within 5 % of the dense predicted cost
BUDGET = ["model.width=1.0", "train.ssl_epochs=4", "ssl.check_every=2", "filter=0.3", "channel=0.3", "shape.conv1=0.1",
          "filter.conv2=0.3"]


def conv_widths(spec):
    return {layer["name"]: layer["out"] for layer in spec["layers"] if layer["kind"] == "conv"}


def test_budget_targeted_ssl_reaches_its_target_and_records_it(tiny_space_file):
    space = load_search_space(tiny_space_file, BUDGET + ["ssl.target=0.4", "ssl.recover_unused=true"])
    result = evaluate_candidate(space)
    assert result["target"] == 0.4
    assert 0.4 - TOLERANCE <= result["predicted_ratio"] <= 0.4
    budget = result["budget"]
    assert budget["reached"] and budget["targets"] == [0.4] and budget["tolerance"] == TOLERANCE
    assert budget["predicted_dense"] == result["flops_dense"]
    # the oracle priced the spec the compaction then built: predicted = measured MACs of the compacted net
    assert result["predicted"] == result["flops"]
    trajectory = budget["strength_trajectory"]
    assert len(trajectory) >= 3 and trajectory[-1]["ratio"] == result["predicted_ratio"]
    assert max(t["strength"] for t in trajectory) > trajectory[0]["strength"]   # the controller had to push
    assert result["accuracy"] > 0.3
    # ssl.recover_unused: the whole SSL epochs left after the target was met went to recovery
    per_epoch = -(-len(prepare(space).splits.train) // space.train.batch_size)
    unused = int(space.train.ssl_epochs - trajectory[-1]["step"] / per_epoch)
    assert unused >= 1 and result["recover_epochs"] == space.train.recover_epochs + unused


def test_an_unreachable_target_stops_at_the_cheapest_state_instead_of_diverging(tiny_space_file):
    """Filter groups only, and a target below what the kept minimum widths cost: the strength would
    grow until the weights overflow to NaN (a default search lost two trials to this)."""
    space = load_search_space(tiny_space_file, ["model.width=1.0", "train.ssl_epochs=4", "ssl.check_every=2",
                                                "filter=0.05", "ssl.target=0.001"])
    start = prepare(space)
    run = hw_ssl(start, {"filter": 0.05}, targets=[0.001], predict=spec_macs)
    record = run.controller.record()
    assert record["stalled"] and not record["reached"]
    assert max(t["strength"] for t in record["strength_trajectory"]) <= run.controller.max_strength
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert record["final_ratio"] < 1.0   # the restored state is the first that reached the lowest cost
    assert record["final_ratio"] == min(t["ratio"] for t in record["strength_trajectory"])


def test_one_path_run_yields_several_distinct_compacted_candidates(tiny_space_file, tmp_path):
    space = load_search_space(tiny_space_file, BUDGET)
    start = prepare(space)
    targets = [0.7, 0.5, 0.35, 0.2]
    run = ssl_path(start, targets, {"filter": 0.3, "channel": 0.3, "shape": 0.05}, spec_macs)
    assert len(run.snapshots) >= 3
    results = evaluate_path(start, run, save_root=tmp_path)
    assert len(results) == len(run.snapshots)
    assert len({r["arch_key"] for r in results}) >= 3
    for snap, r in zip(run.snapshots, results):
        assert r["target"] in targets and r["target"] - TOLERANCE <= r["predicted_ratio"] <= r["target"]
        assert r["predicted"] == r["flops"] and r["budget"]["mix"]["filter"] == 0.3
        assert (tmp_path / f"snapshot{results.index(r)}" / "arch.json").exists()
    ratios = [r["predicted_ratio"] for r in results]
    assert ratios == sorted(ratios, reverse=True)                 # successive targets, one run
    steps = [s.step for s in run.snapshots]
    assert steps == sorted(steps) and run.phase.steps == steps[-1]


def test_each_path_snapshot_recovers_for_the_ssl_epochs_left_after_its_own_step(tiny_space_file, tmp_path):
    """With ssl.recover_unused an early snapshot of a path gets the SSL epochs the run had left when
    *it* was taken, so every candidate trains ssl_epochs + recover_epochs in all (a path once gave
    its loosest snapshot as few recovery epochs as its tightest)."""
    space = load_search_space(tiny_space_file, BUDGET + ["train.ssl_epochs=6", "ssl.recover_unused=true"])
    start = prepare(space)
    run = ssl_path(start, [0.7, 0.2], {"filter": 0.3, "channel": 0.3, "shape": 0.05}, spec_macs)
    per_epoch = -(-len(start.splits.train) // space.train.batch_size)
    left = [int(space.train.ssl_epochs - snap.step / per_epoch) for snap in run.snapshots]
    assert len(left) == 2 and left[0] > left[1], left   # the two snapshots lie in different epochs
    results = evaluate_path(start, run, save_root=tmp_path)
    assert [r["recover_epochs"] for r in results] == [space.train.recover_epochs + n for n in left]


def test_filter_blocks_keep_widths_in_multiples_of_the_block(tiny_space_file):
    space = load_search_space(tiny_space_file, BUDGET + ["model.width=0.8", "ssl.filter_block=4",
                                                         "ssl.latency_weighted=true", "ssl.weight_every=10"])
    start = prepare(space)
    dense = conv_widths(start.spec)
    assert dense == {"conv1": 16, "conv2": 40}
    run = hw_ssl(start, {"filter": 0.3, "channel": 0.3}, targets=[0.5])
    assert run.filter_block == 4
    kept = conv_widths(compacted_spec(run.model, channel_round=1))   # no rounding by the compaction
    assert all(width % 4 == 0 for width in kept.values()), kept
    assert kept != dense and min(kept.values()) > 0
    # the latency weights were recomputed as the widths changed
    history = run.weighting.history
    assert len(history) >= 3 and history[0]["step"] == 0 and history[-1]["weights"] != history[0]["weights"]


RESNET_SPACE = """
[model]
name = "resnet20"
width = 0.5
[data]
name = "digits"
[train]
batch_size = 64
dense_epochs = 3
dense_lr = 0.05
ssl_epochs = 4
ssl_lr = 0.02
recover_epochs = 1
recover_lr = 0.01
[ssl]
target = 0.5
check_every = 2
latency_weighted = true
filter_block = 4
[strengths]
"depth" = 0.05
"filter" = 0.1
"channel" = 0.05
"""


def test_budget_targeted_ssl_on_a_resnet_removes_blocks_and_blocked_widths(tmp_path):
    path = tmp_path / "resnet.toml"
    path.write_text(RESNET_SPACE)
    result = evaluate_candidate(load_search_space(path))
    assert result["budget"]["reached"] and 0.5 - TOLERANCE <= result["predicted_ratio"] <= 0.5
    assert result["predicted"] == result["flops"]           # MACs of the built compacted ResNet
    assert result["max_abs_diff_compacted"] < 1e-4 and result["blocks_removed"]
    mids = [kept["filters"] for name, kept in result["layers"].items() if name.endswith(".conv1") and "layer" in name]
    assert all(m % 4 == 0 for m in mids), mids
    assert set(result["latency_weights"]) >= {"depth.layer1.0", "filter.layer3.2.conv1", "channel.layer2.1.conv2"}


def test_channel_round_block_follows_the_compaction_rounding(tiny_space_file):
    space = load_search_space(tiny_space_file, BUDGET + ["train.ssl_epochs=0", 'ssl.filter_block="channel_round"',
                                                         "compact.channel_round=2"])
    run = hw_ssl(prepare(space), {"filter": 0.3})
    assert run.filter_block == 2 and run.phase.record["filter_block"] == 2


def test_plain_ssl_is_unchanged_when_the_options_are_off(tiny_space_file):
    space = load_search_space(tiny_space_file)
    start = prepare(space)
    plain, phase = ssl_sparsify(start, dict(space.strengths))
    assert phase.record == {}
    run = hw_ssl(start, dict(space.strengths))
    assert run.snapshots == [] and run.controller is None and run.weighting is None
    for a, b in zip(plain.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)


def test_path_needs_a_target_and_a_mix(tiny_space_file):
    start = prepare(load_search_space(tiny_space_file))
    with pytest.raises(ValueError, match="at least one target"):
        ssl_path(start, [], {"filter": 0.1})
    with pytest.raises(ValueError, match="every strength of .* is 0"):
        ssl_path(start, [0.5], {"filter": 0.0})


def test_latency_weights_are_recomputed_at_the_weights_a_rollback_restores(tiny_space_file):
    """A check that overshoots its target rolls the weights back; group weights priced at the overshoot
    (every site down to its last filter, so no group saves anything: all 0) must not outlive it."""
    from hwssl.budget.controller import BudgetController
    from hwssl.budget.weights import LatencyWeighting
    from hwssl.sparsity.regularizer import GroupLasso

    start = prepare(load_search_space(tiny_space_file, ["model.width=1.0"]))
    model = start.dense_model()
    reg = GroupLasso(model, {"filter": 0.1})
    weighting = LatencyWeighting(model, reg, spec_macs)
    at_dense = weighting.refresh(0)
    assert all(w > 0 for w in at_dense.values())
    controller = BudgetController(model, reg, spec_macs, [0.5], on_restore=weighting.refresh)
    with torch.no_grad():
        for t in reg.conv_terms:
            t.weight[1:] = 0          # the overshoot: one filter left per conv
    assert all(w == 0 for w in weighting.refresh(10).values())
    assert controller.check(10, 100) is False
    assert controller.trajectory[-1].get("rollback") and controller.rollbacks == 1
    assert reg.weights == at_dense    # recomputed at the restored (dense) weights
    assert weighting.history[-1]["step"] == 10
