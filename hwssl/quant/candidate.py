"""The int8 variant of one search candidate: accuracy, latency per profile, integer-only verdict.

This is what a trial records (``hwssl.evaluate.finish_candidate``) when its
precision is int8 or the space asks for an int8 variant of every trial. The
compiled module's latency and its integer-only report depend on the
architecture and the profile only (scales and weights change constants, not
kernels), so they are cached like the fp32 latency: by (``int8`` + the
compacted spec's hash, profile, target, device, tuning state, versions).
Accuracies are not cached; they come from PyTorch's run of the same integer
network (exact integer arithmetic, see :func:`hwssl.quant.quantize_and_measure`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

import hwssl.deploy  # noqa: F401  (sets TVM_NUM_THREADS before TVM is imported)
import tvm

from hwssl.config.profile import HardwareProfile
from hwssl.deploy.candidate import measure_candidate
from hwssl.deploy.compile import prepare
from hwssl.quant._convert import Int8Net, quantize_model
from hwssl.quant.check import check_module
from hwssl.quant.importer import import_integer_model
from hwssl.data.sets import first_images
from hwssl.quant.measure import ROUTE, accuracy_of


def _report_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The part of :func:`hwssl.quant.check.integer_report` a trial record keeps (compact: one
    line per float block; the int8 MACs as counts)."""
    return {"integer_only": report["integer_only"], "strict_integer_only": report["strict_integer_only"],
            "float_ops": [f["desc"] for f in report["float_ops"]], "integer_counts": report["counts"]}


def measure_int8(qnet: Int8Net, example: torch.Tensor, profile: HardwareProfile, *, arch_key: str, tune: bool,
                 trials_per_task: int | None = None, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """:func:`hwssl.deploy.measure_candidate` for the integer network: imported with the int8
    converters, cached under ``int8:<arch_key>``, and with the integer-only report of the compiled
    module added (``integer_only``, ``strict_integer_only``, ``float_ops`` as one line per float
    block, ``integer_counts``). ``torch`` is None: PyTorch eager has no fast int8 convolution on CPU;
    ``max_abs_diff`` is against PyTorch's run of the same integer network.
    """
    return {**measure_candidate(qnet.eval(), example, profile, arch_key=f"int8:{arch_key}", tune=tune,
                                trials_per_task=trials_per_task, cache_dir=cache_dir, torch_timing=False,
                                importer=lambda net, x, _profile: import_integer_model(net, x),
                                inspect=lambda prepared, target: _report_fields(check_module(prepared, target))),
            "precision": "int8"}


def host_integer_report(qnet: Int8Net, example: torch.Tensor) -> dict[str, Any]:
    """Integer-only report for this machine's CPU (``llvm``): used when a candidate has no profile."""
    target = tvm.target.Target("llvm")
    return _report_fields(check_module(prepare(import_integer_model(qnet, example), target), target))


def int8_variant(model: nn.Module, calib_x: torch.Tensor, val: TensorDataset, test: TensorDataset,
                 profiles: Sequence[HardwareProfile] = (), *, arch_key: str, calibration: str = "max",
                 tune: bool = True, trials_per_task: int | None = None,
                 cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Quantise a compacted fp32 candidate and measure its int8 variant. JSON-serialisable.

    Keys: ``accuracy_int8`` (validation), ``accuracy_int8_test``, ``latency_ms_int8``
    ({profile: :func:`measure_int8`}), ``integer_only`` (every profile's compiled module -- or,
    with no profile, this host's -- runs its convolutions and matmuls as int8 x int8 -> int32 and
    nothing else in float but the input quantisation and logits scaling), ``float_ops`` (union
    over profiles), and ``int8`` (route, calibration, images, wall time).
    """
    t0 = time.perf_counter()
    model = model.eval()
    qnet = quantize_model(model, calib_x, calibration=calibration)
    t_quant = time.perf_counter() - t0
    out: dict[str, Any] = {
        "accuracy_int8": accuracy_of(qnet, val), "accuracy_int8_test": accuracy_of(qnet, test),
        "latency_ms_int8": {},
    }
    reports = []
    for profile in profiles:
        lat = measure_int8(qnet, profile.example_input(first_images(val, profile.batch)), profile, arch_key=arch_key, tune=tune, trials_per_task=trials_per_task,
                           cache_dir=cache_dir)
        out["latency_ms_int8"][profile.name] = lat
        reports.append(lat)
    if not reports:
        reports.append(host_integer_report(qnet, first_images(val, 1)))
    float_ops = sorted({op for r in reports for op in r["float_ops"]})
    out.update(integer_only=all(r["integer_only"] for r in reports),
               strict_integer_only=all(r["strict_integer_only"] for r in reports), float_ops=float_ops,
               int8={"route": ROUTE, "calibration": calibration, "calib_images": int(len(calib_x)),
                     "quantize_s": round(t_quant, 3), "total_s": round(time.perf_counter() - t0, 3)})
    return out
