"""Functions that run inside MetaSchedule's Popen worker processes.

They are pickled *by value* (see :func:`register`), so a worker does not need
hwssl on its ``sys.path``. Keep them free of module-level imports beyond the
standard library: each imports what it uses.
"""

from __future__ import annotations

from typing import Any


def import_intrinsics(kind: str) -> None:
    """Register the tensor intrinsics a target kind needs, skipping the rest.

    ``import tvm.s_tir.tensor_intrin`` (done by MetaSchedule's TuneContext and
    by every build worker) registers the intrinsics of *all* backends; the
    CUDA ones alone are ~2/3 of its ~30 s here. For ``llvm`` targets the
    package is entered in ``sys.modules`` without running its ``__init__``
    and only the CPU submodules are imported; any later ``import
    tvm.s_tir.tensor_intrin`` is then a no-op. A ``cuda`` target imports the
    CUDA submodule explicitly, so the two kinds can share a process.
    """
    import importlib
    import importlib.util
    import sys

    name = "tvm.s_tir.tensor_intrin"
    if kind != "llvm":
        if name in sys.modules and getattr(sys.modules[name], "_hwssl_partial", False):
            importlib.import_module(name + ".cuda")
        else:
            importlib.import_module(name)
        return
    if name not in sys.modules:
        import tvm.s_tir  # noqa: F401  (parent package, and TensorIntrin for the submodules)

        spec = importlib.util.find_spec(name)
        module = importlib.util.module_from_spec(spec)
        module._hwssl_partial = True
        sys.modules[name] = module
        sys.modules["tvm.s_tir"].tensor_intrin = module
    for sub in ("x86", "arm_cpu"):
        importlib.import_module(f"{name}.{sub}")


def warm_import(kind: str = "llvm") -> None:
    """Initializer of a build worker: pay the intrinsic import once, outside the build timeout."""
    import_intrinsics(kind)


def noop() -> None:
    """Submitted once per worker to start (and warm) it in the background."""


def export_shared(mod: Any, compiler: str | None) -> str:
    """Builder export for RPC runners: a shared library the remote can ``load_module`` without a compiler."""
    import os
    import tempfile

    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
    if compiler:
        mod.export_library(path, fcompile=cc.cross_compiler(compiler))
    else:
        mod.export_library(path)
    return path


def direct_session(rpc_config: Any) -> Any:
    """RPC session straight to an rpc_server (no tracker): host/port travel in the tracker fields."""
    from tvm import rpc

    return rpc.connect(rpc_config.tracker_host, int(rpc_config.tracker_port),
                       session_timeout=rpc_config.session_timeout_sec)


def register() -> None:
    """Make cloudpickle send this module's functions by value."""
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
