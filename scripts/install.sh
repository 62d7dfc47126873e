#!/usr/bin/env bash
# Installs everything hwssl needs on a fresh Debian machine: system packages
# (data set, ARM cross compiler, qemu) and a Python 3.11 virtual environment
# in .venv with the package and its test extras. Idempotent: a second run only
# checks. Both the README quick start and .ci/run call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static)
# extra system packages, space-separated (.ci/run adds postgresql for the storage test)
read -r -a EXTRA <<< "${HWSSL_EXTRA_APT:-}"
APT_PACKAGES+=("${EXTRA[@]}")

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${HWSSL_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "[install] Python 3.11 is required (torch 2.14.1 wheels); set HWSSL_PYTHON" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "[install] pip install -e .[test] (first run: ~2 min)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import hwssl, torch, tvm, optuna" || { echo "[install] import check failed" >&2; exit 1; }
# The aarch64 TVM runtime (two libraries from PyPI's aarch64 wheels, kept in ~/.cache/hwssl) lets
# ARM builds run under qemu for a functional check. Optional: without it that check skips.
.venv/bin/python -m hwssl.deploy.emulate fetch >/dev/null 2>&1 \
  || echo "[install] aarch64 TVM runtime not fetched; the qemu check will skip" >&2
echo "[install] ok: $(.venv/bin/python -c 'import torch, tvm; print("torch", torch.__version__, "tvm", tvm.__version__)')"
