"""fp32 vs int8, side by side, measured in one run on this machine.

For a LeNet candidate (mnist5k) and a ResNet-20 (width 0.5) candidate
(Fashion-MNIST subset): train briefly, zero a fraction of SSL groups by
magnitude (filters, shape columns, one residual block), compact, fine-tune
shortly, then ``hwssl.quant.quantize_and_measure`` with ``compare_fp32``:
both networks go through the same import/prepare/build path and are timed by
the same TVM evaluator with the profile's thread count. Untuned by default
(TVM's default loops for both); ``--tune N`` tunes both with N MetaSchedule
trials per task first (in a throw-away database unless --cache-dir).

    python bench/int8.py                       # both models, untuned
    python bench/int8.py --models lenet --tune 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwssl.compact import compact_model  # noqa: E402
from hwssl.config.profile import load_profile  # noqa: E402
from hwssl.data import load_dataset  # noqa: E402
from hwssl.data.sets import first_images, plain  # noqa: E402
from hwssl.models import build_model, model_spec  # noqa: E402
from hwssl.sparsity import count_macs, ssl_sites  # noqa: E402
from hwssl.train import train_phase  # noqa: E402

CANDIDATES = {
    # name: data, data kwargs, model, width, dense epochs, lr, zero fractions, removed blocks, recover epochs
    "lenet": dict(data="mnist5k", data_kw=dict(), model="lenet", width=1.0, epochs=4, lr=0.02,
                  fractions={"filter": 0.5, "shape": 0.4}, depth=(), recover=1.0),
    "resnet20": dict(data="fashion-mnist", data_kw=dict(train_subset=6000, val_subset=1000, test_subset=2000),
                     model="resnet20", width=0.5, epochs=3, lr=0.1,
                     fractions={"filter": 0.25, "shape": 0.25}, depth=("layer3.1",), recover=1.0),
}


@torch.no_grad()
def zero_groups(model: nn.Module, fractions: dict[str, float], depth: tuple[str, ...]) -> None:
    """Zero the smallest-norm fraction of each SSL group type at every site, and whole residual branches."""
    sites = ssl_sites(model)
    for site in sites.convs:
        w = site.conv.weight
        if "filter" in site.types and fractions.get("filter"):
            norms = w.flatten(1).norm(dim=1)
            k = int(fractions["filter"] * len(norms))
            w[norms.argsort()[:k]] = 0
        if "shape" in site.types and fractions.get("shape") and w.shape[-1] > 1:
            norms = w.norm(dim=0).flatten()  # one norm per column (c, i, j)
            k = int(fractions["shape"] * len(norms))
            flat = w.view(w.shape[0], -1)
            flat[:, norms.argsort()[:k]] = 0
    for block in sites.blocks:
        if block.name in depth:
            for p in block.params:
                p.zero_()


def candidate(name: str, threads: int) -> tuple[nn.Module, object, dict]:
    c = CANDIDATES[name]
    splits = load_dataset(c["data"], seed=0, **c["data_kw"])
    info = splits.info
    spec = model_spec(c["model"], info.in_channels, info.image_size, info.num_classes, c["width"])
    torch.manual_seed(0)
    model = build_model(spec)
    t0 = time.perf_counter()
    train_phase(model, splits.train, phase="dense", epochs=c["epochs"], lr=c["lr"], batch_size=64, threads=threads)
    zero_groups(model, c["fractions"], c["depth"])
    compacted = compact_model(model, channel_round=4, check_inputs=first_images(splits.val, 64), tolerance=1e-4)
    small = compacted.model
    train_phase(small, splits.train, phase="recover", epochs=c["recover"], lr=c["lr"] / 5, batch_size=64,
                seed=2, threads=threads)
    macs_dense = count_macs(build_model(spec), spec["input"])[0]
    macs = count_macs(small, spec["input"])[0]
    meta = {"data": splits.split_note.split(":")[0], "train_s": round(time.perf_counter() - t0, 1),
            "macs_dense": macs_dense, "macs": macs, "blocks_removed": compacted.summary["blocks_removed"],
            "lowered_convs": sum(1 for m in small.modules() if getattr(m, "lowered", False))}
    return small.eval(), splits, meta


def i8_rounds(r: dict) -> int:
    return int(r["latency_ms_int8"].get("rounds", 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lenet,resnet20")
    ap.add_argument("--profile", default=str(ROOT / "hardware_profiles" / "x86_cpu.toml"))
    ap.add_argument("--tune", type=int, default=0, help="MetaSchedule trials per task for both (0: untuned)")
    ap.add_argument("--calib", type=int, default=256, help="calibration images (from the training split)")
    ap.add_argument("--calibration", default="max", choices=("max", "percentile"))
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--rounds", type=int, default=3, help="alternating fp32/int8 timing rounds")
    ap.add_argument("--json", default=None, help="also write every result here")
    args = ap.parse_args()

    from hwssl.quant import quantize_and_measure

    profile = load_profile(args.profile)
    train_threads = 1
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"profile {profile.name} ({profile.threads} threads for TVM and PyTorch timing); "
          f"{'tuned, ' + str(args.tune) + ' trials/task for both' if args.tune else 'TVM untuned for both'}")
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="hwssl-int8-bench-") as tmp:
        cache = args.cache_dir or tmp
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            t0 = time.perf_counter()
            model, splits, meta = candidate(name, train_threads)
            calib = first_images(plain(splits.train), args.calib)
            r = quantize_and_measure(model, calib, splits.test, profile, val_dataset=splits.val,
                                     tune=args.tune > 0, trials_per_task=args.tune or None,
                                     calibration=args.calibration, compare_fp32=True, integer_io_check=True,
                                     rounds=args.rounds, cache_dir=cache)
            r["candidate"] = meta
            r["bench_wall_s"] = round(time.perf_counter() - t0, 1)
            results[name] = r
            rows.append((name, meta, r, len(splits.test)))
    print()
    head = (f"{'candidate':<9} {'MACs kept':>9} {'acc fp32':>8} {'acc int8':>8} {'val fp32':>8} {'val int8':>8} "
            f"{'TVM fp32 ms':>11} {'TVM int8 ms':>11} {'int8 speedup':>12} {'torch fp32 ms med/min':>21} "
            f"{'torch int8* ms med/min':>22} {'int8 conv/mm':>12} {'integer_only':>12} {'strict (io=int)':>15}")
    print(head)
    print("-" * len(head))
    for name, meta, r, _n in rows:
        f32, i8 = r["latency_ms_fp32"], r["latency_ms_int8"]
        print(f"{name:<9} {meta['macs'] / meta['macs_dense']:>9.1%} {r['accuracy_fp32_test']:>8.4f} "
              f"{r['accuracy_int8_test']:>8.4f} {r['accuracy_fp32']:>8.4f} {r['accuracy_int8']:>8.4f} "
              f"{f32['tvm']:>11.3f} {i8['tvm']:>11.3f} {f32['tvm'] / i8['tvm']:>11.2f}x "
              f"{f32['torch']:>14.3f}/{f32['torch_min']:<6.3f} {i8['torch']:>15.3f}/{i8['torch_min']:<6.3f} {r['integer_counts']['int8_mac_calls']:>12} {str(r['integer_only']):>12} "
              f"{str(r['integer_io_report']['strict_integer_only']):>15}")
    print("MACs kept: compacted vs dense; acc: test split, val: validation split; TVM ms: median, batch 1; "
          "int8 conv/mm: conv and matmul calls running int8 x int8 -> int32 in the compiled TIR;\n"
          "torch: median / min of all samples (PyTorch's 2 OpenMP threads on this shared 2-core machine give "
          "bimodal samples).\n"
          "* torch int8 = PyTorch eager running the same integer network (int32 convs, no fast kernels): "
          "the bit-exact reference, not a deployment path.")
    for name, meta, r, n_test in rows:
        print(f"\n[{name}] {meta['data']}; compacted: {meta['macs']:,} of {meta['macs_dense']:,} MACs, "
              f"{meta['lowered_convs']} lowered conv(s), blocks removed {meta['blocks_removed']}; "
              f"train+compact+recover {meta['train_s']} s, total {r['bench_wall_s']} s")
        print(f"  test images {n_test}; calibration {r['quant']['calib_images']} train images "
              f"({r['quant']['calibration']}); max |logit int8 - fp32| on test = "
              f"{r['max_abs_diff_vs_fp32_logits']:.4f}")
        print(f"  wall s per phase: {r['wall_s']}")
        tv = r["tvm_vs_torch_int8"]
        print(f"  TVM int8 vs PyTorch int8 network: {tv['argmax_agree']}/{tv['images']} argmax agree, "
              f"max |diff| {tv['max_abs_diff']:.3g}; fp32 TVM vs PyTorch max |diff| "
              f"{r['latency_ms_fp32']['max_abs_diff_vs_torch']:.3g}")
        per_round = len(r["latency_ms_int8"]["tvm_samples_ms"]) // i8_rounds(r)
        print(f"  timing: {i8_rounds(r)} alternating rounds x {per_round} samples each, medians of all samples; "
              f"TVM threads {r['latency_ms_int8']['threads']}; PyTorch timed before TVM ran; TVM min "
              f"fp32 {r['latency_ms_fp32']['tvm_min']:.3f} / int8 {r['latency_ms_int8']['tvm_min']:.3f} ms")
        print(f"  int8 kernels: {r['kernels']}, {r['scheduled_kernels']} scheduled from the tuning database"
              + (f"; tuning {r['tuning']}" if r["tuning"] else ""))
        ops = sorted({f"{e['op']} {' x '.join(e['operands'])} -> {e['accumulator']}" for e in r["int_ops"]})
        print(f"  integer ops: {', '.join(ops)}")
        print(f"  float ops left ({len(r['float_ops'])} blocks, io=float):")
        for e in r["float_ops"]:
            print(f"    {e['desc']}")
        io = r["integer_io_report"]
        print(f"  io=int variant (int8 image in, int32 logits out): strict_integer_only={io['strict_integer_only']}, "
              f"{len(io['float_ops'])} float blocks")
        c = r["fp32_integer_report"]["counts"]
        print(f"  fp32 model, same check: integer_only={r['fp32_integer_report']['integer_only']}, "
              f"float conv/mm calls {c['float_mac_calls']}, int8 {c['int8_mac_calls']}, "
              f"float blocks {c['float_blocks']} ({c['inner_float_blocks']} inner)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
