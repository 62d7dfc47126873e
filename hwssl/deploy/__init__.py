"""Deployment: compile compacted networks with TVM, tune them, time them per hardware profile.

Public entries: :func:`measure_candidate` (one network), :func:`measure_pair` (a candidate
and its dense reference timed together, what every trial records). Submodules (``hwssl.deploy.tune.tune`` is
the tuning function; it is not re-exported because the name is the module's): ``compile`` (export ->
Relax -> build), ``tune`` (MetaSchedule database per profile), ``measure``
(local / RPC / PyTorch timing, per-kernel breakdown), ``timing`` (the load-resistant
protocol: interleaved rounds, spread, noisy), ``together`` (several networks timed together
at every thread count), ``onnxrt`` (ONNX export and ONNX Runtime), ``cache`` (latency
results on disk). Importing this package sets ``TVM_NUM_THREADS`` (if unset)
to the CPU count before TVM starts its thread pool; each measurement then
selects the profile's thread count (see :mod:`hwssl.deploy.measure`).
"""

from __future__ import annotations

import os as _os

_os.environ.setdefault("TVM_NUM_THREADS", str(_os.cpu_count() or 1))

from hwssl._lazy import lazy_getattr  # noqa: E402
from hwssl.deploy.errors import DeployError  # noqa: E402  (light; no TVM import)

__all__ = ["DeployError", "measure_candidate", "measure_pair", "compile_model", "export_library", "make_target", "warm_builder_for"]

_LAZY = {
    "measure_candidate": "hwssl.deploy.candidate",
    "measure_pair": "hwssl.deploy.candidate",
    "compile_model": "hwssl.deploy.compile",
    "export_library": "hwssl.deploy.compile",
    "make_target": "hwssl.deploy.target",
    "warm_builder_for": "hwssl.deploy._builder",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
