"""Multi-fidelity latency: re-time the Pareto candidates with the full tuning budget.

During a search every trial gets a cheap latency (tuning database reuse plus a
small budget for new workloads). At the end (``hwssl search``) or on demand
(``hwssl retime``), each Pareto-optimal trial of each profile -- and the dense
baseline, so speed-ups compare tuned with tuned -- is compiled again with the
profile's ``full_trials_per_task`` and re-timed. Results are stored as study
user attributes (finished trials cannot be updated) and merged back into each
trial's record by :func:`hwssl.results.trial_records`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch

from hwssl.compact import arch_key, load_compacted
from hwssl.models import build_model
from hwssl.record import INT8_TORCH_NOTE, Latency, TrialRecord
from hwssl.results import pareto_rows, store_final, trial_records, trials_frame


def _candidate_model(record: TrialRecord) -> torch.nn.Module:
    """The trial's compacted model: saved weights when present, else its spec (weights do not
    change latency)."""
    saved = record.extra.get("saved_to")
    if saved and (Path(saved) / "weights.pt").exists():
        return load_compacted(saved)
    return build_model(record.extra["arch"]).eval()


def _dense_model(study: optuna.Study) -> torch.nn.Module:
    from hwssl.data import dataset_info
    from hwssl.models import model_spec

    attrs = study.user_attrs
    if attrs.get("dense_spec"):
        return build_model(attrs["dense_spec"]).eval()
    info = dataset_info(attrs["data"])
    width = attrs.get("model_width", 1.0)
    return build_model(model_spec(attrs["model"], info.in_channels, info.image_size, info.num_classes,
                                  width)).eval()


def _int8_latency(study: optuna.Study, model: torch.nn.Module, record: TrialRecord, profile: Any,
                  budget: int) -> dict[str, Any]:
    """Full-budget timing of an int8 trial's integer network. Its kernels depend on the architecture
    only (calibration changes constants, not shapes), so random calibration images time the same
    network without loading the data set again."""
    from hwssl.quant import quantize_model
    from hwssl.quant.candidate import measure_int8

    arch = record.extra["arch"]
    images = torch.randn(64, *arch["input"], generator=torch.Generator().manual_seed(0))
    qnet = quantize_model(model, images, calibration=study.user_attrs.get("quant", {}).get("calibration", "max"))
    latency = measure_int8(qnet, profile.example_input(images), profile, arch_key=record.extra["arch_key"], tune=True,
                           trials_per_task=budget)
    fp32 = record.fp32.timings.get(profile.name)
    latency["torch"] = fp32.cheap.torch if fp32 is not None and fp32.cheap is not None else None
    latency["torch_note"] = INT8_TORCH_NOTE
    return latency


def timed_in(latency: Latency) -> str | None:
    """The tuning database a final re-timing was tuned in (``database``; older records name it
    through their latency model's file, which lives beside the database)."""
    if latency.extra.get("database"):
        return str(latency.extra["database"])
    model_file = (latency.extra.get("latency_model") or {}).get("file")
    return str(Path(model_file).parent) if model_file else None


def _needs_retiming(record: TrialRecord, profile: Any, budget: int) -> bool:
    """True unless the trial already has a final re-timing on ``profile`` at this budget, tuned in
    the profile's database (``bench/compare.py`` re-times every method in one shared database) and,
    for fp32, the fastest of the profile's ``timing.final_timings`` timings."""
    if not record.is_final(profile.name):
        return True
    final = record.latency(profile.name)
    if final is None or final.extra.get("trials_per_task") != budget:
        return True
    if record.precision != "int8" and final.extra.get("final_timings", 1) < profile.timing.final_timings:
        return True
    database = timed_in(final)
    return database is not None and database != str(profile.database_dir())


Measure = Callable[[], dict[str, Any]]


def fastest(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of separate timings of one network, with every timing's median in
    ``tvm_timings_ms``; the prediction kept is the first one, made before any of them reached the
    latency model."""
    timed = [r for r in runs if r.get("tvm")]
    best = dict(min(timed, key=lambda r: r["tvm"]) if timed else runs[-1])
    for key in ("predicted_ms", "latency_model"):
        if key in runs[0]:
            best[key] = runs[0][key]
    return dict(best, final_timings=len(runs), tvm_timings_ms=[r.get("tvm") for r in runs])


def timed_in_passes(measures: dict[Any, Measure], times: int) -> dict[Any, dict[str, Any]]:
    """Each network timed ``times`` times (each ``measure()`` times it afresh; the first also tunes
    it), in passes over all of them, and its fastest timing kept (:func:`fastest`).

    Why: on the shared 2-core machine a 2-thread net's time has slow spells that last seconds. Eight
    timings of LeNet's tuned dense build interleaved with a 4/8-filter net gave 0.047 and
    0.062-0.066 ms while the small net (1 thread) held 0.0097-0.0101 ms; 15 timings of ResNet-20's
    dense build ranged 0.61-1.10 ms, three back-to-back ones often all in one spell. One timing
    divides every speed-up by whichever spell it caught; passes spread a network's timings over
    the whole re-timing, and the fastest is the one least disturbed."""
    runs: dict[Any, list[dict[str, Any]]] = {key: [] for key in measures}
    for _ in range(max(1, times)):
        for key, measure in measures.items():
            runs[key].append(measure())
    return {key: fastest(r) for key, r in runs.items()}


def _final_timing(model: torch.nn.Module, spec: dict[str, Any], key: str, profile: Any, budget: int) -> Measure:
    """One full-budget timing of ``model``, afresh (a cached record can be one taken in a slow spell),
    with the per-kernel breakdown (report: where the time goes) and the model's prediction."""
    from hwssl.latency.record import measure_with_model

    example = torch.zeros(profile.batch, *spec["input"])
    return lambda: measure_with_model(model, example, profile, spec=spec, arch_key=key, tune=True,
                                      trials_per_task=budget, per_layer=True, source="final", reuse_timings=False)


def _front_to_retime(study: optuna.Study, profile: Any, budget: int, retimed: Sequence[int] = (),
                     accuracies: Sequence[str] = ("accuracy",), again: bool = False) -> tuple[list[int], list[int]]:
    """The trials to hold at full fidelity -- the profile's current Pareto set (the union of the
    fronts on each of ``accuracies``) and the Pareto set against MACs -- and those of them that
    still carry a cheap (or other-budget) timing; a trial re-timed in this call (``retimed``) is
    never re-timed again, so the loop ends. ``again``: members with a final timing are re-timed too.

    Why MACs too: a cheap timing can hide a fast network behind tuning luck, and a trial dominated
    by cheap timings is never re-timed, so it could not show that. LeNet's 4/4-filter net timed
    0.0184 ms with 4 MetaSchedule trials per kernel and stayed off a front whose nearest final
    point ran in 0.0112 ms; fully tuned it ran in 0.0090 ms. MACs carry no tuning luck, so the
    networks that are Pareto-optimal against them are re-timed as well (a few more per front)."""
    trials = trial_records(study)   # read once for every front below
    records = {t.number: t.record for t in trials if t.record is not None}
    frame = trials_frame(study, trials)
    numbers: list[int] = []
    for accuracy in accuracies:
        for cost in (profile.name, None):   # None: against MACs
            front = pareto_rows(frame, cost, accuracy)
            numbers += [] if front.empty else [int(n) for n in front["trial"] if int(n) not in numbers]
    return numbers, [n for n in numbers
                     if n not in retimed and (again or _needs_retiming(records[n], profile, budget))]


def retime_pareto(study: optuna.Study, profiles: Sequence[Any], *, trials_per_task: int | None = None,
                  say: Callable[[str], None] = print, accuracies: Sequence[str] = ("accuracy",),
                  again: bool = False) -> dict[str, list[int]]:
    """Fully tune and re-time each profile's Pareto-optimal trials (against latency and against MACs,
    see :func:`_front_to_retime`) and the dense net, until the front holds final timings only.

    Re-timing changes latencies, so a trial that was dominated by cheap timings can join the front
    once its neighbours are re-timed: the front is recomputed after each round and its new members
    are re-timed too, until the Pareto set no longer changes. A front, and the speed-ups computed on
    it, then never mix the cheap and the full fidelity. ``accuracies``: the fronts kept at one fidelity
    (``("accuracy", "accuracy_test")`` for a comparison scored on test accuracy too). ``again``:
    trials that already hold a final timing are timed afresh too, so that every network of the
    front is timed in the same minutes as the dense net (this machine's speed drifts over hours:
    LeNet's 4/4-filter net re-timed at 0.0071 ms one evening and 0.0090 ms the next morning, the
    same build). Returns {profile: [trial numbers re-timed]}."""
    done: dict[str, list[int]] = {}
    dense = None
    for profile in profiles:
        budget = trials_per_task or profile.tuning.full_trials_per_task
        front, pending = _front_to_retime(study, profile, budget, accuracies=accuracies, again=again)
        if not front:
            continue
        if dense is None:
            dense = _dense_model(study)
        measures: dict[int | None, Measure] = {None: _final_timing(dense, dense.spec, arch_key(dense.spec),
                                                                   profile, budget)}
        say(f"[retime] {profile.name}: dense baseline with {budget} trials per task")
        database = str(profile.database_dir())  # recorded with each final timing (see _needs_retiming)
        retimed: list[int] = []
        rounds = 0
        while pending or None in measures:
            rounds += 1
            if rounds > 1:
                say(f"[retime] {profile.name}: round {rounds}: trials {pending} joined the front after re-timing")
            records = {t.number: t.record for t in trial_records(study) if t.record is not None}
            for number in pending:
                record = records[number]
                int8 = record.precision == "int8"
                say(f"[retime] {profile.name}: trial {number}{' (int8)' if int8 else ''} with {budget} trials per task")
                if int8:
                    latency = _int8_latency(study, _candidate_model(record), record, profile, budget)
                    store_final(study, number, profile.name, dict(latency, database=database))
                else:
                    measures[number] = _final_timing(_candidate_model(record), record.extra["arch"],
                                                     record.extra["arch_key"], profile, budget)
            for number, latency in timed_in_passes(measures, profile.timing.final_timings).items():
                store_final(study, number, profile.name, dict(latency, database=database))
            retimed += pending
            measures = {}
            front, pending = _front_to_retime(study, profile, budget, retimed, accuracies, again)
        done[profile.name] = retimed
    return done
