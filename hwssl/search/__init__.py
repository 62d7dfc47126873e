"""The search: an Optuna multi-objective study over per-group SSL strengths.

Objectives: validation accuracy (maximise) and TVM latency on each timed
profile (minimise); with no profile, MACs stand in for latency. Every trial
stores the full result of :func:`hwssl.evaluate.evaluate_candidate` as the
user attribute ``result`` (test accuracy is recorded for the report, never
optimised). Storage is any Optuna URL: SQLite by default, PostgreSQL for many
machines, ``journal:PATH`` for a journal file. Heartbeats fail the RUNNING
trial of a killed worker and re-queue it (retry), so no finished trial is
ever lost and no interrupted trial silently disappears.

With ``method`` other than ``ssl`` (see :mod:`hwssl.methods`) a trial samples
a pruning ratio (one for all filter sites, or one per site) instead of
strengths, and runs that baseline through the same harness; the study records
``method`` and each trial's ``result["method"]`` / ``result["method_params"]``.
"""

from __future__ import annotations

import logging

import optuna

from hwssl.methods import get_method
from hwssl.search.objective import Objective
from hwssl.search.values import constraint_values, objective_values, sample_precision, set_constraints
from hwssl.search.options import (OBJECTIVE_ACCURACY, SearchError, SearchOptions, check_method,
                                  check_profiles_timable, objective_names, study_metadata)
from hwssl.search.reporter import Reporter
from hwssl.search.study import StopRule, complete_trials, enqueue_ratios, make_sampler, open_study, resume_seed

__all__ = ["OBJECTIVE_ACCURACY", "Objective", "Reporter", "SearchError", "SearchOptions", "StopRule",
           "check_method", "check_profiles_timable", "complete_trials", "enqueue_ratios", "make_sampler",
           "objective_names", "objective_values", "open_study", "resume_seed", "run_search", "sample_precision",
           "set_constraints", "study_metadata"]


class _InterruptWithoutTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C as failed, with the KeyboardInterrupt's traceback;
    the one-line 'interrupted' message of the CLI says all a user needs, so drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


_OPTUNA_TRIAL_LOGGER = logging.getLogger("optuna.study._optimize")
_INTERRUPT_FILTER = _InterruptWithoutTraceback()


def run_search(opts: SearchOptions) -> optuna.Study:
    """Run trials until the study holds ``opts.trials`` complete ones (across all workers and resumes)."""
    check_profiles_timable(opts.profiles)
    check_method(opts)
    if opts.method == "ssl":
        from hwssl.budget.cost import OracleError, check_oracle

        try:
            check_oracle(opts.space, opts.profiles)
        except OracleError as exc:
            raise SearchError(str(exc)) from None
    study = open_study(opts)
    target = opts.trials or opts.space.search.trials
    if get_method(opts.method).single_point:
        target = 1  # one point: every dense trial would evaluate the same model
    enqueue_ratios(study, opts)
    done = len(complete_trials(study))
    reporter = Reporter(target, done, opts.quiet)
    reporter.say(f"study {opts.name!r} in {opts.storage_url}: {done}/{target} complete trials; objectives "
                 f"{objective_names(opts.profiles)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _OPTUNA_TRIAL_LOGGER.addFilter(_INTERRUPT_FILTER)  # idempotent
    try:
        if done < target:
            study.optimize(Objective(opts, reporter), catch=(Exception,), gc_after_trial=True,
                           callbacks=[StopRule(target, max_failures=max(3, target))])
    finally:
        reporter.close()
    return study
