"""What a search runs: its options, objectives and the metadata a study records; checks made
before any trial runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hwssl.config.space import SearchSpace, space_model_spec
from hwssl.methods import get_method
from hwssl.storage import default_storage_url

OBJECTIVE_ACCURACY = "accuracy"


class SearchError(RuntimeError):
    """A search cannot start (study mismatch, untimable profile, ...); the message says what to do."""


@dataclass
class SearchOptions:
    space: SearchSpace
    profiles: Sequence[Any] = ()
    study_name: str | None = None
    storage: str | None = None
    resume: bool = False
    trials: int | None = None            # target number of COMPLETE trials in the study
    sampler: str | None = None
    tune: bool = True
    trials_per_task: int | None = None
    artifacts: str = "hwssl-artifacts"
    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 2
    seed: int | None = None
    overrides: Sequence[str] = ()         # the --set KEY=VALUE strings the space was loaded with
    quiet: bool = False
    # baselines (hwssl.baselines): what a trial samples instead of SSL strengths
    method: str = "ssl"                   # ssl | l1 | torch-pruning | dense
    method_params: dict[str, Any] = field(default_factory=dict)   # fixed parameters of the method
    ratio_low: float = 0.1                # sampled pruning ratio range
    ratio_high: float = 0.9
    per_layer_ratios: bool = False        # one ratio per filter site instead of one for all
    ratios: Sequence[float] = ()          # ratios enqueued first (a sweep); the sampler proposes the rest

    @property
    def name(self) -> str:
        if self.study_name:
            return self.study_name
        suffix = [] if self.method == "ssl" else [self.method]
        return "-".join([self.space.name, *[p.name for p in self.profiles], *suffix])

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url()


def objective_names(profiles: Sequence[Any]) -> list[str]:
    if not profiles:
        return [OBJECTIVE_ACCURACY, "macs"]
    return [OBJECTIVE_ACCURACY] + [f"latency_ms:{p.name}" for p in profiles]


def study_metadata(opts: SearchOptions) -> dict[str, Any]:
    return {
        "space_path": str(Path(opts.space.path).resolve()), "space_name": opts.space.name,
        "overrides": list(opts.overrides), "data_config": dataclasses.asdict(opts.space.data), "space_description": opts.space.description,
        "model": opts.space.model.name, "model_width": opts.space.model.width, "data": opts.space.data.name,
        "dense_spec": space_model_spec(opts.space),  # spec files and the user's data leave no name to rebuild from
        "objectives": objective_names(opts.profiles),
        "profiles": [{"name": p.name, "path": str(Path(getattr(p, "path", "")).resolve()), "target": str(getattr(p, "target", "")),
                      "tuned": opts.tune} for p in opts.profiles],
        "constraints": {"min_accuracy": opts.space.search.min_accuracy,
                        "max_latency_ms": dict(opts.space.search.max_latency_ms)},
        "strength_ranges": {k: dataclasses.asdict(v) for k, v in opts.space.search.strengths.items()},
        "search_mode": opts.space.search.mode,
        "budget_ranges": None if opts.space.search.mode == "strengths" else {
            "target": dataclasses.asdict(opts.space.search.budget_target),
            "path_targets": opts.space.search.path_targets() if opts.space.search.mode == "path" else None,
            "mix": {k: dataclasses.asdict(v) for k, v in opts.space.search.budget_mix.items()}},
        "ssl_oracle": opts.space.ssl.oracle,
        "artifacts": str(Path(opts.artifacts).resolve()),
        "method": opts.method, "method_params": dict(opts.method_params),
        "precision": list(opts.space.search.precision), "quant": dataclasses.asdict(opts.space.quant),
        "ratio_range": None if not get_method(opts.method).samples_ratios else
        {"low": opts.ratio_low, "high": opts.ratio_high, "per_layer": opts.per_layer_ratios},
    }


def check_profiles_timable(profiles: Sequence[Any]) -> None:
    if not profiles:
        return
    from hwssl.deploy.availability import profile_availability
    for p in profiles:
        ok, reason = profile_availability(p)
        if not ok:
            raise SearchError(f"profile {getattr(p, 'path', p.name)} cannot be timed from this machine: {reason}. "
                              f"Search on a profile that can (see `hwssl profiles`).")


def check_method(opts: SearchOptions) -> None:
    """Reject an unknown method, bad fixed parameters, or an int8 search without a cost that int8
    changes, before any trial runs."""
    if "int8" in opts.space.search.precision and not opts.profiles:
        raise SearchError(f"{opts.space.path}: search.precision includes int8, but no --profile is given: int8 "
                          "changes latency, not MACs, so the front would only lose accuracy; add --profile FILE "
                          "or set search.precision = [\"fp32\"]")
    from hwssl.baselines import MethodError, check_space
    try:
        method = get_method(opts.method)
        if method.samples_ratios and not (0.0 <= opts.ratio_low <= opts.ratio_high < 1.0):
            raise SearchError(f"ratio range [{opts.ratio_low}, {opts.ratio_high}] must satisfy 0 <= low <= high < 1")
        method.check_params(opts.method_params)
        check_space(opts.method, opts.space)
    except MethodError as exc:
        raise SearchError(str(exc)) from exc


