"""Everything the report shows, computed from a study: no HTML and no plotting here.

One :class:`FrontView` per hardware profile (validation accuracy against TVM
latency), or a single one against MACs when the study timed no profile. The
recommended trial of a front is the best one under the study's constraints
(``study.user_attrs["constraints"]``), or the knee point when none is set.
"""

from __future__ import annotations

import math
import re
import shlex
import statistics
from typing import Any, Sequence

import optuna
import pandas as pd
from optuna.trial import TrialState

from hwssl.compare import dominance_bands, summarise
from hwssl.pareto import best_under, hypervolume_history, knee_index, pareto_indices
from hwssl.record import Latency, TrialRecord
from hwssl.report import fmt
from hwssl.report.views import (Candidate, ComparisonView, Deployment, FrontView, LayerLatency, LayerRow, Pick,
                                ProfileView, RankView, ReportData)
from hwssl.results import RecordedTrial, trial_records, trials_frame
from hwssl.storage import display_url

__all__ = ["collect", "export_command", "safe_dir_name", "MACS", "Candidate", "ComparisonView", "Deployment",
           "FrontView", "LayerLatency", "LayerRow", "Pick", "ProfileView", "RankView", "ReportData"]

MACS = "macs"


# -- helpers ----------------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _profile_views(study: optuna.Study, done: list[RecordedTrial]) -> list[ProfileView]:
    views = []
    for p in study.user_attrs.get("profiles", []):
        name = p["name"]
        flags = []
        finals = 0
        resolved = ""  # the target as TVM built it (e.g. mcpu = host resolved), from the timings
        for t in done:
            src = t.record.latency(name)
            if src is not None and src.tvm is not None:
                flags.append(bool(src.tuned))
                resolved = resolved or src.target
            finals += int(t.record.is_final(name))
        if flags:
            tuning = "tuned" if all(flags) else "untuned" if not any(flags) else "partly tuned"
        elif "tuned" in p:
            tuning = "tuned" if p["tuned"] else "untuned"
        else:
            tuning = "unknown"
        views.append(ProfileView(name=name, target=resolved or str(p.get("target", "")),
                                 path=str(p.get("path", "")), tuning=tuning, final_count=finals))
    return views


def _dense(done: list[RecordedTrial], profile: str | None) -> tuple[float | None, float | None, str, str]:
    """Dense baseline: validation accuracy, cost, a note on where the cost comes from, and its tuning.
    The cost is the median of the trials' dense latencies by the record's rule, taken over the trials
    re-timed on the profile when there are any (so the dense net is fully tuned like the front)."""
    records: list[TrialRecord] = [t.record for t in done]
    accs = [_num(r.dense.accuracy) for r in records]
    acc = next((a for a in accs if a is not None), None)
    if profile is None:
        macs = next((_num(r.flops_dense) for r in records if r.flops_dense is not None), None)
        return acc, macs, "dense network (MACs counted)", ""
    retimed = [r for r in records if r.is_final(profile)]
    sources: list[Latency | None] = [r.dense_latency(profile) for r in (retimed or records)]
    lats = [v for v in (_num(src.tvm) for src in sources if src is not None) if v is not None]
    if not lats:
        return acc, None, "no dense latency recorded on this profile", ""
    tuned = {bool(src.tuned) for src in sources if src is not None}
    kind = "tuned" if tuned == {True} else "untuned" if tuned == {False} else "partly tuned"
    note = f"dense network, median of {len(lats)} {kind} TVM timing{'s' if len(lats) != 1 else ''} recorded " \
           f"with the trials"
    return acc, statistics.median(lats), note, kind


def _constraints(study: optuna.Study) -> dict[str, Any]:
    c = study.user_attrs.get("constraints") or {}
    min_acc = _num(c.get("min_accuracy"))
    return {"min_accuracy": min_acc if min_acc and min_acc > 0 else None,
            "max_latency_ms": {k: float(v) for k, v in (c.get("max_latency_ms") or {}).items()}}


