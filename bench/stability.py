"""Timing stability: the same compacted/dense pair timed in separate processes, idle and under load.

For each net, a fixed compacted candidate is made from the dense architecture by zeroing
a fixed set of groups and compacting it exactly (``hwssl.compact.compact_model``):

* ``lenet`` (MNIST 28x28): half of conv1's filters, 60 % of conv2's shape columns (so conv2
  runs the lowered gather + GEMM path) and half of fc1's inputs' producers;
* ``resnet20`` (Fashion-MNIST 28x28): five of the nine residual blocks removed and half of
  the filters inside the others.

Weights are random (seeded): latency depends on the architecture only, so no training and
no data set is needed. The parent process builds both networks once (the profile's tuning
database is applied with ``--tune``) through :func:`hwssl.deploy.candidate.measure_pair`,
which caches the libraries. Then ``--processes`` fresh Python processes each time the pair
through the same call the search uses (candidate and dense interleaved in rounds, every
thread count, fastest count wins) and print dense/compact ratios. The whole set runs
twice: on an otherwise idle machine, and while a second process (started and stopped by
this script) keeps one core busy. Printed per net and phase: each process's ratio and the
spread max/min of the ratios (target <= 1.25, issue 14).

  python bench/stability.py                              # LeNet and ResNet-20, untuned, ~10 min
  python bench/stability.py --nets lenet --processes 3   # quicker
  python bench/stability.py --tune                       # cheap-tuned builds (first run tunes: long)
  python bench/stability.py --rounds 5 --max-rounds 12   # override the profile's [timing] rounds
  python bench/stability.py --load off                   # idle phase only (or: --load on)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETS = {"lenet": (1, (28, 28)), "resnet20": (1, (28, 28))}
TARGET_SPREAD = 1.25


def _models(name: str):
    """The dense net and the fixed compacted candidate (both eval mode)."""
    import torch

    from hwssl.compact import compact_model
    from hwssl.models import build_model, model_spec
    from hwssl.sparsity import ssl_sites

    channels, size = NETS[name]
    torch.manual_seed(0)
    dense = build_model(model_spec(name, channels, size, 10, 1.0)).eval()
    sparse = build_model(dense.spec).eval()
    sparse.load_state_dict(dense.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if name == "lenet":
            w1 = sparse.body.conv1.conv.weight
            w1[: w1.shape[0] // 2] = 0
            w2 = sparse.body.conv2.conv.weight
            cols = torch.rand(w2.shape[1:], generator=g) < 0.6
            w2[:, cols] = 0
            w2[: w2.shape[0] // 2] = 0
        else:
            blocks = {b.name: b for b in ssl_sites(sparse).blocks}
            for prefix in ("layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1"):
                for p in blocks[prefix].params:
                    p.zero_()
            for prefix in ("layer1.0", "layer2.0", "layer3.0", "layer3.2"):
                conv = dict(sparse.named_modules())[f"{prefix}.conv1"]
                conv.weight[: conv.weight.shape[0] // 2] = 0
    x = torch.randn(8, channels, *size, generator=g)
    compacted = compact_model(sparse, channel_round=4, min_shape_sparsity=0.25, check_inputs=x).model.eval()
    return dense, compacted


def _profile(args: argparse.Namespace):
    from hwssl.config.profile import load_profile

    profile = load_profile(args.profile)
    t = profile.timing
    rounds = args.rounds or t.rounds
    max_rounds = max(args.max_rounds or t.max_rounds, rounds)
    return dataclasses.replace(profile, timing=dataclasses.replace(t, rounds=rounds, max_rounds=max_rounds))


def _time_pair(args: argparse.Namespace, name: str) -> dict:
    """One timing of the pair (in this process); the fields the parent prints."""
    import torch

    from hwssl.compact import arch_key
    from hwssl.deploy.candidate import Net, measure_pair

    profile = _profile(args)
    dense, compacted = _models(name)
    x = torch.randn(profile.batch, *dense.spec["input"], generator=torch.Generator().manual_seed(2))
    cand, ref = measure_pair(Net(compacted, arch_key(compacted.spec)), Net(dense, arch_key(dense.spec)), x, profile,
                             tune=args.tune, trials_per_task=args.trials_per_task, torch_timing=False)
    out = {"tvm_ratio": ref["tvm"] / cand["tvm"], "tvm_dense": ref["tvm"], "tvm_compact": cand["tvm"],
           "threads": [ref.get("threads"), cand.get("threads")], "rounds": cand.get("tvm_rounds"),
           "noisy": sorted(set(cand["noisy"]) | set(ref["noisy"])), "cached": cand["cached"] and ref["cached"]}
    if cand.get("onnxruntime") and ref.get("onnxruntime"):
        out["ort_ratio"] = ref["onnxruntime"] / cand["onnxruntime"]
    return out


def _child_cmd(args: argparse.Namespace, name: str) -> list[str]:
    cmd = [sys.executable, __file__, "--child", name, "--profile", args.profile]
    for flag, value in (("--rounds", args.rounds), ("--max-rounds", args.max_rounds),
                        ("--trials-per-task", args.trials_per_task)):
        if value:
            cmd += [flag, str(value)]
    return cmd + (["--tune"] if args.tune else [])


def _start_load() -> subprocess.Popen:
    """A second process that keeps one core busy (the last CPU this process may use, where the OS says)."""
    # it ends by itself when this script goes away (parent changes) or after an hour at most
    code = ("import os, sys, time\n"
            "parent, end = int(sys.argv[1]), time.monotonic() + 3600\n"
            "cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []\n"
            "if cpus: os.sched_setaffinity(0, {cpus[-1]})\n"
            "while os.getppid() == parent and time.monotonic() < end:\n"
            "    for _ in range(100000): pass\n")
    return subprocess.Popen([sys.executable, "-c", code, str(os.getpid())])


def _run_phase(args: argparse.Namespace, name: str, loaded: bool) -> list[dict]:
    load = _start_load() if loaded else None
    rows = []
    try:
        if load is not None:
            time.sleep(1.0)
        for i in range(args.processes):
            run = subprocess.run(_child_cmd(args, name), capture_output=True, text=True, timeout=1800,
                                 env=dict(os.environ))
            if run.returncode != 0:
                raise SystemExit(f"{name}: process {i + 1} failed:\n{run.stderr[-3000:]}")
            rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    finally:
        if load is not None:
            load.kill()
            load.wait(timeout=30)
    return rows


def _spread(values: list[float]) -> float:
    return max(values) / min(values) if values and min(values) > 0 else float("nan")


def _report(name: str, phase: str, rows: list[dict]) -> list[str]:
    lines = [f"{name}, {phase}:"]
    for i, r in enumerate(rows, 1):
        ort = f"  ONNX Runtime {r['ort_ratio']:.3f}x" if "ort_ratio" in r else ""
        lines.append(f"  process {i}: TVM dense/compact {r['tvm_ratio']:.3f}x (dense {r['tvm_dense']:.4f} ms, "
                     f"compact {r['tvm_compact']:.4f} ms, threads {r['threads'][0]}/{r['threads'][1]}, "
                     f"{r['rounds']} rounds{', noisy: ' + ','.join(r['noisy']) if r['noisy'] else ''}){ort}")
    tvm = [r["tvm_ratio"] for r in rows]
    verdict = "meets" if _spread(tvm) <= TARGET_SPREAD else "MISSES"
    lines.append(f"  TVM ratio median {statistics.median(tvm):.3f}x, spread max/min {_spread(tvm):.3f} "
                 f"({verdict} the <= {TARGET_SPREAD} target)")
    ort = [r["ort_ratio"] for r in rows if "ort_ratio" in r]
    if len(ort) == len(rows):
        lines.append(f"  ONNX Runtime ratio median {statistics.median(ort):.3f}x, spread max/min {_spread(ort):.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="lenet,resnet20", help="comma-separated: lenet, resnet20")
    parser.add_argument("--profile", default=str(ROOT / "hardware_profiles" / "x86_cpu.toml"))
    parser.add_argument("--processes", type=int, default=5, help="fresh processes per net and phase (default 5)")
    parser.add_argument("--rounds", type=int, help="minimum timing rounds (default: the profile's timing.rounds)")
    parser.add_argument("--max-rounds", type=int, help="most timing rounds (default: the profile's timing.max_rounds)")
    parser.add_argument("--load", choices=("both", "off", "on"), default="both",
                        help="phases: idle and loaded (both), idle only (off), loaded only (on)")
    parser.add_argument("--tune", action="store_true", help="apply/extend the profile's tuning database "
                        "(cheap budget); default: untuned builds")
    parser.add_argument("--trials-per-task", type=int, help="with --tune (default: the profile's trials_per_task)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes < 2:
        parser.error("--processes must be >= 2 (a spread needs two ratios)")

    import hwssl.deploy  # noqa: F401  (sets TVM_NUM_THREADS before TVM is imported)

    if args.child:
        print(json.dumps(_time_pair(args, args.child)))
        return
    if "HWSSL_CACHE" not in os.environ:  # keep the bench's builds apart from the project cache
        os.environ["HWSSL_CACHE"] = str(Path(tempfile.gettempdir()) / "hwssl-stability-cache")
    profile = _profile(args)
    phases = {"both": [False, True], "off": [False], "on": [True]}[args.load]
    print(f"profile {profile.name} ({args.profile}), {'tuned (cheap budget)' if args.tune else 'untuned'} TVM; "
          f"rounds {profile.timing.rounds}..{profile.timing.max_rounds}, max_spread {profile.timing.max_spread}, "
          f"threads 1..{profile.threads}; {args.processes} processes per phase; cache {os.environ['HWSSL_CACHE']}")
    lines: list[str] = []
    for name in [n.strip() for n in args.nets.split(",") if n.strip()]:
        if name not in NETS:
            parser.error(f"unknown net {name!r}; choose from {', '.join(NETS)}")
        t0 = time.perf_counter()
        _time_pair(args, name)  # build (and tune) once; the processes reuse the cached libraries
        print(f"{name}: built in {time.perf_counter() - t0:.0f} s", flush=True)
        for loaded in phases:
            rows = _run_phase(args, name, loaded)
            block = _report(name, "one core loaded by another process" if loaded else "idle", rows)
            print("\n".join(block), flush=True)
            lines += block
    print("\nsummary\n" + "\n".join(line for line in lines if "spread" in line or line.endswith(":")))


if __name__ == "__main__":
    main()
