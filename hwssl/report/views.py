"""What the report shows, as plain dataclasses (filled by :mod:`hwssl.report.collect`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hwssl.compare import REF_COST, MethodSummary
from hwssl.report import fmt


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
