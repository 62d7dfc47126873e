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
from dataclasses import dataclass, field
from typing import Any, Sequence

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hwssl.compare import REF_COST, MethodSummary, dominance_bands, summarise
from hwssl.pareto import best_under, hypervolume_history, knee_index, pareto_indices
from hwssl.report import fmt
from hwssl.storage import display_url
from hwssl.results import study_trials, trial_latency, trials_frame

MACS = "macs"


@dataclass
class ProfileView:
    """A hardware profile as the study recorded it, plus whether its latencies are tuned."""

    name: str
    target: str
    path: str
    tuning: str            # "tuned" | "untuned" | "partly tuned" | "unknown"
    final_count: int = 0   # trials re-timed with the full tuning budget (latency_ms_final)

    @property
    def untuned(self) -> bool:
        return self.tuning != "tuned"


@dataclass
class Pick:
    label: str
    trial: int | None


@dataclass
class FrontView:
    """Accuracy/cost trade-off on one profile (or on MACs)."""

    key: str                      # profile name, or "macs"
    profile: ProfileView | None
    trials: list[int]             # complete trials with a cost, in trial order
    acc: list[float]              # validation accuracy
    acc_test: list[float | None]
    cost: list[float]             # ms (TVM) or MACs
    front: list[int]              # Pareto-optimal trial numbers, by cost
    knee: int | None
    picks: list[Pick]
    recommended: int | None
    recommended_note: str
    constraints_met: bool
    min_accuracy: float | None
    max_cost: float | None
    dense_acc: float | None
    dense_cost: float | None
    dense_note: str
    dense_warning: str = ""                              # dense and candidates timed differently
    hv: list[float] = field(default_factory=list)        # normalised hypervolume after each trial
    hv_ref_acc: float | None = None
    hv_ref_cost: float | None = None
    hv_ref_note: str = ""
    hv_last_gain: int | None = None                      # trial that last raised the hypervolume
    int8: list[bool] = field(default_factory=list)       # per trial: deployed as int8 (else fp32)
    svg: str = ""

    @property
    def label(self) -> str:
        """Short name for tables and badges: the profile name, or "MACs"."""
        return "MACs" if self.profile is None else self.profile.name

    @property
    def unit(self) -> str:
        return "MACs" if self.profile is None else "ms"

    @property
    def axis_label(self) -> str:
        if self.profile is None:
            return "MACs per image"
        return f"TVM latency on {self.profile.name} (ms, {self.profile.tuning})"

    @property
    def title(self) -> str:
        return "Validation accuracy vs MACs" if self.profile is None else \
            f"Validation accuracy vs latency on {self.profile.name}"

    def cost_text(self, value: float | None) -> str:
        return fmt.count(value) if self.profile is None else fmt.ms(value)

    def index(self, trial: int) -> int:
        return self.trials.index(trial)


@dataclass
class RankView:
    """How the same candidates rank by latency on each profile."""

    profiles: list[str]
    trials: list[int]
    latency: dict[str, list[float]]
    rank: dict[str, list[int]]
    spearman: list[tuple[str, str, float | None]]
    svg: str = ""


@dataclass
class LayerRow:
    name: str
    filters: tuple[int, int]     # (kept, dense)
    channels: tuple[int, int]
    columns: tuple[int, int]
    lowered: bool
    removed: bool = False        # a whole residual block was removed

    @staticmethod
    def frac(pair: tuple[int, int]) -> float:
        return pair[0] / pair[1] if pair[1] else 0.0


@dataclass
class LayerLatency:
    profile: str
    tuning: str
    rows: list[tuple[str, float, float]]   # (kernel/layer name, ms, share of the listed total)
    total: float


@dataclass
class Candidate:
    trial: int
    fronts: list[str]            # labels of the fronts it is Pareto-optimal on
    recommended_for: list[str]
    row: dict[str, Any]          # the trials_frame row
    strengths: dict[str, float]
    layers: list[LayerRow]
    blocks_removed: list[str]
    latency: list[LayerLatency]
    latency_missing: list[str]   # profiles without a per-layer breakdown
    saved_to: str | None
    final: list[str] = field(default_factory=list)   # profiles whose numbers are final (fully tuned) re-timings
    float_ops: list[str] = field(default_factory=list)  # float blocks left in its int8 variant
    int8_measured: bool = False                          # the trial recorded an int8 variant
    svg: str = ""


