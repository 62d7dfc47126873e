"""Figures of the latency-model sections (inline SVG, same style as :mod:`hwssl.report.plots`)."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from hwssl.report import fmt
from hwssl.report.latency import BreakdownView, PredictionView
from hwssl.report.plots import _STYLE, DENSE, FAINT, FRONT, KNEE, RECOMMENDED, plain, to_svg

SOURCE_STYLE = {"search": (FRONT, "o"), "dense": (DENSE, "s"), "final": (RECOMMENDED, "D"),
                "final dense": (KNEE, "s")}


def predicted_svg(view: PredictionView) -> str:
    """Predicted against measured latency, the identity line and the ±10 % band (log-log)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.6, 4.8))
        ax = fig.subplots()
        values = [v for p in view.points for v in (p.measured, p.predicted)]
        lo, hi = min(values) / 1.3, max(values) * 1.3
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="#e3e7eb", zorder=1)
        ax.plot([lo, hi], [lo, hi], color=FAINT, lw=1, zorder=2)
        for source, (colour, marker) in SOURCE_STYLE.items():
            pts = [p for p in view.points if p.source == source]
            if pts:
                ax.scatter([p.measured for p in pts], [p.predicted for p in pts], s=24, c=colour, marker=marker,
                           zorder=3, label=source)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        plain_numbers = FuncFormatter(lambda v, _pos: fmt.sig3(v))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain_numbers)
            axis.set_minor_formatter(plain_numbers)
        ax.set_xlabel("measured TVM latency (ms)")
        ax.set_ylabel("predicted before measuring (ms)")
        ax.set_title(plain(f"Latency model on {view.profile}"), loc="left")
        handles = [Line2D([], [], color=c, marker=m, ls="", label=s) for s, (c, m) in SOURCE_STYLE.items()
                   if any(p.source == s for p in view.points)]
        handles.append(Line2D([], [], color="#c9d0d6", lw=6, label="±10 %"))
        ax.legend(handles=handles, loc="upper left", fontsize=8)
        fig.tight_layout()
        return to_svg(fig, f"latency-model-{view.profile}")


def breakdown_svg(view: BreakdownView) -> str:
    """Per layer: dense and candidate ms side by side; for lowered layers the plain-conv alternative."""
    rows = view.rows
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(7.2, 0.9 + 0.32 * len(rows)))
        ax = fig.subplots()
        ys = list(range(len(rows)))
        ax.barh([y - 0.2 for y in ys], [r.dense_ms or 0 for r in rows], height=0.38, color=FAINT, label="dense")
        ax.barh([y + 0.2 for y in ys], [r.cand_ms or 0 for r in rows], height=0.38, color=FRONT,
                label=f"trial #{view.trial}")
        alt = [(y, r.plain_ms) for y, r in zip(ys, rows) if r.plain_ms is not None]
        if alt:
            ax.scatter([a[1] for a in alt], [a[0] + 0.2 for a in alt], marker="|", s=120, c=KNEE, zorder=4,
                       label="plain conv, same kept widths (model)")
        ax.set_yticks(ys, [plain(r.layer) for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("ms per layer (sum of its kernels, measured one by one)")
        ax.set_title(plain(f"Where the time goes on {view.profile}: dense vs #{view.trial}"), loc="left")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return to_svg(fig, f"breakdown-{view.profile}-{view.trial}")
