"""Several studies of one space on one cost axis: fronts, hypervolumes and who dominates where.

Used by ``bench/compare.py`` (SSL against the baselines, one study per method)
and by the report's comparison section (``hwssl report --compare STUDY``).
Costs are relative to each study's dense network on the same axis (MACs, or
TVM latency on one profile), so studies timed at different moments compare
on the ratio their own dense baseline gives. Hypervolume is of (validation
accuracy, cost / dense) against ONE reference point shared by all studies:
accuracy = worst point of any study - :data:`REF_ACC_MARGIN`, relative cost =
:data:`REF_COST` (a bit above dense, so the dense point counts too).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import optuna
from optuna.trial import TrialState

from hwssl.methods import get_method
from hwssl.pareto import hypervolume, pareto_indices
from hwssl.results import trial_records

REF_ACC_MARGIN = 0.01
REF_COST = 1.05


@dataclass
class Point:
    method: str
    trial: int
    accuracy: float
    accuracy_test: float
    cost: float            # MACs or latency (ms)
    cost_dense: float
    params: str
    wall_s: float
    precision: str = "fp32"

    @property
    def rel(self) -> float:
        return self.cost / self.cost_dense


@dataclass
class MethodSummary:
    """One study on the shared axis."""

    study: str
    method: str
    points: list[Point]
    failures: list[str]
    front: list[Point] = field(default_factory=list)
    hv: float | None = None
    trial_s: float = 0.0          # wall-clock of its complete trials, summed

    @property
    def best_accuracy(self) -> float | None:
        return max((p.accuracy for p in self.points), default=None)

    @property
    def min_rel_cost(self) -> float | None:
        return min((p.rel for p in self.points), default=None)


def study_method(study: optuna.Study) -> str:
    return str(study.user_attrs.get("method", "ssl"))


def collect_points(study: optuna.Study, profile: str | None, dense_ms: float | None = None
                   ) -> tuple[list[Point], list[str]]:
    """Complete trials as points on the axis (``profile`` latency, or MACs when None), and failures.
    ``dense_ms``: the dense latency every point is priced against (default: each trial's own dense
    timing)."""
    method = study_method(study)
    describe = get_method(method).describe
    points, failures = [], []
    for t in trial_records(study):
        if t.state == TrialState.FAIL:
            failures.append(f"trial {t.number}: {t.trial.user_attrs.get('fail_reason', '?')}")
        r = t.record
        if not t.complete or r is None:
            continue
        if profile:
            lat, dense_lat = r.latency(profile), r.dense_latency(profile)
            cost, dense = (lat.tvm if lat else None), (dense_lat.tvm if dense_lat else None)
            dense = dense_ms or dense
            if cost is None or not dense:
                failures.append(f"trial {t.number}: no latency on {profile}")
                continue
        else:
            cost, dense = float(r.flops), float(r.flops_dense)
        points.append(Point(method, t.number, float(r.accuracy), float(r.accuracy_test), float(cost),
                            float(dense), describe(r.method_params),
                            float(r.extra.get("wall_s", {}).get("total", 0.0)), r.precision))
    return points, failures


def _final_dense_ms(study: optuna.Study, profile: str) -> float | None:
    """The study's fully tuned dense latency on ``profile`` (``hwssl retime``), when it has one.
    Priced against it, a re-timed point's full timing and a not re-timed point's cheap one compare
    on absolute latency: the axis the re-timing loop made one-fidelity."""
    from hwssl.results import FINAL_DENSE

    final = study.user_attrs.get(FINAL_DENSE, {}).get(profile)
    tvm = final.get("tvm") if isinstance(final, dict) else None
    return float(tvm) if tvm else None


def front(points: list[Point]) -> list[Point]:
    """Pareto-optimal points (max accuracy, min relative cost), by relative cost."""
    best = [points[i] for i in pareto_indices([p.accuracy for p in points], [p.rel for p in points])]
    return sorted(best, key=lambda p: p.rel)


def reference_accuracy(summaries: list[MethodSummary]) -> float | None:
    accs = [p.accuracy for s in summaries for p in s.points]
    return min(accs) - REF_ACC_MARGIN if accs else None


def summarise(studies: list[optuna.Study], profile: str | None, *, on_test: bool = False,
              common_dense: bool = False) -> tuple[list[MethodSummary], float | None]:
    """Points, front and hypervolume (shared reference) of each study; and the reference accuracy.
    ``on_test``: scored on test accuracy (each point's ``accuracy`` is its test accuracy), the check
    that a front chosen on validation accuracy holds on images no one selected with.
    ``common_dense`` (``bench/compare.py``): every study that was re-timed is priced against one
    dense latency, the fastest of their fully tuned dense timings (see below); a study without a
    final re-timing keeps each trial's own dense timing."""
    summaries = []
    # One dense reference for every study: the fastest of their fully tuned timings of the same dense
    # net. Divided by its own dense time, a method with an unlucky dense build (a 32-trial tuning's
    # luck moved LeNet's dense time between 0.042 and 0.090 ms) or a dense timing taken in a slow
    # moment would look fast. bench/compare.py re-times every study in one shared database, so these
    # are several timings of one build, and the fastest is the one least disturbed.
    finals = [_final_dense_ms(s, profile) if (profile and common_dense) else None for s in studies]
    common = min((d for d in finals if d), default=None)
    for study, final in zip(studies, finals):
        points, failures = collect_points(study, profile, common if final else None)
        if on_test:
            points = [replace(p, accuracy=p.accuracy_test) for p in points]
        summaries.append(MethodSummary(study.study_name, study_method(study), points, failures, front(points),
                                       trial_s=sum(p.wall_s for p in points)))
    ref_acc = reference_accuracy(summaries)
    for s in summaries:
        if s.points and ref_acc is not None:
            s.hv = hypervolume([p.accuracy for p in s.points], [p.rel for p in s.points], ref_acc, REF_COST)
    return summaries, ref_acc


def dominance_bands(fronts: dict[str, list[Point]]) -> list[tuple[float, float, list[str], dict[str, float]]]:
    """For cost budgets between consecutive front costs: which method reaches the best accuracy
    within that relative cost (ties share the band)."""
    cuts = sorted({p.rel for pts in fronts.values() for p in pts})
    bands: list[tuple[float, float, list[str], dict[str, float]]] = []
    for k, c in enumerate(cuts):
        reach = {m: max((p.accuracy for p in pts if p.rel <= c + 1e-12), default=None) for m, pts in fronts.items()}
        best = {m: a for m, a in reach.items() if a is not None}
        top = max(best.values())
        winners = sorted(m for m, a in best.items() if abs(a - top) < 1e-12)
        hi = cuts[k + 1] if k + 1 < len(cuts) else float("inf")
        if bands and bands[-1][2] == winners:
            lo, _, w, _b = bands[-1]
            bands[-1] = (lo, hi, w, best)
        else:
            bands.append((c, hi, winners, best))
    return bands
