"""Compile for every profile kind with real TVM: x86 numerics and timing, the compacted conv
patterns, ARM cross-compilation, CUDA code generation without a GPU, and clear errors."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm

from deploy_support import PROFILES, LoweredShapeConv, fast_cpu_profile, free_port, tiny_net, write_profile
from hwssl.config.profile import load_profile
from hwssl.deploy.availability import gpu_available
from hwssl.deploy import DeployError, measure_candidate
from hwssl.deploy.compile import compile_model, export_library, max_abs_diff, torch_reference
from hwssl.deploy.target import make_target

TOL = 1e-5


def run_host(model: torch.nn.Module, x: torch.Tensor, tmp_path: Path) -> float:
    """Build for this CPU and return the max abs difference to PyTorch."""
    profile = load_profile(fast_cpu_profile(tmp_path))
    compiled = compile_model(model, x, profile, make_target(profile))
    vm = tvm.relax.VirtualMachine(compiled.executable, tvm.cpu())
    return max_abs_diff(vm["main"](tvm.runtime.tensor(x.numpy())), torch_reference(model, x))


def test_x86_tiny_net_builds_times_and_matches(tmp_path: Path) -> None:
    model, x = tiny_net()
    profile = load_profile(PROFILES / "x86_cpu.toml")
    r = measure_candidate(model, x, profile, arch_key="tiny-net", tune=False, per_layer=True, cache_dir=tmp_path)
    assert r["tuned"] is False and r["cached"] is False and r["device"] == "local"
    assert r["max_abs_diff"] <= TOL
    assert r["tvm"] > 0 and len(r["tvm_samples_ms"]) == profile.timing.repeat
    assert r["torch"] > 0 and r["tvm_threads"] == profile.threads
    assert r["compile_s"] > 0 and r["tune_s"] == 0 and r["measure_s"] > 0
    assert '"kind":"llvm"' in r["target"].replace(" ", "")
    names = [row["name"] for row in r["per_layer"]]
    assert names and any("conv2d" in n for n in names) and any("matmul" in n for n in names)
    assert all(row["ms"] > 0 for row in r["per_layer"])
    json.dumps(r)  # JSON-serialisable
    again = measure_candidate(model, x, profile, arch_key="tiny-net", tune=False, per_layer=True,
                              cache_dir=tmp_path)
    assert again["cached"] is True and again["tvm"] == r["tvm"]
    other = measure_candidate(model, x, profile, arch_key="another-arch", tune=False, cache_dir=tmp_path)
    assert other["cached"] is False


def test_lowered_shape_sparse_conv_pattern_imports_and_matches(tmp_path: Path) -> None:
    for stride in (1, 2):
        layer = LoweredShapeConv(stride=stride).eval()
        x = torch.randn(1, 3, 8, 8)
        # the pattern itself is a conv with zeroed columns (+ the constant map)
        dense = layer.dense_equivalent()
        with torch.no_grad():
            assert torch.allclose(layer(x), dense(x) + layer.bias_map, atol=1e-5)
        assert run_host(layer, x, tmp_path) <= TOL


def test_compact_conv2d_from_models_layers(tmp_path: Path) -> None:
    layers = pytest.importorskip("hwssl.models.layers")
    torch.manual_seed(0)
    cols = [(0, 0, 0), (2, 0, 0), (1, 1, 1), (0, 1, 2), (2, 2, 2), (1, 2, 0)]
    cases = [
        layers.CompactConv2d(3, 4, 3, stride=1, padding=1, bias=True, columns=cols, bias_map_shape=(4, 8, 8)),
        layers.CompactConv2d(3, 4, 3, stride=2, padding=1, bias=False, columns=cols),
        layers.CompactConv2d(5, 4, 3, stride=1, padding=1, bias=True, in_index=[0, 3, 4], bias_map_shape=(4, 8, 8)),
    ]
    for conv in cases:
        with torch.no_grad():
            if conv.bias_map is not None:
                conv.bias_map.normal_()
            if conv.bias is not None:
                conv.bias.normal_()
        net = torch.nn.Sequential(conv, torch.nn.ReLU()).eval()
        x = torch.randn(1, conv.in_channels, 8, 8)
        assert run_host(net, x, tmp_path) <= TOL


def test_compacted_conv_gathers_import_without_the_fast_mode_take_warning(tmp_path: Path, capfd) -> None:
    """The channel gathers (index_select) import as ``take``; TOPI warns "Fast mode segfaults ..." on
    every legalisation of a fast-mode take, so they are imported in clip mode (same values)."""
    from hwssl.deploy.compile import import_model
    from hwssl.models.layers import CompactConv2d

    torch.manual_seed(1)
    cols = [(0, 0, 0), (2, 0, 0), (4, 1, 1), (1, 2, 2), (3, 2, 2)]
    net = torch.nn.Sequential(CompactConv2d(5, 6, 3, padding=1, bias=True, columns=cols), torch.nn.ReLU(),
                              CompactConv2d(6, 4, 3, padding=1, in_index=[0, 2, 5])).eval()
    x = torch.randn(1, 5, 8, 8)
    profile = load_profile(fast_cpu_profile(tmp_path))
    capfd.readouterr()
    mod = import_model(net, x, profile)
    script = mod.script()
    assert script.count("R.take(") == 4 and 'mode="fast"' not in script and script.count('mode="clip"') == 4
    assert run_host(net, x, tmp_path) <= TOL
    out, err = capfd.readouterr()
    assert "Fast mode" not in err + out


def _elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return struct.unpack_from("<H", head, 18)[0]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="aarch64 cross compiler not installed")
def test_arm_profile_cross_compiles_aarch64_library(tmp_path: Path) -> None:
    model, x = tiny_net()
    profile = load_profile(PROFILES / "arm_cortex_a72.toml")
    compiled = compile_model(model, x, profile, make_target(profile))
    lib = export_library(compiled, profile, tmp_path / "arm.so")
    assert _elf_machine(lib) == 183  # EM_AARCH64
    kernels = export_library(compiled, profile, tmp_path / "arm_kernels.so", kernels_only=True)
    assert _elf_machine(kernels) == 183


def test_arm_library_runs_under_qemu_and_matches(tmp_path: Path) -> None:
    """Functional check of the aarch64 build: a C++ loader + the aarch64 TVM runtime under qemu-user."""
    from hwssl.deploy.emulate import emulation_available, run_emulated

    ok, why = emulation_available()
    if not ok:
        pytest.skip(why)
    profile = load_profile(PROFILES / "arm_cortex_a72.toml")
    for model, x in (tiny_net(), (LoweredShapeConv(stride=2).eval(), torch.randn(1, 3, 8, 8))):
        compiled = compile_model(model, x, profile, make_target(profile))
        result = run_emulated(compiled, profile, model, x)
        assert result["max_abs_diff"] <= TOL


@pytest.mark.skipif(gpu_available()[0], reason="a GPU is present; the no-GPU path is not exercised")
def test_cuda_profile_compiles_without_gpu(tmp_path: Path) -> None:
    model, x = tiny_net()
    profile = load_profile(PROFILES / "cuda_gpu.toml")
    r = measure_candidate(model, x, profile, arch_key="tiny-net", tune=True, cache_dir=tmp_path)
    assert r["tvm"] is None and r["torch"] is None and r["tuned"] is False
    assert "CUDA" in r["skipped"] and "not tuned" in r["tune_note"]
    assert r["scheduled_kernels"] == r["kernels"] > 0  # every GPU kernel got a (DLight) schedule
    art = r["artifacts"]
    src = Path(art["cuda_source"]).read_text()
    assert "__global__" in src and "fused_conv2d" in src
    assert Path(art["library"]).is_file()
    if shutil.which("nvcc"):
        assert ".target sm_90" in Path(art["ptx"]).read_text()
        assert _elf_machine(Path(art["cubin"])) == 190  # EM_CUDA
    json.dumps(r)


def test_missing_cross_compiler_is_a_clear_error(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "arm_bad.toml", f"""
cross_compiler = "no-such-aarch64-g++"
target = {{ kind = "llvm", mtriple = "aarch64-linux-gnu", mattr = ["+neon"] }}
[runner]
kind = "rpc"
host = "127.0.0.1"
port = {free_port()}
""")
    model, x = tiny_net()
    with pytest.raises(DeployError) as info:
        measure_candidate(model, x, load_profile(path), arch_key="a", tune=False, cache_dir=tmp_path)
    assert info.value.key == "cross_compiler"
    assert str(info.value).startswith(f"{path}: key 'cross_compiler': ")
    assert "no-such-aarch64-g++" in str(info.value) and "PATH" in str(info.value)


def test_unreachable_rpc_host_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    path = write_profile(tmp_path / "rpc_bad.toml", f"""
target = {{ kind = "llvm" }}
[runner]
kind = "rpc"
host = "127.0.0.1"
port = {port}
""")
    model, x = tiny_net()
    with pytest.raises(DeployError) as info:
        measure_candidate(model, x, load_profile(path), arch_key="a", tune=False, cache_dir=tmp_path)
    msg = str(info.value)
    assert info.value.key == "runner" and msg.startswith(f"{path}: key 'runner': ")
    assert f"127.0.0.1:{port}" in msg and "rpc_server" in msg


def test_target_attribute_rejected_by_tvm_is_a_deploy_error(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "bad_attr.toml", 'target = { kind = "llvm", mcpu = "no-such-cpu-xyz", '
                                                     'mtripel = "x" }\n')
    model, x = tiny_net()
    with pytest.raises(DeployError) as info:
        measure_candidate(model, x, load_profile(path), arch_key="a", tune=False, cache_dir=tmp_path)
    assert info.value.key == "target" and str(path) in str(info.value) and "mtripel" in str(info.value)


def test_model_that_cannot_be_exported_is_a_deploy_error(tmp_path: Path) -> None:
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[x > 0]  # data-dependent output shape

    profile = load_profile(fast_cpu_profile(tmp_path))
    with pytest.raises(DeployError, match="cannot import DataDependent"):
        measure_candidate(DataDependent(), torch.randn(1, 4), profile, arch_key="a", tune=False, cache_dir=tmp_path)


def test_numerics_helper_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        max_abs_diff(np.zeros((1, 3)), np.zeros((1, 4)))
