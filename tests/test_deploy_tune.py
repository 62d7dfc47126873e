"""MetaSchedule tuning with the per-profile database: tune once, reuse in later calls and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from deploy_support import ConvReLU, fast_cpu_profile, tiny_net
from hwssl.config.profile import load_profile
from hwssl.deploy import measure_candidate
from hwssl.deploy.tune import LEDGER

TESTS = Path(__file__).resolve().parent


def _conv_relu() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return ConvReLU().eval(), torch.randn(1, 2, 6, 6)


def test_tuned_once_then_reused(tmp_path: Path) -> None:
    """Cheap variant: one conv task, 2 trials; a second evaluation (another architecture key, so the
    latency cache does not answer) and a second process both find the workload in the database."""
    profile_path = fast_cpu_profile(tmp_path)
    profile = load_profile(profile_path)
    model, x = _conv_relu()
    first = measure_candidate(model, x, profile, arch_key="conv-a", tune=True, trials_per_task=2, cache_dir=tmp_path)
    assert first["tuned"] is True and first["trials_per_task"] == 2
    assert first["new_tasks"] >= 1 and first["reused_tasks"] == 0
    assert first["scheduled_kernels"] >= 1  # the tuned schedule was applied at build time
    assert first["max_abs_diff"] <= 1e-5 and first["tvm"] > 0

    db = profile.database_dir(tmp_path)
    assert (db / "database_tuning_record.json").stat().st_size > 0
    assert json.loads((db / LEDGER).read_text())

    second = measure_candidate(model, x, profile, arch_key="conv-b", tune=True, trials_per_task=2,
                               cache_dir=tmp_path)
    assert second["cached"] is False
    assert second["new_tasks"] == 0 and second["reused_tasks"] == first["new_tasks"]
    assert second["scheduled_kernels"] == first["scheduled_kernels"]
    assert second["tune_s"] < first["tune_s"] / 5

    # a smaller budget is covered by the larger one already spent
    third = measure_candidate(model, x, profile, arch_key="conv-c", tune=True, trials_per_task=1, cache_dir=tmp_path)
    assert third["new_tasks"] == 0

    # another process (fresh TVM, same cache): structural hashes must match across processes
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(TESTS)!r})
        from deploy_support import ConvReLU
        from hwssl.config.profile import load_profile
        from hwssl.deploy import measure_candidate
        torch.manual_seed(0)
        model, x = ConvReLU().eval(), torch.randn(1, 2, 6, 6)
        r = measure_candidate(model, x, load_profile({str(profile_path)!r}), arch_key="conv-d", tune=True,
                              trials_per_task=2, cache_dir={str(tmp_path)!r}, torch_timing=False)
        print("RESULT", json.dumps({{"new": r["new_tasks"], "reused": r["reused_tasks"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=str(TESTS.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    assert json.loads(line[len("RESULT "):]) == {"new": 0, "reused": first["new_tasks"]}


@pytest.mark.slow
def test_tiny_net_tuned_vs_untuned_and_bigger_budget(tmp_path: Path) -> None:
    """Slow: the 4-task tiny net at 4 trials per task, then a larger budget re-tunes the same workloads."""
    profile = load_profile(fast_cpu_profile(tmp_path))
    model, x = tiny_net()
    untuned = measure_candidate(model, x, profile, arch_key="tiny", tune=False, cache_dir=tmp_path)
    tuned = measure_candidate(model, x, profile, arch_key="tiny", tune=True, trials_per_task=4, cache_dir=tmp_path)
    assert untuned["tuned"] is False and tuned["tuned"] is True
    # only kernels that compute are tuned (slices, reshapes keep TVM's default schedule), and each
    # tuned one got a schedule from the database
    assert 3 <= tuned["new_tasks"] == tuned["scheduled_kernels"] <= tuned["kernels"]
    assert tuned["max_abs_diff"] <= 1e-5
    print(f"\ntiny net: untuned {untuned['tvm']:.5f} ms, tuned {tuned['tvm']:.5f} ms, "
          f"tune {tuned['tune_s']:.1f} s, torch {untuned['torch']:.5f} ms")
    reuse = measure_candidate(model, x, profile, arch_key="tiny-again", tune=True, trials_per_task=4,
                              cache_dir=tmp_path)
    assert reuse["new_tasks"] == 0 and reuse["tune_s"] < tuned["tune_s"] / 5
    print(f"reuse: tune {reuse['tune_s']:.2f} s, compile {reuse['compile_s']:.2f} s")
    bigger = measure_candidate(model, x, profile, arch_key="tiny", tune=True, trials_per_task=8, cache_dir=tmp_path)
    assert bigger["new_tasks"] == tuned["new_tasks"] and bigger["cached"] is False


def test_database_is_claimed_by_one_target(tmp_path: Path) -> None:
    """Schedules tuned for one CPU must not be applied to another: a database dir serves one target."""
    import tvm

    from hwssl.deploy import DeployError
    from hwssl.deploy.tune import open_database

    db = tmp_path / "db"
    open_database(db, tvm.target.Target({"kind": "llvm", "num-cores": 2}))
    open_database(db, tvm.target.Target({"kind": "llvm", "num-cores": 2}))  # same target: fine
    open_database(db)  # no target given (plain reader): no check
    with pytest.raises(DeployError, match="was made for target"):
        open_database(db, tvm.target.Target({"kind": "llvm", "num-cores": 4}))


@pytest.mark.slow
def test_two_processes_share_one_database(tmp_path: Path) -> None:
    """Two workers tuning the same workload at once: the file lock makes one tune and the other reuse."""
    profile_path = fast_cpu_profile(tmp_path)
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(TESTS)!r})
        from deploy_support import ConvReLU
        from hwssl.config.profile import load_profile
        from hwssl.deploy import measure_candidate
        torch.manual_seed(0)
        model, x = ConvReLU().eval(), torch.randn(1, 2, 6, 6)
        r = measure_candidate(model, x, load_profile({str(profile_path)!r}), arch_key=sys.argv[1], tune=True,
                              trials_per_task=2, cache_dir={str(tmp_path)!r}, torch_timing=False)
        print("RESULT", json.dumps({{"new": r["new_tasks"], "reused": r["reused_tasks"]}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, f"worker{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=str(TESTS.parent)) for i in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
    assert sorted(r["new"] for r in results) == [0, 1]
    assert sorted(r["reused"] for r in results) == [0, 1]
