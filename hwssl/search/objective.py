"""One trial: sample the method's parameters and the precision, run the candidate, record it."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Callable

import optuna

from hwssl.methods import Sampling, get_method
from hwssl.record import TrialRecord
from hwssl.search.options import SearchOptions
from hwssl.search.reporter import Reporter
from hwssl.search.values import objective_values, sample_precision, set_constraints
from hwssl.settings import MeasureSettings


class Objective:
    """Callable given to ``study.optimize``; records failures with their reason."""

    def __init__(self, opts: SearchOptions, reporter: "Reporter") -> None:
        self.opts = opts
        self.reporter = reporter

    def __call__(self, trial: optuna.Trial) -> list[float]:
        opts, space = self.opts, self.opts.space
        artifact = Path(opts.artifacts).resolve() / opts.name / f"trial-{trial.number:04d}"
        precision = sample_precision(trial, space)
        measure = MeasureSettings(tune=opts.tune, trials_per_task=opts.trials_per_task, precision=precision)
        common = dict(profiles=opts.profiles, measure=measure, save_dir=artifact, progress=self.reporter.phase)
        from hwssl.baselines import RatioRange, site_names
        from hwssl.methods import evaluate_method

        method = get_method(opts.method)
        per_site = method.samples_ratios and opts.per_layer_ratios
        sampling = Sampling(RatioRange(opts.ratio_low, opts.ratio_high, opts.per_layer_ratios), opts.method_params,
                            site_names(space) if per_site else ())
        params = method.sample(trial, space, sampling)
        path = method.name == "ssl" and space.search.mode == "path"
        attrs = {**method.trial_attrs(params), "precision": precision}
        if path:
            attrs["path_targets"] = space.search.path_targets()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if not method.records_strengths:
            label = method.name
        else:
            label = {"path": "path mix", "budget": "budget"}.get(space.search.mode, "strengths")
        self.reporter.trial_started(trial.number, {k: float(v) for k, v in params.items()
                                                   if isinstance(v, (int, float))}, label=label, precision=precision)
        if path:
            from hwssl.search.path import run_path

            return self._record(trial, lambda: run_path(self, trial, params, attrs, artifact, measure))
        return self._record(trial, lambda: evaluate_method(space, method.name, params, **common))

    def _record(self, trial: optuna.Trial, run: Callable[[], dict[str, Any]]) -> list[float]:
        """Run one candidate; store its result and constraints, or its failure reason."""
        try:
            result = run()
            record = TrialRecord.from_dict(result)
            values = objective_values(record, self.opts.profiles)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            self.reporter.trial_failed(trial.number, exc)
            raise
        trial.set_user_attr("result", result)
        set_constraints(trial, record, self.opts.space)
        self.reporter.trial_finished(trial.number, record, values)
        return values


