"""Baselines on SSL's harness: L1 filter pruning, Torch-Pruning (DepGraph) and the dense point
prune, compact exactly and evaluate for real on tiny nets; a tiny ``--method l1`` study."""

import copy
import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hwssl.baselines import MethodError, check_params, filter_sites, kept_count, resolve_ratios
from hwssl.methods import evaluate_method, get_method, method_names
from hwssl.baselines.l1 import l1_masks
from hwssl.compact import compact_model
from hwssl.config import load_search_space
from hwssl.evaluate import prepare
from hwssl.models import build_model, model_spec
from hwssl.results import trials_frame
from hwssl.search import SearchError, SearchOptions, run_search


def _randomise_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def test_ratio_keys_resolve_most_specific_and_reject_bad_ones():
    model = build_model(model_spec("resnet20", 1, (8, 8), 10, width=0.25))
    sites = filter_sites(model)
    assert [s.name for s in sites] == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    ratios = resolve_ratios(sites, {"ratio": 0.5, "ratio.stage2": 0.25, "ratio.layer2.1.conv1": 0.0})
    assert ratios["layer1.0.conv1"] == 0.5 and ratios["layer2.0.conv1"] == 0.25 and ratios["layer2.1.conv1"] == 0.0
    with pytest.raises(MethodError, match="unknown scope"):
        resolve_ratios(sites, {"ratio.layer9.conv1": 0.5})
    with pytest.raises(MethodError, match=r"\[0, 1\)"):
        resolve_ratios(sites, {"ratio": 1.0})
    with pytest.raises(MethodError, match="unknown parameter"):
        check_params("torch-pruning", {"ratio": 0.5, "regg": 1e-3})
    with pytest.raises(MethodError, match="unknown parameter"):
        check_params("l1", {"ratio": 0.5, "reg": 1e-3})
    assert kept_count(50, 0.5) == 25 and kept_count(25, 0.5) == 12 and kept_count(3, 0.9) == 1


def test_l1_masks_zero_the_lowest_l1_filters_of_each_site():
    model = build_model(model_spec("lenet", 1, (28, 28), 10, width=0.5))
    mask = l1_masks(model, {"ratio": 0.5})
    for site in filter_sites(model):
        norms = site.conv.weight.detach().abs().sum(dim=(1, 2, 3))
        keep = mask.masks[site.name][1]
        assert int(keep.sum()) == kept_count(site.conv.out_channels, 0.5)
        assert norms[keep].min() >= norms[~keep].max()


def test_l1_at_half_prunes_half_of_every_site_compacts_exactly_and_evaluates(tiny_space_file):
    space = load_search_space(tiny_space_file)
    start = prepare(space)
    result = evaluate_method(space, "l1", {"ratio": 0.5}, start=start)
    json.dumps(result)
    assert result["method"] == "l1" and result["method_params"] == {"ratio": 0.5} and result["strengths"] == {}
    for name in ("conv1", "conv2"):
        dense = result["layers"][name]["dense"]["filters"]
        assert result["layers"][name]["filters"] == kept_count(dense, 0.5)
        # the masked fine-tune kept exactly the pruned filters at zero
        assert result["sparsity"]["layers"][name]["filter"]["zero"] == dense - kept_count(dense, 0.5)
        assert len(result["baseline"]["masks"][name]["pruned"]) == dense - kept_count(dense, 0.5)
    assert result["max_abs_diff_compacted"] <= 1e-5
    assert 1.5 < result["flops_ratio"] and result["params"] < result["params_dense"]
    assert result["accuracy"] > 0.5
    assert result["wall_s"]["sparsify"] > 0 and result["wall_s"]["recover"] > 0


def test_dense_point_is_the_identity(tiny_space_file):
    space = load_search_space(tiny_space_file)
    result = evaluate_method(space, "dense")
    assert result["method"] == "dense" and result["flops_ratio"] == 1 and result["flops"] == result["flops_dense"]
    assert result["max_abs_diff_compacted"] == 0 and result["params"] == result["params_dense"]
    assert all(v["filters"] == v["dense"]["filters"] for v in result["layers"].values())
    with pytest.raises(MethodError):
        evaluate_method(space, "dense", {"ratio": 0.5})


def test_torch_pruning_selection_matches_its_own_pruning_on_a_resnet_and_compacts_exactly():
    pytest.importorskip("torch_pruning")
    from hwssl.baselines.depgraph import build_pruner, tp_selection

    torch.manual_seed(0)
    model = _randomise_bn(build_model(model_spec("resnet20", 1, (8, 8), 10, width=0.5)))
    example = torch.randn(1, 1, 8, 8)
    for params in ({"ratio": 0.5}, {"ratio": 0.5, "global": True}, {"ratio": 0.3, "ratio.stage3": 0.75}):
        ours = copy.deepcopy(model)
        mask = tp_selection(build_pruner(ours, example, params), ours)
        mask.apply()
        theirs = copy.deepcopy(model)
        build_pruner(theirs, example, params).step()   # Torch-Pruning prunes physically its own way
        by_name = dict(theirs.named_modules())
        for site in filter_sites(ours):
            assert int(mask.masks[site.name][1].sum()) == by_name[site.name].out_channels, (params, site.name)
        # stage widths (residual stream) are untouched: TP only touched SSL's filter sites
        assert by_name["conv1"].out_channels == model.conv1.out_channels
        compacted = compact_model(ours, check_inputs=torch.randn(4, 1, 8, 8), tolerance=1e-5)
        assert compacted.max_abs_diff <= 1e-5
        kept = {n: v["filters"] for n, v in compacted.summary["layers"].items()}
        assert all(kept[s.name] == by_name[s.name].out_channels for s in filter_sites(ours))