@dataclass
class Deployment:
    front: FrontView
    command: str


@dataclass
class ComparisonView:
    """This study and the studies given with ``--compare`` on one axis (a profile, or MACs)."""

    key: str
    label: str                    # "x86_cpu (untuned)" or "MACs"
    summaries: list[MethodSummary]
    ref_acc: float | None
    bands: list[tuple[float, float, list[str], dict[str, float]]]
    svg: str = ""

    @property
    def ref_cost(self) -> float:
        return REF_COST


@dataclass
class ReportData:
    study_name: str
    storage: str
    meta: dict[str, Any]
    profiles: list[ProfileView]
    counts: dict[str, int]
    compute_s: float | None
    span_s: float | None
    split_note: str
    frame: pd.DataFrame
    fronts: list[FrontView]
    ranks: RankView | None
    candidates: list[Candidate]
    pareto_rows: list[dict[str, Any]]
    strength_keys: list[str]
    failed: list[dict[str, Any]]
    deployments: list[Deployment]
    constraints: dict[str, Any]
    comparisons: list[ComparisonView] = field(default_factory=list)

    @property
    def has_int8(self) -> bool:
        """Any trial recorded an int8 variant (deployed as int8, or measured beside fp32)."""
        return bool(not self.frame.empty and "accuracy_int8" in self.frame
                    and self.frame["accuracy_int8"].notna().any())


# -- helpers ----------------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _latency_source(result: dict[str, Any], profile: str) -> dict[str, Any]:
    final = result.get("latency_ms_final", {}).get(profile)
    return final if final is not None else result.get("latency_ms", {}).get(profile, {}) or {}


def _profile_views(study: optuna.Study, done: list[FrozenTrial]) -> list[ProfileView]:
    views = []
    for p in study.user_attrs.get("profiles", []):
        name = p["name"]
        flags = []
        finals = 0
        resolved = ""  # the target as TVM built it (e.g. mcpu = host resolved), from the timings
        for t in done:
            result = t.user_attrs.get("result", {})
            src = _latency_source(result, name)
            if src.get("tvm") is not None:
                flags.append(bool(src.get("tuned", False)))
                resolved = resolved or str(src.get("target") or "")
            finals += int(result.get("latency_ms_final", {}).get(name) is not None)
        if flags:
            tuning = "tuned" if all(flags) else "untuned" if not any(flags) else "partly tuned"
        elif "tuned" in p:
            tuning = "tuned" if p["tuned"] else "untuned"
        else:
            tuning = "unknown"
        views.append(ProfileView(name=name, target=resolved or str(p.get("target", "")),
                                 path=str(p.get("path", "")), tuning=tuning, final_count=finals))
    return views


def _dense(done: list[FrozenTrial], profile: str | None) -> tuple[float | None, float | None, str, str]:
    """Dense baseline: validation accuracy, cost, a note on where the cost comes from, and its tuning."""
    results = [t.user_attrs["result"] for t in done]
    accs = [_num(r.get("accuracy_dense")) for r in results]
    acc = next((a for a in accs if a is not None), None)
    if profile is None:
        macs = next((_num(r.get("flops_dense")) for r in results if r.get("flops_dense") is not None), None)
        return acc, macs, "dense network (MACs counted)", ""
    finals = [r["latency_ms_dense_final"][profile] for r in results
              if r.get("latency_ms_dense_final", {}).get(profile)]
    # prefer the fully tuned re-timing of the dense net, made with the candidates' final re-timing
    sources = finals or [r.get("latency_ms_dense", {}).get(profile, {}) for r in results]
    lats = [v for v in (_num(src.get("tvm")) for src in sources) if v is not None]
    if not lats:
        return acc, None, "no dense latency recorded on this profile", ""
    tuned = {bool(src.get("tuned", False)) for src in sources if src}
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


def _front_view(done: list[FrozenTrial], profile: ProfileView | None,
                constraints: dict[str, Any]) -> FrontView:
    trials, acc, acc_test, cost, int8 = [], [], [], [], []
    for t in done:
        result = t.user_attrs["result"]
        c = _num(result.get("flops")) if profile is None else _num(trial_latency(result, profile.name, "tvm"))
        a = _num(result.get("accuracy"))
        if c is None or a is None:
            continue
        trials.append(t.number)
        acc.append(a)
        acc_test.append(_num(result.get("accuracy_test")))
        cost.append(c)
        int8.append(result.get("precision") == "int8")
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


