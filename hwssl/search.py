"""The search: an Optuna multi-objective study over per-group SSL strengths.

Objectives: validation accuracy (maximise) and TVM latency on each timed
profile (minimise); with no profile, MACs stand in for latency. Every trial
stores the full result of :func:`hwssl.evaluate.evaluate_candidate` as the
user attribute ``result`` (test accuracy is recorded for the report, never
optimised). Storage is any Optuna URL: SQLite by default, PostgreSQL for many
machines, ``journal:PATH`` for a journal file. Heartbeats fail the RUNNING
trial of a killed worker and re-queue it (retry), so no finished trial is
ever lost and no interrupted trial silently disappears.

With ``method`` other than ``ssl`` (see :mod:`hwssl.baselines`) a trial samples
a pruning ratio (one for all filter sites, or one per site) instead of
strengths, and runs that baseline through the same harness; the study records
``method`` and each trial's ``result["method"]`` / ``result["method_params"]``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hwssl.config.space import SearchSpace

DEFAULT_STORAGE_FILE = "hwssl.db"
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
    extra: dict[str, Any] = field(default_factory=dict)
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
        if self.storage:
            return self.storage
        return f"sqlite:///{Path(DEFAULT_STORAGE_FILE).resolve()}"


def objective_names(profiles: Sequence[Any]) -> list[str]:
    if not profiles:
        return [OBJECTIVE_ACCURACY, "macs"]
    return [OBJECTIVE_ACCURACY] + [f"latency_ms:{p.name}" for p in profiles]


def make_storage(url: str, opts: SearchOptions) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    # Workers started together race to create the schema; the loser sees an IntegrityError
    # and simply connects again to the now-initialised database.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                      max_retry=opts.max_retry), **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {kind!r}; expected nsga2, tpe or random")


def study_metadata(opts: SearchOptions) -> dict[str, Any]:
    return {
        "space_path": str(Path(opts.space.path).resolve()), "space_name": opts.space.name,
        "overrides": list(opts.overrides), "data_config": dataclasses.asdict(opts.space.data), "space_description": opts.space.description,
        "model": opts.space.model.name, "model_width": opts.space.model.width, "data": opts.space.data.name,
        "objectives": objective_names(opts.profiles),
        "profiles": [{"name": p.name, "path": str(Path(getattr(p, "path", "")).resolve()), "target": str(getattr(p, "target", "")),
                      "tuned": opts.tune} for p in opts.profiles],
        "constraints": {"min_accuracy": opts.space.search.min_accuracy,
                        "max_latency_ms": dict(opts.space.search.max_latency_ms)},
        "strength_ranges": {k: dataclasses.asdict(v) for k, v in opts.space.search.strengths.items()},
        "search_mode": opts.space.search.mode,
        "budget_ranges": None if opts.space.search.mode != "budget" else {
            "target": dataclasses.asdict(opts.space.search.budget_target),
            "mix": {k: dataclasses.asdict(v) for k, v in opts.space.search.budget_mix.items()}},
        "artifacts": str(Path(opts.artifacts).resolve()),
        "method": opts.method, "method_params": dict(opts.method_params),
        "precision": list(opts.space.search.precision), "quant": dataclasses.asdict(opts.space.quant),
        "ratio_range": None if opts.method in ("ssl", "dense") else
        {"low": opts.ratio_low, "high": opts.ratio_high, "per_layer": opts.per_layer_ratios},
    }


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
    storage = make_storage(opts.storage_url, opts)
    names = objective_names(opts.profiles)
    seed = opts.space.seed if opts.seed is None else opts.seed
    kind = opts.sampler or opts.space.search.sampler
    sampler = make_sampler(kind, seed)  # an unknown sampler fails here, before a study is created
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
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
    return study


def sample_strengths(trial: optuna.Trial, space: SearchSpace) -> dict[str, float]:
    """One strength per searched key (log-uniform by default); a key with a
    ``zero_probability`` is first switched on or off by a categorical choice."""
    return _sample_ranges(trial, space.search.strengths, dict(space.strengths))


def sample_budget(trial: optuna.Trial, space: SearchSpace) -> tuple[SearchSpace, dict[str, float]]:
    """``search.mode = "budget"``: a cost target (``ssl.target`` of the trial's space) and a mix of
    strengths (the relative strengths budget-targeted SSL scales)."""
    rng = space.search.budget_target
    target = trial.suggest_float("target", rng.low, rng.high, log=rng.log)
    mix = _sample_ranges(trial, space.search.budget_mix, {})
    return dataclasses.replace(space, ssl=dataclasses.replace(space.ssl, target=target)), mix


def _sample_ranges(trial: optuna.Trial, ranges: dict[str, Any], strengths: dict[str, float]) -> dict[str, float]:
    for key, rng in ranges.items():
        if rng.zero_probability > 0:
            # a categorical whose choices encode the probability keeps the sampler's prior honest
            n_off = max(1, round(10 * rng.zero_probability))
            choices = ["off"] * n_off + ["on"] * max(1, 10 - n_off)
            labels = [f"{c}{i}" for i, c in enumerate(choices)]
            if trial.suggest_categorical(f"{key}:switch", labels).startswith("off"):
                strengths[key] = 0.0
                continue
        strengths[key] = trial.suggest_float(key, rng.low, rng.high, log=rng.log)
    return strengths


def sample_precision(trial: optuna.Trial, space: SearchSpace) -> str:
    """The precision the candidate deploys as: a searched dimension when the space lists several."""
    choices = list(space.search.precision)
    return choices[0] if len(choices) == 1 else str(trial.suggest_categorical("precision", choices))


def objective_values(result: dict[str, Any], profiles: Sequence[Any]) -> list[float]:
    values = [float(result["accuracy"])]
    if not profiles:
        return values + [float(result["flops"])]
    for p in profiles:
        latency = result["latency_ms"][p.name]
        if latency.get("tvm") is None:
            raise RuntimeError(f"profile {p.name}: no latency ({latency.get('skipped', 'unknown reason')})")
        values.append(float(latency["tvm"]))
    return values


def constraint_values(result: dict[str, Any], space: SearchSpace) -> dict[str, float]:
    c = space.search
    out = {}
    if c.min_accuracy > 0:
        out["min_accuracy"] = c.min_accuracy - result["accuracy"]
    for profile, limit in c.max_latency_ms.items():
        latency = result.get("latency_ms", {}).get(profile, {}).get("tvm")
        if latency is not None:
            out[f"max_latency_ms:{profile}"] = latency - limit
    return out


def set_constraints(trial: optuna.Trial, result: dict[str, Any], space: SearchSpace) -> None:
    for key, value in constraint_values(result, space).items():
        trial.set_constraint(key, value)


class Objective:
    """Callable given to ``study.optimize``; records failures with their reason."""

    def __init__(self, opts: SearchOptions, reporter: "Reporter") -> None:
        self.opts = opts
        self.reporter = reporter

    def __call__(self, trial: optuna.Trial) -> list[float]:
        opts, space = self.opts, self.opts.space
        artifact = Path(opts.artifacts).resolve() / opts.name / f"trial-{trial.number:04d}"
        precision = sample_precision(trial, space)
        common = dict(profiles=opts.profiles, tune=opts.tune, trials_per_task=opts.trials_per_task,
                      save_dir=artifact, progress=self.reporter.phase, precision=precision)
        if opts.method == "ssl" and space.search.mode == "path":
            return self._path(trial, space, artifact, precision, common)
        if opts.method == "ssl":
            from hwssl.evaluate import evaluate_candidate

            if space.search.mode == "budget":
                space, strengths = sample_budget(trial, space)
                trial.set_user_attr("target", space.ssl.target)
            else:
                strengths = sample_strengths(trial, space)
            trial.set_user_attr("strengths", strengths)
            trial.set_user_attr("precision", precision)
            shown = strengths if space.search.mode != "budget" else {"target": space.ssl.target, **strengths}
            self.reporter.trial_started(trial.number, shown, precision=precision)
            return self._record(trial, lambda: evaluate_candidate(space, strengths, **common))

        # a baseline trial samples pruning ratio(s) instead of strengths (see hwssl.baselines)
        from hwssl.baselines import RatioRange, evaluate_method, sample_method_params, site_names

        ratio_range = RatioRange(opts.ratio_low, opts.ratio_high, opts.per_layer_ratios)
        names = site_names(space) if opts.per_layer_ratios else ()
        params = sample_method_params(trial, space, opts.method, ratio_range, opts.method_params, names)
        trial.set_user_attr("method", opts.method)
        trial.set_user_attr("method_params", params)
        trial.set_user_attr("precision", precision)
        self.reporter.trial_started(trial.number, {k: float(v) for k, v in params.items()
                                                   if isinstance(v, (int, float))}, label=opts.method,
                                    precision=precision)
        return self._record(trial, lambda: evaluate_method(space, opts.method, params, **common))

    def _path(self, trial: optuna.Trial, space: SearchSpace, artifact: Path, precision: str,
              common: dict[str, Any]) -> list[float]:
        """``search.mode = "path"``: one SSL run at a sampled mix with snapshots at the space's
        targets; the first snapshot is this trial, every further one is added to the study as a
        trial of its own (same parameters, ``path_of`` = this trial's number)."""
        from hwssl.budget import evaluate_path, ssl_path
        from hwssl.evaluate import compaction_round, prepare

        opts = self.opts
        mix = _sample_ranges(trial, space.search.budget_mix, {})
        targets = space.search.path_targets()
        attrs = {"strengths": mix, "precision": precision, "path_targets": targets}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.reporter.trial_started(trial.number, mix, label="path mix", precision=precision)

        def run() -> dict[str, Any]:
            start = prepare(space, self.reporter.phase)
            path = ssl_path(start, targets, mix, channel_round=compaction_round(space, opts.profiles),
                            progress=self.reporter.phase)
            results = evaluate_path(start, path, save_root=artifact, **{k: v for k, v in common.items()
                                                                        if k != "save_dir"})
            if not results:
                raise RuntimeError(f"the SSL run met none of the targets {targets} "
                                   f"(reached {path.controller.record()['final_ratio']:.3g} of the dense cost)")
            for result in results[1:]:
                trial.study.add_trial(optuna.trial.create_trial(
                    values=objective_values(result, opts.profiles), params=trial.params,
                    distributions=trial.distributions, constraints=constraint_values(result, space),
                    user_attrs=dict(attrs, result=result, target=result["target"], path_of=trial.number)))
            trial.set_user_attr("target", results[0]["target"])
            return results[0]

        return self._record(trial, run)

    def _record(self, trial: optuna.Trial, run: Callable[[], dict[str, Any]]) -> list[float]:
        """Run one candidate; store its result and constraints, or its failure reason."""
        try:
            result = run()
            values = objective_values(result, self.opts.profiles)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            self.reporter.trial_failed(trial.number, exc)
            raise
        trial.set_user_attr("result", result)
        set_constraints(trial, result, self.opts.space)
        self.reporter.trial_finished(trial.number, result, values)
        return values


class Reporter:
    """Progress bars (study + current trial) with ETA and one line per finished trial."""

    def __init__(self, target: int, done: int, quiet: bool = False) -> None:
        from tqdm import tqdm
        self.quiet = quiet
        enabled = not quiet and sys.stderr.isatty()
        self._tqdm = tqdm
        self.study_bar = tqdm(total=target, initial=done, desc="study", unit="trial", position=0,
                              disable=not enabled, dynamic_ncols=True)
        self.trial_bar = None
        self.enabled = enabled
        self._phase = None

    def say(self, line: str) -> None:
        if not self.quiet:
            self._tqdm.write(line, file=sys.stderr)

    def trial_started(self, number: int, strengths: dict[str, float], label: str = "strengths",
                      precision: str = "fp32") -> None:
        tag = "" if precision == "fp32" else f" [{precision}]"
        self.say(f"[trial {number}]{tag} {label} " + ", ".join(f"{k}={v:.3g}" for k, v in strengths.items()))

    def phase(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        if self._phase != phase or self.trial_bar is None:
            if self.trial_bar is not None:
                self.trial_bar.close()
            self.trial_bar = self._tqdm(total=total, desc=f"  {phase}", unit="step", position=1, leave=False,
                                        dynamic_ncols=True)
            self._phase = phase
        self.trial_bar.n = step
        self.trial_bar.refresh()

    def _end_trial(self) -> None:
        if self.trial_bar is not None:
            self.trial_bar.close()
            self.trial_bar = None
            self._phase = None

    def trial_finished(self, number: int, result: dict[str, Any], values: list[float]) -> None:
        self._end_trial()
        self.study_bar.update(1)
        lat = " ".join(f"{p}={v.get('tvm'):.3f}ms" for p, v in result.get("latency_ms", {}).items()
                       if v.get("tvm") is not None)
        tag = "" if result.get("precision", "fp32") == "fp32" else (
            f" [{result['precision']}, {'integer-only' if result.get('integer_only') else 'NOT integer-only'}]")
        self.say(f"[trial {number}]{tag} done in {result['wall_s']['total']:.0f}s: val acc {result['accuracy']:.4f} "
                 f"(dense {result['accuracy_dense']:.4f}), MACs {result['flops_ratio']:.2f}x fewer"
                 f"{', blocks removed ' + str(len(result['blocks_removed'])) if result['blocks_removed'] else ''}"
                 f"{', ' + lat if lat else ''}")

    def trial_failed(self, number: int, exc: BaseException) -> None:
        self._end_trial()
        self.say(f"[trial {number}] FAILED: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._end_trial()
        self.study_bar.close()


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def check_profiles_timable(profiles: Sequence[Any]) -> None:
    if not profiles:
        return
    from hwssl.config.profile import profile_availability
    for p in profiles:
        ok, reason = profile_availability(p)
        if not ok:
            raise SearchError(f"profile {getattr(p, 'path', p.name)} cannot be timed from this machine: {reason}. "
                              f"Search on a profile that can (see `hwssl profiles`).")


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


def check_method(opts: SearchOptions) -> None:
    """Reject an unknown method, bad fixed parameters, or an int8 search without a cost that int8
    changes, before any trial runs."""
    if "int8" in opts.space.search.precision and not opts.profiles:
        raise SearchError(f"{opts.space.path}: search.precision includes int8, but no --profile is given: int8 "
                          "changes latency, not MACs, so the front would only lose accuracy; add --profile FILE "
                          "or set search.precision = [\"fp32\"]")
    if opts.method == "ssl":
        return
    from hwssl.baselines import MethodError, check_params
    if not (0.0 <= opts.ratio_low <= opts.ratio_high < 1.0):
        raise SearchError(f"ratio range [{opts.ratio_low}, {opts.ratio_high}] must satisfy 0 <= low <= high < 1")
    try:
        check_params(opts.method, opts.method_params)
    except MethodError as exc:
        raise SearchError(str(exc)) from exc


def enqueue_ratios(study: optuna.Study, opts: SearchOptions) -> None:
    """Queue ``opts.ratios`` (a baseline's sweep) unless a trial already has that ratio."""
    if opts.method in ("ssl", "dense") or not opts.ratios:
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


def run_search(opts: SearchOptions) -> optuna.Study:
    """Run trials until the study holds ``opts.trials`` complete ones (across all workers and resumes)."""
    check_profiles_timable(opts.profiles)
    check_method(opts)
    study = open_study(opts)
    target = opts.trials or opts.space.search.trials
    if opts.method == "dense":
        target = 1  # one point: every dense trial would evaluate the same model
    enqueue_ratios(study, opts)
    done = len(complete_trials(study))
    reporter = Reporter(target, done, opts.quiet)
    reporter.say(f"study {opts.name!r} in {opts.storage_url}: {done}/{target} complete trials; objectives "
                 f"{objective_names(opts.profiles)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if done < target:
            study.optimize(Objective(opts, reporter), catch=(Exception,), gc_after_trial=True,
                           callbacks=[StopRule(target, max_failures=max(3, target))])
    finally:
        reporter.close()
    return study
