"""``measure_candidate``: the one entry point the search and the CLI use."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import tvm

from hwssl.config.profile import HardwareProfile
from hwssl.deploy.availability import needs_cross_compiler, profile_availability, resolve_cross_compiler
from hwssl.deploy.cache import LatencyCache, latency_key
from hwssl.deploy.compile import build, device_sources, export_library, import_model, prepare, torch_reference
from hwssl.deploy.errors import DeployError
from hwssl.deploy.measure import run_on_device, time_torch
from hwssl.deploy.target import make_target
from hwssl.deploy.tune import tune_and_open


def _versions() -> dict[str, str]:
    return {"tvm": str(tvm.__version__), "torch": str(torch.__version__), "python": platform.python_version()}


def _noisy(samples: list[float] | None) -> bool:
    """Samples spread by more than 2x: another load shared the cores (common on small machines)."""
    return bool(samples) and min(samples) > 0 and max(samples) / min(samples) > 2.0


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
    ok, reason = profile_availability(profile)
    if not ok:
        raise DeployError(profile.path, f"{reason}; start `python -m tvm.exec.rpc_server` on the device "
                          "(or a tracker) or fix [runner]", key="runner")


Importer = Callable[[torch.nn.Module, torch.Tensor, HardwareProfile], tvm.IRModule]
Inspector = Callable[[tvm.IRModule, tvm.target.Target], dict[str, Any]]


def measure_candidate(model: torch.nn.Module, example_input: torch.Tensor, profile: HardwareProfile, *,
                      arch_key: str, tune: bool, trials_per_task: int | None = None, per_layer: bool = False,
                      cache_dir: str | Path | None = None, torch_timing: bool = True,
                      importer: Importer = import_model, inspect: Inspector | None = None) -> dict[str, Any]:
    """Compile, (tune,) and time ``model`` for ``profile``; a JSON-serialisable dict.

    Keys: ``tvm`` (median ms, None when skipped), ``torch`` (PyTorch eager ms
    on this host, None for RPC or skipped profiles), ``tuned``, ``target``,
    ``device`` ("local" or "rpc://host:port"), ``compile_s``, ``tune_s``,
    ``measure_s``, ``new_tasks``, ``reused_tasks``, ``max_abs_diff``,
    ``per_layer`` ([{index, name, ms, out_shape, args}]), ``cached``, plus
    ``skipped`` (reason) when the profile cannot be timed from here: then the
    network is still built and its device code saved (``artifacts``).

    ``arch_key`` identifies the architecture for the latency cache (the
    caller's hash of the compacted spec). ``trials_per_task`` defaults to the
    profile's cheap budget. Raises :class:`DeployError` for a bad target, a
    missing cross compiler or an unreachable RPC device.

    ``importer`` turns the network into Relax (the int8 route passes its integer
    converters); ``inspect(prepared, target)`` adds fields to the result (the int8
    route's integer-only report). Both become part of what the cache returns.
    """
    from hwssl.cache import cache_root

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

    cache = LatencyCache(root, profile.name)
    key = latency_key(arch_key=arch_key, profile=profile, target=tstr, tuned=will_tune,
                      trials_per_task=trials if will_tune else None, versions=_versions(),
                      input_shape=tuple(example_input.shape))
    if skipped is None:
        hit = cache.get(key)
        wants_torch = torch_timing and not profile.is_remote
        if hit is not None and (hit.get("per_layer") or not per_layer) and (hit.get("torch") or not wants_torch):
            hit["cached"] = True
            return hit
    if profile.is_remote:
        _check_remote(profile)

    t0 = time.perf_counter()
    model = model.eval()
    reference = torch_reference(model, example_input)
    prepared = prepare(importer(model, example_input, profile), target)
    t_import = time.perf_counter() - t0

    stats = database = None
    if will_tune:
        stats, database = tune_and_open(prepared, target, profile, trials_per_task=trials,
                                        db_dir=profile.database_dir(root))
    compiled = build(prepared, target, database)
    compile_s = t_import + compiled.compile_s

    result: dict[str, Any] = {
        "tvm": None, "torch": None, "tuned": will_tune, "target": tstr,
        "device": profile.runner.address(), "profile": profile.name, "compile_s": round(compile_s, 3),
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

    if skipped is not None:
        art = root / "artifacts" / profile.name / key
        files = device_sources(compiled, art) if profile.target_kind == "cuda" else {}
        files["library"] = str(export_library(compiled, profile, art / f"{profile.name}.so"))
        result.update(skipped=skipped, artifacts=files)
        return result

    tm = time.perf_counter()
    # PyTorch first: right after a TVM timing loop, TVM's spinning pool threads and PyTorch's
    # OpenMP threads fight over the cores and PyTorch reads up to ~10x slow (seen on 2 cores).
    tt = time_torch(model, example_input, profile) if (torch_timing and not profile.is_remote) else None
    dev = run_on_device(compiled, profile, example_input, reference, per_layer=per_layer)
    assert dev.timing is not None
    result.update(tvm=dev.timing.median_ms, tvm_samples_ms=dev.timing.samples_ms, max_abs_diff=dev.max_abs_diff,
                  per_layer=dev.per_layer, device=dev.device)
    if dev.timing.threads is not None:
        result["tvm_threads"] = dev.timing.threads
    if tt is not None:
        result.update(torch=tt.median_ms, torch_samples_ms=tt.samples_ms)
    elif profile.is_remote:
        result["torch_note"] = "PyTorch eager is timed on this host only; not comparable to the RPC device"
    result["noisy"] = [name for name in ("tvm", "torch") if _noisy(result.get(f"{name}_samples_ms"))]
    result["measure_s"] = round(time.perf_counter() - tm, 3)
    cache.put(key, result)
    return result
