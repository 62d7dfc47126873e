"""Profile -> ``tvm.target.Target`` and the device to run on."""

from __future__ import annotations

import functools
from typing import Any

import tvm

from hwssl.config._reader import ConfigError
from hwssl.config.profile import HardwareProfile
from hwssl.deploy.errors import DeployError


@functools.lru_cache(maxsize=1)
def host_cpu_name() -> str:
    """LLVM's name for this machine's CPU (e.g. ``znver5``)."""
    return str(tvm.target.codegen.llvm_get_system_cpu())


def _resolve(table: dict[str, Any]) -> dict[str, Any]:
    out = dict(table)
    if out.get("kind") == "llvm" and out.get("mcpu") == "host":
        out["mcpu"] = host_cpu_name()
    return out


def make_target(profile: HardwareProfile) -> tvm.target.Target:
    """Build the profile's TVM target; attributes TVM rejects raise :class:`DeployError` naming the key."""
    target = _resolve(profile.target_dict())
    if target["kind"] == "llvm" and "num-cores" not in target:
        target["num-cores"] = profile.threads  # MetaSchedule refuses CPU targets without it
    host = _resolve(dict(profile.target_host)) if profile.target_host else None
    for key, table in (("target", target), ("target_host", host)):
        if table is None:
            continue
        try:
            tvm.target.Target(table)
        except (ValueError, TypeError, RuntimeError) as exc:  # tvm_ffi raises ValueError for bad attrs
            raise DeployError(profile.path, f"TVM rejects this target: {str(exc).splitlines()[0]}", key=key) from None
    return tvm.target.Target(target, host=host) if host else tvm.target.Target(target)


def check_target(profile: HardwareProfile) -> None:
    """Build the TVM target once so that attributes TVM rejects fail as :class:`ConfigError` (imports TVM)."""
    try:
        make_target(profile)
    except DeployError as exc:
        raise ConfigError(profile.path, exc.key, exc.message) from None


def is_gpu(profile: HardwareProfile) -> bool:
    return profile.target_kind == "cuda"


def local_device(profile: HardwareProfile) -> tvm.runtime.Device:
    return tvm.cuda(0) if is_gpu(profile) else tvm.cpu(0)
