"""Kernel timings from a profile's MetaSchedule tuning database, read as plain JSON (no TVM import).

``database_workload.json`` holds one line per workload: ``[structural hash, base64(header +
JSON of the IRModule)]``; ``database_tuning_record.json`` one line per measured schedule:
``[workload index, [trace, run_secs, target, args_info]]`` where ``args_info`` lists every buffer
of the kernel (inputs, then the output) as ``["TENSOR", dtype, shape]``. The best record of a
workload (lowest median of its ``run_secs``) is the schedule every later build applies, so its time
is that kernel's current tuned time on the device the database was tuned on. Workload names are
not stored (each is renamed ``main``); the kind comes from the compute blocks inside
(``conv2d_nchw``, ``matmul``, ``pool_max`` ...). Only tuned kinds appear (convs, dense, pools).
"""

from __future__ import annotations

import base64
import binascii
import json
import statistics
from pathlib import Path
from typing import Any

from hwssl.latency.kernels import KernelDesc

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
FAILED_SECS = 1e9  # MetaSchedule records a failed run as 1e10 s

_KIND_MARKERS = ((b"conv2d", "conv"), (b"matmul", "dense"), (b"pool_", "pool"))


def _kind(encoded: str) -> str | None:
    try:
        raw = base64.b64decode(encoded)
    except (binascii.Error, ValueError):
        return None
    for marker, kind in _KIND_MARKERS:
        if marker in raw:
            return kind
    return None


def _lines(path: Path) -> list[Any]:
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written by a tuner right now
    return rows


_KINDS_CACHE: dict[str, tuple[tuple[int, int], list[str | None]]] = {}


def _workload_kinds(path: Path) -> list[str | None]:
    """Kinds of the workloads, in file order; decoded once per file version (the file only grows)."""
    try:
        st = path.stat()
    except OSError:
        return []
    stamp = (st.st_size, st.st_mtime_ns)
    hit = _KINDS_CACHE.get(str(path))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    kinds = [_kind(row[1]) if isinstance(row, list) and len(row) == 2 else None for row in _lines(path)]
    _KINDS_CACHE[str(path)] = (stamp, kinds)
    return kinds


def database_kernels(db_dir: str | Path) -> list[tuple[KernelDesc, float]]:
    """(kernel, best tuned ms) for every workload of the database whose kind is known."""
    db_dir = Path(db_dir)
    kinds = _workload_kinds(db_dir / WORKLOADS)
    best: dict[int, tuple[float, list[list[int]]]] = {}
    for row in _lines(db_dir / RECORDS):
        try:
            idx, (_, run_secs, _, args_info) = int(row[0]), row[1]
            ok = [float(s) for s in run_secs or [] if float(s) < FAILED_SECS]
            shapes = [[int(d) for d in a[2]] for a in args_info]
        except (TypeError, ValueError, IndexError):
            continue
        if not ok or len(shapes) < 2 or idx >= len(kinds) or kinds[idx] is None:
            continue
        ms = statistics.median(ok) * 1e3
        if idx not in best or ms < best[idx][0]:
            best[idx] = (ms, shapes)
    out = []
    for idx, (ms, shapes) in best.items():
        desc = KernelDesc(str(kinds[idx]), tuple(tuple(s) for s in shapes[:-1]), tuple(shapes[-1]))
        out.append((desc, ms))
    return out
