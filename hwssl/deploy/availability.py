"""Can a hardware profile be timed from this machine now? Driver, socket and PATH probes.

Kept out of :mod:`hwssl.config` (which only parses and validates files) and free of TVM
imports, so ``hwssl profiles`` and the search's pre-flight check stay fast.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

from hwssl.config._reader import ConfigError
from hwssl.config.profile import HardwareProfile, load_profile, triple_arch, triple_runs_here


def needs_cross_compiler(profile: HardwareProfile) -> bool:
    """True when the library is built for another CPU architecture than this machine's."""
    if profile.target_kind == "llvm":
        return not triple_runs_here(profile.target.get("mtriple"))
    host = profile.target_host or {}
    return not triple_runs_here(host.get("mtriple"))


def resolve_cross_compiler(profile: HardwareProfile) -> str | None:
    """Absolute path of the profile's cross compiler, or None if it is not on PATH (or not set)."""
    if not profile.cross_compiler:
        return None
    return shutil.which(profile.cross_compiler)


def gpu_available() -> tuple[bool, str]:
    """Whether a CUDA driver and at least one device are present (no TVM import)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no CUDA driver on this machine (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return False, "CUDA driver present but no usable GPU (cuInit/cuDeviceGetCount failed)"
    return True, f"{count.value} CUDA device(s)"


def rpc_reachable(host: str, port: int, timeout_s: float = 3.0) -> tuple[bool, str]:
    """TCP connect to ``host:port`` (an rpc_server or tracker answers on a plain socket)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.strerror or exc})"


def profile_availability(profile: HardwareProfile, *, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Can this profile be timed from this machine now? ``(ok, reason)``; never raises."""
    if needs_cross_compiler(profile):
        if not profile.cross_compiler:
            return False, (f"target is {triple_arch(profile.target.get('mtriple'))} but this machine is "
                           f"{platform.machine()}; set cross_compiler")
        if resolve_cross_compiler(profile) is None:
            return False, f"cross compiler {profile.cross_compiler!r} not found on PATH"
    if profile.is_remote:
        run = profile.runner
        host, port = (run.tracker_host, run.tracker_port) if run.uses_tracker else (run.host, run.port)
        ok, why = rpc_reachable(host, port, timeout_s)
        what = "RPC tracker" if run.uses_tracker else "RPC server"
        return ok, f"{what} {why}"
    if profile.target_kind == "cuda":
        return gpu_available()
    return True, f"local {platform.machine()} CPU"


def list_profiles(directory: str | os.PathLike[str] = "hardware_profiles", *,
                  check_availability: bool = True) -> list[dict[str, Any]]:
    """One row per ``*.toml`` in ``directory``: name, file, target, device, available, reason.

    A file that fails to load is listed with ``available = False`` and the
    error as reason, so one bad file does not hide the others.
    """
    rows: list[dict[str, Any]] = []
    for file in sorted(Path(directory).glob("*.toml")):
        try:
            p = load_profile(file)
        except ConfigError as exc:
            rows.append({"name": file.stem, "file": str(file), "target": "?", "device": "?",
                         "available": False, "reason": f"invalid: {exc}"})
            continue
        ok, why = profile_availability(p) if check_availability else (None, "not checked")
        target = ", ".join(f"{k}={v}" for k, v in p.target.items())
        rows.append({"name": p.name, "file": str(file), "target": target, "device": p.runner.address(),
                     "available": ok, "reason": why})
    return rows
