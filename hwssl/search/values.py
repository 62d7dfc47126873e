"""What a trial's record means to the study: objective values, constraints, the sampled precision."""

from __future__ import annotations

from typing import Any, Sequence

import optuna

from hwssl.config.space import SearchSpace
from hwssl.record import TrialRecord


def sample_precision(trial: optuna.Trial, space: SearchSpace) -> str:
    """The precision the candidate deploys as: a searched dimension when the space lists several."""
    choices = list(space.search.precision)
    return choices[0] if len(choices) == 1 else str(trial.suggest_categorical("precision", choices))


def objective_values(record: TrialRecord, profiles: Sequence[Any]) -> list[float]:
    values = [float(record.accuracy)]
    if not profiles:
        return values + [float(record.flops)]
    for p in profiles:
        latency = record.latency(p.name)
        if latency is None or latency.tvm is None:
            raise RuntimeError(f"profile {p.name}: no latency ({(latency.skipped if latency else None) or 'unknown reason'})")
        values.append(float(latency.tvm))
    return values


def constraint_values(record: TrialRecord, space: SearchSpace) -> dict[str, float]:
    """The space's constraints on one record (> 0: violated)."""
    c = space.search
    out: dict[str, float] = {}
    if c.min_accuracy > 0:
        out["min_accuracy"] = c.min_accuracy - record.accuracy
    for profile, limit in c.max_latency_ms.items():
        latency = record.latency(profile)
        if latency is not None and latency.tvm is not None:
            out[f"max_latency_ms:{profile}"] = latency.tvm - limit
    return out


def set_constraints(trial: optuna.Trial, record: TrialRecord, space: SearchSpace) -> None:
    for key, value in constraint_values(record, space).items():
        trial.set_constraint(key, value)