def _rank_view(done: list[FrozenTrial], profiles: list[ProfileView]) -> RankView | None:
    if len(profiles) < 2:
        return None
    names = [p.name for p in profiles]
    trials: list[int] = []
    lat: dict[str, list[float]] = {n: [] for n in names}
    for t in done:
        result = t.user_attrs["result"]
        values = [_num(trial_latency(result, n, "tvm")) for n in names]
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


def _layer_rows(result: dict[str, Any]) -> list[LayerRow]:
    rows = []
    for name, kept in (result.get("layers") or {}).items():
        dense = kept.get("dense", {})
        rows.append(LayerRow(name=name,
                             filters=(int(kept.get("filters", 0)), int(dense.get("filters", 0))),
                             channels=(int(kept.get("channels", 0)), int(dense.get("channels", 0))),
                             columns=(int(kept.get("columns", 0)), int(dense.get("columns", 0))),
                             lowered=bool(kept.get("lowered", False))))
    return rows


def _layer_latency(result: dict[str, Any], profiles: list[ProfileView]) -> tuple[list[LayerLatency], list[str]]:
    found, missing = [], []
    for p in profiles:
        entries = None
        for src in (result.get("latency_ms_final", {}).get(p.name), result.get("latency_ms", {}).get(p.name)):
            if src and src.get("per_layer"):
                entries = src
                break
        rows = []
        for item in (entries or {}).get("per_layer") or []:
            value = _num(item.get("ms")) if isinstance(item, dict) else None
            if value is not None:
                rows.append((str(item.get("name", "?")), value))
        if not rows:
            missing.append(p.name)
            continue
        total = sum(v for _, v in rows)
        found.append(LayerLatency(profile=p.name, tuning="tuned" if entries.get("tuned") else "untuned",
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
    all_trials = study_trials(study)
    done = [t for t in all_trials if t.state == TrialState.COMPLETE and t.user_attrs.get("result")]
    states = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED,
              "running": TrialState.RUNNING, "waiting": TrialState.WAITING}
    counts = {label: sum(1 for t in all_trials if t.state == state) for label, state in states.items()}
    finished = [t for t in all_trials if t.duration is not None]
    starts = [t.datetime_start for t in all_trials if t.datetime_start]
    ends = [t.datetime_complete for t in all_trials if t.datetime_complete]
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
        result = t.user_attrs["result"]
        lat, missing = _layer_latency(result, profiles)
        rows = _layer_rows(result)
        candidates.append(Candidate(
            trial=n, fronts=[f.label for f in fronts if n in f.front],
            recommended_for=[f.label for f in fronts if f.recommended == n], row=by_trial.get(n, {}),
            strengths=dict(t.user_attrs.get("strengths") or result.get("strengths") or {}),
            layers=rows, blocks_removed=list(result.get("blocks_removed") or []), latency=lat,
            latency_missing=missing, saved_to=result.get("saved_to"),
            final=[p.name for p in profiles if result.get("latency_ms_final", {}).get(p.name) is not None],
            float_ops=[str(op) for op in result.get("float_ops") or []],
            int8_measured=result.get("accuracy_int8") is not None))
    strength_keys = sorted({k for t in done for k in (t.user_attrs.get("strengths") or {})})
    pareto_rows = [c.row | {"fronts": c.fronts, "strengths": c.strengths, "final": c.final}
                   for c in candidates if c.fronts]
    deployments = [Deployment(front=f, command=export_command(study.study_name, url, f.recommended,
                                                              f.profile.name if f.profile else None))
                   for f in fronts if f.recommended is not None]
    first = done[0].user_attrs["result"] if done else {}
    return ReportData(
        study_name=study.study_name, storage=url, meta=dict(study.user_attrs), profiles=profiles, counts=counts,
        compute_s=sum(t.duration.total_seconds() for t in finished) if finished else None, span_s=span,
        split_note=str(first.get("split", "")), frame=frame, fronts=fronts, ranks=_rank_view(done, profiles),
        candidates=candidates, pareto_rows=pareto_rows, strength_keys=strength_keys, failed=_failed(study),
        deployments=deployments, constraints=constraints, comparisons=_comparisons(study, compare, profiles))
