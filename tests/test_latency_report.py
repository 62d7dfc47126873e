"""The latency model inside a real study: a tiny search timed with TVM (untuned) records predicted and
measured latency per trial, the final re-timing (tuned, 1 trial per task) records per-layer
breakdowns of the front and the dense net, and the report shows both sections."""

from __future__ import annotations

import re

import pytest
from optuna.trial import TrialState

from conftest import TINY_SPACE
from deploy_support import fast_cpu_profile
from hwssl.config import load_search_space
from hwssl.config.profile import load_profile
from hwssl.latency import spec_kernels
from hwssl.latency.tunedb import database_kernels
from hwssl.models import model_spec
from hwssl.report import build_report
import copy

from hwssl.results import trial_records
from hwssl.retime import retime_pareto
from hwssl.search import SearchOptions, run_search


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("latstudy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root / "cache"))
        space_file = root / "tiny.toml"
        space_file.write_text(TINY_SPACE)
        profile = load_profile(fast_cpu_profile(root, threads=1))
        storage = f"sqlite:///{root / 's.db'}"
        st = run_search(SearchOptions(space=load_search_space(space_file), profiles=[profile], storage=storage,
                                      study_name="lat", trials=3, tune=False, artifacts=str(root / "a"),
                                      quiet=True))
        done = retime_pareto(st, [profile], trials_per_task=1, say=lambda _line: None)
        html = build_report(st, root / "report", storage).read_text()
    return {"study": st, "profile": profile, "root": root, "retimed": done[profile.name], "html": html}


def _results(study):
    """Each trial's stored result, with its final re-timings (if any) under ``latency_ms_final``
    and ``latency_ms_dense_final``."""
    out = []
    for t in trial_records(study, states=(TrialState.COMPLETE,)):
        r, rec = copy.deepcopy(t.trial.user_attrs["result"]), t.record
        finals = [p for p in rec.profiles if rec.is_final(p)]
        if finals:
            r["latency_ms_final"] = {p: rec.latency(p).to_dict() for p in finals}
            r["latency_ms_dense_final"] = {p: rec.dense_latency(p).to_dict() for p in finals}
        out.append(r)
    return out


def test_search_trials_record_predicted_and_measured_latency(study):
    name = study["profile"].name
    results = _results(study["study"])
    assert len(results) == 3
    predicted = 0
    for r in results:
        for lat in (r["latency_ms"][name], r["latency_ms_dense"][name]):
            assert lat["tvm"] > 0
            assert "predicted_ms" in lat and lat["latency_model"]["file"].endswith("latency_model_untuned.json")
            predicted += lat["predicted_ms"] is not None
    assert predicted >= 5  # only the very first measurement had no model to predict it


def test_final_retiming_records_per_layer_breakdowns_of_front_and_dense(study):
    name = study["profile"].name
    retimed = [r for r in _results(study["study"]) if r.get("latency_ms_final", {}).get(name)]
    assert retimed and len(retimed) == len(study["retimed"])
    for r in retimed:
        final, dense = r["latency_ms_final"][name], r["latency_ms_dense_final"][name]
        for lat, spec in ((final, r["arch"]), (dense, None)):
            assert lat["tuned"] and lat["per_layer"] and all("args" in row for row in lat["per_layer"])
            assert lat["predicted_ms"] > 0 and lat["latency_model"]["file"].endswith("latency_model.json")
            layers = lat["layers_ms"]
            assert "(other kernels)" not in layers  # every kernel mapped back to a layer of the spec
            assert sum(layers.values()) == pytest.approx(sum(row["ms"] for row in lat["per_layer"]))
        assert {"conv1", "fc1", "fc2"} <= set(dense["layers_ms"])
        lowered = [n for n, layer in r["layers"].items() if layer["lowered"]]
        assert sorted(final.get("lowered_vs_plain_ms", {})) == sorted(lowered)


def test_tuning_database_kernels_have_the_keys_the_spec_walker_gives(study):
    results = _results(study["study"])
    dense = model_spec("lenet", 1, (28, 28), 10, 0.5)
    walked = {k.key for spec in [dense, *(r["arch"] for r in results)] for k in spec_kernels(spec)}
    entries = database_kernels(study["profile"].database_dir(study["root"] / "cache"))
    assert entries and {d.kind for d, _ in entries} >= {"conv", "dense"}
    assert all(ms > 0 for _, ms in entries)
    assert {d.key for d, _ in entries} <= walked


def test_report_shows_predicted_against_measured_and_where_the_time_goes(study):
    html = study["html"]
    sections = set(re.findall(r'<section id="([^"]+)"', html))
    assert {"latency-model", "where-time-goes"} <= sections
    part = html.split('<section id="latency-model">')[1].split("</section>")[0]
    assert "Median absolute error" in part and "within ±10 %" in part and "<svg" in part
    where = html.split('<section id="where-time-goes">')[1].split("</section>")[0]
    for number in study["retimed"]:
        assert f"trial <a href=\"#trial-{number}\">#{number}</a> against dense" in where
    assert "conv1" in where and "<svg" in where
