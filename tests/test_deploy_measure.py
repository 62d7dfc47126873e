"""Timing paths with real components: TVM RPC to a real rpc_server, PyTorch eager, TVM threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tvm

from deploy_support import fast_cpu_profile, free_port, tiny_net
from rpc_support import wait_for_port
from hwssl.config.profile import load_profile
from hwssl.deploy import measure_candidate
from hwssl.deploy.measure import configure_tvm_threads, time_torch


@pytest.fixture
def rpc_server(tmp_path: Path):
    """A real `python -m tvm.exec.rpc_server` on 127.0.0.1 (own process group, killed afterwards)."""
    port = free_port()
    log = open(tmp_path / "rpc_server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                             "--port", str(port), "--port-end", str(port + 1)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()


def rpc_profile(tmp_path: Path, name: str, port: int) -> Path:
    """The short-protocol test profile, timed through the rpc_server on ``port``."""
    return fast_cpu_profile(tmp_path, name=name, extra=f"""[runner]
kind = "rpc"
host = "127.0.0.1"
port = {port}
session_timeout_s = 120""")


def test_rpc_timing_through_a_real_server(tmp_path: Path, rpc_server: int) -> None:
    port = rpc_server
    path = rpc_profile(tmp_path, "rpc_local", port)
    model, x = tiny_net()
    r = measure_candidate(model, x, load_profile(path), arch_key="tiny-rpc", tune=False, per_layer=True,
                          cache_dir=tmp_path)
    assert r["device"] == f"rpc://127.0.0.1:{port}"
    assert r["max_abs_diff"] <= 1e-5  # computed on the remote side, copied back
    assert r["tvm"] > 0 and len(r["tvm_samples_ms"]) == 3 * r["tvm_rounds"]
    assert r["torch"] is None and "torch_note" in r
    assert r["onnxruntime"] is None and "RPC" in r["onnxruntime_note"]
    assert r["tvm_threads"] == 1  # selected on the server
    assert [row["name"] for row in r["per_layer"]] and all(row["ms"] > 0 for row in r["per_layer"])
    log = (tmp_path / "rpc_server.log").read_text()
    assert "load_module" in log  # the library really went through the server


class _ThreadProbe(torch.nn.Module):
    """Records how many threads PyTorch had while the timed forward passes ran."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.inner(x)


def test_torch_timing_uses_and_restores_threads(tmp_path: Path) -> None:
    model, x = tiny_net()
    probe = _ThreadProbe(model).eval()
    profile = load_profile(fast_cpu_profile(tmp_path, threads=2))
    torch.set_num_threads(1)
    timing = time_torch(probe, x, profile)
    assert probe.seen == {2}                 # every timed run used the profile's thread count ...
    assert torch.get_num_threads() == 1      # ... and the caller's setting is back afterwards
    assert len(timing.samples_ms) == profile.timing.repeat and timing.median_ms > 0


def test_tvm_thread_count_is_selected_per_measurement() -> None:
    ceiling = int(os.environ["TVM_NUM_THREADS"])  # set by hwssl.deploy before TVM started its pool
    assert configure_tvm_threads(1) == 1
    assert configure_tvm_threads(ceiling) == ceiling
    assert tvm.runtime.num_threads() == ceiling
    configure_tvm_threads(1)


@pytest.mark.slow
def test_rpc_tuning_through_a_real_server(tmp_path: Path, rpc_server: int) -> None:
    """MetaSchedule's RPC runner against the real server: candidates exported as .so and timed there."""
    from deploy_support import ConvReLU

    path = rpc_profile(tmp_path, "rpc_tune", rpc_server)
    torch.manual_seed(0)
    model, x = ConvReLU().eval(), torch.randn(1, 2, 6, 6)
    r = measure_candidate(model, x, load_profile(path), arch_key="conv", tune=True, trials_per_task=2,
                          cache_dir=tmp_path)
    assert r["tuned"] and r["new_tasks"] == 1 and r["scheduled_kernels"] == 1
    assert r["max_abs_diff"] <= 1e-5 and r["tvm"] > 0
    assert "tvm_tmp_mod.so" in (tmp_path / "rpc_server.log").read_text()  # a tuning candidate ran remotely
