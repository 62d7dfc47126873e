"""Creating, resuming and stopping a study: samplers, seeds, stop rule, queued sweeps."""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hwssl.methods import get_method
from hwssl.search.options import SearchError, SearchOptions, objective_names, study_metadata
from hwssl.storage import Heartbeat, open_storage, study_names


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {kind!r}; expected nsga2, tpe or random")


def resume_seed(study: optuna.Study, seed: int) -> int:
    """The sampler seed for this run of the study.

    A sampler re-created with the same seed replays the same random draws, so a resumed
    study (or a second worker) would propose the parameters of its first trials again. The
    seed therefore moves on with the number of trials already stored (a fresh study keeps
    ``seed``; reruns stay reproducible), and a worker joining a study that has running trials
    also mixes in its process id, since its peers saw the same count.
    """
    trials = study.get_trials(deepcopy=False)
    salt = len(trials)
    if any(t.state == TrialState.RUNNING for t in trials):
        salt += 7919 * os.getpid()
    return (seed + salt) % (2 ** 32)


def open_study(opts: SearchOptions) -> optuna.Study:
    """Create the study, or load it with ``resume``; a resumed study must have the same objectives."""
    storage = open_storage(opts.storage_url, create=True,
                           heartbeat=Heartbeat(opts.heartbeat_interval, opts.grace_period, opts.max_retry))
    names = objective_names(opts.profiles)
    seed = opts.space.seed if opts.seed is None else opts.seed
    kind = opts.sampler or opts.space.search.sampler
    sampler = make_sampler(kind, seed)  # an unknown sampler fails here, before a study is created
    existing = set(study_names(storage))
    if opts.name in existing and not opts.resume:
        raise SearchError(f"study {opts.name!r} already exists in {opts.storage_url}; add --resume to continue it "
                          f"or choose another --study name")
    study = optuna.create_study(storage=storage, study_name=opts.name, sampler=sampler, load_if_exists=True,
                                directions=["maximize"] + ["minimize"] * (len(names) - 1))
    moved_on = resume_seed(study, seed)
    if moved_on != seed:
        study.sampler = make_sampler(kind, moved_on)
    if opts.name in existing:
        stored = study.user_attrs.get("objectives")
        if stored is not None and stored != names:
            raise SearchError(f"study {opts.name!r} optimises {stored}, but this run asks for {names}; use the same "
                              f"profiles or another --study name")
        stored_method = study.user_attrs.get("method", "ssl")
        if stored_method != opts.method:
            raise SearchError(f"study {opts.name!r} searches method {stored_method!r}, but this run asks for "
                              f"{opts.method!r}; use --method {stored_method} or another --study name")
    else:
        for key, value in study_metadata(opts).items():
            study.set_user_attr(key, value)
    name_metrics(study, opts.profiles)
    return study


def metric_names(profiles: Sequence[Any]) -> list[str]:
    """The objectives' names as Optuna records them (``study.set_metric_names``): what
    optuna-dashboard and ``optuna.visualization`` label the axes with."""
    return ["val_accuracy", *objective_names(profiles)[1:]]


def name_metrics(study: optuna.Study, profiles: Sequence[Any]) -> None:
    """Name the objectives of a study that has no names yet (new, or created by an older hwssl)."""
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(profiles))


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


class StopRule:
    """Stop when the study holds ``target`` complete trials, or when this worker has seen
    ``max_failures`` failed trials (so a broken setup cannot loop forever)."""

    def __init__(self, target: int, max_failures: int) -> None:
        self.target = target
        self.max_failures = max_failures
        self.failures = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.failures += 1
        if len(complete_trials(study)) >= self.target or self.failures >= self.max_failures:
            study.stop()


def enqueue_ratios(study: optuna.Study, opts: SearchOptions) -> None:
    """Queue ``opts.ratios`` (a baseline's sweep) unless a trial already has that ratio."""
    if not get_method(opts.method).samples_ratios or not opts.ratios:
        return
    if opts.per_layer_ratios:
        raise SearchError("--ratios sweeps one ratio for every layer; drop --per-layer-ratios")
    seen = set()
    for t in study.get_trials(deepcopy=False):
        # a queued trial has no params yet: its ratio waits in the fixed params
        ratio = t.params.get("ratio", t.system_attrs.get("fixed_params", {}).get("ratio"))
        if ratio is not None and t.state != TrialState.FAIL:
            seen.add(round(float(ratio), 9))
    for r in opts.ratios:
        if not (opts.ratio_low <= r <= opts.ratio_high):
            raise SearchError(f"ratio {r} is outside the sampled range [{opts.ratio_low}, {opts.ratio_high}]")
        if round(float(r), 9) not in seen:
            study.enqueue_trial({"ratio": float(r)})
            seen.add(round(float(r), 9))