def _hypervolume(view: FrontView) -> None:
    if not view.trials:
        return
    what = "latency" if view.profile else "MACs"
    ref_acc = max(0.0, min(view.acc) - 0.01)
    if view.dense_cost is not None and any(c < view.dense_cost for c in view.cost):
        ref_cost = view.dense_cost
        cost_note = f"the dense baseline's {what} ({view.cost_text(ref_cost)}; slower trials add nothing)"
    else:
        ref_cost = 1.01 * max(view.cost)
        cost_note = (f"1 % above the worst observed {what} ({view.cost_text(ref_cost)}"
                     + ("; no trial is cheaper than the dense baseline)" if view.dense_cost is not None else ")"))
    box = (1.0 - ref_acc) * ref_cost
    raw = hypervolume_history(view.acc, view.cost, ref_acc, ref_cost)
    view.hv = [h / box if box > 0 else 0.0 for h in raw]
    view.hv_ref_acc, view.hv_ref_cost = ref_acc, ref_cost
    view.hv_ref_note = (f"Reference point: accuracy = 1 percentage point below the worst observed validation "
                        f"accuracy ({fmt.pct(ref_acc)}), cost = {cost_note}. Plotted as a fraction of the box "
                        f"between the reference point and the ideal point (100 % accuracy, zero cost).")
    gains = [k for k in range(len(raw)) if raw[k] > (raw[k - 1] if k else 0.0) + 1e-15]
    view.hv_last_gain = view.trials[gains[-1]] if gains else None


def _cost(record: TrialRecord, profile: str | None) -> float | None:
    """MACs, or the TVM latency on ``profile`` by the record's rule."""
    if profile is None:
        return _num(record.flops)
    lat = record.latency(profile)
    return _num(lat.tvm) if lat is not None else None


def _front_view(done: list[RecordedTrial], profile: ProfileView | None,
                constraints: dict[str, Any]) -> FrontView:
    trials, acc, acc_test, cost, int8 = [], [], [], [], []
    for t in done:
        rec = t.record
        c = _cost(rec, profile.name if profile else None)
        a = _num(rec.accuracy)
        if c is None or a is None:
            continue
        trials.append(t.number)
        acc.append(a)
        acc_test.append(_num(rec.accuracy_test))
        cost.append(c)
        int8.append(rec.precision == "int8")
    min_acc = constraints["min_accuracy"]
    max_cost = constraints["max_latency_ms"].get(profile.name) if profile else None
    front = [trials[i] for i in pareto_indices(acc, cost)]
    k = knee_index(acc, cost)
    knee = trials[k] if k is not None else None
    view = FrontView(key=profile.name if profile else MACS, profile=profile, trials=trials, acc=acc,
                     acc_test=acc_test, cost=cost, front=front, knee=knee, picks=[], recommended=None,
                     recommended_note="", constraints_met=False, min_accuracy=min_acc, max_cost=max_cost,
                     dense_acc=None, dense_cost=None, dense_note="", int8=int8)
    view.dense_acc, view.dense_cost, view.dense_note, dense_kind = _dense(done, profile.name if profile else None)
    if profile is not None and dense_kind and dense_kind != "tuned" and profile.tuning == "tuned":
        view.dense_warning = (f"on {profile.name} the candidates' timings are tuned but the dense baseline's are "
                              f"{dense_kind}: speed-ups over dense overstate the gain")

    def pick(**kw: Any) -> int | None:
        i = best_under(acc, cost, **kw)
        return trials[i] if i is not None else None

    cheapest = "fastest" if profile else "cheapest"
    if knee is not None:
        view.picks.append(Pick("knee point", knee))
    wanted = []
    if min_acc is not None:
        wanted.append(f"validation accuracy ≥ {fmt.pct(min_acc)}")
        view.picks.append(Pick(f"{cheapest} with val. acc. ≥ {fmt.pct(min_acc)}", pick(min_accuracy=min_acc)))
    if max_cost is not None:
        wanted.append(f"latency ≤ {fmt.ms(max_cost)}")
        view.picks.append(Pick(f"most accurate within {fmt.ms(max_cost)}", pick(max_cost=max_cost)))
    if min_acc is not None and max_cost is not None:
        view.picks.append(Pick(f"{cheapest} meeting both", pick(min_accuracy=min_acc, max_cost=max_cost)))
    if wanted:
        chosen = pick(min_accuracy=min_acc, max_cost=max_cost)
        if chosen is not None:
            view.recommended, view.constraints_met = chosen, True
            view.recommended_note = (f"best trial meeting the study's constraints ({' and '.join(wanted)}): "
                                     + (f"the {cheapest} one that meets them" if min_acc is not None
                                        else "the most accurate one within the budget"))
        else:
            view.recommended = knee
            view.recommended_note = (f"NO trial meets the study's constraints ({' and '.join(wanted)}); the knee "
                                     f"point is shown instead. Relax the constraints or search further.")
    else:
        view.recommended = knee
        view.recommended_note = ("no constraints configured for this study: the knee point (the Pareto-optimal "
                                 "trial closest to the ideal after scaling both axes to [0, 1]) is recommended")
    _hypervolume(view)
    return view


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(ra.corr(rb))


