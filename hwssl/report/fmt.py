"""Number formats used everywhere in the report (one place, so every table agrees).

Every formatter takes ``None`` (or NaN) and returns an en dash, so a missing
measurement never renders as "nan" or "None".
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pct(v: Any, digits: int = 2) -> str:
    """Accuracy 0.8834 -> '88.34 %'."""
    return MISSING if _missing(v) else f"{100.0 * float(v):.{digits}f} %"


def sig3(v: Any) -> str:
    """Three significant digits without exponent: 0.0412, 0.412, 4.12, 41.2, 412, 4,120."""
    if _missing(v):
        return MISSING
    v = float(v)
    if v == 0:
        return "0"
    decimals = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{v:,.{decimals}f}"


def ms(v: Any) -> str:
    """Latency in milliseconds, three significant digits."""
    return MISSING if _missing(v) else f"{sig3(v)} ms"


def count(v: Any) -> str:
    """MACs / parameters: 646500 -> '646.5 k', 40_960_000 -> '40.96 M'."""
    if _missing(v):
        return MISSING
    v = float(v)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= limit:
            return f"{v / limit:.4g} {suffix}"
    return f"{v:.0f}"


def ratio(v: Any) -> str:
    """Speed-up / reduction factor: 1.234 -> '1.23×'."""
    return MISSING if _missing(v) else f"{float(v):.2f}×"


def strength(v: Any) -> str:
    """SSL strength λ: '0.0312'; an exact zero means the group type was switched off."""
    if _missing(v):
        return MISSING
    return "off" if float(v) == 0.0 else f"{float(v):.3g}"


def seconds(v: Any) -> str:
    """Durations: '42 s', '12.5 min', '3.2 h'."""
    if _missing(v):
        return MISSING
    v = float(v)
    if v < 120:
        return f"{v:.0f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


FILTERS = {"pct": pct, "sig3": sig3, "ms": ms, "count": count, "ratio": ratio, "strength": strength,
           "seconds": seconds}
