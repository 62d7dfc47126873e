"""SSL against the baselines on one harness: fronts, hypervolume per method, who wins where.

Every method starts from the same cached dense checkpoint and gets the same training
budget per candidate (``train.ssl_epochs`` of sparsification -- SSL's group Lasso, L1's
masked fine-tune, Torch-Pruning's sparse learning -- then ``train.recover_epochs`` of
recovery after the shared exact compaction, with the same learning rates and channel
rounding), and is measured the same way (validation accuracy; MACs, or TVM latency on a
hardware profile). The script stops starting candidates of a method after
``--minutes-per-method`` and prints the wall-clock each method actually used.

* ``ssl``            -- a small Optuna search over the space's ``[search.strengths]`` (the paper's SSL)
* ``ssl-hw``         -- hardware-aware SSL: the same search on ``--hw-space`` (default: the space's
                        ``<name>_hw.toml`` sibling when there is one): budget-targeted,
                        latency-weighted, filter-blocked SSL (issue 11)
* ``l1``             -- sweep of ``--ratios`` (uniform per-layer L1 filter pruning)
* ``torch-pruning``  -- sweep of ``--ratios`` (DepGraph group-norm sparse learning + pruning)
* ``dense``          -- one point

Tuned latency (a profile without ``--no-tune``): each method's search tunes into its OWN
MetaSchedule database (``<cache>/tuning/<study>``; ``--shared-tuning`` shares the profile's), so
no method rides on kernels another method paid for, and hardware-aware SSL's latency model learns
only from what its own search measured. After its search, each method's Pareto candidates (on
validation AND on test accuracy) and its dense net are re-timed with the profile's full budget
(``hwssl retime``'s loop, until the fronts hold full timings only); the wall-clock printed per
method includes that re-timing. ``--no-retime`` keeps the cheap timings (labelled).

The full re-timing of every method tunes into ONE shared database
(``<cache>/tuning/<prefix>-<space>-final``; ``--final-tuning own`` keeps each method's): every
distinct kernel is tuned once, at the full budget, by whichever front needs it first, and every
method's network that uses it runs the same schedule. With a database per method, one 32-trial
tuning's luck moved the same kernel by 30-40 % between methods (LeNet's 4/8-filter net re-timed at
0.0093, 0.0121 and 0.0130 ms; the dense net at 0.060-0.084 ms), which the comparison then read as
a difference between the methods. ``--fresh`` keeps that database: it is the measuring instrument
every stored front was re-timed with (delete the directory to tune it again). ``--retime-only``
re-times the studies already in ``--storage`` that way (no new candidates) and summarises them;
with ``--again`` every front member is timed afresh, so all methods are timed in one session (this
machine's speed drifts over hours, and a front re-timed yesterday would meet today's dense time).

Each method is its own study (``<prefix>-<space>[-<profile>]-<method>``) in ``--storage``,
in the same format as ``hwssl search --method ...`` writes; running the command again
resumes them (``--fresh`` starts over, tuning databases included: their cached builds and
timings are not reused), so a budget can be extended.

Hypervolume: of (accuracy, cost / dense) per method, all methods against ONE reference point:
accuracy = (worst accuracy over every point of every method) - 0.01, relative cost = 1.05 (a bit
above the dense model, so the dense point counts too); on validation accuracy (what the
searches optimise) and on test accuracy (never optimised). The script prints the references.

Commands (2-core x86 machine; see the README's results for measured outputs):

  # LeNet / MNIST-5k, MACs, about 10 min:
  python bench/compare.py --space search_spaces/lenet_mnist5k.toml --no-profile \\
      --ssl-trials 6 --ratios 0.5,0.7,0.85,0.3

  # LeNet on x86, tuned latency, every method 8 min of search plus its front's full re-timing:
  python bench/compare.py --space search_spaces/lenet_mnist5k.toml \\
      --profile hardware_profiles/x86_cpu.toml --ssl-trials 12 --ratios 0.5,0.7,0.85,0.3 \\
      --extra-baseline-trials 8 --minutes-per-method 8 --fresh

  # ResNet-20 / Fashion-MNIST on x86 (dense checkpoint cached under .hwssl-cache/):
  python bench/compare.py --space search_spaces/resnet20_fmnist.toml \\
      --profile hardware_profiles/x86_cpu.toml --ssl-trials 20 --ratios 0.3,0.5,0.6,0.7 \\
      --extra-baseline-trials 16 --minutes-per-method 45
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
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
from hwssl.storage import load_study, open_storage  # noqa: E402
from hwssl.search import SearchOptions, open_study, run_search  # noqa: E402

WALL_ATTR = "compare_wall_s"  # study user attribute: the wall-clock this script spent on the method
HW_METHOD = "ssl-hw"    # the registry's ssl method, run on the hardware-aware space
METHODS = (*method_names()[:1], HW_METHOD, *method_names()[1:])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "lenet_mnist5k.toml"))
    p.add_argument("--hw-space", help="space of the ssl-hw method (default: <space>_hw.toml beside --space, "
                                      "when it exists; 'none' leaves ssl-hw out)")
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
    p.add_argument("--shared-tuning", action="store_true",
                   help="every method tunes into the profile's own database (default: one database per method)")
    p.add_argument("--final-tuning", choices=["shared", "own"], default="shared",
                   help="database of the fronts' full re-timing: one for every method (default; each "
                        "distinct kernel tuned once) or each method's own")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--summary-only", action="store_true",
                   help="no new candidates and no re-timing: summarise the studies as they are in --storage")
    g.add_argument("--retime-only", action="store_true",
                   help="no new candidates: re-time the fronts of the studies in --storage (see --final-tuning), "
                        "then summarise")
    p.add_argument("--again", action="store_true",
                   help="time every front member afresh when re-timing, final timings included (with "
                        "--retime-only: every method's networks timed in the same session)")
    p.add_argument("--no-retime", action="store_true",
                   help="keep the search's cheap timings (no full re-timing of the fronts)")
    p.add_argument("--storage", default=f"sqlite:///{(Path.cwd() / 'reports' / 'compare.db')}")
    p.add_argument("--prefix", default="compare", help="study name prefix (default compare)")
    p.add_argument("--artifacts", default="hwssl-artifacts")
    p.add_argument("--fresh", action="store_true", help="delete this comparison's studies first")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.add_argument("--verbose", action="store_true",
                   help="TVM and MetaSchedule logs on the console (default: <artifacts>/<prefix>-<space>/tvm.log)")
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


def hw_space_path(args: argparse.Namespace) -> Path | None:
    """The hardware-aware space: ``--hw-space``, else ``<space>_hw.toml`` beside ``--space``."""
    if args.hw_space:
        return None if args.hw_space.lower() == "none" else Path(args.hw_space)
    sibling = Path(args.space).with_name(Path(args.space).stem + "_hw.toml")
    return sibling if sibling.is_file() else None


def method_profiles(args: argparse.Namespace, profiles: list[Any], name: str) -> list[Any]:
    """The profiles a method measures on: with their own tuning database per method (see the
    module docstring) unless ``--shared-tuning`` or untuned timings."""
    if args.shared_tuning or args.no_tune:
        return profiles
    return [dataclasses.replace(p, tuning=dataclasses.replace(p.tuning, database=f"tuning/{name}"))
            for p in profiles]


def final_profiles(args: argparse.Namespace, profiles: list[Any], space: Any, name: str) -> list[Any]:
    """The profiles the fronts of method study ``name`` are re-timed on: one database shared by every
    method (``--final-tuning shared``, see the module docstring), else the method's own."""
    if args.final_tuning == "own" or args.shared_tuning or args.no_tune:
        return method_profiles(args, profiles, name)
    database = f"tuning/{args.prefix}-{space.name}-final"
    return [dataclasses.replace(p, tuning=dataclasses.replace(p.tuning, database=database)) for p in profiles]