def _rank_view(done: list[RecordedTrial], profiles: list[ProfileView]) -> RankView | None:
    if len(profiles) < 2:
        return None
    names = [p.name for p in profiles]
    trials: list[int] = []
    lat: dict[str, list[float]] = {n: [] for n in names}
    for t in done:
        values = [_cost(t.record, n) for n in names]
        if any(v is None for v in values):
            continue
        trials.append(t.number)
        for n, v in zip(names, values):
            lat[n].append(v)
    if len(trials) < 2:
        return None
    rank = {n: [int(r) for r in pd.Series(lat[n]).rank(method="min")] for n in names}
    pairs = [(a, b, _spearman(lat[a], lat[b])) for i, a in enumerate(names) for b in names[i + 1:]]
    return RankView(profiles=names, trials=trials, latency=lat, rank=rank, spearman=pairs)


def _layer_rows(record: TrialRecord) -> list[LayerRow]:
    rows = []
    for name, kept in (record.extra.get("layers") or {}).items():
        dense = kept.get("dense", {})
        rows.append(LayerRow(name=name,
                             filters=(int(kept.get("filters", 0)), int(dense.get("filters", 0))),
                             channels=(int(kept.get("channels", 0)), int(dense.get("channels", 0))),
                             columns=(int(kept.get("columns", 0)), int(dense.get("columns", 0))),
                             lowered=bool(kept.get("lowered", False))))
    return rows


def _layer_latency(record: TrialRecord, profiles: list[ProfileView]) -> tuple[list[LayerLatency], list[str]]:
    found, missing = [], []
    for p in profiles:
        entries = next((src for src in (record.latency(p.name), record.cheap_latency(p.name))
                        if src is not None and src.per_layer), None)
        rows = []
        for item in entries.per_layer if entries is not None else []:
            value = _num(item.get("ms")) if isinstance(item, dict) else None
            if value is not None:
                rows.append((str(item.get("name", "?")), value))
        if not rows:
            missing.append(p.name)
            continue
        total = sum(v for _, v in rows)
        found.append(LayerLatency(profile=p.name, tuning="tuned" if entries.tuned else "untuned",
                                  rows=[(n, v, v / total if total > 0 else 0.0) for n, v in rows], total=total))
    return found, missing


def safe_dir_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def export_command(study_name: str, storage: str, trial: int, profile: str | None) -> str:
    """The exact ``hwssl export`` command line for one trial (shell-quoted)."""
    out = f"reports/{safe_dir_name(study_name)}/export-trial-{trial:04d}" + (f"-{profile}" if profile else "")
    parts = ["hwssl", "export", "--study", study_name, "--storage", storage, "--trial", str(trial)]
    if profile:
        parts += ["--profile", profile]
    parts += ["--out", out]
    return " ".join(shlex.quote(p) for p in parts)


