"""SSL against the baselines on one harness: fronts, hypervolume per method, who wins where.

Every method starts from the same cached dense checkpoint and gets the same training
budget per candidate (``train.ssl_epochs`` of sparsification -- SSL's group Lasso, L1's
masked fine-tune, Torch-Pruning's sparse learning -- then ``train.recover_epochs`` of
recovery after the shared exact compaction), and is measured the same way (validation
accuracy; MACs, or TVM latency on a hardware profile). So equal numbers of candidates
cost roughly equal wall-clock; the script also stops a method at ``--minutes-per-method``
and prints the wall-clock each method actually used.

* ``ssl``            -- a small Optuna search over the space's ``[search.strengths]``
* ``l1``             -- sweep of ``--ratios`` (uniform per-layer L1 filter pruning)
* ``torch-pruning``  -- sweep of ``--ratios`` (DepGraph group-norm sparse learning + pruning)
* ``dense``          -- one point

Each method is its own study (``<prefix>-<space>[-<profile>]-<method>``) in ``--storage``,
in the same format as ``hwssl search --method ...`` writes; running the command again
resumes them (``--fresh`` starts over), so a budget can be extended.

Hypervolume: of (validation accuracy, cost / dense cost) per method, all methods against
ONE reference point: accuracy = (worst accuracy over every point of every method) - 0.01,
relative cost = 1.05 (a bit above the dense model, so the dense point counts too). The
script prints the reference it used.

Commands (2-core x86 machine; times measured under a shared load, see the reply/README):

  # LeNet / MNIST-5k, MACs, about 10 min:
  python bench/compare.py --space search_spaces/lenet_mnist5k.toml --no-profile \\
      --ssl-trials 6 --ratios 0.5,0.7,0.85,0.3

  # the same on x86 latency (needs the deploy layer; --no-tune = untuned TVM, labelled):
  python bench/compare.py --space search_spaces/lenet_mnist5k.toml \\
      --profile hardware_profiles/x86_cpu.toml --no-tune --ssl-trials 6 --ratios 0.5,0.7,0.85

  # ResNet-20 / Fashion-MNIST on x86 in under an hour (dense checkpoint cached under
  # .hwssl-cache/; 1+1 epochs per candidate, ~2 min each on 2 cores):
  python bench/compare.py --space search_spaces/resnet20_fmnist.toml \\
      --set train.ssl_epochs=1 --set train.recover_epochs=1 \\
      --profile hardware_profiles/x86_cpu.toml --no-tune --ssl-trials 6 --ratios 0.3,0.6 \\
      --minutes-per-method 15
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hwssl.config import load_search_space  # noqa: E402
from hwssl.compare import REF_ACC_MARGIN, REF_COST, dominance_bands, front, summarise  # noqa: E402
from hwssl.methods import get_method, method_names  # noqa: E402
from hwssl.storage import open_storage  # noqa: E402
from hwssl.search import SearchOptions, open_study, run_search  # noqa: E402

METHODS = tuple(method_names())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "lenet_mnist5k.toml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a space setting for every method (e.g. train.ssl_epochs=5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", help="hardware profile to time on (cost = TVM latency)")
    g.add_argument("--no-profile", action="store_true", help="cost = MACs (default when no --profile)")
    p.add_argument("--no-tune", action="store_true", help="untuned TVM timings (labelled)")
    p.add_argument("--trials-per-task", type=int, help="MetaSchedule trials per new workload")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list out of {','.join(METHODS)}")
    p.add_argument("--ssl-trials", type=int, default=6, help="SSL search trials (default 6)")
    p.add_argument("--ssl-sampler", choices=["nsga2", "tpe", "random"], help="default: the space's sampler")
    p.add_argument("--ratios", default="0.5,0.7,0.85,0.3",
                   help="pruning ratios each baseline sweeps, in this order (default 0.5,0.7,0.85,0.3)")
    p.add_argument("--extra-baseline-trials", type=int, default=0,
                   help="sampled ratios after the sweep (default 0)")
    p.add_argument("--tp-param", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed Torch-Pruning parameter (reg, alpha, global, round_to)")
    p.add_argument("--minutes-per-method", type=float, default=None,
                   help="stop starting new candidates of a method after this many minutes")
    p.add_argument("--storage", default=f"sqlite:///{(Path.cwd() / 'reports' / 'compare.db')}")
    p.add_argument("--prefix", default="compare", help="study name prefix (default compare)")
    p.add_argument("--artifacts", default="hwssl-artifacts")
    p.add_argument("--fresh", action="store_true", help="delete this comparison's studies first")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.add_argument("--report-dir", help="where the HTML report with every method overlaid goes "
                                        "(default reports/<prefix>-<space>[-<profile>]-methods)")
    p.add_argument("--no-report", action="store_true", help="print only; no HTML report")
    return p.parse_args(argv)


def _parse_kv(items: list[str]) -> dict[str, Any]:
    import json
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def study_name(args: argparse.Namespace, space: Any, profiles: list[Any], method: str) -> str:
    return "-".join([args.prefix, space.name, *[p.name for p in profiles], method])


def run_method(args: argparse.Namespace, space: Any, profiles: list[Any], method: str) -> tuple[optuna.Study, float]:
    """Add candidates one at a time until the method's trial count or time budget is reached."""
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    spec = get_method(method)
    if spec.single_point:
        max_trials = 1
    elif spec.samples_ratios:
        max_trials = len(ratios) + args.extra_baseline_trials
    else:
        max_trials = args.ssl_trials
    lo, hi = (min(ratios + [0.1]), max(ratios + [0.9])) if ratios else (0.1, 0.9)
    opts = SearchOptions(space=space, profiles=profiles, study_name=study_name(args, space, profiles, method),
                         storage=args.storage, resume=True, sampler=args.ssl_sampler if method == "ssl" else None,
                         tune=not args.no_tune, trials_per_task=args.trials_per_task, artifacts=args.artifacts,
                         overrides=args.set, quiet=args.quiet, method=method,
                         method_params=_parse_kv(args.tp_param) if method == "torch-pruning" else {},
                         ratio_low=lo, ratio_high=hi, ratios=ratios if spec.samples_ratios else ())
    budget = float("inf") if args.minutes_per_method is None else 60 * args.minutes_per_method
    t0 = time.perf_counter()
    study = open_study(opts)  # created, or resumed from an earlier run of this command

    def complete() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    while complete() < max_trials and time.perf_counter() - t0 < budget:
        before = complete()
        # one candidate at a time only when a time budget must be checked between candidates
        opts.trials = max_trials if budget == float("inf") else before + 1
        study = run_search(opts)
        if complete() == before:
            break  # the candidate failed (its reason is printed below)
    return study, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    space = load_search_space(args.space, list(args.set))
    profiles = []
    if args.profile:
        from hwssl.config.profile import load_profile
        profiles = [load_profile(args.profile)]
    profile = profiles[0].name if profiles else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            print(f"error: unknown method {m!r}; expected {METHODS}", file=sys.stderr)
            return 2
    if args.storage.startswith("sqlite:///"):
        Path(args.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        storage = open_storage(args.storage, create=True)  # journal: works like a database URL here
        for m in methods:
            try:
                optuna.delete_study(study_name=study_name(args, space, profiles, m), storage=storage)
            except KeyError:
                pass
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    t = space.train
    cost_name = f"TVM latency on {profile} ({'untuned' if args.no_tune else 'tuned'})" if profile else "MACs"
    print(f"# compare: {space.model.name} on {space.data.name} ({space.name}), cost = {cost_name}")
    print(f"# budget per candidate: {t.ssl_epochs} sparsification + {t.recover_epochs} recovery epochs, "
          f"batch {t.batch_size}; overrides {args.set or 'none'}")
    print(f"# storage {args.storage}")
    from hwssl.evaluate import load_space_data
    n_val = len(load_space_data(space).val)
    print(f"# objective: validation accuracy on {n_val} images (one image = {100 / max(1, n_val):.2f} pt); "
          f"test accuracy is shown, never optimised")
    studies: dict[str, optuna.Study] = {}
    wall: dict[str, float] = {}
    for m in methods:
        print(f"# running {m} ...", flush=True)
        studies[m], wall[m] = run_method(args, space, profiles, m)

    summaries, ref_acc = summarise([studies[m] for m in methods], profile)
    by_method = {s.method: s for s in summaries}
    allpts = [p for s in summaries for p in s.points]
    if not allpts:
        print("no complete trials")
        return 1
    fronts = {s.method: s.front for s in summaries if s.points}
    unit = "ms" if profile else "MACs"
    print()
    print(f"Reference point (shared by all methods): val accuracy {ref_acc:.4f} (worst point - {REF_ACC_MARGIN}), "
          f"relative cost {REF_COST} x dense")
    print()
    print(f"{'method':<14} {'trials':>6} {'front':>5} {'best acc':>9} {'min cost':>9} {'HV':>8} {'wall min':>9} "
          f"{'trial s':>8}")
    for m in methods:
        s = by_method[m]
        if not s.points:
            print(f"{m:<14} {0:>6}   (no complete trials{'; ' + s.failures[0] if s.failures else ''})")
            continue
        print(f"{m:<14} {len(s.points):>6} {len(s.front):>5} {s.best_accuracy:>9.4f} {s.min_rel_cost:>9.3f} "
              f"{s.hv:>8.4f} {wall[m] / 60:>9.1f} {s.trial_s / len(s.points):>8.0f}")
    print("  (HV: area of (val accuracy, cost/dense) dominated up to the reference; min cost relative to dense)")

    for m in methods:
        if not fronts.get(m):
            continue
        print()
        print(f"Front: {m}")
        print(f"  {'trial':>5} {'val acc':>8} {'test acc':>8} {'cost ' + unit:>14} {'x dense':>8}  params")
        for p in fronts[m]:
            cost = f"{p.cost:,.0f}" if not profile else f"{p.cost:.4f}"
            print(f"  {p.trial:>5} {p.accuracy:>8.4f} {p.accuracy_test:>8.4f} {cost:>14} {p.rel:>8.3f}  {p.params}")
    for s in summaries:
        for f in s.failures:
            print(f"  [{s.method}] failed {f}")

    joint = front(allpts)
    print()
    print("Joint front (all methods): " + ", ".join(f"{p.method}#{p.trial} ({p.accuracy:.4f} @ {p.rel:.3f}x)"
                                                   for p in joint))
    print("Who dominates where (best val accuracy reachable within a relative cost budget):")
    for lo, hi, winners, best in dominance_bands(fronts):
        others = ", ".join(f"{m} {a:.4f}" for m, a in sorted(best.items(), key=lambda kv: -kv[1])
                           if m not in winners)
        rng = f"[{lo:.3f}, {hi:.3f})" if hi != float("inf") else f"[{lo:.3f}, ...)"
        print(f"  cost/dense in {rng:<18} {'+'.join(winners):<22} {best[winners[0]]:.4f}"
              f"{'   vs ' + others if others else ''}")
    if not args.no_report and "ssl" in studies:
        from hwssl.report import build_report
        out = Path(args.report_dir or ROOT / "reports" / study_name(args, space, profiles, "methods"))
        path = build_report(studies["ssl"], out, args.storage,
                            compare=[studies[m] for m in methods if m != "ssl"])
        print(f"\nreport (SSL study with the baselines overlaid): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
