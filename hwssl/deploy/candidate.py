"""``measure_networks`` / ``measure_candidate`` / ``measure_pair``: the entry points the search and the CLI use.

Cache. Each architecture's build (compile, tuning statistics, the exported TVM
library and its ONNX file) is cached per profile under ``<cache>/latency/<profile>/``,
keyed by architecture, input shape, profile, target, device, tuning budget and
versions. Timings are relative: a latency means most next to the network it was
timed with. So :func:`measure_pair` (a candidate and its dense reference, what
every trial records) re-times both from their cached libraries every time,
interleaved, and records the ratio (``vs_dense``); only the build is reused.
:func:`measure_candidate` (one network alone: re-timing, benches) returns a cached
record as it is, like before.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import tvm

from hwssl.config.profile import HardwareProfile
from hwssl.deploy.availability import needs_cross_compiler, profile_availability, resolve_cross_compiler
from hwssl.deploy.cache import LatencyCache, database_generation, latency_key
from hwssl.deploy.compile import build, device_sources, export_library, import_model, prepare, torch_reference
from hwssl.deploy.errors import DeployError
from hwssl.deploy.measure import time_torch
from hwssl.deploy.target import make_target
from hwssl.deploy.timing import Timing, time_interleaved
from hwssl.deploy.tune import tune_and_open


def _versions() -> dict[str, str]:
    return {"tvm": str(tvm.__version__), "torch": str(torch.__version__), "python": platform.python_version()}


def mark_untuned_kernels(result: dict[str, Any], compiled: Any) -> None:
    """A tuned build whose compute kernels did not all get a schedule (MetaSchedule found no
    valid candidate for them) is not a tuned latency: say so instead of labelling it tuned."""
    missing = list(getattr(compiled, "unscheduled_compute", []))
    if result.get("tuned") and missing:
        result["tuned"] = False
        result["untuned_kernels"] = missing
        result["tune_note"] = (f"tuning left {len(missing)} compute kernel(s) without a schedule "
                               f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); see the tuning log")


def _check_remote(profile: HardwareProfile) -> None:
    """Fail fast (before compiling or tuning) on a missing cross compiler or an unreachable device."""
    if profile.cross_compiler and resolve_cross_compiler(profile) is None:
        raise DeployError(profile.path, f"{profile.cross_compiler!r} is not on PATH; install it (Debian: apt-get "
                          "install g++-aarch64-linux-gnu for aarch64) or fix the key", key="cross_compiler")
    if needs_cross_compiler(profile) and not profile.cross_compiler:
        raise DeployError(profile.path, "the target is for another CPU architecture than this machine; set "
                          "cross_compiler (e.g. 'aarch64-linux-gnu-g++')", key="cross_compiler")
    deadline = time.monotonic() + profile.runner.reconnect_s
    ok, reason = profile_availability(profile)
    while not ok and time.monotonic() < deadline:  # a board rebooting or a server restarting: wait a while
        time.sleep(1.0)
        ok, reason = profile_availability(profile)
    if not ok:
        raise DeployError(profile.path, f"{reason}; start `python -m tvm.exec.rpc_server` on the device "
                          "(or a tracker) or fix [runner]", key="runner")


Importer = Callable[[torch.nn.Module, torch.Tensor, HardwareProfile], tvm.IRModule]
Inspector = Callable[[tvm.IRModule, tvm.target.Target], dict[str, Any]]


@dataclass
class Net:
    """One network for :func:`measure_networks`: the model, its architecture key, and whether
    per-kernel times are wanted."""

    model: torch.nn.Module
    arch_key: str
    per_layer: bool = False


def _onnx_file(model: torch.nn.Module, example: torch.Tensor, path: Path, result: dict[str, Any]) -> Path | None:
    """Export (or reuse) the ONNX file; on failure, say why in the record instead of failing the trial."""
    from hwssl.deploy import onnxrt

    if path.is_file():
        return path
    try:
        return onnxrt.export_onnx(model, example, path)
    except Exception as exc:  # an exporter gap must not cost the TVM timing
        first = str(exc).strip().splitlines()
        result["onnxruntime_note"] = f"ONNX export failed: {type(exc).__name__}: {first[0] if first else ''}"
        return None


def _time_torch_together(models: list[torch.nn.Module], example: torch.Tensor, profile: HardwareProfile
                         ) -> list[Timing]:
    runners = [lambda m=m: time_torch(m, example, profile).samples_ms for m in models]
    return time_interleaved(runners, profile.timing, threads=[profile.threads] * len(models), settle=False)


def _timing_fields(times: Any, threads_known: bool) -> dict[str, Any]:
    """The latency record's timing keys from a :class:`hwssl.deploy.together.NetTimes`."""
    out: dict[str, Any] = {**times.tvm.summary("tvm"), "max_abs_diff": times.max_abs_diff, "device": times.device}
    if threads_known:
        out["threads"] = out["tvm_threads"] = times.tvm.threads
        out["tvm_by_threads"] = {str(t): tm.median_ms for t, tm in times.tvm_by_threads.items()}
    noisy = ["tvm"] if times.tvm.noisy else []
    if times.onnxruntime is not None:
        out.update(times.onnxruntime.summary("onnxruntime"))
        out["onnxruntime_threads"] = times.onnxruntime.threads
        out["onnxruntime_by_threads"] = {str(t): tm.median_ms for t, tm in times.onnxruntime_by_threads.items()}
        out["onnx_max_abs_diff"] = times.onnx_max_abs_diff
        noisy += ["onnxruntime"] if times.onnxruntime.noisy else []
    out["noisy"] = noisy
    return out


