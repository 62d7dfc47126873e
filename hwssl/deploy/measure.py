"""Timing: TVM Relax VM locally or over TVM RPC, PyTorch eager on the host, per-kernel breakdown.

Threads. TVM's runtime reads ``TVM_NUM_THREADS`` once, when its thread pool
is first queried, and ``runtime.config_threadpool`` can only lower the count
below that ceiling. Measured here: with the variable unset the tiny test net
ran 10x slower than with ``TVM_NUM_THREADS=2`` + ``config_threadpool(1, 1)``.
So :mod:`hwssl.deploy` sets the variable (to the CPU count) before TVM is
imported, and :func:`configure_tvm_threads` picks the profile's count per
measurement and reports what the runtime actually uses.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import tvm
from tvm import relax

from hwssl.config.profile import HardwareProfile, TimingSettings
from hwssl.deploy.compile import Compiled, Kernel, export_library, max_abs_diff
from hwssl.deploy.errors import DeployError
from hwssl.deploy.target import local_device


@dataclass
class Timing:
    """Milliseconds of one network run, one sample per repeat."""

    samples_ms: list[float]
    threads: int | None = None

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))


@dataclass
class DeviceResult:
    timing: Timing | None
    max_abs_diff: float | None
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    device: str = "local"


def configure_tvm_threads(threads: int) -> int:
    """Use ``threads`` TVM runtime threads from now on (capped by TVM_NUM_THREADS); returns the count in use."""
    tvm.get_global_func("runtime.config_threadpool")(1, int(threads))
    return int(tvm.runtime.num_threads())


def _timed(evaluator: Any, *args: Any) -> list[float]:
    return [float(r) * 1e3 for r in evaluator(*args).results]


def time_vm(vm: relax.VirtualMachine, dev: Any, inputs: list[Any], timing: TimingSettings) -> list[float]:
    """Warm up, then ``repeat`` samples of ``number`` runs each (ms per run) via the stateful VM API."""
    for _ in range(timing.warmup):
        vm["main"](*inputs)
    vm.set_input("main", *inputs)
    evaluator = vm.time_evaluator("invoke_stateful", dev, number=timing.number, repeat=timing.repeat,
                                  min_repeat_ms=timing.min_repeat_ms, cooldown_interval_ms=timing.cooldown_ms)
    return _timed(evaluator, "main")


def _kernel_args(kernel: Kernel, dev: Any, rng: np.random.Generator) -> list[Any]:
    """Real constants (weights, gather indices) and random activations of the right shape."""
    args = []
    for a in kernel.args:
        if isinstance(a, tvm.ir.Constant):
            args.append(tvm.runtime.tensor(a.value.numpy(), device=dev))
        else:
            shape, dtype = a
            data = rng.uniform(-1, 1, size=shape).astype(dtype) if dtype.startswith("float") else np.zeros(shape, dtype)
            args.append(tvm.runtime.tensor(data, device=dev))
    shape, dtype = kernel.out
    args.append(tvm.runtime.tensor(np.zeros(shape, dtype), device=dev))
    return args


def kernel_arg_shapes(kernel: Kernel) -> list[list[int]]:
    """Shapes of a kernel's arguments (constants included), in call order: what the latency model
    keys a kernel by (:mod:`hwssl.latency.kernels`)."""
    return [[int(d) for d in (a.value.shape if isinstance(a, tvm.ir.Constant) else a[0])] for a in kernel.args]


def per_kernel_times(library: Any, kernels: list[Kernel], dev: Any, timing: TimingSettings) -> list[dict[str, Any]]:
    """Time every compiled kernel of ``main`` on its own, in call order.

    ``library`` is the module holding the kernels (the import of the VM
    executable). Relax 0.27's VM has no built-in profiler; timing each
    PrimFunc with ``time_evaluator`` on arguments of its real shapes (and real
    constant inputs) measures the kernels without Python overhead. Kernels of
    one fused group are reported under their fused name (e.g.
    ``fused_conv2d_add_relu``) with their output and argument shapes
    (``out_shape``, ``args``); the VM's own bookkeeping between calls is
    not included, so the sum is a little below the network time.
    """
    rng = np.random.default_rng(0)
    rows = []
    for i, kernel in enumerate(kernels):
        args = _kernel_args(kernel, dev, rng)
        evaluator = library.time_evaluator(kernel.name, dev, number=timing.number, repeat=timing.repeat,
                                           min_repeat_ms=min(timing.min_repeat_ms, 10))
        samples = _timed(evaluator, *args)
        rows.append({"index": i, "name": kernel.name, "ms": float(statistics.median(samples)),
                     "out_shape": list(kernel.out[0]), "args": kernel_arg_shapes(kernel)})
    return rows


def run_local(compiled: Compiled, profile: HardwareProfile, example: torch.Tensor, reference: np.ndarray, *,
              per_layer: bool) -> DeviceResult:
    """Run on this machine: numerics check, network timing and optional per-kernel times."""
    dev = local_device(profile)
    threads = configure_tvm_threads(profile.threads) if profile.target_kind == "llvm" else None
    rt_mod = compiled.executable.jit()
    vm = relax.VirtualMachine(rt_mod, dev)
    x = tvm.runtime.tensor(example.detach().cpu().numpy(), device=dev)
    diff = max_abs_diff(vm["main"](x), reference)
    samples = time_vm(vm, dev, [x], profile.timing)
    layers = per_kernel_times(rt_mod.imports[0], compiled.kernels, dev, profile.timing) if per_layer else []
    return DeviceResult(Timing(samples, threads), diff, layers, "local")


@contextlib.contextmanager
def rpc_session(profile: HardwareProfile) -> Iterator[Any]:
    """An RPC session to the profile's device (direct or via tracker); :class:`DeployError` if unreachable."""
    from tvm import rpc

    run = profile.runner
    try:
        if run.uses_tracker:
            tracker = rpc.connect_tracker(run.tracker_host, run.tracker_port)
            session = tracker.request(run.key, priority=1, session_timeout=int(run.session_timeout_s))
        else:
            session = rpc.connect(run.host, run.port, session_timeout=int(run.session_timeout_s))
    except Exception as exc:
        what = (f"tracker {run.tracker_host}:{run.tracker_port} (key {run.key!r})" if run.uses_tracker
                else f"rpc_server {run.host}:{run.port}")
        raise DeployError(profile.path, f"cannot reach {what}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                          "start `python -m tvm.exec.rpc_server` on the device or fix [runner]",
                          key="runner") from exc
    yield session


