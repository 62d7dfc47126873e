"""Quiet runs: TVM's native and Python output goes to the run's log file, hwssl's own lines to the console.

The capture is checked in a fresh interpreter (it moves file descriptor 2) with a real native TVM
warning, and end to end with a real ``hwssl evaluate`` that tunes a compacted LeNet with a
lowered conv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import TINY_SPACE

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import logging, subprocess, sys, warnings
    from hwssl import runlog
    import tvm
    from tvm import relax

    runlog.capture(sys.argv[1], verbose=sys.argv[2] == "verbose", title="test")
    print("hwssl line", file=sys.stderr)
    # a real native warning: TOPI's take in "fast" mode, legalised
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 3), "float32"))
    with bb.function("main", [x]):
        out = bb.emit(relax.op.take(x, relax.const([0, 2], "int64"), axis=1))
        bb.emit_func_output(out)
    relax.transform.LegalizeOps()(bb.get())
    warnings.warn("python warning from a library")
    logging.getLogger("tvm.somewhere").warning("tvm python logger record")
    subprocess.run([sys.executable, "-c", "import sys; print('child process stderr', file=sys.stderr)"])
    runlog.release()
    print("after release", file=sys.stderr)
""")


def _run_script(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    log = tmp_path / mode / "tvm.log"
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    return run, log


def test_capture_sends_native_python_and_child_output_to_the_log_and_keeps_hwssl_lines(tmp_path):
    run, log = _run_script(tmp_path, "quiet")
    console = run.stderr.splitlines()
    assert console == [f"TVM and MetaSchedule logs: {log} (--verbose shows them here)", "hwssl line",
                       "after release"]
    text = log.read_text()
    assert text.startswith("==== ") and " test\n" in text.splitlines()[0] + "\n"
    assert "Warning: Fast mode segfaults" in text           # C++ LOG(WARNING), written to descriptor 2
    assert "python warning from a library" in text
    assert "tvm python logger record" in text
    assert "child process stderr" in text                  # children inherit descriptor 2


def test_verbose_leaves_everything_on_the_console(tmp_path):
    run, log = _run_script(tmp_path, "verbose")
    assert "Warning: Fast mode segfaults" in run.stderr and "python warning from a library" in run.stderr
    assert "child process stderr" in run.stderr and "TVM and MetaSchedule logs" not in run.stderr
    assert not log.exists()


QUIET_SPACE = TINY_SPACE.replace('"filter.conv2" = 3.0\n"shape.conv1" = 3.0',
                                 '"shape.conv2" = 0.8').replace("dense_epochs = 2", "dense_epochs = 1") + """
[compact]
min_shape_sparsity = 0.05
"""


def _evaluate(tmp_path: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    space = tmp_path / "tiny.toml"
    space.write_text(QUIET_SPACE)
    return subprocess.run([sys.executable, "-m", "hwssl.cli", "evaluate", "--space", str(space), "--profile",
                           str(profile), "--json", *extra], capture_output=True, text=True, cwd=tmp_path,
                          timeout=900, env=dict(os.environ))


def _cheap_profile(tmp_path: Path, name: str, database: str) -> Path:
    text = (ROOT / "hardware_profiles" / "x86_cpu.toml").read_text()
    text = text.replace("trials_per_task = 4", "trials_per_task = 1").replace('database = ""', f'database = "{database}"')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


NOISE = ("Warning", "warning", "pool_max", "Fast mode", "[I ", "[W ")


def test_evaluate_of_a_lowered_net_prints_no_tvm_output_and_logs_it(tmp_path):
    run = _evaluate(tmp_path, _cheap_profile(tmp_path, "x86", "db-quiet"))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["layers"]["conv2"]["lowered"], "the run must import a lowered conv (its gathers are takes)"
    assert result["latency_ms"]["x86_cpu"]["tuned"] and result["latency_ms"]["x86_cpu"]["new_tasks"] > 0
    log = tmp_path / "hwssl-artifacts" / "evaluate-tiny" / "tvm.log"
    announce = f"TVM and MetaSchedule logs: {log} (--verbose shows them here)"
    lines = run.stderr.splitlines()
    assert lines.count(announce) == 1
    assert not [line for line in lines if any(n in line for n in NOISE)], run.stderr
    text = log.read_text()
    assert 'Unknown schedule rule "meta_schedule.pool_max"' in text  # MetaSchedule's native warning, tuning
    assert "Fast mode" not in text  # the lowered conv's gathers import as clip-mode takes


@pytest.mark.slow
def test_verbose_evaluate_shows_the_tvm_logs_on_the_console(tmp_path):
    run = _evaluate(tmp_path, _cheap_profile(tmp_path, "x86", "db-verbose"), "--verbose")
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'Unknown schedule rule "meta_schedule.pool_max"' in run.stderr
    assert "TVM and MetaSchedule logs" not in run.stderr
    assert not (tmp_path / "hwssl-artifacts").exists()
