"""MobileNetV2 through the pipeline: SSL's coupled hidden-channel groups shrink it for real, and the
parts that do not handle it (L1 / Torch-Pruning baselines, int8) refuse it with one clear line."""

from __future__ import annotations

import pytest
import torch

from hwssl.baselines import MethodError
from hwssl.methods import evaluate_method
from hwssl.cli import main
from hwssl.config import ConfigError, load_search_space
from hwssl.models import build_model, model_spec
from hwssl.sparsity import GroupLasso, ssl_sites

SPACE = """
[model]
name = "mobilenetv2"
width = 0.25
[data]
name = "digits"
image_size = 16
train_subset = 300
val_subset = 100
test_subset = 100
[train]
batch_size = 32
dense_epochs = 1
dense_lr = 0.05
ssl_epochs = 1
ssl_lr = 0.05
recover_epochs = 1
[strengths]
"filter" = 3.0
"depth" = 3.0
"""


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "mnv2.toml"
    path.write_text(SPACE)
    return path


def test_coupled_proximal_step_zeroes_expand_row_dw_filter_and_projection_column_together():
    model = build_model(model_spec("mobilenetv2", 1, (16, 16), 10, 0.25))
    sites = ssl_sites(model)
    assert [c.name for c in sites.coupled][:2] == ["blocks.1", "blocks.2"]   # block 0 has no expand conv
    assert [s.name for s in sites.convs if s.types == ("shape",)] == ["stem"]
    assert [b.name for b in sites.blocks] and all(model.spec["blocks"][int(b.name.split(".")[1])]["residual"]
                                                  for b in sites.blocks)
    reg = GroupLasso(model, {"filter.blocks.2": 1e3})
    reg.proximal_step(1.0)
    block = model.blocks[2]
    assert bool((block.expand.conv.weight == 0).all()) and bool((block.dw.conv.weight == 0).all())
    assert bool((block.project.conv.weight == 0).all())
    assert bool((model.blocks[3].expand.conv.weight != 0).any())   # other blocks untouched


def test_ssl_on_mobilenetv2_removes_hidden_channels_and_compacts_exactly(space_file):
    space = load_search_space(space_file)
    result = evaluate_method(space, "ssl")
    assert result["max_abs_diff_compacted"] <= 1e-4
    assert result["flops"] < result["flops_dense"]
    hidden = {k: v for k, v in result["layers"].items() if k.endswith(".dw")}
    assert any(v["filters"] < v["dense"]["filters"] for v in hidden.values())


@pytest.mark.parametrize("method", ["l1", "torch-pruning"])
def test_filter_pruning_baselines_refuse_mobilenetv2_in_one_line(space_file, method, capsys):
    space = load_search_space(space_file)
    with pytest.raises(MethodError, match=f"{method} is not available for mobilenetv2"):
        evaluate_method(space, method, {"ratio": 0.5} if method == "l1" else {})
    assert main(["search", "--space", str(space_file), "--method", method, "--trials", "1",
                 "--storage", f"sqlite:///{space_file.parent / 's.db'}"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "not available for mobilenetv2" in err[-1]


def test_int8_refuses_mobilenetv2_in_one_line(space_file):
    with pytest.raises(ConfigError, match="key 'search.precision': int8 is not available for mobilenetv2"):
        load_search_space(space_file, ['search.precision=["fp32", "int8"]'])
    with pytest.raises(ConfigError, match="key 'quant.every_trial'"):
        load_search_space(space_file, ["quant.every_trial=true"])
    from hwssl.quant import QuantError, quantize_model
    model = build_model(model_spec("mobilenetv2", 1, (16, 16), 10, 0.25)).eval()
    with pytest.raises(QuantError, match="no int8 converter for MobileNetV2"):
        quantize_model(model, torch.randn(4, 1, 16, 16))


def test_a_search_on_a_spec_file_and_an_npz_records_the_dense_spec_for_retime(tmp_path):
    import json

    import numpy as np
    from optuna.trial import TrialState

    from hwssl.retime import _dense_model
    from hwssl.search import SearchOptions, run_search

    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = rng.integers(0, 60, (120, 12, 12), dtype=np.uint8)
    for k in range(3):
        x[y == k, 4 * k:4 * k + 4] = 250   # a class-dependent band
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    spec = model_spec("mobilenetv2", 1, (12, 12), 3, 0.25)
    (tmp_path / "net.json").write_text(json.dumps(spec))
    (tmp_path / "s.toml").write_text('[model]\nspec = "net.json"\n[data]\nname = "npz"\npath = "d.npz"\n'
                                     '[train]\ndense_epochs = 1\nssl_epochs = 1\nrecover_epochs = 1\n'
                                     '[search.strengths."filter"]\nlow = 0.5\nhigh = 3.0\n')
    space = load_search_space(tmp_path / "s.toml")
    study = run_search(SearchOptions(space=space, storage=f"sqlite:///{tmp_path / 's.db'}", study_name="mnv2",
                                     trials=1, artifacts=str(tmp_path / "a"), quiet=True))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert study.user_attrs["dense_spec"] == spec and study.user_attrs["model"] == "net"
    assert _dense_model(study).spec == spec