def run_rpc(compiled: Compiled, profile: HardwareProfile, example: torch.Tensor, reference: np.ndarray, *,
            per_layer: bool, workdir: Path) -> DeviceResult:
    """Export (cross-linked), upload, load and time on the RPC device; numerics checked on the device."""
    lib_path = export_library(compiled, profile, workdir / f"{profile.name}.so")
    with rpc_session(profile) as remote:
        remote.upload(str(lib_path))
        rlib = remote.load_module(lib_path.name)
        dev = remote.cuda(0) if profile.target_kind == "cuda" else remote.cpu(0)
        threads = _remote_threads(remote, profile.threads) if profile.target_kind == "llvm" else None
        vm = relax.VirtualMachine(rlib, dev)
        x = tvm.runtime.tensor(example.detach().cpu().numpy(), device=dev)
        diff = max_abs_diff(vm["main"](x).numpy(), reference)
        samples = time_vm(vm, dev, [x], profile.timing)
        layers: list[dict[str, Any]] = []
        if per_layer:  # a client cannot reach a remote module's imports: ship the kernels on their own
            kernels_path = export_library(compiled, profile, workdir / f"{profile.name}_kernels.so",
                                          kernels_only=True)
            remote.upload(str(kernels_path))
            layers = per_kernel_times(remote.load_module(kernels_path.name), compiled.kernels, dev, profile.timing)
    return DeviceResult(Timing(samples, threads), diff, layers, profile.runner.address())


def run_on_device(compiled: Compiled, profile: HardwareProfile, example: torch.Tensor, reference: np.ndarray, *,
                  per_layer: bool = False) -> DeviceResult:
    """:func:`run_rpc` (through a temporary folder) or :func:`run_local`, as the profile's runner says."""
    if profile.is_remote:
        with tempfile.TemporaryDirectory(prefix="hwssl-rpc-") as tmp:
            return run_rpc(compiled, profile, example, reference, per_layer=per_layer, workdir=Path(tmp))
    return run_local(compiled, profile, example, reference, per_layer=per_layer)


def _remote_threads(remote: Any, threads: int) -> int | None:
    """Select the thread count on the RPC device (capped by its own TVM_NUM_THREADS)."""
    try:
        remote.get_function("runtime.config_threadpool")(1, int(threads))
        return int(remote.get_function("runtime.NumThreads")())
    except Exception:  # an older or minimal runtime without these functions: leave its default
        return None


def time_torch(model: torch.nn.Module, example: torch.Tensor, profile: HardwareProfile) -> Timing:
    """PyTorch eager on this machine with the profile's thread count (restored afterwards)."""
    t = profile.timing
    device = "cuda" if profile.target_kind == "cuda" else "cpu"
    saved = torch.get_num_threads()
    torch.set_num_threads(profile.threads)
    model = model.eval().to(device)
    x = example.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    try:
        with torch.inference_mode():
            for _ in range(max(t.warmup, 1)):
                model(x)
            sync()
            # same protocol as TVM's time_evaluator: grow `number` until a sample takes min_repeat_ms
            number = t.number
            while True:
                t0 = time.perf_counter()
                for _ in range(number):
                    model(x)
                sync()
                elapsed = time.perf_counter() - t0
                if elapsed * 1e3 >= t.min_repeat_ms or number >= 1_000_000:
                    break
                number = max(number * 2, int(number * t.min_repeat_ms / max(elapsed * 1e3, 1e-3) * 1.1))
            samples = []
            for _ in range(t.repeat):
                t0 = time.perf_counter()
                for _ in range(number):
                    model(x)
                sync()
                samples.append((time.perf_counter() - t0) * 1e3 / number)
                if t.cooldown_ms:
                    time.sleep(t.cooldown_ms / 1e3)
    finally:
        torch.set_num_threads(saved)
        model.to("cpu")
    return Timing(samples, profile.threads)

