"""Where a profile's latency model lives, how it is opened, and the hook every measurement calls.

The model file is ``<profile's tuning database dir>/latency_model.json`` (``latency_model_untuned.json``
for untuned timings, which are another regime), next to the MetaSchedule database it reads kernel
times from. It carries the device fingerprint (:func:`hwssl.deploy.cache.device_fingerprint`) and
the profile's timing key; :func:`load_model` refuses a file whose fingerprint or key differ.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

from hwssl.cache import file_lock
from hwssl.config.profile import HardwareProfile
from hwssl.latency.model import Identity, LatencyModel, LatencyModelError, load_model_file
from hwssl.latency.tunedb import database_kernels

MODEL_FILE = "latency_model.json"
UNTUNED_FILE = "latency_model_untuned.json"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def simd_lanes(profile: HardwareProfile) -> int:
    """fp32 lanes of the profile's vector unit: 16 with AVX-512, 8 with AVX/AVX2, 4 with NEON or SSE
    (host flags for a local x86 target, the target's attributes otherwise); 1 for GPUs."""
    if profile.target_kind != "llvm":
        return 1
    target = profile.target
    text = " ".join(str(v) for v in (target.get("mcpu", ""), target.get("mtriple", ""), target.get("mattr", "")))
    if "aarch64" in text or "arm" in text or "neon" in text:
        return 4
    flags = _cpu_flags() if (not profile.is_remote and platform.machine() in ("x86_64", "AMD64")) else set()
    if "avx512" in text or "avx512f" in flags:
        return 16
    if "avx" in text or "avx2" in flags or "avx" in flags:
        return 8
    return 4


def identity(profile: HardwareProfile, tuned: bool = True) -> Identity:
    from hwssl.deploy.cache import device_fingerprint

    return Identity(device=device_fingerprint(profile), profile_key=profile.key(), profile=profile.name,
                    batch=int(profile.batch), lanes=simd_lanes(profile), tuned=bool(tuned))


def model_path(profile: HardwareProfile, cache_root: str | Path | None = None, tuned: bool = True) -> Path:
    return profile.database_dir(cache_root) / (MODEL_FILE if tuned else UNTUNED_FILE)


def load_model(profile: HardwareProfile, cache_root: str | Path | None = None, *, tuned: bool = True) -> LatencyModel:
    """The profile's model, fitted (a new, empty one when no file exists yet). Raises
    :class:`LatencyModelError` for a file fitted on another device or timing setup."""
    path = model_path(profile, cache_root, tuned)
    expected = identity(profile, tuned)
    model = load_model_file(path, expected) if path.is_file() else LatencyModel(identity=expected, path=path)
    if tuned:
        model.set_database(database_kernels(path.parent))
    model.refit()
    return model


def predictor(profile: HardwareProfile, cache_root: str | Path | None = None, *,
              tuned: bool = True) -> Callable[[dict[str, Any]], float]:
    """``predict(spec) -> ms`` on ``profile`` (the callable the latency-weighted SSL prices groups with),
    as the model stands now (load again to see later measurements). ``tuned=False``: the model of
    untuned timings (``--no-tune`` searches)."""
    return load_model(profile, cache_root, tuned=tuned).predict


def observe(profile: HardwareProfile, spec: dict[str, Any], latency: dict[str, Any], *, arch_key: str,
            cache_root: str | Path | None = None, source: str = "search") -> dict[str, Any]:
    """Predict ``spec`` with the current model, THEN add the measurement ``latency`` (a
    :func:`hwssl.deploy.measure_candidate` result) and refit and save the model.

    Returns the keys to add beside the measurement: ``predicted_ms`` (None while the model has seen
    nothing), ``latency_model`` ({version, points, file}), or ``latency_model_error`` when the file
    is refused (the measurement stands; the model is left alone). With a per-kernel breakdown also
    ``layers_ms`` (measured ms per spec layer) and, for lowered convs, ``lowered_vs_plain_ms``
    ({layer: {lowered_ms, plain_ms}}: the model's lowered path against a plain conv of the same kept
    widths, with the measurement already in the model).
    """
    measured = latency.get("tvm")
    if measured is None:
        return {}
    tuned = bool(latency.get("tuned"))
    path = model_path(profile, cache_root, tuned)
    try:
        with file_lock(path.with_name(f".{path.name}.lock")):
            model = load_model(profile, cache_root, tuned=tuned)
            predicted = model.predict(spec) if model.fitted else None
            info = {"version": model.version, "points": model.points, "file": str(path)}
            model.add_measurement(spec, float(measured), arch_key=arch_key,
                                  per_kernel=latency.get("per_layer") or (), source=source)
            model.refit()
            model.save(path)
    except LatencyModelError as exc:
        return {"latency_model_error": str(exc)}
    out: dict[str, Any] = {"predicted_ms": predicted, "latency_model": info}
    if latency.get("per_layer"):
        from hwssl.latency.attribution import layer_times, lowered_alternatives

        out["layers_ms"] = layer_times(spec, latency["per_layer"])
        lowered = lowered_alternatives(model, spec)
        if lowered:
            out["lowered_vs_plain_ms"] = lowered
    return out


def wants_breakdown(profile: HardwareProfile, spec: dict[str, Any], cache_root: str | Path | None = None, *,
                    tuned: bool = True) -> bool:
    """Whether measuring ``spec`` should also time its kernels one by one: some of its kernels'
    shapes have no measured time yet (each breakdown costs ~50 ms per kernel, so known nets skip it)."""
    from hwssl.latency.kernels import spec_kernels

    try:
        model = load_model(profile, cache_root, tuned=tuned)
    except LatencyModelError:
        return False
    return any(k.key not in model.kernel_obs for k in spec_kernels(spec, int(profile.batch)))
