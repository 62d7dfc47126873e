"""PyTorch module -> Relax IRModule -> built library for a profile's target.

One fusion function (:func:`fuse`) is used both to extract MetaSchedule tasks
(:mod:`hwssl.deploy.tune`) and to build (:func:`build`), so the workloads in
the tuning database are exactly the kernels that get compiled. (MetaSchedule's
own ``compile_relax`` re-runs fusion on whatever it is given; extracting tasks
from a module fused once and building it with ``compile_relax`` fuses a
second time and the kernel names and workloads no longer match.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from hwssl.config.profile import HardwareProfile
from hwssl.deploy.availability import needs_cross_compiler, resolve_cross_compiler
from hwssl.deploy.errors import DeployError
from hwssl.deploy.kernels import worth_tuning

SCHEDULED_ATTR = "tirx.is_scheduled"


@dataclass
class Kernel:
    """One call of a compiled kernel in ``main``, in execution order."""

    name: str
    args: list[Any]  # tvm.ir.Constant (real data, ``.value``) or (shape, dtype) of a runtime tensor
    out: tuple[tuple[int, ...], str]


@dataclass
class Compiled:
    """A built network plus what is needed to tune, time and export it."""

    executable: Any  # relax VMExecutable
    target: tvm.target.Target
    prepared: tvm.IRModule  # after :func:`prepare`; input to :func:`fuse`
    kernels: list[Kernel] = field(default_factory=list)
    scheduled_kernels: int = 0  # kernels given a schedule by the tuning database (or DLight on GPU)
    total_kernels: int = 0
    # CPU compute kernels (conv, matmul, pool, reductions) the database had no schedule for
    unscheduled_compute: list[str] = field(default_factory=list)
    compile_s: float = 0.0


def import_model(model: torch.nn.Module, example: torch.Tensor, profile: HardwareProfile) -> tvm.IRModule:
    """``torch.export`` + Relax frontend, weights bound as constants, single output unwrapped."""
    from tvm.relax.frontend.torch import from_exported_program

    model = model.eval()
    try:
        with torch.no_grad():
            exported = torch.export.export(model, (example,))
        mod = from_exported_program(exported, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    except Exception as exc:  # export/frontend errors come in many types
        raise DeployError(profile.path, f"cannot import {type(model).__name__} into TVM Relax: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return bounded_takes(mod)


@relax.expr_functor.mutator
class _BoundedTakes(relax.PyExprMutator):
    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        if getattr(call.op, "name", "") == "relax.take" and call.attrs.mode == "fast":
            return relax.op.take(call.args[0], call.args[1], call.attrs.axis, mode="clip")
        return call


def bounded_takes(mod: tvm.IRModule) -> tvm.IRModule:
    """Every ``take`` in ``mod`` with ``mode="clip"`` instead of the frontend's ``"fast"``.

    The channel gathers of compacted convs (``index_select`` with constant,
    in-range indices) import as ``take``; in "fast" mode TOPI warns "Fast mode
    segfaults when there are out-of-bounds indices" each time the op is
    legalised (hundreds of lines per search). Clipping in-range indices changes
    no value; it costs a min/max on a constant index per gathered element.
    """
    out = tvm.IRModule(attrs=mod.attrs) if mod.attrs is not None else tvm.IRModule()
    for gvar, func in mod.functions.items():
        out[gvar] = _BoundedTakes().visit_expr(func) if isinstance(func, relax.Function) else func
    return out


def _backend_pipeline(target: tvm.target.Target) -> Any:
    """The backend's pipeline module (0.27's ``relax.pipeline`` helpers miss ``dataflow_lower_passes``)."""
    if target.kind.name == "cuda":
        from tvm.relax.backend.cuda import pipeline as backend
    else:
        from tvm.relax.backend.cpu_generic import pipeline as backend
    return backend


def _fuse_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    return [*_backend_pipeline(target).library_dispatch_passes(target), relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]


def prepare(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Inference simplifications and a first fusion round.

    :func:`fuse` then runs a second round, which merges what the first left
    apart (conv+BN with the following ReLU, for instance).
    """
    seq = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
           *_fuse_passes(target)]
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(seq)(mod)


