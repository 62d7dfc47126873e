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


def test_check_recognises_a_hardware_profile_by_content(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    profile = os.path.join(root, "hardware_profiles", "x86_cpu.toml")
    run = _hwssl("check", profile)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"ok: {profile} is a hardware profile (x86_cpu: llvm target, 2 threads")
    flagged = _hwssl("check", "--profile", profile)
    assert flagged.returncode == 0 and flagged.stdout == run.stdout
    space = _hwssl("check", os.path.join(root, "search_spaces", "lenet_mnist5k.toml"))
    assert space.returncode == 0 and "is a search space (lenet on mnist5k" in space.stdout
    # forced to the other kind: the space reader's error, one line
    forced = _hwssl("check", "--space", profile)
    assert forced.returncode == 2 and forced.stderr == f"error: {profile}: key 'model': required key is missing\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('target = { kind = "llvm" }\nthreads = 2.5\n')
    run = _hwssl("check", str(bad))
    assert run.returncode == 2 and run.stderr == f"error: {bad}: key 'threads': expected an integer, got 2.5\n"
    neither = tmp_path / "neither.toml"
    neither.write_text("a = 1\n")
    run = _hwssl("check", str(neither))
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "neither a search space" in run.stderr


def test_bad_input_is_one_line_without_traceback_on_every_command(tmp_path, tiny_space_file):
    utf16 = tmp_path / "utf16.toml"
    utf16.write_bytes(tiny_space_file.read_text().encode("utf-16"))
    expected = f"error: {utf16}: expected a UTF-8 text (TOML) file, but it is UTF-16 text (save it as UTF-8)\n"
    for args in (["check", str(utf16)], ["evaluate", "--space", str(utf16)],
                 ["search", "--space", str(utf16), "--no-profile"],
                 ["evaluate", "--space", str(tiny_space_file), "--profile", str(utf16)]):
        run = _hwssl(*args, cwd=tmp_path)
        assert run.returncode == 2 and run.stderr == expected, (args, run.stderr)
    run = _hwssl("search", "--space", str(tiny_space_file), "--no-profile", "--set", "train.ssl_epochs=2.5",
                 cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == f"error: {tiny_space_file}: key 'train.ssl_epochs': expected an integer, got 2.5\n"


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
