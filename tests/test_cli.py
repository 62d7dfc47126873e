"""The hwssl command line, run as a real subprocess."""

import json
import os
import subprocess
import sys


def _hwssl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hwssl.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), cwd=cwd, timeout=600)


def test_check_accepts_a_valid_file(tiny_space_file):
    run = _hwssl("check", str(tiny_space_file))
    assert run.returncode == 0 and run.stdout.startswith("ok")


def test_check_rejects_a_bad_file_with_one_clear_line(tmp_path, tiny_space_file):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_space_file.read_text().replace('"filter.conv2" = 3.0', '"filter.conv2" = -0.5'))
    run = _hwssl("check", str(bad))
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert str(bad) in run.stderr and "strengths.filter.conv2" in run.stderr


def test_evaluate_json_has_the_documented_fields(tiny_space_file):
    run = _hwssl("evaluate", "--space", str(tiny_space_file), "--set", "shape.conv1=1.0", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["flops_ratio"] == result["flops_dense"] / result["flops"] >= 1.0
    assert result["params"] <= result["params_dense"] and 0 < result["accuracy"] <= 1
    conv1 = result["layers"]["conv1"]
    assert conv1["columns"] <= conv1["dense"]["columns"] and result["max_abs_diff_compacted"] <= 1e-4
    assert result["ssl_step_overhead"] >= 1.0 and result["blocks_removed"] == []
    assert result["strengths"]["shape.conv1"] == 1.0
    assert "arch" not in result  # only with --with-arch
