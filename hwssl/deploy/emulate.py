"""Functional check of aarch64 libraries under user-mode QEMU (no board needed).

An exported aarch64 library is run by a ~60-line C++ loader linked against
the aarch64 TVM runtime (``libtvm_runtime.so`` + ``libtvm_ffi.so`` from the
PyPI aarch64 wheels of the pinned versions), under ``qemu-aarch64-static -L
/usr/aarch64-linux-gnu``. The output is compared with PyTorch. Emulated
timings mean nothing and are not reported as latencies.

The runtime libraries are looked up in ``$HWSSL_AARCH64_TVM_RUNTIME`` or
``~/.cache/hwssl/aarch64-tvm-runtime``; ``python -m hwssl.deploy.emulate
fetch`` puts them there (``pip download`` of the two wheels, ~100 MB, keeps
only the two libraries).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from hwssl.config.profile import HardwareProfile, triple_arch
from hwssl.deploy.compile import Compiled, export_library, max_abs_diff, torch_reference
from hwssl.deploy.errors import DeployError

RUNTIME_ENV = "HWSSL_AARCH64_TVM_RUNTIME"
SYSROOT = "/usr/aarch64-linux-gnu"
QEMU = "qemu-aarch64-static"
RUNTIME_LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1")

LOADER_SOURCE = r"""
// Runs "main" of an exported TVM Relax library on one float32 input (hwssl.deploy.emulate).
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <vector>

namespace ffi = tvm::ffi;

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, n ? n : 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

int main(int argc, char** argv) {
  if (argc < 6) {
    std::cerr << "usage: loader lib.so input.bin output.bin runs dim0 [dim1 ...]\n";
    return 2;
  }
  std::vector<int64_t> shape;
  for (int i = 5; i < argc; ++i) shape.push_back(std::atoll(argv[i]));
  int runs = std::atoi(argv[4]);
  ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);  // cpu 0, pooled
  ffi::Tensor x = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::Shape(shape), DLDataType{kDLFloat, 32, 1},
                                           DLDevice{kDLCPU, 0});
  std::ifstream in(argv[2], std::ios::binary);
  in.read(static_cast<char*>(x.data_ptr()), ffi::GetDataSize(x));
  ffi::Function main_fn = vm->GetFunction("main").value();
  ffi::Tensor y = main_fn(x).cast<ffi::Tensor>();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < runs; ++i) y = main_fn(x).cast<ffi::Tensor>();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::ofstream out(argv[3], std::ios::binary);
  out.write(static_cast<const char*>(y.data_ptr()), ffi::GetDataSize(y));
  std::printf("shape");
  for (int64_t d : y.shape()) std::printf(" %lld", static_cast<long long>(d));
  std::printf("\nms_per_run %.6f\n", runs ? ms / runs : 0.0);
  return 0;
}
"""


def runtime_dir() -> Path:
    return Path(os.environ.get(RUNTIME_ENV, Path.home() / ".cache" / "hwssl" / "aarch64-tvm-runtime"))


def emulation_available(compiler: str = "aarch64-linux-gnu-g++") -> tuple[bool, str]:
    """Whether :func:`run_emulated` can work here, and if not, what is missing."""
    missing = [lib for lib in RUNTIME_LIBS if not (runtime_dir() / lib).is_file()]
    if missing:
        return False, f"aarch64 TVM runtime not in {runtime_dir()} (run `python -m hwssl.deploy.emulate fetch`)"
    if shutil.which(QEMU) is None:
        return False, f"{QEMU} not on PATH (Debian: qemu-user-static)"
    if shutil.which(compiler) is None:
        return False, f"{compiler} not on PATH"
    if not Path(SYSROOT).is_dir():
        return False, f"no aarch64 sysroot at {SYSROOT}"
    return True, "ok"


def fetch_runtime(dest: Path | None = None) -> Path:
    """Download the pinned aarch64 wheels with pip and keep only the two runtime libraries."""
    dest = dest or runtime_dir()
    if all((dest / lib).is_file() for lib in RUNTIME_LIBS):
        return dest  # already fetched (the versions are pinned)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_28_aarch64", "--python-version", "3.11", *WHEELS, "-d", tmp],
                       check=True)
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                for name in zf.namelist():
                    if Path(name).name in RUNTIME_LIBS and "/lib/" in name:
                        (dest / Path(name).name).write_bytes(zf.read(name))
    return dest


def _loader(compiler: str, workdir: Path) -> Path:
    """Build (once per source/runtime) the aarch64 loader next to the runtime libraries."""
    import tvm_ffi

    rt = runtime_dir()
    tag = hashlib.sha256(LOADER_SOURCE.encode() + b"".join((rt / lib).read_bytes()[:4096] for lib in RUNTIME_LIBS))
    exe = rt / f"hwssl_loader_{tag.hexdigest()[:12]}"
    if exe.is_file():
        return exe
    src = workdir / "loader.cc"
    src.write_text(LOADER_SOURCE)
    include = Path(tvm_ffi.__file__).parent / "include"
    cmd = [compiler, "-std=c++17", "-O2", f"-I{include}", str(src), "-o", str(exe) + ".tmp", f"-L{rt}",
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the aarch64 loader failed:\n{done.stderr[-2000:]}")
    os.replace(str(exe) + ".tmp", exe)
    return exe


def run_emulated(compiled: Compiled, profile: HardwareProfile, model: torch.nn.Module, example: torch.Tensor,
                 *, runs: int = 3) -> dict[str, float]:
    """Run an aarch64 build under QEMU; returns {"max_abs_diff", "emulated_ms_per_run"}."""
    if triple_arch(compiled.target.attrs.get("mtriple")) != "aarch64":
        raise DeployError(profile.path, "emulation is only set up for aarch64 targets", key="target")
    ok, why = emulation_available(profile.cross_compiler or "aarch64-linux-gnu-g++")
    if not ok:
        raise DeployError(profile.path, f"cannot emulate: {why}")
    with tempfile.TemporaryDirectory(prefix="hwssl-qemu-") as tmp:
        work = Path(tmp)
        exe = _loader(shutil.which(profile.cross_compiler or "aarch64-linux-gnu-g++") or "", work)
        lib = export_library(compiled, profile, work / "net.so")
        example.detach().cpu().numpy().astype(np.float32).tofile(work / "in.bin")
        cmd = [QEMU, "-L", SYSROOT, str(exe), str(lib), str(work / "in.bin"), str(work / "out.bin"), str(runs),
               *[str(int(d)) for d in example.shape]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise DeployError(profile.path, f"emulated run failed: {(done.stderr or done.stdout)[-1000:]}")
        lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines() if " " in line)
        shape = tuple(int(d) for d in lines["shape"].split())
        out = np.fromfile(work / "out.bin", dtype=np.float32).reshape(shape)
    return {"max_abs_diff": max_abs_diff(out, torch_reference(model, example)),
            "emulated_ms_per_run": float(lines["ms_per_run"])}


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        print(f"aarch64 TVM runtime in {fetch_runtime()}")
    else:
        ok, why = emulation_available()
        print("emulation available" if ok else f"emulation not available: {why}")
