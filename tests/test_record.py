"""The typed trial record: exact round trip of stored results, the one latency rule, the
precision variants, and a study written before the record existed giving the same report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hwssl.record import INT8_TORCH_NOTE, SCHEMA_VERSION, Latency, TrialRecord
from hwssl.report.collect import collect
from hwssl.results import trial_records, trials_frame

DATA = Path(__file__).resolve().parent / "data"
PROFILE = "x86_cpu"


@pytest.fixture
def old_storage(tmp_path):
    """A copy of the SQLite study written by the code before the record (schema 1): study ``ssl``
    (4 LeNet trials, fp32 and int8, tuned, trial 0 and the dense net re-timed) and study ``l1``."""
    shutil.copy(DATA / "study_v1.db", tmp_path / "v1.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return f"sqlite:///{tmp_path / 'v1.db'}"


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def test_every_stored_result_of_the_old_study_round_trips_exactly(old_storage):
    seen = set()
    for name in ("ssl", "l1"):
        for t in _load(old_storage, name).get_trials():
            stored = t.user_attrs["result"]
            record = TrialRecord.from_dict(stored)
            assert record.schema == 1
            assert record.to_dict() == {**stored, "schema": SCHEMA_VERSION}
            assert TrialRecord.from_dict(record.to_dict()).to_dict() == record.to_dict()
            seen.add(record.precision)
    assert seen == {"fp32", "int8"}


def test_unknown_latency_keys_survive_a_round_trip():
    stored = {"tvm": 1.5, "torch": 2.0, "tuned": True, "tvm_samples_ms": [1.4, 1.5, 1.6], "target": "llvm",
              "onnxruntime": 1.9, "threads": 2, "spread": 0.07, "rounds": 3, "noisy": ["torch"],
              "per_layer": [{"name": "conv", "ms": 0.5}]}
    lat = Latency.from_dict(stored)
    assert (lat.tvm, lat.torch, lat.tuned, lat.samples) == (1.5, 2.0, True, [1.4, 1.5, 1.6])
    assert lat.extra["onnxruntime"] == 1.9 and lat.per_layer == [{"name": "conv", "ms": 0.5}]
    assert lat.to_dict() == stored
    result = {"accuracy": 0.9, "accuracy_test": 0.8, "latency_ms": {PROFILE: stored},
              "latency_ms_dense": {PROFILE: {**stored, "tvm": 3.0}}, "new_field": {"kept": True}}
    back = TrialRecord.from_dict(result).to_dict()
    assert back["latency_ms"] == {PROFILE: stored} and back["new_field"] == {"kept": True}


def _result(precision: str = "fp32") -> dict:
    fp32 = {"tvm": 2.0, "torch": 5.0, "tuned": False}
    int8 = {"tvm": 1.0, "torch": None, "tuned": False}
    base = {"method": "ssl", "method_params": {}, "precision": precision, "accuracy_dense": 0.95,
            "accuracy_dense_test": 0.94, "params": 10, "params_dense": 40,
            "flops": 100, "flops_dense": 400, "latency_ms_dense": {PROFILE: {"tvm": 4.0, "torch": 6.0, "tuned": False}},
            "accuracy_int8": 0.90, "accuracy_int8_test": 0.89, "latency_ms_int8": {PROFILE: int8}}
    if precision == "fp32":
        return {**base, "accuracy": 0.93, "accuracy_test": 0.92, "latency_ms": {PROFILE: fp32}}
    return {**base, "accuracy": 0.90, "accuracy_test": 0.89, "accuracy_fp32": 0.93, "accuracy_fp32_test": 0.92,
            "latency_ms_fp32": {PROFILE: fp32},
            "latency_ms": {PROFILE: {**int8, "torch": 5.0, "torch_note": INT8_TORCH_NOTE}}}


def test_latency_rule_final_if_present_else_cheap_and_the_same_for_dense():
    rec = TrialRecord.from_dict(_result())
    assert rec.latency(PROFILE).tvm == 2.0 and rec.dense_latency(PROFILE).tvm == 4.0
    assert rec.speedup(PROFILE) == 2.0 and not rec.is_final(PROFILE)
    assert rec.latency("other") is None and rec.speedup("other") is None
    rec.attach_final(PROFILE, {"tvm": 0.5, "torch": 5.0, "tuned": True}, {"tvm": 3.0, "tuned": True})
    assert rec.is_final(PROFILE) and rec.latency(PROFILE).tvm == 0.5 and rec.latency(PROFILE).tuned
    assert rec.dense_latency(PROFILE).tvm == 3.0 and rec.speedup(PROFILE) == 6.0
    assert rec.cheap_latency(PROFILE).tvm == 2.0
    assert "latency_ms_final" not in rec.to_dict()  # finals are study attributes, not part of the trial


def test_int8_trial_is_its_int8_variant_with_the_fp32_variant_beside_it():
    rec = TrialRecord.from_dict(_result("int8"))
    assert rec.precision == "int8" and rec.accuracy == 0.90 and rec.fp32.accuracy == 0.93
    assert rec.int8.timings[PROFILE].cheap.tvm == 1.0 and rec.fp32.timings[PROFILE].cheap.tvm == 2.0
    headline = rec.latency(PROFILE)
    assert headline.tvm == 1.0 and headline.torch == 5.0 and headline.extra["torch_note"] == INT8_TORCH_NOTE
    assert rec.to_dict() == {**_result("int8"), "schema": SCHEMA_VERSION}
    fp32 = TrialRecord.from_dict(_result("fp32"))
    assert fp32.accuracy == 0.93 and fp32.int8.accuracy == 0.90 and fp32.latency(PROFILE).tvm == 2.0


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


@pytest.mark.parametrize("study", ["ssl", "l1"])
def test_old_study_gives_the_same_trial_table_as_before_the_record(old_storage, study):
    """trials.csv of the pre-record report (accuracies, MACs, latencies, speed-ups, tuned flags)."""
    want = pd.read_csv(DATA / f"study_v1_{study}_trials.csv")
    got = trials_frame(_load(old_storage, study))
    got = pd.read_csv(pd.io.common.StringIO(got.to_csv(index=False)))  # same typing as the saved file
    added = [c for c in got.columns if c not in want.columns]
    assert [c for c in got.columns if c in want.columns] == list(want.columns)
    # columns added since: each point's fidelity; ONNX Runtime ms and TVM's best thread count (issue 14)
    assert all(c.startswith(("fidelity:", "ort_ms:", "threads:")) for c in added), added
    for col in want.columns:
        if col == "duration_s":
            continue
        for a, b in zip(got[col].tolist(), want[col].tolist()):
            assert _same(a, b), (col, a, b)


def test_old_study_gives_the_same_fronts_picks_and_hypervolumes_as_before_the_record(old_storage):
    want = json.loads((DATA / "study_v1_figures.json").read_text())
    for name, others in (("ssl", ["l1"]), ("l1", [])):
        data = collect(_load(old_storage, name), old_storage, [_load(old_storage, o) for o in others])
        w = want[name]
        for f in data.fronts:
            wf = w["fronts"][f.key]
            assert (f.trials, f.front, f.knee, f.recommended, f.int8) == (
                wf["trials"], wf["front"], wf["knee"], wf["recommended"], wf["int8"])
            assert f.acc == wf["acc"] and f.cost == pytest.approx(wf["cost"], rel=1e-12)
            assert f.dense_acc == wf["dense_acc"] and f.dense_cost == pytest.approx(wf["dense_cost"], rel=1e-12)
            assert f.hv == pytest.approx(wf["hv"], rel=1e-12)
        assert [[p.name, p.tuning, p.final_count] for p in data.profiles] == w["profiles"]
        assert {str(c.trial): {"fronts": c.fronts, "final": c.final, "int8_measured": c.int8_measured}
                for c in data.candidates} == w["candidates"]
        for view, wv in zip(data.comparisons, w["comparisons"]):
            for s in view.summaries:
                assert s.hv == pytest.approx(wv[s.study]["hv"], rel=1e-12)
                assert [p.trial for p in s.front] == wv[s.study]["front"]


def test_trial_records_attach_the_final_retiming_to_the_retimed_trial_only(old_storage):
    records = {t.number: t.record for t in trial_records(_load(old_storage, "ssl"))}
    assert [n for n, r in records.items() if r.is_final(PROFILE)] == [0]
    assert records[0].latency(PROFILE).tuned and records[0].dense.timings[PROFILE].final is not None
    assert records[1].dense.timings[PROFILE].final is None