def measure_networks(nets: list[Net], example_input: torch.Tensor, profile: HardwareProfile, *, tune: bool,
                     trials_per_task: int | None = None, cache_dir: str | Path | None = None,
                     torch_timing: bool = True, onnx_timing: bool = True, reuse_timings: bool = False,
                     importer: Importer = import_model, inspect: Inspector | None = None) -> list[dict[str, Any]]:
    """Compile, (tune,) and time ``nets`` together for ``profile``; one JSON-serialisable dict each.

    Keys: ``tvm`` (median ms at the fastest thread count, None when skipped),
    ``threads`` / ``tvm_threads`` (that count), ``tvm_by_threads`` ({count: ms}),
    ``tvm_samples_ms``, ``tvm_iqr_ms``, ``tvm_min_ms``, ``tvm_max_ms``, ``tvm_rounds``,
    ``tvm_spread``; the same ``onnxruntime*`` keys for ONNX Runtime (local CPU profiles;
    None with ``onnxruntime_note`` elsewhere); ``torch`` (PyTorch eager ms at the profile's
    ``threads`` on this host, None for RPC or skipped profiles) with ``torch_samples_ms``
    etc.; ``noisy`` (the runtimes whose samples did not settle, see
    :mod:`hwssl.deploy.timing`); ``tuned``, ``target``, ``device`` ("local" or
    "rpc://host:port"), ``compile_s``, ``tune_s``, ``measure_s``, ``new_tasks``,
    ``reused_tasks``, ``max_abs_diff``, ``per_layer`` ([{index, name, ms, out_shape, args}]),
    ``cached`` (the build came from the cache), plus ``skipped`` (reason) when the profile
    cannot be timed from here: then each network is still built and its device code saved
    (``artifacts``).

    ``reuse_timings``: when every network's record is cached, return the records as they
    are (no timing). ``trials_per_task`` defaults to the profile's cheap budget. Raises
    :class:`DeployError` for a bad target, a missing cross compiler, an unreachable RPC
    device or one that goes away while it is used. ``importer`` turns a network into Relax
    (the int8 route passes its integer converters; ONNX Runtime is then not timed);
    ``inspect(prepared, target)`` adds fields to the result.
    """
    from hwssl.cache import cache_root
    from hwssl.deploy.together import DeviceNet, time_on_device

    root = Path(cache_dir) if cache_dir is not None else cache_root()
    trials = int(trials_per_task or profile.tuning.trials_per_task)
    if trials < 1:
        raise ValueError(f"trials_per_task must be >= 1, got {trials}")
    target = make_target(profile)
    tstr = str(target)

    if profile.is_remote:
        skipped = None  # a remote device must be reachable: checked below, after the cache
    else:
        available, reason = profile_availability(profile)
        skipped = None if available else reason
    will_tune = tune and skipped is None
    wants_torch = torch_timing and not profile.is_remote
    wants_onnx = onnx_timing and importer is import_model and not profile.is_remote and profile.target_kind == "llvm"

    cache = LatencyCache(root, profile.name)
    generation = database_generation(profile.database_dir(root)) if will_tune else ""
    keys = [latency_key(arch_key=n.arch_key, profile=profile, target=tstr, tuned=will_tune,
                        trials_per_task=trials if will_tune else None, versions=_versions(),
                        input_shape=tuple(example_input.shape), database=generation) for n in nets]
    hits: list[dict[str, Any] | None] = [None] * len(nets)  # cached builds
    complete = []  # ... whose record also has every timing asked for
    if skipped is None:
        for i, (net, key) in enumerate(zip(nets, keys)):
            hit = cache.get(key)
            if (hit is not None and (hit.get("per_layer") or not net.per_layer)
                    and cache.path(key).with_suffix(".so").is_file()):
                hits[i] = hit
                complete.append(hit.get("tvm") is not None and (hit.get("torch") or not wants_torch)
                                and (hit.get("onnxruntime") or not wants_onnx or "onnxruntime_note" in hit))
        if reuse_timings and len(complete) == len(nets) and all(complete):
            return [dict(h, cached=True) for h in hits]  # type: ignore[arg-type]
    if profile.is_remote:
        _check_remote(profile)

    results: list[dict[str, Any]] = []
    device_nets: list[DeviceNet] = []
    for net, key, hit in zip(nets, keys, hits):
        model = net.model.eval()
        reference = torch_reference(model, example_input)
        lib_path = cache.path(key).with_suffix(".so")
        if hit is not None:  # the build is cached: re-time its library
            result = {k: v for k, v in hit.items() if not (k.startswith(("tvm", "torch", "onnxruntime"))
                                                             or k in ("threads", "noisy", "vs_dense"))}
            result.update(cached=True, tvm=None, torch=None)
            compiled = None
        else:
            result, compiled = _build(model, example_input, profile, target, tstr, will_tune, tune, trials,
                                      skipped, root, importer, inspect)
            if skipped is not None:
                art = root / "artifacts" / profile.name / key
                files = device_sources(compiled, art) if profile.target_kind == "cuda" else {}
                files["library"] = str(export_library(compiled, profile, art / f"{profile.name}.so"))
                result.update(skipped=skipped, artifacts=files)
                results.append(result)
                continue
            # written aside and renamed: another worker may be loading the cached library right now
            tmp_lib = export_library(compiled, profile, lib_path.with_name(f"{key}.{os.getpid()}.tmp.so"))
            os.replace(tmp_lib, lib_path)
        onnx_path = _onnx_file(model, example_input, lib_path.with_suffix(".onnx"), result) if wants_onnx else None
        if onnx_path is None:
            result["onnxruntime"] = None
            if profile.is_remote:
                result["onnxruntime_note"] = "ONNX Runtime is timed on this host only; not on the RPC device"
            elif not wants_onnx and "onnxruntime_note" not in result:
                result["onnxruntime_note"] = ("ONNX Runtime is timed for fp32 networks on CPU profiles only"
                                              if onnx_timing else "ONNX Runtime timing was not asked for")
        device_nets.append(DeviceNet(lib_path, reference, compiled, net.per_layer and compiled is not None, onnx_path))
        results.append(result)
    if skipped is not None:
        return results

    tm = time.perf_counter()
    # PyTorch first: right after a TVM timing loop, TVM's spinning pool threads and PyTorch's
    # OpenMP threads fight over the cores and PyTorch reads up to ~10x slow (seen on 2 cores).
    torch_times = _time_torch_together([n.model for n in nets], example_input, profile) if wants_torch else None
    with tempfile.TemporaryDirectory(prefix="hwssl-time-") as tmp:
        times = time_on_device(device_nets, profile, example_input, workdir=Path(tmp))
    measure_s = round(time.perf_counter() - tm, 3)
    for i, (result, t) in enumerate(zip(results, times)):
        kept_layers = result.get("per_layer") or []
        result.update(_timing_fields(t, profile.target_kind == "llvm"))
        result["per_layer"] = t.per_layer or kept_layers
        if torch_times is not None:
            result.update(torch_times[i].summary("torch"))
            result["torch_threads"] = profile.threads
            result["noisy"] = result["noisy"] + (["torch"] if torch_times[i].noisy else [])
        elif profile.is_remote:
            result["torch_note"] = "PyTorch eager is timed on this host only; not comparable to the RPC device"
        result["measure_s"] = measure_s
    for result, key in zip(results, keys):
        cache.put(key, result)
    return results