def test_torch_pruning_runs_its_regulariser_every_step_then_prunes(tiny_space_file, monkeypatch):
    tp = pytest.importorskip("torch_pruning")
    calls = []
    original = tp.pruner.GroupNormPruner.regularize

    def counting(self, model, *args, **kwargs):
        calls.append(1)
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(tp.pruner.GroupNormPruner, "regularize", counting)
    space = load_search_space(tiny_space_file)
    result = evaluate_method(space, "torch-pruning", {"ratio": 0.5, "reg": 1e-2})
    steps_per_epoch = -(-600 // 32)
    assert len(calls) == 2 * steps_per_epoch          # ssl_epochs = 2: once per step, between backward and step
    assert result["method"] == "torch-pruning" and result["baseline"]["fit"].startswith("tp-selects")
    for name in ("conv1", "conv2"):
        dense = result["layers"][name]["dense"]["filters"]
        assert result["layers"][name]["filters"] == kept_count(dense, 0.5)
    assert result["max_abs_diff_compacted"] <= 1e-5 and result["flops_ratio"] > 1.5
    assert result["ssl_step_overhead"] > 1.0           # the regulariser's cost is measured


def test_tiny_l1_study_stores_method_and_refuses_a_method_switch(tiny_space_file, tmp_path):
    space = load_search_space(tiny_space_file)
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    opts = SearchOptions(space=space, storage=storage, trials=2, artifacts=str(tmp_path / "a"), quiet=True,
                         method="l1", ratios=[0.25, 0.5])
    assert opts.name == "tiny-l1"
    study = run_search(opts)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["ratio"] for t in done) == [0.25, 0.5]
    for t in done:
        result = t.user_attrs["result"]
        assert result["method"] == "l1" and result["method_params"] == {"ratio": t.params["ratio"]}
        assert t.values == [result["accuracy"], result["flops"]]
    assert study.user_attrs["method"] == "l1"
    assert set(trials_frame(study)["method"]) == {"l1"}
    ssl_opts = SearchOptions(space=space, storage=storage, study_name="tiny-l1", resume=True, trials=3,
                             artifacts=str(tmp_path / "a"), quiet=True)
    with pytest.raises(SearchError, match="--method l1"):
        run_search(ssl_opts)
    with pytest.raises(SearchError, match="unknown parameter"):
        run_search(SearchOptions(space=space, storage=storage, study_name="x", method="torch-pruning",
                                 method_params={"bogus": 1}, quiet=True))
    dense = run_search(SearchOptions(space=space, storage=storage, trials=5, method="dense", quiet=True,
                                     artifacts=str(tmp_path / "a")))
    assert len(dense.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert optuna.load_study(study_name="tiny-dense", storage=storage).user_attrs["method"] == "dense"


def test_a_sweep_run_one_trial_at_a_time_evaluates_each_ratio_once(tiny_space_file, tmp_path):
    """bench/compare.py adds one candidate per run_search call (to check its time budget); queued
    ratios of an earlier call must not be queued again."""
    space = load_search_space(tiny_space_file)
    opts = SearchOptions(space=space, storage=f"sqlite:///{tmp_path / 'sweep.db'}", artifacts=str(tmp_path / "a"),
                         quiet=True, method="l1", ratios=[0.25, 0.5, 0.75], resume=True, trials=1)
    for n in (1, 2, 3, 4):
        opts.trials = n
        study = run_search(opts)
    ratios = [t.params["ratio"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert ratios[:3] == [0.25, 0.5, 0.75]
    assert len(set(ratios)) == 4  # the fourth is sampled, not a replay of the sweep


def test_every_method_is_registered_once_and_an_unknown_one_is_one_line(tiny_space_file, capsys):
    from hwssl.cli import main
    from hwssl.methods import Method, register

    assert method_names() == ["ssl", "l1", "torch-pruning", "dense"]
    assert get_method("l1").samples_ratios and get_method("dense").single_point
    assert get_method("ssl").trial_attrs({"shape.conv1": 0.5}) == {"strengths": {"shape.conv1": 0.5}}
    assert get_method("l1").describe({"ratio": 0.25}) == "ratio=0.25"
    with pytest.raises(ValueError, match="already registered"):
        register(Method("l1", "again", get_method("l1").sparsify, get_method("l1").sample))
    assert main(["search", "--space", str(tiny_space_file), "--no-profile", "--quiet", "--no-report",
                 "--method", "magic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown method 'magic'" in err and "'torch-pruning'" in err
