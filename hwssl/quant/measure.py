"""``quantize_and_measure``: int8 variant of a candidate -> accuracy, TVM latency, integer-only proof."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import hwssl.deploy  # noqa: F401  (sets TVM_NUM_THREADS before TVM is imported)
import tvm
from tvm import relax

from hwssl.config.profile import HardwareProfile
from hwssl.deploy.availability import profile_availability
from hwssl.deploy.compile import Compiled, build, import_model, max_abs_diff, prepare, torch_reference
from hwssl.deploy.measure import run_rpc, time_torch
from hwssl.deploy.target import make_target
from hwssl.deploy.tune import tune_and_open
from hwssl.quant._convert import Int8Net, quantize_model
from hwssl.quant.check import check_module
from hwssl.quant.importer import import_integer_model

ROUTE = "explicit-integer-graph"
ROUTE_DETAIL = ("post-training int8 (per-channel symmetric int8 weights, per-tensor int8/uint8 activations "
                "calibrated on training images, fixed-point int64 requantisation) written as PyTorch integer "
                "ops -> torch.export -> Relax with int8 x int8 -> int32 conv2d/matmul converters "
                "(hwssl.quant.importer) -> hwssl.deploy prepare/build")


@torch.no_grad()
def accuracy_of(fn: Any, data: TensorDataset, chunk: int = 500) -> float:
    """Top-1 accuracy of ``fn(images) -> logits`` over ``data`` (evaluated in chunks)."""
    from hwssl.data.sets import batches

    correct = 0
    for xb, yb in batches(data, chunk):
        correct += int((fn(xb).argmax(1) == yb).sum())
    return correct / max(1, len(data))


@torch.no_grad()
def logits_of(fn: Any, x: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks (large single batches are slow here)."""
    return torch.cat([fn(x[s:s + chunk]).float() for s in range(0, len(x), chunk)])


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean()) if len(labels) else 0.0


def compile_int8(qnet: Int8Net, example: torch.Tensor, profile: HardwareProfile, *, database: Any | None = None,
                 tune: bool = False, trials_per_task: int | None = None, cache_dir: str | Path | None = None
                 ) -> tuple[Compiled, dict[str, Any], dict[str, Any]]:
    """Import (integer converters), prepare, optionally tune, build; and the integer-only report.

    ``example`` is a float image batch for ``io="float"`` networks and an
    int8 one (``qnet.quantize_input``) for ``io="int"``. Returns the build,
    :func:`hwssl.quant.check.integer_report` of the compiled module, and
    tuning stats (empty when not tuned).
    """
    target = make_target(profile)
    t0 = time.perf_counter()
    prepared = prepare(import_integer_model(qnet, example), target)
    t_import = time.perf_counter() - t0
    stats: dict[str, Any] = {}
    if tune:
        st, database = tune_and_open(prepared, target, profile, trials_per_task=trials_per_task,
                                     db_dir=profile.database_dir(cache_dir))
        stats = {"tune_s": round(st.tune_s, 3), "new_tasks": st.new_tasks, "reused_tasks": st.reused_tasks,
                 "trials_per_task": st.trials_per_task}
    compiled = build(prepared, target, database)
    compiled.compile_s += t_import
    return compiled, check_module(prepared, target), stats


def integer_io_report(model_fp32: nn.Module, calib_x: torch.Tensor, profile: HardwareProfile, *,
                      calibration: str = "max") -> dict[str, Any]:
    """Integer-only report of the ``io="int"`` variant (int8 in, int32 logits out), from its Relax/TIR."""
    qint = quantize_model(model_fp32.eval(), calib_x, calibration=calibration, io="int")
    target = make_target(profile)
    example = qint.quantize_input(calib_x[:1])
    report = check_module(prepare(import_integer_model(qint, example), target), target)
    return {k: report[k] for k in ("integer_only", "strict_integer_only", "float_ops", "counts")}


