"""Field readers of search-space files that more than one table uses: strength ranges,
hardware-aware SSL's oracle and filter blocks, paths next to the space file, image sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwssl.config._reader import TableReader


@dataclass(frozen=True)
class StrengthRange:
    low: float
    high: float
    log: bool = True
    zero_probability: float = 0.0


ORACLE_NAMES = ("macs", "latency")   # hwssl.budget.cost resolves them (latency: the first profile's model)


def oracles() -> list[str]:
    return list(ORACLE_NAMES)


def filter_block(s: TableReader) -> int | str:
    value = s.raw("filter_block", 1)
    if value == "channel_round":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise s.error("filter_block", f'expected an integer >= 1 or "channel_round", got {value!r}')
    return value


def strength_range(table: TableReader, key: str, *, log: bool = True, maximum: float | None = None) -> StrengthRange:
    """A ``{low, high, log, zero_probability}`` range (``low < high``, both positive)."""
    r = table.sub(key, required=True)
    low = r.number("low", positive=True, maximum=maximum)
    high = r.number("high", positive=True, maximum=maximum)
    if high <= low:
        raise r.error("high", f"expected a number > low ({low}), got {high}")
    out = StrengthRange(low, high, r.boolean("log", log), r.number("zero_probability", 0.0, minimum=0, maximum=1))
    r.finish()
    return out


def beside(value: str, space_path: str) -> str:
    """A relative path next to the search-space file when it exists there, else as given."""
    if not value or Path(value).is_absolute():
        return value
    candidate = Path(space_path).parent / value
    return str(candidate) if candidate.exists() else value


def image_size(d: TableReader) -> tuple[int, int] | None:
    value = d.raw("image_size", 0)
    if value == 0 and not isinstance(value, bool):
        return None
    from hwssl.data import image_size_of
    try:
        return image_size_of(value)
    except ValueError:
        raise d.error("image_size", f"expected a positive integer or [height, width], got {value!r}") from None
