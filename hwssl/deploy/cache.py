"""On-disk cache of latency results, so a repeated evaluation returns at once.

One JSON file per (architecture key, profile key, resolved target, device
fingerprint, tuning state, library versions) under
``<cache root>/latency/<profile name>/``. The architecture key comes from the
caller (a hash of the compacted net's spec); the device fingerprint keeps
results from different machines apart when a cache directory is shared. A tuned
timing also carries its tuning database's generation (:func:`database_generation`):
a build applies the schedules that database held, so once the directory is deleted
(``bench/compare.py --fresh`` starts a method's database again) its builds and
timings are not reused.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any, Sequence

from hwssl.cache import stable_hash
from hwssl.config.profile import HardwareProfile


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(profile: HardwareProfile) -> str:
    """Which physical device a latency belongs to: this machine's CPU/GPU, or the RPC address."""
    if profile.is_remote:
        return profile.runner.address()
    cpu = f"{platform.machine()}|{_cpu_model()}|{os.cpu_count()}"
    if profile.target_kind == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-gpu"
        return f"{cpu}|{gpu}"
    return cpu


GENERATION_FILE = ".hwssl-generation"


def database_generation(directory: str | os.PathLike[str]) -> str:
    """A token naming one life of a tuning database directory: made (atomically, so concurrent
    workers agree) the first time it is asked for, gone with the directory."""
    path = Path(directory) / GENERATION_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:16]
    tmp = path.with_name(f"{GENERATION_FILE}.{token}.tmp")
    tmp.write_text(token)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def latency_key(*, arch_key: str, profile: HardwareProfile, target: str, tuned: bool, trials_per_task: int | None,
                versions: dict[str, str], input_shape: Sequence[int], database: str = "") -> str:
    """Cache key of one timing: architecture, input shape (batch), profile, target, device, tuning, versions.
    A profile that names its own tuning database (``tuning.database``) keys its tuned builds by it:
    a build depends on what that database holds (``bench/compare.py`` gives each method its own).
    ``database``: the tuning database's :func:`database_generation` (tuned timings)."""
    tuning: dict[str, Any] = {"tuned": True, "trials_per_task": trials_per_task} if tuned else {"tuned": False}
    if tuned and profile.tuning.database:
        tuning["database"] = profile.tuning.database
    if tuned and database:
        tuning["generation"] = database
    return stable_hash({"arch": arch_key, "input": [int(d) for d in input_shape], "profile": profile.key(),
                        "target": target, "device": device_fingerprint(profile), "tuning": tuning,
                        "versions": versions}, length=24)


class LatencyCache:
    """``get``/``put`` of result dicts by key, one file each, written atomically."""

    def __init__(self, root: str | os.PathLike[str], profile_name: str) -> None:
        self.dir = Path(root) / "latency" / profile_name

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, result: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
        tmp.replace(self.path(key))
