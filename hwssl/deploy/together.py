"""Time several built networks together on a profile's device (locally or over TVM RPC).

Each network is an exported TVM library (plus, on a local CPU, its ONNX file).
:func:`time_on_device` loads them all, checks each against PyTorch, and times
every (network, runtime, thread count) series in the same alternating rounds
(:func:`hwssl.deploy.timing.time_interleaved`). The fastest thread count of a
network is its latency; the others are kept (``by_threads``) to show the choice.
A device that goes away while this runs (RPC server killed, connection dropped)
raises :class:`DeployError` naming it, so the search fails that trial and goes on;
the next measurement opens a new session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import tvm
from tvm import relax

from hwssl.config.profile import HardwareProfile
from hwssl.deploy import onnxrt
from hwssl.deploy.compile import Compiled, max_abs_diff
from hwssl.deploy.errors import DeployError
from hwssl.deploy.measure import (_remote_threads, configure_tvm_threads, per_kernel_times, rpc_session,
                                  time_vm)
from hwssl.deploy.target import local_device
from hwssl.deploy.timing import Runner, Timing, best_by_group, cpus_busiest_first, time_interleaved


@dataclass
class DeviceNet:
    """One network to time: its exported library, PyTorch's output, and what else to measure."""

    library: Path
    reference: np.ndarray
    compiled: Compiled | None = None  # needed for per-kernel times only
    per_layer: bool = False
    onnx: Path | None = None  # None: no ONNX Runtime timing


@dataclass
class NetTimes:
    """What :func:`time_on_device` measured for one network."""

    tvm: Timing
    tvm_by_threads: dict[int | None, Timing]
    max_abs_diff: float
    onnxruntime: Timing | None = None
    onnxruntime_by_threads: dict[int, Timing] = field(default_factory=dict)
    onnx_max_abs_diff: float | None = None
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    device: str = "local"


def thread_counts(profile: HardwareProfile) -> list[int | None]:
    """1..threads on a CPU target; [None] (the runtime decides) on a GPU."""
    return list(range(1, profile.threads + 1)) if profile.target_kind == "llvm" else [None]


def _tvm_runner(vm: Any, dev: Any, x: Any, profile: HardwareProfile, threads: int | None,
                set_threads: Callable[[int], int | None]) -> tuple[Runner, int | None]:
    used = set_threads(threads) if threads is not None else None

    def one_round() -> list[float]:
        if threads is not None:
            set_threads(threads)
        return time_vm(vm, dev, [x], profile.timing)
    return one_round, used


def _interleave(series: list[tuple[int, str, int | None, Runner]], profile: HardwareProfile
                ) -> dict[tuple[int, str], dict[int | None, Timing]]:
    """Time every (net, runtime, threads) series together; {(net, runtime): {threads: Timing}}. TVM's
    series decide how many rounds are taken; the peer runtimes are timed in the same rounds."""
    groups = [(n, rt) for n, rt, _, _ in series]
    timings = time_interleaved([r for *_, r in series], profile.timing, groups=groups,
                               threads=[t for _, _, t, _ in series], side=[rt != "tvm" for _, rt, _, _ in series])
    out: dict[tuple[int, str], dict[int | None, Timing]] = {}
    for (n, rt, t, _), timing in zip(series, timings):
        out.setdefault((n, rt), {})[t] = timing
    return out


def _best(by_threads: dict[Any, Timing]) -> Timing:
    items = list(by_threads.values())
    return items[next(iter(best_by_group(items, [0] * len(items)).values()))]


def _results(nets: list[DeviceNet], measured: dict[tuple[int, str], dict[Any, Timing]], diffs: list[float],
             onnx_diffs: list[float | None], layers: list[list[dict[str, Any]]], device: str) -> list[NetTimes]:
    out = []
    for i in range(len(nets)):
        tvm_t = measured[(i, "tvm")]
        ort_t = measured.get((i, "onnxruntime"), {})
        out.append(NetTimes(tvm=_best(tvm_t), tvm_by_threads=tvm_t, max_abs_diff=diffs[i],
                            onnxruntime=_best(ort_t) if ort_t else None, onnxruntime_by_threads=ort_t,
                            onnx_max_abs_diff=onnx_diffs[i], per_layer=layers[i], device=device))
    return out