def fuse(prepared: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Legalised, fused module whose PrimFuncs are the tuning workloads."""
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(_fuse_passes(target))(prepared)


def _shape_dtype(ty: Any) -> tuple[tuple[int, ...], str]:
    shape = ty.shape
    dims = shape.values if hasattr(shape, "values") else shape
    return tuple(int(d) for d in dims), str(ty.dtype)


def kernel_calls(fused: tvm.IRModule) -> list[Kernel]:
    """The ``call_tir`` calls of ``main`` in order, with their argument shapes/constants."""
    calls: list[Kernel] = []
    for block in fused["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not (isinstance(value, tvm.ir.Call) and getattr(value.op, "name", "") == "relax.call_tir"):
                continue
            gvar, args = value.args[0], value.args[1]
            arg_list = list(args.fields) if isinstance(args, tvm.ir.Tuple) else [args]
            spec = [a if isinstance(a, tvm.ir.Constant) else _shape_dtype(a.ty) for a in arg_list]
            calls.append(Kernel(gvar.name_hint, spec, _shape_dtype(value.ty)))
    return calls


def build(prepared: tvm.IRModule, target: tvm.target.Target, database: Any | None = None) -> Compiled:
    """Build ``prepared`` for ``target``; kernels found in ``database`` get their tuned schedule.

    Without a database CPU kernels keep TVM's default (unscheduled) loops, the
    "untuned" baseline; GPU kernels always get DLight's default schedules.
    """
    from tvm.relax.transform import MetaScheduleApplyDatabase
    from tvm.s_tir import dlight as dl

    from hwssl.deploy._workers import import_intrinsics

    t0 = time.perf_counter()
    if database is not None:
        import_intrinsics(target.kind.name)  # tuned traces may tensorize with registered intrinsics
    db = database if database is not None else ms.database.MemoryDatabase()
    gpu = target.kind.name == "cuda"
    fused = fuse(prepared, target)
    kernels = kernel_calls(fused)
    counts: dict[str, Any] = {"scheduled": 0, "total": 0, "unscheduled_compute": []}

    @tvm.transform.module_pass(opt_level=3)
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = MetaScheduleApplyDatabase(enable_warning=False)(mod)
        if gpu:
            mod = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                          dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)
        prim = [f for _, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
        counts["total"] = len(prim)
        counts["scheduled"] = sum(1 for f in prim if f.attrs is not None and f.attrs.get(SCHEDULED_ATTR, False))
        if not gpu:
            counts["unscheduled_compute"] = sorted(
                gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)
                and worth_tuning(gv.name_hint)
                and not (f.attrs is not None and f.attrs.get(SCHEDULED_ATTR, False)))
        backend = _backend_pipeline(target)
        passes = [*backend.dataflow_lower_passes(target), *backend.finalize_passes(target)]
        return tvm.transform.Sequential(passes)(mod)

    with target, db, tvm.transform.PassContext(opt_level=3):
        ex = relax.build(fused, target=target, relax_pipeline=_pipeline)
    return Compiled(executable=ex, target=target, prepared=prepared, kernels=kernels,
                    scheduled_kernels=counts["scheduled"], total_kernels=counts["total"],
                    unscheduled_compute=counts["unscheduled_compute"], compile_s=time.perf_counter() - t0)


def compile_model(model: torch.nn.Module, example: torch.Tensor, profile: HardwareProfile,
                  target: tvm.target.Target, database: Any | None = None) -> Compiled:
    """Import, prepare and build in one go (timed in ``compile_s``)."""
    t0 = time.perf_counter()
    prepared = prepare(import_model(model, example, profile), target)
    compiled = build(prepared, target, database)
    compiled.compile_s = time.perf_counter() - t0
    return compiled


def _fcompile(profile: HardwareProfile) -> Any:
    """The linker for ``export_library``: the profile's cross compiler, or TVM's default."""
    from tvm.support import cc

    if profile.cross_compiler:
        path = resolve_cross_compiler(profile)
        if path is None:
            raise DeployError(profile.path, f"{profile.cross_compiler!r} is not on PATH; install it (Debian: "
                              "apt-get install g++-aarch64-linux-gnu for aarch64) or fix cross_compiler",
                              key="cross_compiler")
        return cc.cross_compiler(path)
    if needs_cross_compiler(profile):
        raise DeployError(profile.path, "the target is for another CPU architecture than this machine; "
                          "set cross_compiler (e.g. 'aarch64-linux-gnu-g++')", key="cross_compiler")
    return None


def export_library(compiled: Compiled, profile: HardwareProfile, path: str | Path, *,
                   kernels_only: bool = False) -> Path:
    """Write a deployable shared library (cross-linked for foreign CPUs).

    ``kernels_only`` writes just the compiled kernels (no VM executable), a
    library whose functions an RPC peer can time one by one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fcompile = _fcompile(profile)
    module = compiled.executable.mod.imports[0] if kernels_only else compiled.executable
    try:
        if fcompile is None:
            module.export_library(str(path))
        else:
            module.export_library(str(path), fcompile=fcompile)
    except Exception as exc:
        raise DeployError(profile.path, f"export_library failed: {str(exc).splitlines()[0]}") from exc
    return path


def _cuda_root() -> str | None:
    """A CUDA toolkit root with headers (``/usr/local/bin/nvcc`` may be a wrapper script)."""
    import os
    import shutil

    candidates = [os.environ.get("CUDA_PATH", ""), os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    nvcc_bin = shutil.which("nvcc")
    if nvcc_bin:
        candidates.append(str(Path(nvcc_bin).resolve().parent.parent))
    for root in candidates:
        if root and (Path(root) / "include" / "cuda_runtime.h").is_file():
            return root
    return None


def device_sources(compiled: Compiled, out_dir: str | Path) -> dict[str, str]:
    """Save GPU device code (CUDA source, and PTX/cubin when nvcc can make them) to ``out_dir``.

    Used where the target cannot be run here: proves the build produced real
    device code. Returns {"cuda_source": path, "ptx": path, ...} for what exists
    and ``<fmt>_error`` for what nvcc could not make.
    """
    import os

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    sources: list[str] = []

    def walk(mod: Any) -> None:
        if mod.kind == "cuda":
            sources.append(mod.inspect_source(""))
        for child in mod.imports:
            walk(child)

    walk(compiled.executable.mod)
    if not sources:
        return found
    src = "\n".join(sources)
    (out_dir / "kernels.cu").write_text(src)
    found["cuda_source"] = str(out_dir / "kernels.cu")
    from tvm.support import nvcc

    arch = str(compiled.target.attrs.get("arch", "sm_50"))
    root = _cuda_root()
    saved = os.environ.get("CUDA_PATH")
    if root:
        os.environ["CUDA_PATH"] = root
    try:
        for fmt in ("ptx", "cubin"):
            try:
                with compiled.target:
                    blob = nvcc.compile_cuda(src, target_format=fmt, arch=arch)
            except Exception as exc:  # nvcc missing or failing: keep the source, say why
                found[f"{fmt}_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            (out_dir / f"kernels.{fmt}").write_bytes(bytes(blob))
            found[fmt] = str(out_dir / f"kernels.{fmt}")
    finally:
        if root:
            if saved is None:
                os.environ.pop("CUDA_PATH", None)
            else:
                os.environ["CUDA_PATH"] = saved
    return found


def torch_reference(model: torch.nn.Module, example: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = model.eval()(example)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().cpu().numpy()


def max_abs_diff(output: Any, reference: np.ndarray) -> float:
    arr = output.numpy() if hasattr(output, "numpy") else np.asarray(output)
    if arr.shape != reference.shape:
        raise ValueError(f"TVM output shape {arr.shape} != PyTorch {reference.shape}")
    return float(np.max(np.abs(arr.astype(np.float64) - reference.astype(np.float64)))) if arr.size else 0.0