def run_method(args: argparse.Namespace, space: Any, profiles: list[Any], method: str) -> tuple[optuna.Study, float]:
    """Add candidates one at a time until the method's trial count or time budget is reached."""
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    registry = "ssl" if method == HW_METHOD else method
    spec = get_method(registry)
    if spec.single_point:
        max_trials = 1
    elif spec.samples_ratios:
        max_trials = len(ratios) + args.extra_baseline_trials
    else:
        max_trials = args.ssl_trials
    lo, hi = (min(ratios + [0.1]), max(ratios + [0.9])) if ratios else (0.1, 0.9)
    opts = SearchOptions(space=space, profiles=profiles, study_name=study_name(args, space, profiles, method),
                         storage=args.storage, resume=True, sampler=args.ssl_sampler if registry == "ssl" else None,
                         tune=not args.no_tune, trials_per_task=args.trials_per_task, artifacts=args.artifacts,
                         overrides=args.set, quiet=args.quiet, method=registry,
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


def retime_fronts(args: argparse.Namespace, study: optuna.Study, profiles: list[Any], method: str) -> float:
    """Full re-timing of the method's fronts on validation and on test accuracy (and its dense
    net); returns its wall-clock in seconds."""
    from hwssl.retime import retime_pareto

    t0 = time.perf_counter()
    say = (lambda _m: None) if args.quiet else (lambda m: print(f"[{method}] {m}", flush=True))
    retime_pareto(study, profiles, say=say, accuracies=("accuracy", "accuracy_test"), again=args.again)
    return time.perf_counter() - t0


def print_summary(title: str, methods: list[str], summaries: list[Any], ref_acc: float,
                  wall: dict[str, float], retime_s: dict[str, float]) -> None:
    by_method = dict(zip(methods, summaries))
    print()
    print(f"{title}: reference point (shared by all methods) accuracy {ref_acc:.4f} "
          f"(worst point - {REF_ACC_MARGIN}), relative cost {REF_COST} x dense")
    print(f"{'method':<14} {'trials':>6} {'front':>5} {'best acc':>9} {'min cost':>9} {'HV':>8} {'wall min':>9} "
          f"{'retime min':>10} {'trial s':>8}")
    for m in methods:
        s = by_method[m]
        if not s.points:
            print(f"{m:<14} {0:>6}   (no complete trials{'; ' + s.failures[0] if s.failures else ''})")
            continue
        print(f"{m:<14} {len(s.points):>6} {len(s.front):>5} {s.best_accuracy:>9.4f} {s.min_rel_cost:>9.3f} "
              f"{s.hv:>8.4f} {wall[m] / 60:>9.1f} {retime_s.get(m, 0.0) / 60:>10.1f} "
              f"{s.trial_s / len(s.points):>8.0f}")
    hv = {m: by_method[m].hv or 0.0 for m in methods}
    peers = [m for m in ("l1", "torch-pruning") if m in hv]
    for m in ("ssl", HW_METHOD):
        if m in hv and peers:
            best_peer = max(peers, key=lambda k: hv[k])
            ratio = hv[m] / hv[best_peer] if hv[best_peer] else float("inf")
            print(f"  {m} HV / best baseline ({best_peer}) = {ratio:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    space = load_search_space(args.space, list(args.set))
    hw_path = hw_space_path(args)
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
    if HW_METHOD in methods and hw_path is None:
        methods.remove(HW_METHOD)
        print(f"# {HW_METHOD} left out: no --hw-space and no {Path(args.space).stem}_hw.toml beside the space")
    spaces = {m: space for m in methods}
    if HW_METHOD in methods:
        spaces[HW_METHOD] = load_search_space(str(hw_path), list(args.set))
    names = {m: study_name(args, spaces[m], profiles, m) for m in methods}
    retimes = bool(profiles) and not args.no_tune and not args.no_retime
    if args.storage.startswith("sqlite:///"):
        Path(args.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        storage = open_storage(args.storage, create=True)  # journal: works like a database URL here
        for m in methods:
            try:
                optuna.delete_study(study_name=names[m], storage=storage)
            except KeyError:
                pass
            for p in method_profiles(args, profiles, names[m]):
                if p is not None and not args.shared_tuning and not args.no_tune:
                    shutil.rmtree(p.database_dir(), ignore_errors=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from hwssl import runlog
    runlog.capture(runlog.study_log_path(args.artifacts, f"{args.prefix}-{space.name}"), verbose=args.verbose)
    try:
        return _compare(args, space, spaces, methods, names, profiles, profile, hw_path, retimes)
    finally:
        runlog.release()


def _compare(args: argparse.Namespace, space: Any, spaces: dict[str, Any], methods: list[str], names: dict[str, str],
             profiles: list[Any], profile: str | None, hw_path: Path | None, retimes: bool) -> int:
    t = space.train
    fidelity = "untuned" if args.no_tune else ("fronts re-timed with the full tuning budget" if retimes
                                               else "cheap tuning, not re-timed")
    cost_name = f"TVM latency on {profile} ({fidelity})" if profile else "MACs"
    print(f"# compare: {space.model.name} on {space.data.name} ({space.name}), cost = {cost_name}")
    if HW_METHOD in methods:
        print(f"# {HW_METHOD}: {spaces[HW_METHOD].name} ({hw_path})")
    print(f"# budget per candidate: {t.ssl_epochs} sparsification + {t.recover_epochs} recovery epochs, "
          f"batch {t.batch_size}; overrides {args.set or 'none'}; "
          f"tuning databases {'shared' if args.shared_tuning else 'one per method'}"
          + ("" if args.shared_tuning or not retimes else
             f", full re-timing {'in one shared database' if args.final_tuning == 'shared' else 'in each own'}"))
    print(f"# storage {args.storage}")
    from hwssl.evaluate import load_space_data
    n_val = len(load_space_data(space).val)
    print(f"# objective: validation accuracy on {n_val} images (one image = {100 / max(1, n_val):.2f} pt); "
          f"test accuracy is shown, never optimised")
    studies: dict[str, optuna.Study] = {}
    wall: dict[str, float] = {}
    retime_s: dict[str, float] = {}
    for m in methods:
        fprofiles = final_profiles(args, profiles, space, names[m])
        if args.summary_only:
            studies[m] = load_study(names[m], args.storage)
        elif args.retime_only:  # the wall column keeps the run's own search and re-timing
            studies[m] = load_study(names[m], args.storage)
            if retimes:
                print(f"# re-timing {m} ...", flush=True)
                print(f"# {m} re-timed in {retime_fronts(args, studies[m], fprofiles, m) / 60:.1f} min", flush=True)
        else:
            print(f"# running {m} ...", flush=True)
            studies[m], search_s = run_method(args, spaces[m], method_profiles(args, profiles, names[m]), m)
            retimed = retime_fronts(args, studies[m], fprofiles, m) if retimes else 0.0
            # kept with the study, so that --summary-only prints them again
            studies[m].set_user_attr(WALL_ATTR, {"search_s": round(search_s, 1), "retime_s": round(retimed, 1)})
        spent = studies[m].user_attrs.get(WALL_ATTR, {})
        wall[m] = float(spent.get("search_s", float("nan"))) + float(spent.get("retime_s", 0.0))
        retime_s[m] = float(spent.get("retime_s", float("nan")))

    summaries, ref_acc = summarise([studies[m] for m in methods], profile, common_dense=True)
    allpts = [p for s in summaries for p in s.points]
    if not allpts:
        print("no complete trials")
        return 1
    test_summaries, test_ref = summarise([studies[m] for m in methods], profile, on_test=True, common_dense=True)
    print_summary("Validation accuracy", methods, summaries, ref_acc, wall, retime_s)
    print_summary("Test accuracy", methods, test_summaries, test_ref, wall, retime_s)
    print("  (HV: area of (accuracy, cost/dense) dominated up to the reference; min cost relative to dense; "
          "wall includes re-timing)")

    fronts = {m: s.front for m, s in zip(methods, summaries) if s.points}
    unit = "ms" if profile else "MACs"
    for m in methods:
        if not fronts.get(m):
            continue
        print()
        print(f"Front: {m} (validation accuracy)")
        print(f"  {'trial':>5} {'val acc':>8} {'test acc':>8} {'cost ' + unit:>14} {'x dense':>8}  params")
        for p in fronts[m]:
            cost = f"{p.cost:,.0f}" if not profile else f"{p.cost:.4f}"
            print(f"  {p.trial:>5} {p.accuracy:>8.4f} {p.accuracy_test:>8.4f} {cost:>14} {p.rel:>8.3f}  {p.params}")
    for m, s in zip(methods, summaries):
        for f in s.failures:
            print(f"  [{m}] failed {f}")

    labelled = [dataclasses.replace(p, method=m) for m, s in zip(methods, summaries) for p in s.points]
    joint = front(labelled)
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
    main_method = HW_METHOD if HW_METHOD in studies else "ssl"
    if not args.no_report and main_method in studies:
        from hwssl.report import build_report
        out = Path(args.report_dir or ROOT / "reports" / study_name(args, space, profiles, "methods"))
        path = build_report(studies[main_method], out, args.storage,
                            compare=[studies[m] for m in methods if m != main_method])
        print(f"\nreport ({main_method} study with the other methods overlaid): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