def _build(model: torch.nn.Module, example: torch.Tensor, profile: HardwareProfile, target: Any, tstr: str,
           will_tune: bool, tune: bool, trials: int, skipped: str | None, root: Path, importer: Importer,
           inspect: Inspector | None) -> tuple[dict[str, Any], Any]:
    """Import, (tune,) build; the record's build fields and the compiled network."""
    t0 = time.perf_counter()
    prepared = prepare(importer(model, example, profile), target)
    t_import = time.perf_counter() - t0
    stats = database = None
    if will_tune:
        stats, database = tune_and_open(prepared, target, profile, trials_per_task=trials,
                                        db_dir=profile.database_dir(root))
    compiled = build(prepared, target, database)
    result: dict[str, Any] = {
        "tvm": None, "torch": None, "tuned": will_tune, "target": tstr,
        "device": profile.runner.address(), "profile": profile.name,
        "compile_s": round(t_import + compiled.compile_s, 3),
        "tune_s": round(stats.tune_s, 3) if stats else 0.0, "measure_s": 0.0,
        "new_tasks": stats.new_tasks if stats else 0, "reused_tasks": stats.reused_tasks if stats else 0,
        "trials_per_task": trials if will_tune else None,
        "scheduled_kernels": compiled.scheduled_kernels, "kernels": compiled.total_kernels,
        "max_abs_diff": None, "per_layer": [], "cached": False,
    }
    if tune and not will_tune:
        result["tune_note"] = f"not tuned: {skipped}"
    mark_untuned_kernels(result, compiled)
    if inspect is not None:
        result.update(inspect(prepared, target))
    return result, compiled


