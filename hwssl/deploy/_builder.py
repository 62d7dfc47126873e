"""A MetaSchedule builder whose worker processes outlive one batch.

MetaSchedule's ``LocalBuilder`` starts a fresh process pool for every batch
of candidates (to dodge a worker memory leak), and every fresh worker imports
``tvm.s_tir.tensor_intrin`` (~20-30 s here) inside the build timeout. With a
few trials per task that import dominates tuning. :class:`WarmBuilder` keeps
its workers for up to ``max_uses`` builds each, imports in the worker
initializer (outside the timeout; only the target's intrinsics, see
:func:`hwssl.deploy._workers.import_intrinsics`), and starts the workers in
the background as soon as it is created, so the import overlaps task
extraction and candidate generation.
Builders are shared per process (:func:`get_builder`), so later tuning calls
in the same process pay no start-up at all.
"""

from __future__ import annotations

import atexit
import functools
import threading
from typing import Any

from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
from tvm.ir.utils import derived_object
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

from hwssl.deploy import _workers

_workers.register()


@derived_object
class WarmBuilder(PyBuilder):
    """LocalBuilder semantics (same worker function and error texts) with a persistent pool."""

    def __init__(self, *, max_workers: int, timeout_sec: float, f_export: Any = None, max_uses: int = 256,
                 target_kind: str = "llvm") -> None:
        super().__init__()
        self.max_workers = max_workers
        self.timeout_sec = timeout_sec
        self.f_export = f_export
        self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec,
                                      initializer=functools.partial(_workers.warm_import, target_kind),
                                      maximum_process_uses=max_uses)
        # Start every worker now; each runs the initializer (the slow import) in the background.
        self._warming = [self.pool.submit(_workers.noop) for _ in range(max_workers)]

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        results: list[BuilderResult] = []
        args = [(None, self.f_export, b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
        for res in self.pool.map_with_error_catching(lambda a: _worker_func(*a), args):
            if res.status == StatusKind.COMPLETE:
                results.append(BuilderResult(res.value, None))
            elif res.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"LocalBuilder: Timeout, killed after {self.timeout_sec} seconds"))
            else:
                results.append(BuilderResult(None, "LocalBuilder: An exception occurred\n" + str(res.value)))
        return results

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False)


_lock = threading.Lock()
_builders: dict[tuple[Any, ...], WarmBuilder] = {}


def get_builder(max_workers: int, timeout_sec: float, export_compiler: str | None = None,
                shared_library: bool = False, target_kind: str = "llvm") -> WarmBuilder:
    """The process-wide warm builder for these settings (created, and warming, on first use).

    ``shared_library`` makes the workers export ``.so`` files (linked with
    ``export_compiler`` or the host compiler), which an RPC server can load;
    otherwise MetaSchedule's default tar export is used (local runner).
    """
    key = (max_workers, float(timeout_sec), export_compiler, shared_library, target_kind)
    with _lock:
        builder = _builders.get(key)
        if builder is None:
            f_export = functools.partial(_workers.export_shared, compiler=export_compiler) if shared_library else None
            builder = WarmBuilder(max_workers=max_workers, timeout_sec=timeout_sec, f_export=f_export,
                                  target_kind=target_kind)
            _builders[key] = builder
        return builder


def warm_builder_for(profile: Any) -> WarmBuilder:
    """Start (or reuse) the builder a profile's tuning will use, e.g. while a model trains."""
    import os

    from hwssl.deploy.availability import resolve_cross_compiler

    workers = profile.tuning.builder_workers or os.cpu_count() or 1
    shared = profile.is_remote
    compiler = resolve_cross_compiler(profile) if shared else None
    return get_builder(workers, profile.tuning.builder_timeout_s, compiler, shared, profile.target_kind)


@atexit.register
def _shutdown_all() -> None:
    with _lock:
        for builder in _builders.values():
            try:
                builder.shutdown()
            except Exception:  # interpreter shutting down
                pass
        _builders.clear()
