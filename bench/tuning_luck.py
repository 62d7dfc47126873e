"""How much of a "tuned" latency is MetaSchedule's luck: one network tuned from scratch several times.

The comparison of methods (``bench/compare.py``) and the latency model both take a fully tuned
latency as the truth. This script measures how well defined that truth is: the same dense network
is tuned from an empty database with each of ``--seeds`` seeds at each of ``--budgets`` (trials per
kernel), built with that database and timed (the profile's ``[timing]``, every thread count up to
the profile's, fastest wins). Printed per budget: each run's latency, its largest kernel's best
tuned time and the tuning time, then the spread max/min of the latencies.

  python bench/tuning_luck.py                                     # LeNet, budgets 32 and 64, 3 seeds
  python bench/tuning_luck.py --budgets 32,128 --seeds 4
  python bench/tuning_luck.py --budgets 4 --seeds 2 --net lenet   # smoke (seconds)

Time it on an otherwise idle machine; every run tunes from scratch into its own database under
``--work`` (a temporary directory unless given).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwssl.config.profile import HardwareProfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETS = {"lenet": (1, (28, 28)), "resnet20": (1, (28, 28))}


def run_once(name: str, profile: HardwareProfile, budget: int, seed: int, work: Path) -> dict[str, float]:
    """Tune ``name``'s dense net from scratch with ``seed`` at ``budget`` trials per kernel, then time it."""
    import torch

    from hwssl.deploy.candidate import measure_candidate
    from hwssl.deploy.compile import import_model, prepare
    from hwssl.deploy.target import make_target
    from hwssl.deploy.tune import tune
    from hwssl.latency.tunedb import database_kernels
    from hwssl.models import build_model, model_spec

    channels, size = NETS[name]
    torch.manual_seed(0)
    model = build_model(model_spec(name, channels, size, 10, 1.0)).eval()
    example = torch.zeros(profile.batch, channels, *size)
    db_dir = work / f"{name}-b{budget}-s{seed}"
    own = dataclasses.replace(profile, tuning=dataclasses.replace(profile.tuning, database=str(db_dir)))
    target = make_target(own)
    # tuned here for the seed (a build tunes with seed 0); the build below then finds the database done
    stats = tune(prepare(import_model(model, example, own), target), target, own, trials_per_task=budget,
                 db_dir=db_dir, seed=seed)
    lat = measure_candidate(model, example, own, arch_key=f"{name}-dense", tune=True, trials_per_task=budget,
                            cache_dir=db_dir / "latency", torch_timing=False, onnx_timing=False)
    largest = max(ms for _, ms in database_kernels(db_dir))
    return {"ms": float(lat["tvm"]), "threads": float(lat.get("threads") or 0), "largest_kernel_us": 1e3 * largest,
            "tune_s": stats.tune_s, "noisy": float("tvm" in (lat.get("noisy") or []))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=sorted(NETS), default="lenet")
    p.add_argument("--budgets", default="32,64", help="trials per kernel, comma list (default 32,64)")
    p.add_argument("--seeds", type=int, default=3, help="tunings per budget (seeds 0..N-1; default 3)")
    p.add_argument("--profile", default=str(ROOT / "hardware_profiles" / "x86_cpu.toml"))
    p.add_argument("--work", help="where the databases go (default: a temporary directory, removed after)")
    p.add_argument("--verbose", action="store_true", help="TVM and MetaSchedule logs on the console "
                                                          "(default: hwssl-artifacts/tuning_luck/tvm.log)")
    args = p.parse_args(argv)
    from hwssl import runlog
    from hwssl.config.profile import load_profile

    runlog.capture(runlog.study_log_path("hwssl-artifacts", "tuning_luck"), verbose=args.verbose)
    try:
        run_all(args, load_profile(args.profile))
    finally:
        runlog.release()


def run_all(args: argparse.Namespace, profile: HardwareProfile) -> None:
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="hwssl-luck-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        print(f"{args.net} dense on {profile.name}: {args.seeds} tunings from scratch per budget", flush=True)
        print(f"{'budget':>6} {'seed':>4} {'TVM ms':>9} {'thr':>3} {'largest kernel us':>17} {'tune s':>7}", flush=True)
        spreads = []
        for budget in budgets:
            runs = []
            for seed in range(args.seeds):
                r = run_once(args.net, profile, budget, seed, work)
                runs.append(r)
                print(f"{budget:6d} {seed:4d} {r['ms']:9.4f} {int(r['threads']):3d} {r['largest_kernel_us']:17.1f} "
                      f"{r['tune_s']:7.1f}{'  noisy' if r['noisy'] else ''}", flush=True)
            ms = [r["ms"] for r in runs]
            spreads.append((budget, min(ms), statistics.median(ms), max(ms)))
        print()
        for budget, lo, med, hi in spreads:
            print(f"budget {budget:4d}: latency min {lo:.4f} / median {med:.4f} / max {hi:.4f} ms, "
                  f"spread max/min {hi / lo:.2f}")


if __name__ == "__main__":
    main()