def _run_remote(compiled: Compiled, profile: HardwareProfile, example: torch.Tensor, reference: np.ndarray) -> Any:
    """Export, upload and time on the profile's RPC device (hwssl.deploy's protocol)."""
    with tempfile.TemporaryDirectory(prefix="hwssl-int8-") as tmp:
        return run_rpc(compiled, profile, example, reference, per_layer=False, workdir=Path(tmp))


def time_tvm_alternating(nets: dict[str, Compiled], example: torch.Tensor, profile: HardwareProfile, *,
                         rounds: int) -> dict[str, dict[str, Any]]:
    """Time several builds on this machine in alternating rounds (a, b, a, b, ...).

    On a shared machine the load changes over seconds; alternating puts the
    same load on every network, so their ratio holds even when absolute
    times drift. Each round is the profile's timing protocol (warm-up, then
    ``repeat`` samples of ``number`` runs); ``tvm`` is the median of all samples.
    """
    from hwssl.deploy.measure import configure_tvm_threads, time_vm
    from hwssl.deploy.target import local_device

    dev = local_device(profile)
    threads = configure_tvm_threads(profile.threads) if profile.target_kind == "llvm" else None
    vms = {name: relax.VirtualMachine(c.executable.jit(), dev) for name, c in nets.items()}
    x = [tvm.runtime.tensor(example.detach().cpu().numpy(), device=dev)]
    samples: dict[str, list[float]] = {n: [] for n in nets}
    for _ in range(max(1, rounds)):
        for name in nets:
            samples[name] += time_vm(vms[name], dev, x, profile.timing)
    return {n: {"tvm": float(np.median(v)), "tvm_min": float(np.min(v)), "tvm_samples_ms": v, "threads": threads,
                "rounds": max(1, rounds)} for n, v in samples.items()}


def time_torch_alternating(models: dict[str, nn.Module], example: torch.Tensor, profile: HardwareProfile, *,
                           rounds: int) -> dict[str, dict[str, Any]]:
    """PyTorch eager, same protocol and alternation, with the profile's thread count.

    Call it before TVM runs anything in this process: measured here, PyTorch
    right after a TVM timing loop ran up to 10x slower (TVM's pool threads and
    PyTorch's OpenMP threads competing for the 2 cores) than before it. On a
    loaded machine PyTorch's samples are bimodal (an OpenMP barrier waits for a
    descheduled thread: 0.5 ms vs 30 ms for the same LeNet), hence ``torch_min``
    next to the median.
    """
    samples: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(max(1, rounds)):
        for name, model in models.items():
            samples[name] += time_torch(model, example, profile).samples_ms
    return {n: {"torch": float(np.median(v)), "torch_min": float(np.min(v)), "torch_samples_ms": v}
            for n, v in samples.items()}


def _tvm_max_abs_diff(compiled: Compiled, profile: HardwareProfile, example: torch.Tensor,
                      reference: np.ndarray) -> float:
    from hwssl.deploy.target import local_device

    dev = local_device(profile)
    vm = relax.VirtualMachine(compiled.executable, dev)
    return max_abs_diff(vm["main"](tvm.runtime.tensor(example.numpy(), device=dev)), reference)


@torch.no_grad()
def tvm_agreement(compiled: Compiled, qnet: Int8Net, images: torch.Tensor) -> dict[str, Any]:
    """Run the compiled int8 network image by image (locally) against PyTorch's integer network."""
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    ref = qnet(images)
    agree, worst = 0, 0.0
    for i in range(len(images)):
        out = vm["main"](tvm.runtime.tensor(images[i:i + 1].numpy())).numpy()
        worst = max(worst, float(np.abs(out.astype(np.float64) - ref[i:i + 1].double().numpy()).max()))
        agree += int(out.argmax(1)[0] == int(ref[i].argmax()))
    return {"images": len(images), "argmax_agree": agree, "max_abs_diff": worst}