def _time_local(nets: list[DeviceNet], profile: HardwareProfile, example: torch.Tensor) -> list[NetTimes]:
    dev = local_device(profile)
    pin = profile.timing.pin_threads
    cpus = cpus_busiest_first() if pin and profile.target_kind == "llvm" else None  # workers on the idlest
    x_np = example.detach().cpu().numpy()
    x = tvm.runtime.tensor(x_np, device=dev)
    series: list[tuple[int, str, int | None, Runner]] = []
    diffs, onnx_diffs = [], []
    libs = []
    for i, net in enumerate(nets):
        lib = tvm.runtime.load_module(str(net.library))
        libs.append(lib)
        vm = relax.VirtualMachine(lib, dev)
        diffs.append(max_abs_diff(vm["main"](x), net.reference))
        seen: set[int | None] = set()
        for t in thread_counts(profile):
            runner, used = _tvm_runner(vm, dev, x, profile, t, lambda n: configure_tvm_threads(n, pin, cpus))
            if used in seen:  # the runtime's ceiling (TVM_NUM_THREADS) capped this count
                continue
            seen.add(used)
            series.append((i, "tvm", used, runner))
        onnx_diffs.append(None)
        if net.onnx is not None and profile.target_kind == "llvm":
            onnx_diffs[-1] = max_abs_diff(onnxrt.run(onnxrt.session(net.onnx, 1), x_np), net.reference)
            for t in range(1, profile.threads + 1):
                series.append((i, "onnxruntime", t, onnxrt.ort_runner(onnxrt.session(net.onnx, t), x_np,
                                                                      profile.timing)))
    measured = _interleave(series, profile)
    layers = []
    for i, net in enumerate(nets):
        rows: list[dict[str, Any]] = []
        if net.per_layer and net.compiled is not None:
            configure_tvm_threads(_best(measured[(i, "tvm")]).threads or profile.threads, pin, cpus)
            rows = per_kernel_times(net.compiled.executable.jit().imports[0], net.compiled.kernels, dev,
                                    profile.timing)
        layers.append(rows)
    return _results(nets, measured, diffs, onnx_diffs, layers, "local")


def _time_rpc(nets: list[DeviceNet], profile: HardwareProfile, example: torch.Tensor, workdir: Path
              ) -> list[NetTimes]:
    from hwssl.deploy.compile import export_library

    address = profile.runner.address()
    with rpc_session(profile) as remote:
        try:
            dev = remote.cuda(0) if profile.target_kind == "cuda" else remote.cpu(0)
            x = tvm.runtime.tensor(example.detach().cpu().numpy(), device=dev)
            series: list[tuple[int, str, int | None, Runner]] = []
            diffs = []
            for i, net in enumerate(nets):
                name = f"net{i}_{net.library.name}"
                remote.upload(str(net.library), target=name)
                vm = relax.VirtualMachine(remote.load_module(name), dev)
                diffs.append(max_abs_diff(vm["main"](x).numpy(), net.reference))
                seen: set[int | None] = set()
                for t in thread_counts(profile):
                    runner, used = _tvm_runner(vm, dev, x, profile, t, lambda n: _remote_threads(remote, n))
                    key = used if used is not None else t
                    if key in seen:
                        continue
                    seen.add(key)
                    series.append((i, "tvm", key, runner))
            measured = _interleave(series, profile)
            layers = []
            for i, net in enumerate(nets):
                rows: list[dict[str, Any]] = []
                if net.per_layer and net.compiled is not None:  # ship the kernels on their own
                    kpath = export_library(net.compiled, profile, workdir / f"net{i}_kernels.so", kernels_only=True)
                    remote.upload(str(kpath))
                    rows = per_kernel_times(remote.load_module(kpath.name), net.compiled.kernels, dev,
                                            profile.timing)
                layers.append(rows)
        except (DeployError, ValueError):  # ours, or a numerics mismatch: not a lost device
            raise
        except Exception as exc:  # the server died or the connection dropped mid-measurement
            first = str(exc).strip().splitlines()
            raise DeployError(profile.path, f"lost the RPC device {address} during measurement "
                              f"({type(exc).__name__}: {first[-1] if first else ''}); the next measurement "
                              "connects again", key="runner") from exc
    return _results(nets, measured, diffs, [None] * len(nets), layers, address)


def time_on_device(nets: list[DeviceNet], profile: HardwareProfile, example: torch.Tensor, *,
                   workdir: Path) -> list[NetTimes]:
    """Time ``nets`` together on the profile's device; one :class:`NetTimes` per net, in order."""
    if profile.is_remote:
        return _time_rpc(nets, profile, example, workdir)
    return _time_local(nets, profile, example)
