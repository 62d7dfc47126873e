"""Module ``__getattr__`` that imports TVM-heavy submodules on first use (``import tvm`` takes
seconds, and most commands never need it)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for ``package``: attribute ``name`` comes from module ``names[name]``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
