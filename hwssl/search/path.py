"""``search.mode = "path"``: one SSL run per trial, several candidates (a regularisation path).

The trial samples a strength mix; one budget-targeted SSL run takes snapshots at the space's
``path_targets`` (fractions of the dense net's predicted cost, loosest first). Each snapshot is
compacted, recovered and measured (:func:`hwssl.budget.evaluate_path`). The first snapshot is the
trial itself; every further one is added to the study as a complete trial of its own (same
parameters; user attribute ``path_of`` = the running trial's number; its result written through
:class:`hwssl.record.TrialRecord`), so it appears in the fronts, the report and ``hwssl export``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from hwssl.record import TrialRecord
from hwssl.search.values import constraint_values, objective_values


def run_path(objective: Any, trial: optuna.Trial, mix: dict[str, float], attrs: dict[str, Any], artifact: Path,
             measure: Any) -> dict[str, Any]:
    """Run the path of one trial; add the snapshots after the first as trials; return the first's result."""
    from hwssl.budget import evaluate_path, ssl_path
    from hwssl.budget.cost import start_oracle
    from hwssl.evaluate import compaction_round, prepare, sparsify_halving

    opts, space, reporter = objective.opts, objective.opts.space, objective.reporter
    targets = space.search.path_targets()
    start = prepare(space, reporter.phase).for_profiles(opts.profiles, measure)
    cost = start_oracle(start)
    retried = sparsify_halving(lambda s: ssl_path(s, targets, mix, predict=cost.predict, weigh=cost.weigh,
                                                  channel_round=compaction_round(space, opts.profiles),
                                                  progress=reporter.phase), start)
    path = retried.result
    retried.note(path.phase, "sparsify_diverged")
    results = evaluate_path(start, path, profiles=opts.profiles, units=cost.units if cost.units == "ms" else "",
                            save_root=artifact, measure=measure, progress=reporter.phase)
    if not results:
        raise RuntimeError(f"the SSL run met none of the targets {targets} "
                           f"(reached {path.controller.record()['final_ratio']:.3g} of the dense cost)")
    for result in results:
        result.update({k: v for k, v in cost.record(result).items() if k not in result})
    for result in results[1:]:
        record = TrialRecord.from_dict(result)
        stored = record.to_dict()
        values = objective_values(record, opts.profiles)
        trial.study.add_trial(optuna.trial.create_trial(
            values=values, params=trial.params, distributions=trial.distributions,
            constraints=constraint_values(record, space) or None,
            user_attrs=dict(attrs, result=stored, target=stored["target"], path_of=trial.number)))
        reporter.snapshot_added(trial.number, record, values)
    trial.set_user_attr("target", results[0]["target"])
    return results[0]
