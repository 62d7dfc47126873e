"""Quiet runs: TVM's and MetaSchedule's output goes to a log file, the console keeps hwssl's own lines.

TVM logs from native code (``LOG(WARNING)`` in C++ writes straight to file
descriptor 2), from MetaSchedule's Python loggers (a console handler on
``sys.stdout``) and through Python warnings; its tuning workers are child
processes that inherit descriptor 2. :func:`capture` therefore redirects the
descriptor itself (``dup2``) to the log file, and gives ``sys.stderr`` a new
stream on a duplicate of the original descriptor: hwssl's progress bars, trial
lines and errors (all written through ``sys.stderr``) still reach the console,
everything written to descriptor 2 by anyone else lands in the log. Python
warnings and records of loggers that would otherwise fall back to the console
are written to the log as well; MetaSchedule's console handler is pointed at
it while tuning (see :func:`log_stream` and ``hwssl.deploy.tune``).

One capture per process: ``hwssl search|evaluate|retime|export`` start it once
(unless ``--verbose``) and :func:`release` undoes it when the command ends.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

LOG_NAME = "tvm.log"


@dataclass
class _Capture:
    path: Path
    log: TextIO                 # the log file, line-buffered (Python-side writes)
    console_fd: int             # duplicate of the original descriptor 2
    stderr: TextIO              # sys.stderr before the capture
    showwarning: Any            # warnings.showwarning before the capture
    handler: logging.Handler    # on the root logger: records nobody else handles


_active: _Capture | None = None


def study_log_path(artifacts: str | os.PathLike[str], study: str) -> Path:
    """``<artifacts>/<study>/tvm.log``: beside the study's trial artifacts."""
    return Path(artifacts).resolve() / study / LOG_NAME


def capture(path: str | os.PathLike[str], *, verbose: bool = False, announce: bool = True,
            title: str = "") -> Path | None:
    """Send TVM's native, MetaSchedule's and Python's warnings/logs to ``path`` (appended).

    Says once on the console where they go (unless not ``announce``). With ``verbose`` (or when a capture
    is already active) nothing changes and None is returned.
    """
    global _active
    if verbose or _active is not None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    log.write(f"==== {stamp} {title or ' '.join(sys.argv)}\n")
    sys.stderr.flush()
    console_fd = os.dup(2)
    os.dup2(log.fileno(), 2)
    console: TextIO = sys.stderr
    if _writes_to_fd2(sys.stderr):  # the usual case; an in-process caller may have replaced sys.stderr
        console = io.TextIOWrapper(io.FileIO(console_fd, "w", closefd=False), encoding=sys.stderr.encoding or
                                   "utf-8", errors="backslashreplace", line_buffering=True, write_through=True)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    _active = _Capture(path, log, console_fd, sys.stderr, warnings.showwarning, handler)
    sys.stderr = console
    warnings.showwarning = _warning_to_log
    logging.getLogger().addHandler(handler)
    if announce:
        print(f"TVM and MetaSchedule logs: {path} (--verbose shows them here)", file=sys.stderr)
    return path


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _warning_to_log(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
    if _active is not None:
        _active.log.write(warnings.formatwarning(message, category, filename, lineno, line))


def log_stream() -> TextIO | None:
    """The active log file (for handlers that would print to the console), or None."""
    return _active.log if _active is not None else None


def release() -> None:
    """Undo :func:`capture`: descriptor 2, ``sys.stderr``, warnings and logging as they were."""
    global _active
    cap, _active = _active, None
    if cap is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(cap.console_fd, 2)
    os.close(cap.console_fd)
    sys.stderr = cap.stderr
    warnings.showwarning = cap.showwarning
    logging.getLogger().removeHandler(cap.handler)
    cap.log.close()
