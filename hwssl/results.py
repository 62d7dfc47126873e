"""Reading results back out of a study: one flat row per trial, the Pareto set per objective."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hwssl.pareto import pareto_indices


FINAL_PREFIX = "final_latency:"
FINAL_DENSE = "final_latency_dense"


def study_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The study's trials (copies) with the final, fully tuned re-timings (stored as study user
    attributes, since a finished trial cannot be updated) merged into each ``result``:
    ``latency_ms_final`` and ``latency_ms_dense_final`` per profile."""
    attrs = study.user_attrs
    dense_final = attrs.get(FINAL_DENSE, {})
    trials = study.get_trials(deepcopy=True, states=states)
    for t in trials:
        final = attrs.get(f"{FINAL_PREFIX}{t.number}")
        result = t.user_attrs.get("result")
        if final and result is not None:
            result["latency_ms_final"] = dict(final)
            result["latency_ms_dense_final"] = {p: dense_final[p] for p in final if p in dense_final}
    return trials


def trial_latency(result: dict[str, Any], profile: str, key: str = "tvm") -> float | None:
    """Latency of a trial on a profile: the final (fully tuned) timing when one exists."""
    final = result.get("latency_ms_final", {}).get(profile)
    source = final if final is not None else result.get("latency_ms", {}).get(profile)
    return None if source is None else source.get(key)


def trial_row(trial: FrozenTrial, profiles: list[str]) -> dict[str, Any]:
    result = trial.user_attrs.get("result", {})
    row: dict[str, Any] = {
        "trial": trial.number, "state": trial.state.name,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "fail_reason": trial.user_attrs.get("fail_reason"),
        "method": result.get("method", "ssl"),
        "precision": result.get("precision", trial.user_attrs.get("precision", "fp32")),
    }
    if result:
        row.update({
            "accuracy": result["accuracy"], "accuracy_test": result["accuracy_test"],
            "accuracy_dense": result["accuracy_dense"], "accuracy_dense_test": result["accuracy_dense_test"],
            "macs": result["flops"], "macs_dense": result["flops_dense"], "macs_ratio": result["flops_ratio"],
            "params": result["params"], "params_dense": result["params_dense"],
            "blocks_removed": len(result["blocks_removed"]), "conv_layers": result["conv_layers"],
            "ssl_step_overhead": result["ssl_step_overhead"],
            "accuracy_fp32": result.get("accuracy_fp32", result["accuracy"]),
            "accuracy_int8": result.get("accuracy_int8"), "accuracy_int8_test": result.get("accuracy_int8_test"),
            "integer_only": result.get("integer_only"),
            "float_ops": len(result["float_ops"]) if "float_ops" in result else None,
        })
        ratio = result.get("method_params", {}).get("ratio") if result.get("method", "ssl") != "ssl" else None
        if isinstance(ratio, (int, float)):
            row["ratio"] = float(ratio)
        for p in profiles:
            tvm = trial_latency(result, p, "tvm")
            dense_source = (result.get("latency_ms_dense_final", {}).get(p)
                            or result.get("latency_ms_dense", {}).get(p, {}))
            dense = dense_source.get("tvm")
            row[f"tvm_ms:{p}"] = tvm
            row[f"torch_ms:{p}"] = trial_latency(result, p, "torch")
            row[f"ort_ms:{p}"] = trial_latency(result, p, "onnxruntime")
            row[f"threads:{p}"] = trial_latency(result, p, "threads")
            row[f"tuned:{p}"] = bool((result.get("latency_ms_final", {}).get(p)
                                      or result.get("latency_ms", {}).get(p, {})).get("tuned", False))
            row[f"dense_tvm_ms:{p}"] = dense
            row[f"speedup:{p}"] = (dense / tvm) if (dense and tvm) else None
            if "latency_ms_int8" in result:
                row[f"int8_ms:{p}"] = result["latency_ms_int8"].get(p, {}).get("tvm")
    for key, value in trial.user_attrs.get("strengths", {}).items():
        row[f"λ {key}"] = value
    return row


def study_profiles(study: optuna.Study) -> list[str]:
    return [p["name"] for p in study.user_attrs.get("profiles", [])]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    profiles = study_profiles(study)
    return pd.DataFrame([trial_row(t, profiles) for t in study_trials(study)])


def pareto_frame(study: optuna.Study, profile: str | None = None) -> pd.DataFrame:
    """Complete trials that are Pareto-optimal in validation accuracy vs latency on ``profile``
    (vs MACs when the study has no profile), sorted by cost."""
    frame = trials_frame(study)
    if frame.empty:
        return frame
    done = frame[frame["state"] == TrialState.COMPLETE.name].reset_index(drop=True)
    if done.empty:
        return done
    cost_col = f"tvm_ms:{profile}" if profile else "macs"
    done = done[done[cost_col].notna()].reset_index(drop=True)
    idx = pareto_indices(done["accuracy"].tolist(), done[cost_col].tolist())
    return done.iloc[idx].reset_index(drop=True)
