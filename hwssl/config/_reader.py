"""Typed access to a parsed TOML table with errors that name the file and key.

Every config loader in hwssl goes through :class:`TableReader` so that a bad
file always produces one :class:`ConfigError` of the form::

    search_spaces/x.toml: key 'train.lr': expected a positive number, got -1
"""

from __future__ import annotations

import difflib
import math
import tomllib
from pathlib import Path
from typing import Any, Iterable


class ConfigError(ValueError):
    """A configuration file is missing, unparsable, or has a bad key/value."""

    def __init__(self, path: str | Path, key: str | None, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: key '{key}'" if key else self.path
        super().__init__(f"{where}: {message}")


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None


def read_text(path: str | Path) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark is dropped).

    TOML files are UTF-8; anything else (a binary file, a file saved as UTF-16)
    is one :class:`ConfigError` saying which file and what was found.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    found = _not_utf8_text(data)
    if found:
        raise ConfigError(path, None, f"expected a UTF-8 text (TOML) file, but {found}")
    return data.decode("utf-8-sig")


def _not_utf8_text(data: bytes) -> str:
    """Why ``data`` is not UTF-8 text ('' when it is). NUL bytes never occur in TOML: UTF-16 or binary."""
    head = data[:128]
    odd, even = head[1::2], head[0::2]
    ascii_utf16 = len(head) >= 4 and ((odd.count(0) == len(odd) and 0 not in even) or
                                      (even.count(0) == len(even) and 0 not in odd))
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or ascii_utf16:
        return "it is UTF-16 text (save it as UTF-8)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8 (is it a binary file?)"
    if "\x00" in text:
        return f"it holds a NUL byte at offset {data.index(0)} (is it a binary file?)"
    return ""


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TableReader:
    """Reads keys of one TOML table; :meth:`finish` rejects keys nobody read."""

    def __init__(self, path: str | Path, table: Any, prefix: str = "") -> None:
        self.path = str(path)
        self.prefix = prefix
        if not isinstance(table, dict):
            raise ConfigError(self.path, prefix or None, f"expected a table, got {_describe(table)}")
        self.table = table
        self._seen: set[str] = set()

    # -- helpers -----------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str | None, message: str) -> ConfigError:
        return ConfigError(self.path, self.key(name) if name else (self.prefix or None), message)

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str, default: Any = ...) -> Any:
        self._seen.add(name)
        if name not in self.table:
            if default is ...:
                raise self.error(name, "required key is missing")
            return default
        return self.table[name]

    # -- typed getters -------------------------------------------------------------
    def sub(self, name: str, required: bool = False) -> "TableReader":
        value = self.raw(name, ... if required else {})
        return TableReader(self.path, value, self.key(name))

    def string(self, name: str, default: Any = ..., choices: Iterable[str] | None = None) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_describe(value)}")
        if choices is not None:
            options = list(choices)
            if value not in options:
                hint = difflib.get_close_matches(value, options, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.error(name, f"expected one of {options}, got {value!r}{extra}")
        return value

    def boolean(self, name: str, default: Any = ...) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, name: str, default: Any = ..., minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"expected an integer <= {maximum}, got {value}")
        return value

    def number(self, name: str, default: Any = ..., minimum: float | None = None,
               maximum: float | None = None, positive: bool = False) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(name, f"expected a number, got {_describe(value)}")
        if positive and value <= 0:
            raise self.error(name, f"expected a positive number, got {value}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected a number >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"expected a number <= {maximum}, got {value}")
        return float(value)

    def string_list(self, name: str, default: Any = ..., choices: Iterable[str] | None = None) -> list[str]:
        value = self.raw(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"expected a list of strings, got {_describe(value)}")
        if choices is not None:
            options = list(choices)
            for v in value:
                if v not in options:
                    raise self.error(name, f"expected entries from {options}, got {v!r}")
        return list(value)

    def finish(self) -> None:
        """Fail on the first key that no getter asked for (typos must not pass silently)."""
        for name in self.table:
            if name not in self._seen:
                known = sorted(self._seen)
                hint = difflib.get_close_matches(name, known, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.error(name, f"unknown key; known keys here: {known}{extra}")
