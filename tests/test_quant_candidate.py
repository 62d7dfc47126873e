"""Precision as a search dimension: a real study on the host profile whose trials deploy as fp32 or
int8, with the int8 numbers as objectives, the integer-only verdict in the record, the report
marking int8 points, and the export reproducing the int8 network."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from hwssl.config import load_search_space
from hwssl.config.profile import load_profile
from hwssl.export import export_trial, load_config
from hwssl.report import build_report
from hwssl.results import trials_frame
from hwssl.search import SearchError, SearchOptions, run_search

from conftest import TINY_SPACE

HOST_PROFILE = Path(__file__).resolve().parents[1] / "hardware_profiles" / "x86_cpu.toml"
INT8_TOLERANCE = 0.03  # int8 validation accuracy within 3 points of the same candidate in fp32


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A 4-trial random-sampler study over strengths and precision, untuned TVM on this CPU."""
    root = tmp_path_factory.mktemp("mixed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root / "cache"))
        space_file = root / "tiny.toml"
        space_file.write_text(TINY_SPACE.replace("trials = 3", 'trials = 4\nprecision = ["fp32", "int8"]'))
        storage = f"sqlite:///{root / 'm.db'}"
        space = load_search_space(space_file)
        profile = load_profile(HOST_PROFILE)
        study = run_search(SearchOptions(space=space, profiles=[profile], storage=storage, study_name="mixed",
                                         sampler="random", seed=1, tune=False, artifacts=str(root / "a"),
                                         quiet=True))
        return {"root": root, "storage": storage, "space": space_file, "study": study, "profile": profile,
                "cache": root / "cache"}


def _done(study):
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_int8_trials_optimise_their_int8_numbers_and_prove_integer_kernels(mixed):
    trials = _done(mixed["study"])
    assert len(trials) == 4
    by_precision = {p: [t for t in trials if t.params.get("precision") == p] for p in ("fp32", "int8")}
    assert by_precision["fp32"] and by_precision["int8"], "seed 1 samples both precisions"
    for t in by_precision["int8"]:
        r = t.user_attrs["result"]
        assert r["precision"] == "int8"
        assert r["accuracy"] == r["accuracy_int8"] and r["accuracy_test"] == r["accuracy_int8_test"]
        assert abs(r["accuracy_int8"] - r["accuracy_fp32"]) <= INT8_TOLERANCE
        lat = r["latency_ms"]["x86_cpu"]
        assert lat["tvm"] == r["latency_ms_int8"]["x86_cpu"]["tvm"] > 0
        assert lat["torch"] == r["latency_ms_fp32"]["x86_cpu"]["torch"] > 0  # the fp32 net in eager
        assert r["latency_ms_fp32"]["x86_cpu"]["tvm"] > 0
        assert t.values == [r["accuracy_int8"], lat["tvm"]]
        assert r["integer_only"] is True
        counts = r["latency_ms_int8"]["x86_cpu"]["integer_counts"]
        assert counts["int8_macs"] > 0 and counts["float_macs"] == 0
        assert all(op.startswith(("input", "output")) for op in r["float_ops"])  # only the edges stay float
    for t in by_precision["fp32"]:
        r = t.user_attrs["result"]
        assert r["precision"] == "fp32" and "accuracy_int8" not in r and "latency_ms_fp32" not in r
        assert t.values == [r["accuracy"], r["latency_ms"]["x86_cpu"]["tvm"]]
    frame = trials_frame(mixed["study"])
    assert set(frame["precision"]) == {"fp32", "int8"}
    assert frame.loc[frame["precision"] == "int8", "integer_only"].all()


def test_int8_latency_is_cached_by_architecture(mixed):
    import torch

    from hwssl.compact import load_compacted
    from hwssl.quant import quantize_model
    from hwssl.quant.candidate import measure_int8

    t = next(t for t in _done(mixed["study"]) if t.params.get("precision") == "int8")
    r = t.user_attrs["result"]
    model = load_compacted(r["saved_to"])
    qnet = quantize_model(model, torch.randn(16, *r["arch"]["input"]))
    again = measure_int8(qnet, torch.zeros(1, *r["arch"]["input"]), mixed["profile"], arch_key=r["arch_key"],
                         tune=False, cache_dir=mixed["cache"])
    assert again["cached"] is True and again["tvm"] == r["latency_ms_int8"]["x86_cpu"]["tvm"]


def test_report_marks_int8_points_and_their_verdict(mixed, tmp_path):
    html = build_report(mixed["study"], tmp_path, mixed["storage"]).read_text()
    assert 'class="badge int8"' in html and 'class="badge fp32"' in html
    assert "Integer-only" in html
    assert "int8 trials (" in html  # the legend entry of the triangle markers in the front plot
    csv = (tmp_path / "trials.csv").read_text().splitlines()[0].split(",")
    for column in ("precision", "accuracy_int8", "integer_only", "float_ops", "int8_ms:x86_cpu"):
        assert column in csv


def test_export_of_an_int8_trial_reproduces_the_int8_network(mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSSL_CACHE", str(mixed["cache"]))
    t = next(t for t in _done(mixed["study"]) if t.params.get("precision") == "int8")
    r = t.user_attrs["result"]
    out = export_trial(mixed["study"], t.number, tmp_path / "x", profile=str(HOST_PROFILE),
                       storage=mixed["storage"], space_path=str(mixed["space"]))
    cfg = load_config(out.directory)
    assert cfg["precision"] == "int8" and cfg["library"]["builder"] == "hwssl.quant"
    assert cfg["accuracy"]["test_reproduced"] == r["accuracy_int8_test"]
    assert cfg["library"]["max_abs_diff_vs_pytorch"] <= 1e-4
    assert cfg["int8"]["integer_only"] is True
    assert not [w for w in out.warnings if "accuracy" in w or "differs" in w]


def test_int8_search_without_a_profile_is_refused(tmp_path):
    space_file = tmp_path / "tiny.toml"
    space_file.write_text(TINY_SPACE.replace("trials = 3", 'trials = 3\nprecision = ["fp32", "int8"]'))
    opts = SearchOptions(space=load_search_space(space_file), storage=f"sqlite:///{tmp_path / 's.db'}",
                         quiet=True)
    with pytest.raises(SearchError, match=r"tiny.toml: search.precision includes int8.*--profile"):
        run_search(opts)


def test_retime_times_an_int8_trial_as_its_integer_network(mixed, monkeypatch):
    from hwssl.results import trial_records
    from hwssl.retime import retime_pareto

    monkeypatch.setenv("HWSSL_CACHE", str(mixed["cache"]))
    done = retime_pareto(mixed["study"], [mixed["profile"]], trials_per_task=1, say=lambda _line: None)
    retimed = {t.number: t.record for t in trial_records(mixed["study"]) if t.number in done["x86_cpu"]}
    assert {r.precision for r in retimed.values()} >= {"int8"}  # seed 1 puts an int8 trial on the front
    for r in retimed.values():
        assert r.is_final("x86_cpu")
        final = r.latency("x86_cpu")
        assert final.tvm > 0 and final.extra["trials_per_task"] == 1
        assert (final.extra.get("precision") == "int8") == (r.precision == "int8")
        if r.precision == "int8":
            assert final.extra["integer_only"] is True
            assert final.torch == r.cheap_latency("x86_cpu").torch  # the fp32 net in eager, carried over
