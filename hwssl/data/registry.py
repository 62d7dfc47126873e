"""Data set names -> sources: the built-in sets, an image folder, an .npz file."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from hwssl.data import folder as _folder
from hwssl.data._types import DatasetInfo, _Entry, _Raw
from hwssl.data.builtin import BUILTIN
from hwssl.data.npz import check_npz, load_npz, npz_info


def _folder_load(path: str | None) -> _Raw:
    raise TypeError("an image folder is streamed, not loaded into memory")


def _folder_check(path: str | None) -> None:
    _folder.layout(str(path) if path else "", _folder.tree_stamp(path))


USER: dict[str, _Entry] = {
    "folder": _Entry(DatasetInfo("folder", 3, (0, 0), 0, "the user's ImageFolder tree ([data] path), streamed "
                                                          "from disk"), _folder_load, _folder_check),
    "npz": _Entry(DatasetInfo("npz", 1, (0, 0), 0, "the user's NumPy .npz file ([data] path: x_train, y_train, "
                                                    "optional x_test, y_test)"), load_npz, lambda p: None),
}
_REGISTRY: dict[str, _Entry] = {**BUILTIN, **USER}


def _entry(name: str) -> _Entry:
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def available_datasets() -> list[str]:
    """Names of all registered data sets (whether or not their files are present)."""
    return list(_REGISTRY)


def is_user_data(name: str) -> bool:
    """Whether ``name``'s shape and classes come from the user's files (folder, npz)."""
    return _entry(name).info.name in USER


def dataset_info(name: str, *, path: str | None = None, image_size: Sequence[int] | None = None) -> DatasetInfo:
    """Facts about ``name``. Built-in sets load nothing; a folder or .npz is read (``path``) to
    learn its channels, size and classes. ``image_size`` (h, w) replaces the native size."""
    entry = _entry(name)
    if entry.info.name == "folder":
        return _folder.layout(str(path) if path else "", _folder.tree_stamp(path)).info(
            tuple(image_size) if image_size else None)
    info = npz_info(path) if entry.info.name == "npz" else entry.info
    return dataclasses.replace(info, image_size=tuple(image_size)) if image_size else info


def check_available(name: str, *, path: str | None = None) -> None:
    """Raise :class:`DatasetUnavailable` if ``name``'s files are missing (cheap, no decoding)."""
    entry = _entry(name)
    if entry.info.name == "npz":
        check_npz(path)
    else:
        entry.check(path)