def measure_candidate(model: torch.nn.Module, example_input: torch.Tensor, profile: HardwareProfile, *,
                      arch_key: str, tune: bool, trials_per_task: int | None = None, per_layer: bool = False,
                      cache_dir: str | Path | None = None, torch_timing: bool = True, onnx_timing: bool = True,
                      importer: Importer = import_model, inspect: Inspector | None = None,
                      reuse_timings: bool = True) -> dict[str, Any]:
    """One network alone (see :func:`measure_networks` for the keys); a cached record is returned
    as it is unless ``reuse_timings`` is False (then its cached build is timed again). ``arch_key``
    identifies the architecture (the caller's hash of the spec)."""
    return measure_networks([Net(model, arch_key, per_layer)], example_input, profile, tune=tune,
                            trials_per_task=trials_per_task, cache_dir=cache_dir, torch_timing=torch_timing,
                            onnx_timing=onnx_timing, reuse_timings=reuse_timings, importer=importer,
                            inspect=inspect)[0]


def measure_pair(candidate: Net, dense: Net, example_input: torch.Tensor, profile: HardwareProfile, *,
                 tune: bool, trials_per_task: int | None = None, cache_dir: str | Path | None = None,
                 torch_timing: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """A candidate and its dense reference timed together (always re-timed; builds cached).
    The candidate's record gets ``vs_dense`` ({runtime: candidate ms / dense ms}), a ratio
    that holds when the machine's load moves both."""
    cand, dense_r = measure_networks([candidate, dense], example_input, profile, tune=tune,
                                     trials_per_task=trials_per_task, cache_dir=cache_dir, torch_timing=torch_timing)
    ratios = {rt: cand[rt] / dense_r[rt] for rt in ("tvm", "onnxruntime", "torch")
              if cand.get(rt) and dense_r.get(rt)}
    if ratios:
        cand["vs_dense"] = ratios
    return cand, dense_r
