"""The ``hwssl`` command line. Thin: parse, load config, call one function."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from hwssl import runlog
from hwssl.config import ConfigError

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = str(_ROOT / "search_spaces" / "lenet_mnist5k.toml")
# `hwssl search` defaults to hardware-aware SSL (issue 11: it beat plain SSL on tuned latency, see the
# README's results); the paper's plain SSL is `--space search_spaces/lenet_mnist5k.toml`.
DEFAULT_SEARCH_SPACE = str(_ROOT / "search_spaces" / "lenet_mnist5k_hw.toml")
DEFAULT_PROFILE = str(_ROOT / "hardware_profiles" / "x86_cpu.toml")


def _load_space(path: str, overrides: Sequence[str] = ()):
    from hwssl.config.space import load_search_space
    return load_search_space(path, list(overrides))


def _load_profiles(paths: Sequence[str]):
    if not paths:
        return []
    from hwssl.config.profile import load_profile
    return [load_profile(p) for p in paths]


def cmd_check(args: argparse.Namespace) -> int:
    from hwssl.config.check import check_file
    print(check_file(args.file, args.kind))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hwssl.evaluate import evaluate_candidate
    from hwssl.settings import MeasureSettings

    space = _load_space(args.space, args.set)
    profiles = _load_profiles(args.profile)
    from hwssl.budget.cost import check_oracle

    check_oracle(space, profiles)
    if profiles:  # TVM runs only for a profile
        runlog.capture(Path(args.out) / runlog.LOG_NAME if args.out else
                       runlog.study_log_path("hwssl-artifacts", f"evaluate-{space.name}"), verbose=args.verbose)

    def show_progress(phase: str, i: int, n: int) -> None:
        if i == n or i % 50 == 0:
            print(f"\r  {phase}: step {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)

    measure = MeasureSettings(tune=not args.no_tune, per_layer=args.per_layer, precision=args.precision,
                              int8=True if args.int8 else None)
    result = evaluate_candidate(space, profiles=profiles, measure=measure, save_dir=args.out,
                                progress=None if args.json else show_progress)
    if args.json:
        if not args.with_arch:
            result.pop("arch", None)
        print(json.dumps(result, indent=1))
    else:
        print(_summary(result))
    return 0


def _summary(result: dict) -> str:
    from hwssl.record import TrialRecord

    rec = TrialRecord.from_dict(result)
    r = rec.extra
    lines = [f"{r['model']} on {r['data']} with {r['strengths']}",
             f"  accuracy  dense {rec.dense.accuracy:.4f} -> sparse {r['accuracy_sparse']:.4f} -> "
             f"compacted+recovered {rec.accuracy:.4f} (val), test {rec.dense.accuracy_test:.4f} -> "
             f"{rec.accuracy_test:.4f}",
             f"  MACs      {rec.flops_dense:,} -> {rec.flops:,} ({rec.flops_ratio:.2f}x fewer)",
             f"  params    {rec.params_dense:,} -> {rec.params:,}",
             f"  layers    {r['conv_layers_dense']} -> {r['conv_layers']}; blocks removed: {r['blocks_removed']}",
             f"  compaction max |diff| {r['max_abs_diff_compacted']:.2e}; SSL step overhead "
             f"{r['ssl_step_overhead']:.2f}x"]
    if "target" in r:
        b = r["budget"]
        last = b["strength_trajectory"][-1]["strength"] if b["strength_trajectory"] else 1.0
        units = f" {r['oracle_units']}" if r.get("oracle_units") else ""
        lines.append(f"  budget    target {r['target']:.3g} of the dense predicted cost ({b['predicted_dense']:.4g}"
                     f"{units}, oracle {r.get('oracle', 'macs')}): "
                     f"reached {r['predicted_ratio']:.3g} ({'met' if b['reached'] else 'NOT met'}, "
                     f"{len(b['strength_trajectory'])} checks, final strength x{last:.3g}, {b['rollbacks']} rollbacks)")
    for name, kept in r["layers"].items():
        d = kept["dense"]
        lines.append(f"    {name:<18} filters {kept['filters']:>4}/{d['filters']:<4} channels "
                     f"{kept['channels']:>4}/{d['channels']:<4} columns {kept['columns']:>5}/{d['columns']:<5}"
                     f"{' lowered' if kept['lowered'] else ''}")
    for prof in rec.profiles:
        lat, dense = rec.latency(prof), rec.dense_latency(prof)
        notes = f"; noisy: {','.join(lat.get('noisy'))}" if lat.get("noisy") else ""
        if lat.extra.get("predicted_ms"):
            notes += f"; latency model predicted {lat.extra['predicted_ms']:.4g} ms"
        lines.append(f"  latency [{prof}] tvm {lat.tvm} ms at {lat.get('threads')} thread(s) (dense "
                     f"{dense.tvm if dense else None} at {dense.get('threads') if dense else None}), onnxruntime "
                     f"{lat.get('onnxruntime')} ms (dense {dense.get('onnxruntime') if dense else None}), torch "
                     f"{lat.torch} ms, {'tuned' if lat.tuned else 'untuned'}{notes}")
    int8 = rec.int8
    if int8 is not None:
        lines.append(f"  int8      val {int8.accuracy:.4f}, test {int8.accuracy_test:.4f}; "
                     f"{'integer-only' if r['integer_only'] else 'NOT integer-only'}, {len(r['float_ops'])} float "
                     f"blocks; deployed as {rec.precision}")
        for prof, timing in int8.timings.items():
            lat = timing.cheap
            lines.append(f"  int8 latency [{prof}] tvm {lat.tvm} ms, "
                         f"{'tuned' if lat.tuned else 'untuned'}{' (' + lat.skipped + ')' if lat.skipped else ''}")
    return "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    from hwssl.results import pareto_frame, study_profiles
    from hwssl.search import SearchError, SearchOptions, run_search

    space = _load_space(args.space, args.set)
    profiles = _load_profiles(args.profile if args.profile else ([] if args.no_profile else [DEFAULT_PROFILE]))
    opts = SearchOptions(space=space, profiles=profiles, study_name=args.study, storage=args.storage,
                         resume=args.resume, trials=args.trials, sampler=args.sampler, tune=not args.no_tune,
                         trials_per_task=args.trials_per_task, artifacts=args.artifacts,
                         heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                         overrides=args.set, quiet=args.quiet, method=args.method,
                         method_params=_method_params(args.method_param), ratio_low=args.ratio_range[0],
                         ratio_high=args.ratio_range[1], per_layer_ratios=args.per_layer_ratios,
                         ratios=args.ratios or ())
    if profiles:
        runlog.capture(runlog.study_log_path(opts.artifacts, opts.name), verbose=args.verbose,
                       announce=not args.quiet)
    interrupted = False
    try:
        study = run_search(opts)
    except SearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from hwssl.storage import load_study
        interrupted = True
        study = load_study(opts.name, opts.storage_url)
    if not interrupted and profiles and opts.tune and not args.no_final_tune:
        _retime(study, profiles, args.final_trials_per_task)
    names = study_profiles(study) or [None]
    for profile in names:
        front = pareto_frame(study, profile)
        title = f"Pareto-optimal trials (val accuracy vs {'latency on ' + profile if profile else 'MACs'})"
        print(title)
        print(_pareto_text(front, profile) if not front.empty else "  (no complete trials yet)")
    print(f"study {opts.name!r} stored in {opts.storage_url}")
    if not args.no_report:
        _report_after_search(study, opts.storage_url)
    if interrupted:
        print("interrupted: finished trials are saved; continue with the same command plus --resume",
              file=sys.stderr)
        return 130
    return 0


def _retime(study, profiles, trials_per_task, again: bool = False) -> None:
    from hwssl.retime import retime_pareto
    retime_pareto(study, profiles, trials_per_task=trials_per_task,
                  say=lambda line: print(line, file=sys.stderr), again=again)


def cmd_retime(args: argparse.Namespace) -> int:
    from hwssl.storage import default_storage_url, load_study

    study = load_study(args.study, args.storage or default_storage_url())
    _capture_for_study(study, args)
    paths = args.profile or [p["path"] for p in study.user_attrs.get("profiles", [])]
    if not paths:
        print("error: the study has no hardware profile to re-time on", file=sys.stderr)
        return 2
    _retime(study, _load_profiles(paths), args.trials_per_task, again=args.again)
    print(f"re-timed the Pareto-optimal trials of {args.study!r}; rebuild the report with `hwssl report`")
    return 0


def _capture_for_study(study, args: argparse.Namespace) -> None:
    """TVM's logs into the study's log file (beside its trial artifacts) unless --verbose."""
    artifacts = study.user_attrs.get("artifacts", "hwssl-artifacts")
    runlog.capture(runlog.study_log_path(artifacts, study.study_name), verbose=args.verbose)


def _method_params(items: Sequence[str]) -> dict:
    """--method-param KEY=VALUE pairs; values parsed as JSON when they can be (numbers, true/false)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--method-param {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _ratio_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ratios such as 0.2,0.4,0.6, got {text!r}")


def _pareto_text(front, profile) -> str:
    cols = ["trial", "accuracy", "accuracy_test", "macs_ratio"]
    if "precision" in front.columns and set(front["precision"]) != {"fp32"}:
        cols[1:1] = ["precision", "integer_only"]
    if profile:
        cols += [f"tvm_ms:{profile}", f"torch_ms:{profile}", f"speedup:{profile}", f"tuned:{profile}"]
    cols += [c for c in front.columns if c.startswith("λ ")]
    return front[[c for c in cols if c in front.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _report_after_search(study, storage_url: str) -> None:
    """Build reports/<study>/report.html; a failing report never fails the search."""
    try:
        from hwssl.report import build_report, default_out_dir
        path = build_report(study, default_out_dir(study.study_name), storage_url)
    except Exception as exc:  # the trials are saved either way; say how to retry
        print(f"warning: report not written ({type(exc).__name__}: {exc}); retry with `hwssl report "
              f"--study ... --storage ...`", file=sys.stderr)
        return
    print(f"report: {path}")


def cmd_report(args: argparse.Namespace) -> int:
    from hwssl.report import build_report, default_out_dir
    from hwssl.storage import default_storage_url, load_study

    storage = args.storage or default_storage_url()
    study = load_study(args.study, storage)
    others = [load_study(name, storage) for name in args.compare]
    path = build_report(study, args.out or default_out_dir(args.study), storage, compare=others)
    print(f"report: {path}")
    print(f"trials: {path.parent / 'trials.csv'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hwssl.export import ExportError, export_trial
    from hwssl.storage import default_storage_url, load_study

    storage = args.storage or default_storage_url()
    study = load_study(args.study, storage)
    if args.profile:
        _capture_for_study(study, args)
    try:
        done = export_trial(study, args.trial, args.out, profile=args.profile, storage=storage,
                            space_path=args.space)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = done.config
    print(f"exported trial {c['trial']} of {c['study']!r} to {done.directory}")
    print(f"  model    arch.json + weights.pt (test accuracy {c['accuracy']['test']:.4f}, reproduced "
          f"{c['accuracy']['test_reproduced']:.4f})")
    if done.library is not None:
        lib = c["library"]
        diff = lib.get("max_abs_diff_vs_pytorch")
        print(f"  library  {done.library.name} for {c['profile']['name']} ({'tuned' if lib['tuned'] else 'UNTUNED'}; "
              f"{'max |TVM - PyTorch| %.2e' % diff if diff is not None else lib.get('not_checked', '')})")
    onnx_info = c.get("onnx") or {}
    if onnx_info.get("file"):
        print(f"  onnx     {onnx_info['file']} (opset {onnx_info['opset']}; max |ONNX Runtime - PyTorch| "
              f"{onnx_info['max_abs_diff_vs_pytorch']:.2e})")
    if c.get("runtimes"):
        fmt = {k: (f"{v:.4f} ms" if isinstance(v, (int, float)) else "n/a") for k, v in c["runtimes"].items()
               if not k.endswith("_note")}
        print(f"  latency  TVM {fmt['tvm']} at {c['threads'].get('tvm')} thread(s), ONNX Runtime "
              f"{fmt['onnxruntime']}, PyTorch {fmt['torch']}")
    print("  config   deploy.json")
    for w in done.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from hwssl.deploy.availability import list_profiles
    rows = list_profiles(args.dir)
    for row in rows:
        print("  ".join(str(v) for v in row.values()))
    return 0


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show TVM's and MetaSchedule's logs on the console (default: into tvm.log beside the "
                        "study's trial artifacts, named on the console)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwssl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a search-space or hardware-profile file (recognised by content)")
    p.add_argument("file")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--profile", dest="kind", action="store_const", const="profile",
                      help="validate the file as a hardware profile")
    kind.add_argument("--space", dest="kind", action="store_const", const="space",
                      help="validate the file as a search space")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("evaluate", help="train, sparsify, compact and measure one strength setting")
    p.add_argument("--space", default=DEFAULT_SPACE, help=f"search-space file (default {DEFAULT_SPACE})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a strength (filter.conv2=0.01) or a setting (train.ssl_epochs=2)")
    p.add_argument("--profile", action="append", default=[], metavar="FILE", help="hardware profile to time on")
    p.add_argument("--no-tune", action="store_true", help="time untuned TVM builds (labelled 'untuned')")
    p.add_argument("--per-layer", action="store_true", help="add a per-layer latency breakdown")
    p.add_argument("--int8", action="store_true",
                   help="also measure the int8 variant (accuracy_int8, latency_ms_int8, integer_only, float_ops)")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="what the candidate deploys as: int8 makes the int8 variant the headline numbers")
    p.add_argument("--out", help="save the compacted model (arch.json + weights.pt) here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--with-arch", action="store_true", help="include the full architecture spec in the JSON")
    _add_verbose(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("search", help="run (or resume) a multi-objective search and print its Pareto front")
    p.add_argument("--space", default=DEFAULT_SEARCH_SPACE,
                   help=f"search-space file (default {DEFAULT_SEARCH_SPACE}: hardware-aware SSL)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--profile", action="append", default=[], metavar="FILE",
                   help=f"hardware profile to optimise latency for (repeatable; default {DEFAULT_PROFILE})")
    p.add_argument("--no-profile", action="store_true",
                   help="optimise MACs instead of measured latency (the default hardware-aware space then "
                        "needs --set ssl.oracle=macs)")
    p.add_argument("--study", help="study name (default: <space name>-<profile names>)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///hwssl.db; postgresql://... for "
                                     "several machines; journal:PATH for a journal file)")
    p.add_argument("--resume", action="store_true", help="continue an existing study (also: join it as a worker)")
    p.add_argument("--trials", type=int, help="number of complete trials the study should reach")
    p.add_argument("--sampler", choices=["nsga2", "tpe", "random"])
    p.add_argument("--no-tune", action="store_true", help="time untuned TVM builds (labelled 'untuned')")
    p.add_argument("--trials-per-task", type=int, help="MetaSchedule trials per new workload in each trial")
    p.add_argument("--artifacts", default="hwssl-artifacts", help="where compacted models of trials are kept")
    p.add_argument("--heartbeat-interval", type=int, default=30, help=argparse.SUPPRESS)
    p.add_argument("--grace-period", type=int, default=90, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-final-tune", action="store_true",
                   help="skip the full tuning and re-timing of the Pareto-optimal trials at the end")
    p.add_argument("--final-trials-per-task", type=int,
                   help="MetaSchedule trials per task for that final re-timing (default: the profile's "
                        "full_trials_per_task)")
    p.add_argument("--no-report", action="store_true", help="do not write reports/<study>/report.html at the end")
    # not argparse choices: the registry (hwssl.methods) imports torch, and `hwssl profiles` should not
    p.add_argument("--method", default="ssl", metavar="METHOD",
                   help="a method of hwssl.methods: ssl searches group strengths (default); l1 / torch-pruning "
                        "search the pruning ratio on the same filter sites and harness; dense evaluates the dense "
                        "model once")
    p.add_argument("--method-param", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed parameter of a baseline, e.g. reg=5e-3 or global=true for torch-pruning")
    p.add_argument("--ratio-range", nargs=2, type=float, default=[0.1, 0.9], metavar=("LOW", "HIGH"),
                   help="pruning ratios a baseline trial samples from (default 0.1 0.9)")
    p.add_argument("--per-layer-ratios", action="store_true",
                   help="sample one pruning ratio per filter site instead of one for all")
    p.add_argument("--ratios", type=_ratio_list, metavar="R1,R2,...",
                   help="evaluate these ratios first (a sweep); the sampler proposes any further trials")
    _add_verbose(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="write the HTML report (and trials.csv) of a study")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///hwssl.db; journal:PATH for a journal)")
    p.add_argument("--out", help="output folder (default reports/<study>)")
    p.add_argument("--compare", action="append", default=[], metavar="STUDY",
                   help="overlay another study of the same space and profiles (e.g. a --method baseline); repeatable")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a trial: PyTorch model, TVM library for a profile, deploy.json")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///hwssl.db; journal:PATH for a journal)")
    p.add_argument("--trial", type=int, required=True, help="trial number (see the report)")
    p.add_argument("--profile", help="profile name from the study, or a profile file; omit for no TVM library")
    p.add_argument("--space", help="search-space file the study used (default: the path the study recorded)")
    p.add_argument("--out", required=True, help="output folder")
    _add_verbose(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("retime", help="fully tune and re-time the Pareto-optimal trials of a study")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///hwssl.db; journal:PATH for a journal)")
    p.add_argument("--profile", action="append", default=[], metavar="FILE",
                   help="profiles to re-time on (default: the study's)")
    p.add_argument("--trials-per-task", type=int, help="default: each profile's full_trials_per_task")
    p.add_argument("--again", action="store_true",
                   help="also time afresh the trials that already hold a final timing (all in the same minutes)")
    _add_verbose(p)
    p.set_defaults(func=cmd_retime)

    p = sub.add_parser("profiles", help="list hardware profiles and whether they can be timed here")
    p.add_argument("--dir", default="hardware_profiles")
    p.set_defaults(func=cmd_profiles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hwssl.storage import StorageError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the user's data, spec or weights files, found bad while running
        from hwssl.data import DatasetUnavailable
        from hwssl.models.specfile import SpecError
        from hwssl.baselines import MethodError
        from hwssl.models.weights import WeightsError
        from hwssl.quant._fixedpoint import QuantError
        if isinstance(exc, (DatasetUnavailable, SpecError, WeightsError, MethodError, QuantError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        runlog.release()


if __name__ == "__main__":
    sys.exit(main())
