"""Drop tuning records that no longer replay on their workload, before MetaSchedule loads them.

MetaSchedule's database deduplicates workloads by structural equality, which ignores names, but a
record's trace finds its blocks by name. Two networks can hold the same kernel under different
block names: a reduction is named after its input's Relax variable (``lv103_red`` in one ResNet,
``lv39_red`` in the same ResNet with two blocks removed). Tuning the second stores its records
under the first's workload, and from then on ``JSONDatabase`` fails to load the whole directory
(``parallel_for_dynamic error``), so every later build on that profile fails.

:func:`drop_unreplayable` replays every record appended since the last check (one Python
``TuningRecord.from_json`` each, the call the database's loader makes) and rewrites the record file
without the ones that fail. The ledger keeps the kernel's budget: tuning it again under the other
name would only write records that fail the same way, and a net whose kernel has another name than
the stored schedules still builds (``tests/test_deploy_replay_check.py``), that kernel without a
tuned schedule. What was checked is remembered (``hwssl_checked.json``: the record file's size),
so a load only pays for new records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tvm.s_tir import meta_schedule as ms

CHECKED = "hwssl_checked.json"
WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"


def _checked_bytes(db_dir: Path, size: int) -> int:
    try:
        done = int(json.loads((db_dir / CHECKED).read_text())["records_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return done if 0 <= done <= size else 0  # a shorter file was rewritten: check it all


def _replays(line: bytes, workloads: list[bytes], parsed: dict[int, Any]) -> bool:
    """Whether one record line loads."""
    try:
        index, record = json.loads(line)
        index = int(index)
    except (ValueError, TypeError):
        return False                             # a torn line (the writer was killed mid-write)
    if not 0 <= index < len(workloads):
        return False
    try:
        if index not in parsed:
            parsed[index] = ms.database.Workload.from_json(json.loads(workloads[index]))
        ms.database.TuningRecord.from_json(record, parsed[index])
    except Exception:  # noqa: BLE001 - TVM raises its own error types for a trace that does not replay
        return False
    return True


def drop_unreplayable(db_dir: Path) -> int:
    """Check the records appended since the last call; drop those that do not load. Returns how many
    were dropped. Call it holding the database's lock."""
    records = db_dir / RECORDS
    if not records.is_file() or not (db_dir / WORKLOADS).is_file():
        return 0
    size = records.stat().st_size
    start = _checked_bytes(db_dir, size)
    if start >= size:
        return 0                                  # nothing new: every open of the database passes here
    data = records.read_bytes()
    workloads = (db_dir / WORKLOADS).read_bytes().splitlines()
    parsed: dict[int, Any] = {}
    kept: list[bytes] = []
    dropped = 0
    for line in data[start:].splitlines():
        if not line.strip():
            continue
        if _replays(line, workloads, parsed):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        data = data[:start] + b"".join(line + b"\n" for line in kept)
        tmp = records.with_suffix(".json.tmp")
        tmp.write_bytes(data)
        tmp.replace(records)
        print(f"warning: {records}: dropped {dropped} tuning record(s) whose schedule no longer applies to "
              f"its kernel (the same kernel under other block names, or a torn line); the kernel keeps the "
              f"schedules it was first tuned with", file=sys.stderr)
    (db_dir / CHECKED).write_text(json.dumps({"records_bytes": len(data)}))
    return dropped

