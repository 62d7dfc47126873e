"""Reading results back out of a study: one flat row per trial, the Pareto set per objective."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hwssl.pareto import pareto_indices
from hwssl.record import TrialRecord


FINAL_PREFIX = "final_latency:"
FINAL_DENSE = "final_latency_dense"


@dataclass
class RecordedTrial:
    """An Optuna trial and its typed record (None for a trial without a result: failed, running)."""

    trial: FrozenTrial
    record: TrialRecord | None

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def complete(self) -> bool:
        return self.trial.state == TrialState.COMPLETE and self.record is not None


def trial_records(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[RecordedTrial]:
    """The study's trials with their records; final (fully tuned) re-timings, stored as study
    user attributes since a finished trial cannot be updated, are attached to each record."""
    attrs = study.user_attrs
    dense_final = attrs.get(FINAL_DENSE, {})
    out = []
    for t in study.get_trials(deepcopy=False, states=states):
        result = t.user_attrs.get("result")
        record = TrialRecord.from_dict(result) if result else None
        if record is not None:
            for profile, latency in (attrs.get(f"{FINAL_PREFIX}{t.number}") or {}).items():
                record.attach_final(profile, latency, dense_final.get(profile))
        out.append(RecordedTrial(t, record))
    return out


def store_final(study: optuna.Study, number: int | None, profile: str, latency: dict[str, Any]) -> None:
    """Store a final re-timing of trial ``number`` (None: of the dense network) on ``profile``."""
    key = FINAL_DENSE if number is None else f"{FINAL_PREFIX}{number}"
    stored = dict(study.user_attrs.get(key, {}))
    stored[profile] = latency
    study.set_user_attr(key, stored)


def trial_row(rt: RecordedTrial, profiles: list[str]) -> dict[str, Any]:
    trial, rec = rt.trial, rt.record
    row: dict[str, Any] = {
        "trial": trial.number, "state": trial.state.name,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "fail_reason": trial.user_attrs.get("fail_reason"),
        "method": rec.method if rec else "ssl",
        "precision": rec.precision if rec else trial.user_attrs.get("precision", "fp32"),
    }
    if rec is not None:
        x, int8 = rec.extra, rec.int8
        row.update({
            "accuracy": rec.accuracy, "accuracy_test": rec.accuracy_test,
            "accuracy_dense": rec.dense.accuracy, "accuracy_dense_test": rec.dense.accuracy_test,
            "macs": rec.flops, "macs_dense": rec.flops_dense, "macs_ratio": rec.flops_ratio,
            "params": rec.params, "params_dense": rec.params_dense,
            "blocks_removed": len(x["blocks_removed"]), "conv_layers": x["conv_layers"],
            "ssl_step_overhead": x["ssl_step_overhead"],
            "accuracy_fp32": rec.fp32.accuracy,
            "accuracy_int8": int8.accuracy if int8 else None, "accuracy_int8_test": int8.accuracy_test if int8 else None,
            "integer_only": x.get("integer_only"),
            "float_ops": len(x["float_ops"]) if "float_ops" in x else None,
        })
        row.update(budget_fields(rec))
        ratio = rec.method_params.get("ratio") if rec.method != "ssl" else None
        if isinstance(ratio, (int, float)):
            row["ratio"] = float(ratio)
        for p in profiles:
            lat, dense = rec.latency(p), rec.dense_latency(p)
            row[f"tvm_ms:{p}"] = lat.tvm if lat else None
            row[f"torch_ms:{p}"] = lat.torch if lat else None
            row[f"ort_ms:{p}"] = lat.get("onnxruntime") if lat else None
            row[f"threads:{p}"] = lat.get("threads") if lat else None
            row[f"tuned:{p}"] = bool(lat.tuned) if lat else False
            row[f"fidelity:{p}"] = ("final" if rec.is_final(p) else "cheap") if lat else None
            row[f"dense_tvm_ms:{p}"] = dense.tvm if dense else None
            row[f"speedup:{p}"] = rec.speedup(p)
            if int8 is not None:
                cheap = int8.timings.get(p)
                row[f"int8_ms:{p}"] = cheap.cheap.tvm if cheap and cheap.cheap else None
    if trial.user_attrs.get("path_of") is not None:
        row["path_of"] = trial.user_attrs["path_of"]   # a regularisation-path snapshot of that trial
    for key, value in trial.user_attrs.get("strengths", {}).items():
        row[f"λ {key}"] = value
    return row


def budget_fields(rec: TrialRecord) -> dict[str, Any]:
    """Budget-targeted SSL's columns (none for other trials): the target (a fraction of the dense
    net's predicted cost), the predicted cost reached (``predicted_ms`` when the oracle is the
    latency model), the reached ratio and the oracle."""
    x = rec.extra
    if x.get("target") is None:
        return {}
    return {"target": x["target"], "predicted": x.get("predicted"), "predicted_ms": x.get("predicted_ms"),
            "reached_ratio": x.get("predicted_ratio"), "oracle": x.get("oracle", "macs")}


def study_profiles(study: optuna.Study) -> list[str]:
    return [p["name"] for p in study.user_attrs.get("profiles", [])]


def trials_frame(study: optuna.Study, trials: Sequence[RecordedTrial] | None = None) -> pd.DataFrame:
    """One row per trial (``trials``: the study's :func:`trial_records`, when already read)."""
    profiles = study_profiles(study)
    return pd.DataFrame([trial_row(t, profiles) for t in (trial_records(study) if trials is None else trials)])


def pareto_frame(study: optuna.Study, profile: str | None = None, accuracy: str = "accuracy") -> pd.DataFrame:
    """Complete trials that are Pareto-optimal in validation accuracy (or the ``accuracy`` column
    given, e.g. ``accuracy_test``) vs latency on ``profile`` (vs MACs when the study has no
    profile), sorted by cost."""
    return pareto_rows(trials_frame(study), profile, accuracy)


def pareto_rows(frame: pd.DataFrame, profile: str | None = None, accuracy: str = "accuracy") -> pd.DataFrame:
    """:func:`pareto_frame` of a :func:`trials_frame` already built (several fronts, one read)."""
    if frame.empty:
        return frame
    done = frame[frame["state"] == TrialState.COMPLETE.name].reset_index(drop=True)
    if done.empty:
        return done
    cost_col = f"tvm_ms:{profile}" if profile else "macs"
    done = done[done[cost_col].notna()].reset_index(drop=True)
    idx = pareto_indices(done[accuracy].tolist(), done[cost_col].tolist())
    return done.iloc[idx].reset_index(drop=True)
