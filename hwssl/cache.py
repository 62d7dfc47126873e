"""On-disk cache root and an inter-process file lock (several search workers share a cache)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

CACHE_ENV = "HWSSL_CACHE"


def cache_root() -> Path:
    """``$HWSSL_CACHE`` or ``.hwssl-cache`` in the working directory."""
    return Path(os.environ.get(CACHE_ENV, ".hwssl-cache")).resolve()


def stable_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed), released on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
