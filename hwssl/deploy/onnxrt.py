"""ONNX Runtime, the runtime a user would deploy with instead of TVM.

:func:`export_onnx` writes a network with ``torch.onnx.export`` (the TorchScript
exporter, ``dynamo=False``: the dynamo exporter needs ``onnxscript``, one more
dependency, and the TorchScript one handles every hwssl layer, including the
strided slices and ``index_select`` gathers of lowered shape-sparse convs, which
become ONNX ``Slice`` and ``Gather``). Opset :data:`OPSET` runs on every ONNX
Runtime since 1.13. :func:`check_onnx` runs the file and compares it with
PyTorch; :func:`ort_runner` times it the way :mod:`hwssl.deploy.timing` wants:
all graph optimisations, sequential execution, ``intra_op_num_threads`` = the
thread count being timed (the same counts as TVM), one inter-op thread.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwssl.config.profile import TimingSettings

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Write ``model`` (eval mode, fixed input shape of ``example``) as an ONNX file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")  # renamed when complete: readers never see half
    with warnings.catch_warnings(), torch.no_grad():
        # constant-folding notes about strided slices and the exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    tmp.replace(path)
    return path


def session(path: str | Path, threads: int) -> Any:
    """An ONNX Runtime CPU session: all graph optimisations, sequential, ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run(sess: Any, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def check_onnx(path: str | Path, model: torch.nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime's output and PyTorch's on ``example``."""
    out = run(session(path, 1), example.detach().cpu().numpy())
    with torch.no_grad():
        ref = model.eval()(example).detach().cpu().numpy()
    if out.shape != ref.shape:
        raise ValueError(f"ONNX Runtime output shape {out.shape} != PyTorch {ref.shape}")
    return float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) if out.size else 0.0


def ort_runner(sess: Any, x: np.ndarray, timing: TimingSettings):
    """One round of samples (ms per run) of ``sess`` on ``x``: warm-up, then ``repeat`` samples of
    ``number`` runs, ``number`` grown until a sample takes ``min_repeat_ms`` (TVM's protocol)."""
    feed = {sess.get_inputs()[0].name: x}
    state = {"number": timing.number}

    def one_round() -> list[float]:
        for _ in range(max(timing.warmup, 1)):
            sess.run(None, feed)
        number = state["number"]
        while True:  # calibrate once per round, like time_evaluator does
            t0 = time.perf_counter()
            for _ in range(number):
                sess.run(None, feed)
            ms = (time.perf_counter() - t0) * 1e3
            if ms >= timing.min_repeat_ms or number >= 1_000_000:
                break
            number = max(number * 2, int(number * timing.min_repeat_ms / max(ms, 1e-3) * 1.1))
        state["number"] = number
        samples = []
        for _ in range(timing.repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                sess.run(None, feed)
            samples.append((time.perf_counter() - t0) * 1e3 / number)
            if timing.cooldown_ms:
                time.sleep(timing.cooldown_ms / 1e3)
        return samples

    return one_round
