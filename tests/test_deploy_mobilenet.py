"""MobileNetV2, compacted, through TVM: outputs equal to PyTorch on x86, and an aarch64 build for
the ARM profile checked under QEMU (emulated timings mean nothing; only numerics).

The default suite compiles a short MobileNetV2 (its first five blocks: the t=1 block, an identity
block and stride-2 blocks, then the head), which has every kind of layer the full net has; each
extra block is another kernel to build (about a minute for the full net on 2 busy cores), so the
full-length net is the slow variant."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pytest
import torch
import tvm

from test_compact import make_model, zero_random_groups
from deploy_support import PROFILES, fast_cpu_profile
from hwssl.compact import compact_model
from hwssl.config.profile import load_profile
from hwssl.deploy.compile import compile_model, export_library, max_abs_diff, torch_reference
from hwssl.deploy.target import make_target
from hwssl.models import build_model

TOL = 1e-5


def _compacted(blocks: int | None) -> torch.nn.Module:
    """A width-0.25 MobileNetV2 on 16x16 (cut after ``blocks`` blocks) with random groups zeroed
    (hidden channels, a removed identity block, lowered stem columns, head filters), compacted."""
    model = make_model("mobilenetv2", 1)
    if blocks is not None:
        spec = dict(model.spec, blocks=model.spec["blocks"][:blocks])
        spec["head"] = dict(spec["head"], **{"in": spec["blocks"][-1]["out"]})
        short = build_model(spec)
        short.load_state_dict({k: v for k, v in model.state_dict().items() if k in short.state_dict()
                               and v.shape == short.state_dict()[k].shape}, strict=False)
        model = short.eval()
    zero_random_groups(model, 1)
    result = compact_model(model, tolerance=TOL)
    assert result.summary["blocks_removed"] and result.summary["layers"]["stem"]["lowered"]
    return result.model.eval()


@pytest.fixture(scope="module", params=[pytest.param(5, id="short"),
                                        pytest.param(None, id="full", marks=pytest.mark.slow)])
def compacted(request) -> torch.nn.Module:
    return _compacted(request.param)


def test_compacted_mobilenetv2_imports_into_tvm_with_outputs_equal_to_pytorch(compacted, tmp_path: Path) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    profile = load_profile(fast_cpu_profile(tmp_path))
    compiled = compile_model(compacted, x, profile, make_target(profile))
    vm = tvm.relax.VirtualMachine(compiled.executable, tvm.cpu())
    assert max_abs_diff(vm["main"](tvm.runtime.tensor(x.numpy())), torch_reference(compacted, x)) <= TOL
    # the latency model's walk of the spec lists exactly the kernels TVM built
    from hwssl.deploy.measure import kernel_arg_shapes
    from hwssl.latency import spec_kernels
    from hwssl.latency.kernels import from_measured

    built = collections.Counter(
        from_measured({"name": k.name, "args": kernel_arg_shapes(k), "out_shape": list(k.out[0])}).key
        for k in compiled.kernels)
    walked = collections.Counter(k.key for k in spec_kernels(compacted.spec, batch=2))
    assert built == walked, (dict(built - walked), dict(walked - built))


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="aarch64 cross compiler not installed")
def test_compacted_mobilenetv2_builds_for_arm_and_matches_under_qemu(compacted, tmp_path: Path) -> None:
    from hwssl.deploy.emulate import emulation_available, run_emulated

    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    profile = load_profile(PROFILES / "arm_cortex_a72.toml")
    compiled = compile_model(compacted, x, profile, make_target(profile))
    lib = export_library(compiled, profile, tmp_path / "mnv2.so")
    assert lib.read_bytes()[18] == 183  # ELF e_machine EM_AARCH64 (little-endian low byte)
    ok, why = emulation_available()
    if not ok:
        pytest.skip(f"built for aarch64; functional check skipped: {why}")
    assert run_emulated(compiled, profile, compacted, x)["max_abs_diff"] <= TOL
