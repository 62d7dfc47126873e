"""Export of a real trial: the model reloads in a fresh process with the stored test accuracy, and the
TVM library built for the host profile loads in a Relax VM and matches PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from hwssl.cli import main
from hwssl.config import load_search_space
from hwssl.export import ExportError, export_trial, load_config, load_exported, load_library
from hwssl.search import SearchOptions, run_search

from conftest import TINY_SPACE

HOST_PROFILE = Path(__file__).resolve().parents[1] / "hardware_profiles" / "x86_cpu.toml"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root / "cache"))
        space_file = root / "tiny.toml"
        space_file.write_text(TINY_SPACE.replace("high = 1.0", "high = 4.0"))
        storage = f"sqlite:///{root / 'e.db'}"
        study = run_search(SearchOptions(space=load_search_space(space_file), storage=storage, study_name="exp",
                                         trials=1, artifacts=str(root / "a"), quiet=True))
        study.add_trial(optuna.create_trial(state=TrialState.FAIL,
                                            user_attrs={"fail_reason": "MemoryError: out of memory"}))
    return {"root": root, "storage": storage, "space": space_file, "study": study,
            "trial": study.get_trials(states=(TrialState.COMPLETE,))[0]}


_FRESH = """
import json, sys
import torch
from hwssl.data import load_dataset
from hwssl.export import load_config, load_exported
from hwssl.train import accuracy
torch.set_num_threads(1)
d = sys.argv[1]
model = load_exported(d)
cfg = load_config(d)
splits = load_dataset(**cfg["data"]["load_dataset"])
assert list(splits.mean) == cfg["input"]["mean"] and list(splits.std) == cfg["input"]["std"]
print(json.dumps({"accuracy": accuracy(model, splits.test), "n": len(splits.test)}))
"""


def test_export_reloads_with_the_stored_accuracy_and_tvm_matches_pytorch(searched, tmp_path):
    if not HOST_PROFILE.is_file():
        pytest.skip(f"{HOST_PROFILE} missing")
    out = tmp_path / "deploy"
    trial = searched["trial"]
    done = export_trial(searched["study"], trial.number, out, profile=str(HOST_PROFILE),
                        storage=searched["storage"])
    assert {p.name for p in out.iterdir()} >= {"arch.json", "weights.pt", "model.so", "deploy.json"}
    cfg = load_config(out)
    stored = trial.user_attrs["result"]
    assert cfg["trial"] == trial.number and cfg["strengths"] == trial.user_attrs["strengths"]
    assert cfg["accuracy"]["test"] == stored["accuracy_test"] == cfg["accuracy"]["test_reproduced"]
    assert cfg["input"]["shape"] == [1, 1, 28, 28] and len(cfg["output"]["classes"]) == 10
    assert cfg["input"]["pixel_scale"] == 255.0 and len(cfg["input"]["mean"]) == 1
    assert cfg["profile"]["name"] == "x86_cpu" and cfg["library"]["file"] == "model.so"
    assert not cfg["library"]["tuned"] and any("WITHOUT tuned" in w for w in done.warnings)
    torch.load(out / "weights.pt", weights_only=True)  # plain tensors only

    # a fresh interpreter rebuilds model and test split from the export alone: same accuracy, exactly
    run = subprocess.run([sys.executable, "-c", _FRESH, str(out)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert run.returncode == 0, run.stderr
    fresh = json.loads(run.stdout.strip().splitlines()[-1])
    assert fresh["accuracy"] == stored["accuracy_test"] and fresh["n"] == 200

    # the library loads in a Relax VM and agrees with PyTorch on real test images
    import tvm
    from hwssl.data import load_dataset
    model = load_exported(out)
    images = load_dataset(**cfg["data"]["load_dataset"]).test.tensors[0][:8]
    vm = load_library(out)
    worst = 0.0
    for img in images:
        x = img[None]
        got = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
        with torch.no_grad():
            want = model(x).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1e-4
    assert cfg["library"]["max_abs_diff_vs_pytorch"] <= 1e-4


def test_cli_export_without_profile_and_clear_errors(searched, tmp_path, capsys):
    common = ["export", "--study", "exp", "--storage", searched["storage"]]
    trial = searched["trial"].number
    assert main([*common, "--trial", str(trial), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "model.so").exists() and load_config(tmp_path / "plain")["library"] is None
    assert "exported trial" in capsys.readouterr().out

    failed = next(t.number for t in searched["study"].get_trials() if t.state == TrialState.FAIL)
    assert main([*common, "--trial", str(failed), "--out", str(tmp_path / "f")]) == 2
    assert "MemoryError: out of memory" in capsys.readouterr().err
    assert main([*common, "--trial", "99", "--out", str(tmp_path / "f")]) == 2
    assert "no trial 99" in capsys.readouterr().err
    assert main([*common, "--trial", str(trial), "--profile", "nowhere", "--out", str(tmp_path / "f")]) == 2
    assert "neither a profile of the study" in capsys.readouterr().err


def test_export_refuses_a_space_file_whose_split_differs(searched, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(searched["space"].read_text().replace("test_subset = 200", "test_subset = 300"))
    with pytest.raises(ExportError, match="not the one the trial was evaluated on"):
        export_trial(searched["study"], searched["trial"].number, tmp_path / "x", space_path=str(other))
