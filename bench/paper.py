"""The SSL paper's qualitative results at small scale on offline data, next to the paper's numbers.

Wen et al., "Learning Structured Sparsity in Deep Neural Networks", NeurIPS 2016:

* LeNet on MNIST (here: LeNet on the 5,000-image MNIST subset, ``search_spaces/lenet_mnist5k.toml``):
  filter- plus channel-wise SSL (paper's LeNet #2 / #3) and shape-wise SSL (#4 / #5):
  kept filters, channels and filter-shape sizes per layer, FLOP fraction per layer, test
  error, and measured per-layer speedups (each conv layer, dense vs compacted, compiled and
  timed alone through ``hwssl.deploy.measure_candidate`` on ``--profile``; "n/a" without
  a profile or without the deploy layer).
* ResNet-20 depth-wise SSL (here: on Fashion-MNIST, ``search_spaces/resnet20_fmnist.toml``):
  weighted layers kept (the paper's count: stem + 2 per live block + fc) and accuracy
  against the dense net (paper on CIFAR-10: ResNet-20 8.82% error -> SSL-ResNet-14 8.54%;
  ResNet-32 7.51% -> SSL-ResNet-18 7.40%, i.e. fewer layers without loss).

What "qualitatively the same" means here: SSL removes most filters/channels (or most
filter-shape columns of conv1) and most of the FLOPs without raising the error by more
than a few tenths of a point, and depth-wise SSL removes residual blocks without losing
accuracy. Absolute errors differ: 4.5k training images instead of 60k, and Fashion-MNIST
instead of CIFAR-10. The strengths below are this repo's proximal-mode strengths (useful
range about 0.2-0.8 for LeNet here), picked once to land near the paper's structures;
they are flags, not tuned per run.

The depth strengths of the ResNet part (``--depth-strengths``, default
``depth.layer1.2=5,4``): each comma item is one run, either a uniform strength for every
block (``4``) or per stage/block keys (``depth.layer1.2=5``, several joined by ``;``).
Measured here (4 SSL + 2 recovery epochs): uniform 3 removes no block, 4 the three blocks
of stage 1 (20 -> 14 layers), 5 six blocks; ``depth.layer1.2=5`` removes that one block
(20 -> 18 layers, the paper's SSL-ResNet-18 shape). Reasoning: the proximal step shrinks a
block's group norm by lr*lambda per step, about 3.1*lambda over the 4 SSL epochs (628
steps, cosine from 0.01), and the dense blocks' norms are about 10 (stage 1), 13-14
(stage 2) and 18-19 (stage 3), so the threshold between "no block" and "a whole stage" is
sharp; per-block strengths pick the blocks.

Commands (2-core x86 machine, one torch thread):

  # LeNet part, MACs only, about 3 min:
  python bench/paper.py --part lenet
  # LeNet with per-layer TVM timings on x86 (untuned TVM, labelled as such):
  python bench/paper.py --part lenet --profile hardware_profiles/x86_cpu.toml --no-tune
  # ResNet-20 depth-wise, about 7 min per strength (dense checkpoint cached in .hwssl-cache/):
  python bench/paper.py --part resnet --depth-strengths depth.layer1.2=5,4
  # shorter: --resnet-set train.ssl_epochs=2 --resnet-set train.recover_epochs=1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from hwssl.cache import stable_hash  # noqa: E402
from hwssl.compact import load_compacted  # noqa: E402
from hwssl.record import TrialRecord  # noqa: E402
from hwssl.config import load_search_space  # noqa: E402
from hwssl.evaluate import evaluate_candidate, prepare  # noqa: E402

LENET_SPACE = ROOT / "search_spaces" / "lenet_mnist5k.toml"
RESNET_SPACE = ROOT / "search_spaces" / "resnet20_fmnist.toml"

# The paper's LeNet table rows (error, filters, channels, FLOP per conv layer); "-" where not given here.
PAPER_LENET = {
    "baseline": {"error": "0.9%", "filters": "20—50", "channels": "1—20", "shape": "25—500", "flop": "100%—100%"},
    "#2": {"error": "0.8%", "filters": "5—19", "channels": "1—4", "shape": "-", "flop": "25%—7.6%"},
    "#3": {"error": "1.0%", "filters": "3—12", "channels": "-", "shape": "-", "flop": "15%—3.6%"},
    "#4": {"error": "-", "filters": "-", "channels": "-", "shape": "-", "flop": "-"},
    "#5": {"error": "1.0%", "filters": "-", "channels": "-", "shape": "conv1 25 → 7", "flop": "1.4%—2.8%"},
}
PAPER_RESNET = [("ResNet-20 (CIFAR-10)", 20, "8.82%"), ("SSL-ResNet-14", 14, "8.54%"),
                ("ResNet-32 (CIFAR-10)", 32, "7.51%"), ("SSL-ResNet-18", 18, "7.40%")]

DEFAULT_ROWS = {  # picked with single runs of each setting on lenet_mnist5k (see the reply of issue #6)
    "#2": "filter.conv1=0.25,filter.conv2=0.6,channel.conv2=0.25",
    "#3": "filter.conv1=0.3,filter.conv2=1.0,channel.conv2=0.3",
    "#4": "shape.conv1=0.1,shape.conv2=0.1",
    "#5": "shape.conv1=0.45,shape.conv2=0.25",
}
ROW_KIND = {"#2": "filter+channel", "#3": "filter+channel", "#4": "shape", "#5": "shape"}


def parse_strengths(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        if item.strip():
            key, _, value = item.partition("=")
            out[key.strip()] = float(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--part", choices=["lenet", "resnet", "all"], default="all")
    for row, default in DEFAULT_ROWS.items():
        p.add_argument(f"--lenet{row[1:]}", default=default, metavar="KEY=V,...",
                       help=f"strengths of row {row} ({ROW_KIND[row]}; default {default})")
    p.add_argument("--lenet-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a LeNet space setting, e.g. train.ssl_epochs=8 (budget)")
    p.add_argument("--depth-strengths", default="depth.layer1.2=5,4",
                   help="one ResNet-20 run per comma item: a uniform depth strength (4) or per stage/block keys "
                        "(depth.layer1.2=5, several joined by ';'); default depth.layer1.2=5,4")
    p.add_argument("--resnet-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ResNet space setting, e.g. train.ssl_epochs=2 (budget)")
    p.add_argument("--profile", help="hardware profile for per-layer timings (else speedups are n/a)")
    p.add_argument("--no-tune", action="store_true", help="untuned TVM timings (labelled)")
    p.add_argument("--trials-per-task", type=int)
    return p.parse_args(argv)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- timing
def _conv_inputs(model: torch.nn.Module, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [getattr(model.body, n).register_forward_hook(
        lambda m, inp, out, n=n: shapes.__setitem__(n, tuple(inp[0].shape[1:]))) for n in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *model.spec["input"]))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def layer_latencies(model: torch.nn.Module, profile: Any, tune: bool, trials_per_task: int | None
                    ) -> dict[str, float | None] | str:
    """TVM time (ms) of every conv layer of a plain CNN, each compiled and timed on its own."""
    try:
        from hwssl.deploy import measure_candidate
    except Exception as exc:  # the deploy layer is not there (yet)
        return f"n/a (deploy layer unavailable: {type(exc).__name__})"
    names = [layer["name"] for layer in model.spec["layers"] if layer["kind"] == "conv"]
    shapes = _conv_inputs(model, names)
    out: dict[str, float | None] = {}
    for layer in model.spec["layers"]:
        if layer["kind"] != "conv":
            continue
        name = layer["name"]
        unit = getattr(model.body, name).eval()
        x = torch.randn(1, *shapes[name], generator=torch.Generator().manual_seed(0))
        key = "layer-" + stable_hash({"layer": layer, "input": shapes[name]})
        try:
            r = measure_candidate(unit, x, profile, arch_key=key, tune=tune, trials_per_task=trials_per_task)
            out[name] = r.get("tvm")
        except Exception as exc:
            _say(f"  timing {name} failed: {type(exc).__name__}: {exc}")
            out[name] = None
    return out


# ------------------------------------------------------------------------------------------- LeNet
def _pair(values: list[Any]) -> str:
    return "—".join(str(v) for v in values)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.01 else f"{100 * x:.2f}%"


def lenet_part(args: argparse.Namespace) -> None:
    space = load_search_space(str(LENET_SPACE), list(args.lenet_set))
    t = space.train
    profile = None
    if args.profile:
        from hwssl.config.profile import load_profile
        profile = load_profile(args.profile)
    _say(f"LeNet: {space.data.name}, {t.ssl_epochs} SSL + {t.recover_epochs} recovery epochs per row")
    start = prepare(space)
    dense = start.dense_model().eval()
    convs = [layer["name"] for layer in start.spec["layers"] if layer["kind"] == "conv"]
    dense_lat = layer_latencies(dense, profile, not args.no_tune, args.trials_per_task) if profile else "n/a"
    rows = []
    layer_ms: dict[str, Any] = {"baseline": dense_lat}
    err_dense = 1 - start.ckpt["accuracy_test"]
    d_layers = {layer["name"]: layer for layer in start.spec["layers"] if layer["kind"] == "conv"}
    rows.append({"row": "baseline", "kind": "dense", "error": err_dense, "error_val": 1 - start.ckpt["accuracy_val"],
                 "filters": [d_layers[n]["out"] for n in convs], "channels": [d_layers[n]["in"] for n in convs],
                 "shape": [d_layers[n]["in"] * d_layers[n]["kernel"] ** 2 for n in convs],
                 "flop": [1.0 for _ in convs], "speedup": [1.0 for _ in convs] if isinstance(dense_lat, dict) else None,
                 "strengths": {}, "wall": 0.0})
    for row in ("#2", "#3", "#4", "#5"):
        strengths = parse_strengths(getattr(args, f"lenet{row[1:]}"))
        _say(f"  row {row} ({ROW_KIND[row]}): {strengths}")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rec = TrialRecord.from_dict(evaluate_candidate(space, strengths, save_dir=tmp))
            small = load_compacted(tmp)
        r = rec.extra
        wall = time.perf_counter() - t0
        L = r["layers"]
        flop = [r["flops_per_layer"].get(f"body.{n}.conv", 0) / r["flops_per_layer_dense"][f"body.{n}.conv"]
                for n in convs]
        speed = None
        if isinstance(dense_lat, dict):
            lat = layer_latencies(small, profile, not args.no_tune, args.trials_per_task)
            if isinstance(lat, dict):
                speed = [(dense_lat[n] / lat[n]) if dense_lat.get(n) and lat.get(n) else None for n in convs]
                layer_ms[row] = lat
        rows.append({"row": row, "kind": ROW_KIND[row], "error": 1 - rec.accuracy_test, "error_val": 1 - rec.accuracy,
                     "filters": [L[n]["filters"] for n in convs], "channels": [L[n]["channels"] for n in convs],
                     "shape": [L[n]["columns"] for n in convs],
                     "shape_per_channel": [_shape_per_channel(L[n]) for n in convs],
                     "flop": flop, "speedup": speed, "strengths": strengths, "wall": wall,
                     "diff": r["max_abs_diff_compacted"], "lowered": [L[n]["lowered"] for n in convs]})

    timing = "n/a (no --profile)" if not profile else (
        dense_lat if isinstance(dense_lat, str) else
        f"TVM on {profile.name}, {'untuned' if args.no_tune else 'tuned'}, each conv layer alone")
    print(f"LeNet on {space.data.name} ({len(start.splits.train)} training / {len(start.splits.test)} test images; "
          f"paper: MNIST 60k / 10k). Error = test error after recovery. "
          f"Layers conv1—conv2. Per-layer speedup: {timing}.")
    print(f"Budget per row: {t.ssl_epochs} SSL epochs (lr {t.ssl_lr}, {space.ssl.mode}) + {t.recover_epochs} "
          f"recovery epochs after exact compaction; dense checkpoint {t.dense_epochs} epochs.")
    hdr = (f"{'LeNet':<9} {'':<22} {'error':>6} {'filters':>9} {'channels':>9} {'filter shape':>13} "
           f"{'FLOP':>13} {'speedup':>11}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        sp = "n/a" if not r["speedup"] else _pair([f"{s:.2f}" if s else "n/a" for s in r["speedup"]])
        flop = _pair([_pct(f) for f in r["flop"]])
        print(f"{r['row']:<9} {'ours (' + r['kind'] + ')':<22} {100 * r['error']:>5.2f}% {_pair(r['filters']):>9} "
              f"{_pair(r['channels']):>9} {_pair(r['shape']):>13} {flop:>13} {sp:>11}")
        pp = PAPER_LENET[r["row"]]
        print(f"{'':<9} {'paper':<22} {pp['error']:>6} {pp['filters']:>9} {pp['channels']:>9} {pp['shape']:>13} "
              f"{pp['flop']:>13}")
    print()
    print("filter shape = kept columns of the lowered weight (channels x kh x kw); dense 25—500. "
          "Per kept input channel (shape-wise rows): "
          + "; ".join(f"{r['row']} " + _pair(r["shape_per_channel"]) for r in rows[1:]))
    print("strengths: " + "; ".join(f"{r['row']} {r['strengths']}" for r in rows[1:]))
    if isinstance(dense_lat, dict):
        print("per-layer TVM ms: " + "; ".join(
            f"{row} " + _pair([f"{v:.4f}" if v else "n/a" for v in (lat.get(n) for n in convs)])
            for row, lat in layer_ms.items() if isinstance(lat, dict)))
    print("val error: " + "; ".join(f"{r['row']} {100 * r['error_val']:.2f}%" for r in rows)
          + f"; compaction max |diff|: {max(r['diff'] for r in rows[1:]):.1e}; "
          + "wall per row: " + ", ".join(f"{r['wall']:.0f}s" for r in rows[1:]))


def _shape_per_channel(layer: dict[str, Any]) -> str:
    c = max(1, layer["channels"])
    per = layer["columns"] / c
    return f"{per:.0f}" if per == int(per) else f"{per:.1f}"


# ------------------------------------------------------------------------------------------- ResNet
def parse_depth_setting(item: str) -> tuple[str, dict[str, float]]:
    """``4`` (uniform: every block) or ``depth.layer1.2=5`` / ``depth.stage1=3.6;depth.layer1.2=5``
    (per stage or block, ``;``-separated) -> (label, strengths)."""
    item = item.strip()
    if "=" not in item:
        return f"{float(item):g}", {"depth": float(item)}
    strengths = {}
    for part in item.split(";"):
        key, _, value = part.partition("=")
        strengths[key.strip()] = float(value)
    return ";".join(f"{k.removeprefix('depth.')}={v:g}" for k, v in strengths.items()), strengths


def resnet_part(args: argparse.Namespace) -> None:
    space = load_search_space(str(RESNET_SPACE), list(args.resnet_set))
    t = space.train
    settings = [parse_depth_setting(v) for v in args.depth_strengths.split(",") if v.strip()]
    _say(f"ResNet-20: {space.data.name}, {t.ssl_epochs} SSL + {t.recover_epochs} recovery epochs per strength")
    start = prepare(space)
    rows = [("ResNet-20 dense", "-", 20, start.ckpt["accuracy_val"], start.ckpt["accuracy_test"], [], 0.0, 1.0)]
    for label, strengths in settings:
        _say(f"  depth strengths {strengths}")
        t0 = time.perf_counter()
        rec = TrialRecord.from_dict(evaluate_candidate(space, strengths))
        r = rec.extra
        rows.append((f"SSL-ResNet-{r['conv_layers']}", label, r["conv_layers"], rec.accuracy,
                     rec.accuracy_test, r["blocks_removed"], time.perf_counter() - t0, rec.flops_ratio))
    print(f"ResNet-20 depth-wise SSL on {space.data.name} ({len(start.splits.train)} training images, test on "
          f"{len(start.splits.test)}); {t.ssl_epochs} SSL epochs (lr {t.ssl_lr}, {space.ssl.mode}) + "
          f"{t.recover_epochs} recovery epochs; dense {t.dense_epochs} epochs.")
    print(f"{'net':<18} {'λ depth':>16} {'layers':>6} {'val acc':>8} {'test err':>9} {'MACs x':>7} {'wall':>6}  "
          f"blocks removed")
    for name, lam, layers, acc, acc_test, removed, wall, ratio in rows:
        print(f"{name:<18} {lam:>16} {layers:>6} {acc:>8.4f} {100 * (1 - acc_test):>8.2f}% {ratio:>7.2f} "
              f"{wall:>5.0f}s  {', '.join(removed) or '-'}")
    print("paper (CIFAR-10): " + "; ".join(f"{n}: {layers} layers, {err} error" for n, layers, err in PAPER_RESNET))
    dense_err = 100 * (1 - start.ckpt["accuracy_test"])
    for name, lam, layers, acc, acc_test, removed, wall, ratio in rows[1:]:
        delta = 100 * (1 - acc_test) - dense_err
        print(f"  {name} (λ {lam}): {20 - layers} layers removed, test error {delta:+.2f} pt vs dense "
              f"({'no loss' if delta <= 0.3 else 'loss'}; tolerance 0.3 pt)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.part in ("lenet", "all"):
        lenet_part(args)
        print()
    if args.part in ("resnet", "all"):
        resnet_part(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
