"""The latency model's accuracy: predicted against measured TVM latency, per profile.

Every measured candidate records the prediction its profile's latency model made *before* the
measurement was added to the model (``predicted_ms``). This script prints, per profile, each
prediction beside its measurement, the median absolute % error and the share within ±10 %
(issue 11's target: >= 90 % within ±10 %).

Printed per profile: all predictions, then split into cheap-tuned search measurements, full
re-timings, and measurements whose own TVM series was steady; with ``--study``, also the
measurement's repeatability (the dense net re-timed beside every candidate of a study: the share
within ±10 % of its median bounds what any predictor can reach).

Two sources:

* ``--study NAME --storage URL`` (repeatable ``--study``): the measured candidates of existing
  studies (search trials, dense baselines, final re-timings; cached timings are not counted);
* ``--fixed N --profile FILE``: N fixed LeNet candidates (seeded kept widths in multiples of the
  profile's ``channel_round``, every third one with a lowered conv2) measured here one after the
  other through the same hook the search uses, so each is predicted from the ones before it.

Commands (timings need an idle machine; numbers on a shared one mean little):

  python bench/latency_model.py --study lenet_mnist5k-x86_cpu --storage sqlite:///hwssl.db
  python bench/latency_model.py --fixed 24 --profile hardware_profiles/x86_cpu.toml
  python bench/latency_model.py --fixed 3 --profile hardware_profiles/x86_cpu.toml --no-tune --cache /tmp/lm  # smoke
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from hwssl.report.latency import PredictedPoint


def fixed_lenets(n: int, channel_round: int, seed: int) -> list[dict[str, Any]]:
    """``n`` compacted LeNet specs (the paper's 20/50/500 widths as the dense net first)."""
    from hwssl.models import model_spec
    from hwssl.models.layers import canonical_columns

    rng = random.Random(seed)
    r = max(1, channel_round)
    specs = [model_spec("lenet", 1, (28, 28), 10)]
    while len(specs) < n:
        c1 = r * rng.randint(max(1, 4 // r), 20 // r)
        c2 = r * rng.randint(max(1, 4 // r), 48 // r)
        f1 = rng.choice([64, 100, 200, 300, 500])
        spec = model_spec("lenet", 1, (28, 28), 10)
        layers = spec["layers"]
        layers[0]["out"], layers[2]["in"], layers[2]["out"] = c1, c1, c2
        layers[5]["in"], layers[5]["out"], layers[6]["in"] = c2 * 16, f1, f1
        if len(specs) % 3 == 2:
            keep = rng.uniform(0.2, 0.6)
            cols = [[c, i, j] for c in range(c1) for i in range(5) for j in range(5) if rng.random() < keep]
            layers[2]["columns"] = [list(x) for x in canonical_columns(cols or [[0, 2, 2]])]
        specs.append(spec)
    return specs[:n]


def measure_fixed(args: argparse.Namespace) -> list[tuple[str, list[PredictedPoint]]]:
    import torch

    from hwssl.compact import arch_key
    from hwssl.config.profile import load_profile
    from hwssl.latency.record import measure_with_model
    from hwssl.models import build_model
    from hwssl.report.latency import PredictedPoint

    profile = load_profile(args.profile)
    rows = []
    for i, spec in enumerate(fixed_lenets(args.fixed, profile.channel_round, args.seed)):
        model = build_model(spec).eval()
        example = torch.zeros(profile.batch, *spec["input"])
        lat = measure_with_model(model, example, profile, spec=spec, arch_key=arch_key(spec), tune=not args.no_tune,
                                 trials_per_task=args.trials_per_task)
        layers = spec["layers"]
        label = f"{i:2d} {layers[0]['out']}/{layers[2]['out']}/{layers[5]['out']}" + \
            (" lowered" if layers[2].get("columns") else "")
        if lat.get("latency_model_error"):
            raise SystemExit(lat["latency_model_error"])
        print(f"measured {label}: {lat['tvm']:.4f} ms", flush=True)
        if lat.get("predicted_ms") is not None:
            rows.append(PredictedPoint(label, i, float(lat["tvm"]), float(lat["predicted_ms"]), "fixed",
                                       "tvm" in (lat.get("noisy") or ())))
    return [(profile.name, rows)]


def from_studies(args: argparse.Namespace) -> tuple[list[tuple[str, list[PredictedPoint]]], list[float]]:
    """The studies' predicted measurements per profile, and the deviations of each study's dense
    re-timings from their median (see :func:`dense_deviations`)."""
    from hwssl.report.latency import collect_latency
    from hwssl.storage import load_study

    out: dict[str, list[PredictedPoint]] = {}
    deviations: list[float] = []
    for name in args.study:
        study = load_study(name, args.storage)
        for view in collect_latency(study).predictions:
            out.setdefault(view.profile, []).extend(replace(p, label=f"{name} {p.label}") for p in view.points)
            if view.unpredicted:
                print(f"{view.profile}: {view.unpredicted} measurement(s) of {name} taken before the model had data")
        deviations += dense_deviations(study)
    return list(out.items()), deviations


def dense_deviations(study: Any) -> list[float]:
    """The measurement's own floor: every trial of a search re-times the dense net beside its
    candidate, from the same build; how far those times stray from their median (per profile)
    bounds what any predictor can reach on single measurements."""
    from optuna.trial import TrialState

    from hwssl.results import trial_records

    times: dict[str, list[float]] = {}
    for t in trial_records(study, states=(TrialState.COMPLETE,)):
        for profile, timing in (t.record.dense.timings.items() if t.record is not None else ()):
            if timing.cheap is not None and timing.cheap.tvm:
                times.setdefault(profile, []).append(float(timing.cheap.tvm))
    out = []
    for series in times.values():
        series = series[1:]  # the first trial's may predate the dense build's tuning
        if len(series) >= 2:
            med = statistics.median(series)
            out += [abs(x / med - 1) for x in series]
    return out


def summary(rows: list[PredictedPoint]) -> str:
    errors = [abs(p.error) for p in rows if p.measured > 0]
    if not errors:
        return "no predicted measurement"
    within = sum(e <= 0.10 for e in errors) / len(errors)
    return (f"{len(errors)} predicted measurements: median absolute error {100 * statistics.median(errors):.1f} %, "
            f"{100 * within:.0f} % within ±10 % (target >= 90 %)")


SUBSETS = (("cheap-tuned search measurements", lambda p: p.source == "search"),
           ("full re-timings", lambda p: p.source == "final"),
           ("full re-timings of the dense net", lambda p: p.source == "final dense"),
           ("measurements whose own TVM series was steady (not flagged noisy)", lambda p: not p.noisy))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", action="append", default=[], help="study name (repeatable)")
    p.add_argument("--storage", default=f"sqlite:///{Path.cwd() / 'hwssl.db'}")
    p.add_argument("--fixed", type=int, default=0, help="measure N fixed LeNet candidates instead")
    p.add_argument("--profile", default=str(ROOT / "hardware_profiles" / "x86_cpu.toml"))
    p.add_argument("--no-tune", action="store_true", help="untuned TVM (its own model file)")
    p.add_argument("--trials-per-task", type=int, help="default: the profile's cheap budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="cache root for --fixed (tuning database and model); default $HWSSL_CACHE")
    args = p.parse_args(argv)
    if not args.study and not args.fixed:
        p.error("give --study NAME (with --storage) or --fixed N")
    if args.cache:
        os.environ["HWSSL_CACHE"] = args.cache
    from hwssl.storage import StudyNotFound

    try:
        groups, deviations = (measure_fixed(args), []) if args.fixed else from_studies(args)
    except StudyNotFound as exc:
        raise SystemExit(f"error: {exc}") from None
    for profile, rows in groups:
        print(f"\n== {profile}")
        print(f"{'candidate':<44} {'measured':>10} {'predicted':>10} {'error':>8}")
        for p in rows:
            label = f"{p.label} ({p.source})" + (" noisy" if p.noisy else "")
            print(f"{label:<44} {p.measured:10.4f} {p.predicted:10.4f} {100 * p.error:+7.1f}%")
        print(summary(rows))
        for kind, keep in SUBSETS:
            subset = [p for p in rows if keep(p)]
            if 0 < len(subset) < len(rows):
                print(f"  {kind}: {summary(subset)}")
        if len(rows) >= 6:
            print(f"second half only: {summary(rows[len(rows) // 2:])}")
    if deviations:
        within = sum(d <= 0.10 for d in deviations) / len(deviations)
        print(f"repeatability: the dense net re-timed beside {len(deviations)} candidates (same build): median "
              f"deviation from its study's median {100 * statistics.median(deviations):.1f} %, "
              f"{100 * within:.0f} % within ±10 %")

if __name__ == "__main__":
    main()
