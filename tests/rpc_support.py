"""Real TVM RPC processes on 127.0.0.1 for tests: rpc_server, rpc_tracker (no tests here).

Each process runs in its own session (process group) so that :func:`stop` kills it and the
session workers it forked, and every wait is bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{proc.args[2]} did not listen on port {port} within {timeout_s} s")


def start(module: str, port: int, log: Path, *extra: str) -> subprocess.Popen:
    """``python -m tvm.exec.<module> --host 127.0.0.1 --port PORT ...``, listening when this returns."""
    out = open(log, "a")
    proc = subprocess.Popen([sys.executable, "-m", f"tvm.exec.{module}", "--host", "127.0.0.1", "--port", str(port),
                             "--port-end", str(port + 1), *extra],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    try:
        wait_for_port(port, proc)
    except Exception:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (the server and the session process it forked)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for_text(path: Path, text: str, timeout_s: float) -> bool:
    """True once ``text`` appears in the file ``path`` (polled), False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False