def quantize_and_measure(model_fp32: nn.Module, calib_x: torch.Tensor, test_dataset: TensorDataset,
                         profile: HardwareProfile, *, val_dataset: TensorDataset | None = None,
                         tune: bool = False, trials_per_task: int | None = None, calibration: str = "max",
                         check_images: int = 32, torch_timing: bool = True, compare_fp32: bool = False,
                         integer_io_check: bool = False, rounds: int = 3, cache_dir: str | Path | None = None
                         ) -> dict[str, Any]:
    """Quantise ``model_fp32`` (a compacted zoo network) to int8, compile it for ``profile``, time it,
    and prove which arithmetic the compiled kernels do. A JSON-serialisable dict.

    ``calib_x``: a few hundred training images. Accuracies come from
    PyTorch's run of the same integer network (exact integer arithmetic, so
    identical to TVM's up to the float dequantisation of the logits); the
    compiled module is checked against it on ``check_images`` test images
    (``tvm_vs_torch_int8``). ``integer_io_check`` also checks the ``io="int"``
    variant (int8 images in, int32 logits out; no build needed), whose verdict
    ``strict_integer_only`` says whether anything float is left once the
    input quantisation and logits scaling move out of the module
    (``integer_io_report``). ``compare_fp32`` also builds and times the fp32
    model the same way (same target, threads and tuning) and times the two
    in ``rounds`` alternating rounds (:func:`time_tvm_alternating`,
    :func:`time_torch_alternating`), for side-by-side numbers on a shared
    machine. Profiles that cannot run here
    are built and checked, not timed (``skipped``).

    Keys (named as in a trial record: bare = validation, ``_test`` = test): ``route``,
    ``accuracy_fp32_test``/``accuracy_int8_test``, ``accuracy_fp32``/``accuracy_int8`` (None without
    ``val_dataset``), ``latency_ms_int8`` ({tvm, tvm_samples_ms, torch,
    torch_samples_ms, tvm_min, torch_min, threads, rounds, tuned,
    max_abs_diff_vs_torch}; torch
    is PyTorch eager running the integer network, whose int32 convolutions
    have no fast CPU kernels: a reference, not a deployment path),
    ``integer_only``, ``strict_integer_only``, ``int_ops``, ``float_ops``, ``integer_counts``, ``max_abs_diff_vs_fp32_logits`` (test
    set), ``tvm_vs_torch_int8``, ``quant`` (scales per tensor), ``compile_s``,
    ``target``, ``device``; with ``compare_fp32``: ``latency_ms_fp32``,
    ``fp32_integer_report``.
    """
    model_fp32 = model_fp32.eval()
    wall: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        wall[name] = round(now - t0, 3)
        t0 = now

    qnet = quantize_model(model_fp32, calib_x, calibration=calibration)
    lap("quantize")
    from hwssl.data.sets import images, labels_of, plain

    x_test = images(plain(test_dataset))   # any data set (image folders too), never augmented
    y_test = torch.as_tensor(labels_of(test_dataset), dtype=torch.long)
    example = x_test[:1]
    l32, l8 = logits_of(model_fp32, x_test), logits_of(qnet, x_test)
    result: dict[str, Any] = {
        "route": ROUTE, "route_detail": ROUTE_DETAIL, "profile": profile.name,
        "accuracy_fp32_test": _accuracy(l32, y_test), "accuracy_int8_test": _accuracy(l8, y_test),
        "accuracy_fp32": None, "accuracy_int8": None,
        "max_abs_diff_vs_fp32_logits": float((l8.double() - l32.double()).abs().max()) if len(l8) else 0.0,
        "quant": qnet.info, "wall_s": wall,
    }
    if val_dataset is not None:
        result["accuracy_fp32"] = accuracy_of(model_fp32, val_dataset)
        result["accuracy_int8"] = accuracy_of(qnet, val_dataset)
    lap("accuracy")
    compiled, report, stats = compile_int8(qnet, example, profile, tune=tune, trials_per_task=trials_per_task,
                                           cache_dir=cache_dir)
    lap("compile_int8")
    result.update(integer_only=report["integer_only"], strict_integer_only=report["strict_integer_only"],
                  int_ops=report["int_ops"], float_ops=report["float_ops"], integer_counts=report["counts"],
                  compile_s=round(compiled.compile_s, 3), target=str(compiled.target), tuning=stats,
                  scheduled_kernels=compiled.scheduled_kernels, kernels=compiled.total_kernels)
    if integer_io_check:
        result["integer_io_report"] = integer_io_report(model_fp32, calib_x, profile, calibration=calibration)
        lap("integer_io_check")
    available, reason = (True, "") if profile.is_remote else profile_availability(profile)
    if not available:
        result.update(latency_ms_int8=None, skipped=reason, tvm_vs_torch_int8=None)
        return result
    fp32 = None
    if compare_fp32:
        fp32, fp32_report = _build_fp32(model_fp32, example, profile, tune=tune, trials_per_task=trials_per_task,
                                        cache_dir=cache_dir)
        result["fp32_integer_report"] = {k: fp32_report[k] for k in ("integer_only", "strict_integer_only",
                                                                      "counts")}
        lap("compile_fp32")
    if profile.is_remote:
        dev = _run_remote(compiled, profile, example, torch_reference(qnet, example))
        result["latency_ms_int8"] = {"tvm": dev.timing.median_ms, "tvm_samples_ms": dev.timing.samples_ms,
                                     "torch": None, "threads": None, "tuned": bool(tune)}
        result["device"] = dev.device
        if fp32 is not None:
            dev32 = _run_remote(fp32, profile, example, torch_reference(model_fp32, example))
            result["latency_ms_fp32"] = {"tvm": dev32.timing.median_ms, "tvm_samples_ms": dev32.timing.samples_ms,
                                         "torch": None, "threads": None, "tuned": bool(tune),
                                         "max_abs_diff_vs_torch": dev32.max_abs_diff}
        return result
    n_rounds = rounds if fp32 is not None else 1
    models = {"int8": qnet} if fp32 is None else {"int8": qnet, "fp32": model_fp32}
    builds = {"int8": compiled} if fp32 is None else {"int8": compiled, "fp32": fp32}
    torch_times: dict[str, dict[str, Any]] = {n: {"torch": None, "torch_min": None, "torch_samples_ms": []}
                                              for n in models}
    if torch_timing and profile.target_kind == "llvm":  # before TVM runs anything (see time_torch_alternating)
        torch_times = time_torch_alternating(models, example, profile, rounds=n_rounds)
        lap("torch_timing")
    if profile.target_kind == "llvm":
        result["tvm_vs_torch_int8"] = tvm_agreement(compiled, qnet, x_test[:check_images])
        lap("tvm_agreement")
    tvm_times = time_tvm_alternating(builds, example, profile, rounds=n_rounds)
    lap("tvm_timing")
    result["device"] = "local"
    for name in builds:
        diff = _tvm_max_abs_diff(builds[name], profile, example, torch_reference(models[name], example))
        result[f"latency_ms_{name}"] = {**tvm_times[name], **torch_times[name], "tuned": bool(tune),
                                        "max_abs_diff_vs_torch": diff}
    return result


def _build_fp32(model: nn.Module, example: torch.Tensor, profile: HardwareProfile, *, tune: bool,
                trials_per_task: int | None, cache_dir: str | Path | None) -> tuple[Compiled, dict[str, Any]]:
    """The fp32 model through the same import/prepare/(tune)/build path, and its integer report."""
    target = make_target(profile)
    prepared = prepare(import_model(model, example, profile), target)
    database = None
    if tune:
        _stats, database = tune_and_open(prepared, target, profile, trials_per_task=trials_per_task,
                                         db_dir=profile.database_dir(cache_dir))
    return build(prepared, target, database), check_module(prepared, target)
