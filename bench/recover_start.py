"""Where recovery starts: a path snapshot's own SSL weights, or the dense weights with its zero pattern.

Issue 11's comparisons found SSL's nets less accurate on test than the pruning baselines' nets of
the same architecture (LeNet's 4/8-filter net: 96.1 % test from an SSL path, 96.6-96.7 % from L1
and Torch-Pruning). Group Lasso shrinks the groups it keeps too; the baselines fine-tune from
dense weights. This script separates the two effects on real SSL paths: for every snapshot of a
few regularisation paths it recovers the same architecture twice, with the same epochs, through
the harness every method shares (:func:`hwssl.evaluate.finish_candidate`):

* ``snapshot`` -- from the snapshot's weights (what hwssl does);
* ``dense``    -- from the dense checkpoint with the snapshot's zero pattern (every weight the
  snapshot holds at exactly 0 set to 0, so compaction removes the same groups): what
  ``ssl.recover_from = "dense"`` does.

It prints both accuracies per snapshot and their means. No timing: the paths are priced with
MACs (``ssl.oracle = "macs"``), so it runs anywhere, in about 7 minutes for LeNet on 2 cores.

  python bench/recover_start.py                    # LeNet / MNIST-5k, three mixes of the comparisons
  python bench/recover_start.py --space search_spaces/lenet_mnist5k_hw.toml --mix filter=0.1,shape=0.02
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# three first mixes of the LeNet comparisons' ssl-hw studies (compare10: trials 8, 11, 15)
DEFAULT_MIXES = ("filter=0.33,channel=0,shape=0.28", "filter=0.036,channel=0.028,shape=0",
                 "filter=0.31,channel=0.047,shape=0.13")


def parse_mix(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "lenet_mnist5k_hw.toml"))
    p.add_argument("--mix", action="append", help=f"relative strengths of one path (default: {DEFAULT_MIXES})")
    p.add_argument("--targets", default="0.65,0.5,0.35,0.2", help="path targets, fractions of the dense MACs")
    args = p.parse_args(argv)

    from hwssl.budget.cost import MAC_ORACLE
    from hwssl.budget.path import ssl_path
    from hwssl.config import load_search_space
    from hwssl.evaluate import finish_candidate, prepare

    space = load_search_space(args.space, ["ssl.oracle=macs"])
    start = prepare(space)
    targets = [float(t) for t in args.targets.split(",")]
    rows: list[dict[str, tuple[float, float]]] = []
    print(f"{'mix':<40} {'target':>6} {'arch':>7}  {'snapshot val/test':>18}  {'dense val/test':>15}")
    for mix_text in args.mix or DEFAULT_MIXES:
        mix = parse_mix(mix_text)
        run = ssl_path(start, targets, mix, predict=MAC_ORACLE.predict, weigh=MAC_ORACLE.weigh)
        for snap in run.snapshots:
            row, arch = {}, ""
            for variant, recover_from in (("snapshot", "ssl"), ("dense", "dense")):
                model = start.dense_model()
                model.load_state_dict(snap.state)
                ssl = replace(space.ssl, recover_from=recover_from)   # hwssl's own ssl.recover_from
                result = finish_candidate(replace(start, space=replace(space, ssl=ssl)), model, method="ssl",
                                          params={}, sparsify=replace(run.phase, steps=snap.step))
                row[variant] = (result["accuracy"], result["accuracy_test"])
                arch = "/".join(str(v["filters"]) for v in result["layers"].values() if "filters" in v)
            rows.append(row)
            print(f"{mix_text:<40} {snap.target:>6.2f} {arch:>7}  "
                  f"{100 * row['snapshot'][0]:>8.2f} / {100 * row['snapshot'][1]:<6.2f}  "
                  f"{100 * row['dense'][0]:>6.2f} / {100 * row['dense'][1]:<6.2f}", flush=True)
    for variant in ("snapshot", "dense"):
        val = statistics.mean(r[variant][0] for r in rows)
        test = statistics.mean(r[variant][1] for r in rows)
        print(f"recovered from {variant:<8}: mean val {100 * val:.2f} %, mean test {100 * test:.2f} % "
              f"over {len(rows)} snapshots")
    better = sum(r["dense"][1] > r["snapshot"][1] for r in rows)
    worse = sum(r["dense"][1] < r["snapshot"][1] for r in rows)
    print(f"test accuracy from the dense start: higher in {better}, lower in {worse} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