def _failed(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        rows.append({"trial": t.number, "reason": t.user_attrs.get("fail_reason") or "no reason recorded "
                     "(worker killed? the heartbeat marks such trials failed and re-queues them)",
                     "traceback": t.user_attrs.get("fail_traceback"),
                     "duration_s": t.duration.total_seconds() if t.duration else None,
                     "strengths": t.user_attrs.get("strengths", {})})
    return rows


def _comparisons(study: optuna.Study, others: Sequence[optuna.Study],
                 profiles: list[ProfileView]) -> list[ComparisonView]:
    """One view per axis of ``study``: its trials and the other studies' on relative cost."""
    if not others:
        return []
    views = []
    for profile in profiles or [None]:
        name = profile.name if profile else None
        summaries, ref_acc = summarise([study, *others], name)
        keys = [f"{s.method}" if [x.method for x in summaries].count(s.method) == 1 else f"{s.method} ({s.study})"
                for s in summaries]
        fronts = {k: s.front for k, s in zip(keys, summaries) if s.front}
        views.append(ComparisonView(key=name or MACS, label=f"{name} ({profile.tuning})" if profile else "MACs",
                                    summaries=summaries, ref_acc=ref_acc,
                                    bands=dominance_bands(fronts) if fronts else []))
    return views


def collect(study: optuna.Study, storage_url: str, compare: Sequence[optuna.Study] = ()) -> ReportData:
    """Read ``study`` into a :class:`ReportData` (fronts, picks, hypervolume, candidates, failures), with
    the ``compare`` studies (baselines on the same space and profiles) overlaid in a comparison section."""
    all_trials = trial_records(study)
    done = [t for t in all_trials if t.complete]
    states = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED,
              "running": TrialState.RUNNING, "waiting": TrialState.WAITING}
    counts = {label: sum(1 for t in all_trials if t.state == state) for label, state in states.items()}
    frozen = [t.trial for t in all_trials]
    finished = [t for t in frozen if t.duration is not None]
    starts = [t.datetime_start for t in frozen if t.datetime_start]
    ends = [t.datetime_complete for t in frozen if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else None

    profiles = _profile_views(study, done)
    constraints = _constraints(study)
    fronts = ([_front_view(done, p, constraints) for p in profiles] if profiles
              else [_front_view(done, None, constraints)])
    frame = trials_frame(study)
    by_trial = {int(r["trial"]): r for r in frame.to_dict("records")} if not frame.empty else {}
    url = display_url(storage_url)

    chosen = sorted({n for f in fronts for n in f.front} | {f.recommended for f in fronts if f.recommended is not None})
    results = {t.number: t for t in done}
    candidates = []
    for n in chosen:
        t = results[n]
        rec = t.record
        lat, missing = _layer_latency(rec, profiles)
        candidates.append(Candidate(
            trial=n, fronts=[f.label for f in fronts if n in f.front],
            recommended_for=[f.label for f in fronts if f.recommended == n], row=by_trial.get(n, {}),
            strengths=dict(t.trial.user_attrs.get("strengths") or rec.extra.get("strengths") or {}),
            layers=_layer_rows(rec), blocks_removed=list(rec.extra.get("blocks_removed") or []), latency=lat,
            latency_missing=missing, saved_to=rec.extra.get("saved_to"),
            final=[p.name for p in profiles if rec.is_final(p.name)],
            float_ops=[str(op) for op in rec.extra.get("float_ops") or []],
            int8_measured=rec.int8 is not None and rec.int8.accuracy is not None))
    strength_keys = sorted({k for t in done for k in (t.trial.user_attrs.get("strengths") or {})})
    pareto_rows = [c.row | {"fronts": c.fronts, "strengths": c.strengths, "final": c.final}
                   for c in candidates if c.fronts]
    deployments = [Deployment(front=f, command=export_command(study.study_name, url, f.recommended,
                                                              f.profile.name if f.profile else None))
                   for f in fronts if f.recommended is not None]
    first = done[0].record.extra if done else {}
    return ReportData(
        study_name=study.study_name, storage=url, meta=dict(study.user_attrs), profiles=profiles, counts=counts,
        compute_s=sum(t.duration.total_seconds() for t in finished) if finished else None, span_s=span,
        split_note=str(first.get("split", "")), frame=frame, fronts=fronts, ranks=_rank_view(done, profiles),
        candidates=candidates, pareto_rows=pareto_rows, strength_keys=strength_keys, failed=_failed(study),
        deployments=deployments, constraints=constraints, comparisons=_comparisons(study, compare, profiles))
