"""The report's latency-model sections, computed from a study (no HTML, no plotting here).

* **Predicted against measured**, per profile: every fresh TVM measurement of the study (search
  trials, the dense baseline, final re-timings) that recorded the profile latency model's
  prediction (``predicted_ms``, made before the measurement was added to the model), with the
  median absolute % error and the share within ±10 %. Cached timings are not new measurements and
  are left out.
* **Where the time goes**, per profile and re-timed front candidate: measured ms per layer of the
  dense net and of the candidate (``layers_ms`` of the final, fully tuned re-timing), and for each
  lowered (shape-sparse) conv the model's cost of its lowered path against a plain conv of the same
  kept widths (``lowered_vs_plain_ms``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from hwssl.results import study_profiles, trial_records

WITHIN = 0.10


@dataclass
class PredictedPoint:
    label: str
    trial: int | None
    measured: float
    predicted: float
    source: str          # "search", "dense", "final", "final dense"
    noisy: bool = False  # the measurement's own TVM series spread more than the profile's max_spread

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured


@dataclass
class PredictionView:
    profile: str
    points: list[PredictedPoint]
    unpredicted: int               # fresh measurements taken while the model had seen nothing
    model_points: int | None       # networks the model had seen at its latest prediction
    model_file: str
    errors: list[str] = field(default_factory=list)   # latency_model_error messages (refused files)
    svg: str = ""

    @property
    def mdape(self) -> float | None:
        return statistics.median(abs(p.error) for p in self.points) if self.points else None

    @property
    def within(self) -> float | None:
        return sum(abs(p.error) <= WITHIN for p in self.points) / len(self.points) if self.points else None


@dataclass
class LayerCost:
    layer: str
    dense_ms: float | None
    cand_ms: float | None          # None: the layer is gone (removed block)
    lowered_ms: float | None = None   # model: lowered path of this layer (lowered convs only)
    plain_ms: float | None = None     # model: a plain conv of the same kept widths

    @property
    def saved_ms(self) -> float | None:
        if self.dense_ms is None:
            return None
        return self.dense_ms - (self.cand_ms or 0.0)


@dataclass
class BreakdownView:
    profile: str
    trial: int
    dense_total: float
    cand_total: float
    rows: list[LayerCost]
    tuning: str


@dataclass
class LatencySection:
    predictions: list[PredictionView]
    breakdowns: list[BreakdownView]

    @property
    def empty(self) -> bool:
        return not any(v.points or v.unpredicted or v.errors for v in self.predictions) and not self.breakdowns


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or f <= 0 else f


class _Points:
    """The views of one profile: one per model file (tuned and untuned timings have their own model)."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.views: dict[str, PredictionView] = {}
        self.seen: set[tuple[str, float]] = set()
        self.errors: list[str] = []

    def add(self, lat: dict[str, Any] | None, label: str, trial: int | None, source: str) -> None:
        if not lat or lat.get("cached") or "predicted_ms" not in lat and "latency_model_error" not in lat:
            return
        if lat.get("latency_model_error"):
            self.errors.append(str(lat["latency_model_error"]))
            return
        measured = _num(lat.get("tvm"))
        if measured is None or (source, measured) in self.seen:
            return
        self.seen.add((source, measured))
        info = lat.get("latency_model") or {}
        file = str(info.get("file", ""))
        untuned = file.endswith("_untuned.json")
        view = self.views.setdefault(file, PredictionView(self.profile + (" (untuned timings)" if untuned else ""),
                                                          [], 0, None, file))
        if info.get("points") is not None:
            view.model_points = max(int(info["points"]), view.model_points or 0)
        predicted = _num(lat.get("predicted_ms"))
        if predicted is None:
            view.unpredicted += 1
        else:
            view.points.append(PredictedPoint(label, trial, measured, predicted, source,
                                              "tvm" in (lat.get("noisy") or ())))

    def result(self) -> list[PredictionView]:
        views = sorted(self.views.values(), key=lambda v: v.profile)
        if self.errors:
            if not views:
                views = [PredictionView(self.profile, [], 0, None, "")]
            views[0].errors = self.errors
        return views


def _breakdown(profile: str, trial: int, final: dict[str, Any], dense: dict[str, Any]) -> BreakdownView | None:
    cand_layers, dense_layers = final.get("layers_ms"), dense.get("layers_ms")
    if not cand_layers or not dense_layers:
        return None
    lowered = final.get("lowered_vs_plain_ms") or {}
    rows = []
    for layer in [*dense_layers, *[name for name in cand_layers if name not in dense_layers]]:
        alt = lowered.get(layer, {})
        rows.append(LayerCost(layer, _num(dense_layers.get(layer)), cand_layers.get(layer),
                              _num(alt.get("lowered_ms")), _num(alt.get("plain_ms"))))
    return BreakdownView(profile, trial, sum(dense_layers.values()), sum(cand_layers.values()), rows,
                         "tuned" if final.get("tuned") else "untuned")


def _as_dict(lat: Any) -> dict[str, Any] | None:
    return None if lat is None else lat.to_dict()


def collect_latency(study: optuna.Study) -> LatencySection:
    profiles = study_profiles(study)
    done = [t for t in trial_records(study, states=(TrialState.COMPLETE,)) if t.record is not None]
    predictions, breakdowns = [], []
    for p in profiles:
        pts = _Points(p)
        for t in done:
            rec = t.record
            fp32 = rec.fp32.timings.get(p)
            dense = rec.dense.timings.get(p)
            pts.add(_as_dict(fp32.cheap if fp32 else None), f"#{t.number}", t.number, "search")
            pts.add(_as_dict(dense.cheap if dense else None), "dense", None, "dense")
            final = _as_dict(fp32.final if fp32 and rec.precision == "fp32" else None)
            pts.add(final, f"#{t.number} final", t.number, "final")
            dense_final = _as_dict(dense.final if dense else None)
            pts.add(dense_final, "dense final", None, "final dense")
            if final and dense_final:
                view = _breakdown(p, t.number, final, dense_final)
                if view is not None:
                    breakdowns.append(view)
        predictions += pts.result()
    return LatencySection(predictions, breakdowns)
