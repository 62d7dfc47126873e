"""The report's figures as inline SVG text.

Figures are plain :class:`matplotlib.figure.Figure` objects saved with the SVG
canvas: no pyplot, no global backend switch, no display needed.
"""

from __future__ import annotations

import io
import re
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, FuncFormatter, MaxNLocator, PercentFormatter

from hwssl.report import fmt
from hwssl.report.collect import Candidate, ComparisonView, FrontView, RankView

FRONT = "#1f5fa8"
FAINT = "#9aa5b1"
DENSE = "#222222"
INT8_MARKER = "^"                       # int8 trials on front plots (fp32: circles)
KNEE = "#e07b00"
RECOMMENDED = "#1a8f3c"
PICKS = ("#8e44ad", "#c0392b", "#16a085")
WARN = "#b3261e"
KIND_COLOURS = {"filters": "#1f5fa8", "channels": "#e07b00", "shape columns": "#1a8f3c"}

_STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9.5, "axes.titlesize": 11, "axes.titleweight": "bold",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e3e7eb",
    "grid.linewidth": 0.8, "axes.edgecolor": "#7b8794", "axes.axisbelow": True, "legend.frameon": False,
    "svg.fonttype": "path",
}


def plain(text: str) -> str:
    """User text safe for matplotlib (a ``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


# label offsets in points, tried in order: (dx, dy, ha, va)
_SPOTS = ((7, 0, "left", "center"), (5, -6, "left", "top"), (5, 6, "left", "bottom"), (-7, 0, "right", "center"),
          (-5, 6, "right", "bottom"), (-5, -6, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"))


def place_labels(ax, items: Sequence[tuple[float, float, str]], avoid: Sequence[tuple[float, float]] = (),
                 **text_kw) -> None:
    """Annotate points with short labels, greedily choosing an offset that overlaps no earlier label
    and no marker in ``avoid`` (data coordinates). Call after the axes limits are final."""
    fig = ax.figure
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    px_per_pt = fig.dpi / 72.0
    size = text_kw.get("fontsize", 8)
    markers = [tuple(ax.transData.transform((x, y))) for x, y in avoid]
    r = 3.5 * px_per_pt
    taken: list[tuple[float, float, float, float]] = []

    def box_for(px: float, py: float, spot: tuple, text: str) -> tuple[float, float, float, float]:
        dx, dy, ha, va = spot
        w, h = 0.6 * size * len(text) * px_per_pt, 1.15 * size * px_per_pt
        x0 = px + dx * px_per_pt - {"left": 0, "center": w / 2, "right": w}[ha]
        y0 = py + dy * px_per_pt - {"bottom": 0, "center": h / 2, "top": h}[va]
        return x0, y0, x0 + w, y0 + h

    inside = ax.bbox.extents  # x0, y0, x1, y1 in pixels

    def free(b: tuple[float, float, float, float]) -> bool:
        if b[0] < inside[0] or b[1] < inside[1] or b[2] > inside[2] or b[3] > inside[3]:
            return False
        if any(b[0] < t[2] and t[0] < b[2] and b[1] < t[3] and t[1] < b[3] for t in taken):
            return False
        return not any(b[0] - r < mx < b[2] + r and b[1] - r < my < b[3] + r for mx, my in markers)

    for x, y, text in items:
        px, py = ax.transData.transform((x, y))
        spot = next((s for s in _SPOTS if free(box_for(px, py, s, text))), _SPOTS[0])
        taken.append(box_for(px, py, spot, text))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=spot[:2], ha=spot[2], va=spot[3],
                    zorder=6, **text_kw)


def to_svg(fig: Figure, salt: str) -> str:
    """Serialise ``fig`` as an ``<svg>`` element; ``salt`` keeps element ids unique within one page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the page is HTML


class StepPercent(Formatter):
    """Percent tick labels with as many decimals as the tick step needs (0.25 % steps: two).

    A fixed number of decimals makes a narrow range (hypervolumes of 2.0-2.8 %) read the same
    label on every tick.
    """

    def set_locs(self, locs: Sequence[float]) -> None:
        super().set_locs(locs)
        self._ticks = sorted(float(v) for v in locs)

    def __call__(self, x: float, pos: int | None = None) -> str:
        locs = getattr(self, "_ticks", [])
        steps = [b - a for a, b in zip(locs, locs[1:]) if b > a]
        step = 100 * min(steps) if steps else 0.0
        decimals = 0
        while decimals < 6 and step > 0 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, step):
            decimals += 1
        return f"{100 * x:.{decimals}f}%"


def _cost_formatter(view: FrontView) -> FuncFormatter:
    if view.profile is None:
        return FuncFormatter(lambda v, _p: fmt.count(v))
    return FuncFormatter(lambda v, _p: fmt.sig3(v))


def front_svg(view: FrontView) -> str:
    """Validation accuracy against cost: every trial faint, the front highlighted, dense, knee and picks marked."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.6, 5.0))
        ax = fig.add_subplot()
        pos = {t: i for i, t in enumerate(view.trials)}
        on_front = set(view.front)
        others = [i for i, t in enumerate(view.trials) if t not in on_front]
        handles = []
        int8 = view.int8 or [False] * len(view.trials)
        for quantised, marker in ((False, "o"), (True, INT8_MARKER)):
            idx = [i for i in others if int8[i] == quantised]
            if idx:
                ax.scatter([view.cost[i] for i in idx], [view.acc[i] for i in idx], s=22 if marker == "o" else 30,
                           color=FAINT, alpha=0.55, linewidths=0, zorder=2, marker=marker)
        if others:
            handles.append(Line2D([], [], ls="", marker="o", color=FAINT, alpha=0.55,
                                  label=f"dominated trials ({len(others)})"))
        fx = [view.cost[pos[t]] for t in view.front]
        fy = [view.acc[pos[t]] for t in view.front]
        if fx:
            ax.plot(fx, fy, drawstyle="steps-post", color=FRONT, lw=1.3, alpha=0.6, zorder=3)
            for quantised, marker in ((False, "o"), (True, INT8_MARKER)):
                idx = [pos[t] for t in view.front if int8[pos[t]] == quantised]
                if idx:
                    ax.scatter([view.cost[i] for i in idx], [view.acc[i] for i in idx], s=42 if marker == "o" else 60,
                               color=FRONT, zorder=4, edgecolors="white", linewidths=0.8, marker=marker)
            handles.append(Line2D([], [], ls="-", marker="o", color=FRONT, label=f"Pareto front ({len(fx)})"))
        if any(int8):
            handles.append(Line2D([], [], ls="", marker=INT8_MARKER, color=FAINT,
                                  label=f"int8 trials ({sum(int8)}; others fp32)"))
        if view.dense_acc is not None and view.dense_cost is not None:
            ax.scatter([view.dense_cost], [view.dense_acc], marker="D", s=55, color=DENSE, zorder=5)
            handles.append(Line2D([], [], ls="", marker="D", color=DENSE, label="dense baseline"))
        if view.min_accuracy is not None:
            ax.axhline(view.min_accuracy, color=WARN, ls="--", lw=1, zorder=1)
            handles.append(Line2D([], [], color=WARN, ls="--", lw=1,
                                  label=f"min. accuracy {fmt.pct(view.min_accuracy)}"))
        if view.max_cost is not None:
            ax.axvline(view.max_cost, color=WARN, ls=":", lw=1.2, zorder=1)
            handles.append(Line2D([], [], color=WARN, ls=":", lw=1.2, label=f"latency budget {fmt.ms(view.max_cost)}"))
        extra = 0
        for pick in view.picks:
            if pick.trial is None:
                continue
            i = pos[pick.trial]
            if pick.label == "knee point":
                style = dict(s=190, facecolors="none", edgecolors=KNEE, linewidths=1.8)
            else:
                style = dict(s=120 + 70 * extra, facecolors="none", edgecolors=PICKS[extra % len(PICKS)],
                             linewidths=1.4, marker="s")
                extra += 1
            ax.scatter([view.cost[i]], [view.acc[i]], zorder=5, **style)
            handles.append(Line2D([], [], ls="", marker=style.get("marker", "o"), markerfacecolor="none",
                                  markeredgecolor=style["edgecolors"], markersize=9,
                                  label=f"{plain(pick.label)}: #{pick.trial}"))
        if view.recommended is not None:
            i = pos[view.recommended]
            ax.scatter([view.cost[i]], [view.acc[i]], marker="*", s=150, color=RECOMMENDED, zorder=7,
                       edgecolors="white", linewidths=0.6)
            handles.append(Line2D([], [], ls="", marker="*", color=RECOMMENDED, markersize=11,
                                  label=f"recommended: #{view.recommended}"))
        ax.yaxis.set_major_formatter(StepPercent())
        positive = [c for c in view.cost + ([view.dense_cost] if view.dense_cost else []) if c > 0]
        if positive and max(positive) / min(positive) > 30:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(_cost_formatter(view))
        elif view.profile is None:
            ax.xaxis.set_major_formatter(_cost_formatter(view))
        ax.margins(x=0.07, y=0.08)
        points = list(zip(view.cost, view.acc))
        labels = []
        if view.dense_acc is not None and view.dense_cost is not None:
            points.append((view.dense_cost, view.dense_acc))
            labels.append((view.dense_cost, view.dense_acc, "dense"))
        labels += [(view.cost[pos[t]], view.acc[pos[t]], f"#{t}" + (" int8" if int8[pos[t]] else ""))
                   for t in view.front]
        place_labels(ax, labels, avoid=points, fontsize=8, color=FRONT)
        for text in ax.texts:
            if text.get_text() == "dense":
                text.set_color(DENSE)
                text.set_fontweight("bold")
        ax.set_xlabel(plain(view.axis_label))
        ax.set_ylabel("validation accuracy")
        ax.set_title(plain(view.title), loc="left")
        if view.profile is not None and view.profile.untuned:
            ax.text(1.0, 1.02, f"{view.profile.tuning.upper()} TVM LATENCIES", transform=ax.transAxes,
                    ha="right", va="bottom", color=WARN, fontweight="bold", fontsize=9)
        if not view.trials:
            ax.text(0.5, 0.5, "no complete trial with a cost on this axis", transform=ax.transAxes,
                    ha="center", color=WARN)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        return to_svg(fig, f"front-{view.key}")


METHOD_COLOURS = (FRONT, "#d35400", "#27ae60", "#8e44ad", "#7f8c8d", "#c0392b")


def comparison_svg(view: ComparisonView) -> str:
    """Each study's trials (faint) and front (step line) on validation accuracy vs cost / dense."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.6, 5.0))
        ax = fig.add_subplot()
        handles = []
        for k, s in enumerate(view.summaries):
            colour = METHOD_COLOURS[k % len(METHOD_COLOURS)]
            if not s.points:
                continue
            ax.scatter([p.rel for p in s.points], [p.accuracy for p in s.points], s=18, color=colour, alpha=0.3,
                       linewidths=0, zorder=2)
            fx, fy = [p.rel for p in s.front], [p.accuracy for p in s.front]
            ax.plot(fx, fy, drawstyle="steps-post", color=colour, lw=1.5, zorder=3)
            ax.scatter(fx, fy, s=36, color=colour, zorder=4, edgecolors="white", linewidths=0.7,
                       marker="D" if s.method == "dense" else "o")
            hv = "–" if s.hv is None else f"{s.hv:.4f}"
            handles.append(Line2D([], [], color=colour, marker="o", lw=1.5,
                                  label=plain(f"{s.method}: {len(s.points)} trials, HV {hv}")))
        if view.ref_acc is not None:
            ax.scatter([view.ref_cost], [view.ref_acc], marker="x", color=DENSE, s=40, zorder=5)
            handles.append(Line2D([], [], ls="", marker="x", color=DENSE, label="hypervolume reference"))
        ax.axvline(1.0, color=DENSE, ls=":", lw=0.8, zorder=1)
        ax.yaxis.set_major_formatter(StepPercent())
        ax.set_xlabel(plain(f"cost / dense cost ({view.label})"))
        ax.set_ylabel("validation accuracy")
        ax.set_title(plain(f"Methods compared on {view.label}"), loc="left")
        ax.margins(x=0.07, y=0.08)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        return to_svg(fig, f"compare-{view.key}")


def hypervolume_svg(views: Sequence[FrontView]) -> str:
    """Normalised hypervolume after each complete trial, one line per front."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.6, 3.4))
        ax = fig.add_subplot()
        for k, view in enumerate(views):
            if not view.hv:
                continue
            label = "MACs" if view.profile is None else f"{view.profile.name} ({view.profile.tuning})"
            colour = [FRONT, KNEE, RECOMMENDED, *PICKS][k % 6]
            ax.plot(view.trials, view.hv, drawstyle="steps-post", color=colour, lw=1.6, label=plain(label))
            ax.scatter(view.trials, view.hv, s=12, color=colour, zorder=3)
        ax.yaxis.set_major_formatter(StepPercent())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number (complete trials, in order)")
        ax.set_ylabel("hypervolume\n(fraction of box)")
        ax.set_title("Hypervolume over trials", loc="left")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8.5)
        return to_svg(fig, "hypervolume")


def rank_svg(view: RankView, highlight: set[int]) -> str:
    """Left: rank by latency on each profile (a line per trial). Right: latency on the first two profiles."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(12.0, 4.8))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
        xs = list(range(len(view.profiles)))
        n = len(view.trials)
        for j, t in enumerate(view.trials):
            ranks = [view.rank[p][j] for p in view.profiles]
            hot = t in highlight
            left.plot(xs, ranks, marker="o", ms=4 if hot else 3, lw=1.6 if hot else 0.9,
                      color=FRONT if hot else FAINT, alpha=1.0 if hot else 0.6, zorder=3 if hot else 2)
            if hot:
                left.annotate(f"#{t}", (xs[-1], ranks[-1]), textcoords="offset points", xytext=(6, -3),
                              fontsize=8, color=FRONT)
                left.annotate(f"#{t}", (xs[0], ranks[0]), textcoords="offset points", xytext=(-8, -3),
                              fontsize=8, color=FRONT, ha="right")
        left.set_xticks(xs, [plain(p) for p in view.profiles])
        left.set_xlim(-0.5, len(xs) - 0.5)
        left.set_ylim(n + 0.7, 0.3)
        left.set_ylabel("rank by TVM latency (1 = fastest)")
        left.set_title("Latency rank of each trial per profile", loc="left")
        left.grid(axis="x", visible=False)
        a, b = view.profiles[0], view.profiles[1]
        colours = [FRONT if t in highlight else FAINT for t in view.trials]
        right.scatter(view.latency[a], view.latency[b], s=26, c=colours, zorder=3)
        place_labels(right, [(x, y, f"#{t}") for t, x, y in zip(view.trials, view.latency[a], view.latency[b])
                             if t in highlight], avoid=list(zip(view.latency[a], view.latency[b])), fontsize=8,
                     color=FRONT)
        right.set_xlabel(plain(f"TVM latency on {a} (ms)"))
        right.set_ylabel(plain(f"TVM latency on {b} (ms)"))
        right.set_title(plain(f"{b} against {a}"), loc="left")
        fig.legend(handles=[Line2D([], [], color=FRONT, marker="o", label="Pareto-optimal on some profile"),
                            Line2D([], [], color=FAINT, marker="o", label="other complete trials")],
                   loc="lower center", ncols=2, bbox_to_anchor=(0.5, -0.06), fontsize=8.5)
        fig.tight_layout()
        return to_svg(fig, "ranks")


def _natural(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def sparsity_svg(candidate: Candidate) -> str:
    """Kept fraction of filters, channels and shape columns per conv layer (removed blocks in red)."""
    rows: list[tuple[str, object]] = [(r.name, r) for r in candidate.layers]
    rows += [(b, None) for b in candidate.blocks_removed]
    if candidate.blocks_removed:
        rows.sort(key=lambda item: _natural(item[0]))
    kinds = (("filters", "filters"), ("channels", "channels"), ("shape columns", "columns"))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(7.6, 0.8 + 0.46 * max(1, len(rows))))
        ax = fig.add_subplot()
        height = 0.26
        for y, (name, row) in enumerate(rows):
            if row is None:
                ax.text(0.01, y, "whole residual block removed", va="center", color=WARN, fontsize=8.5,
                        fontweight="bold")
                continue
            for k, (label, attr) in enumerate(kinds):
                pair = getattr(row, attr)
                frac = row.frac(pair)
                yy = y + (k - 1) * height
                ax.barh(yy, frac, height=height * 0.92, color=KIND_COLOURS[label], alpha=0.85)
                ax.text(min(frac, 1.0) + 0.01, yy, f"{pair[0]}/{pair[1]}", va="center", fontsize=7.5,
                        color="#3e4c59")
        labels = [plain(name) + (" (lowered)" if row is not None and row.lowered else "") for name, row in rows]
        ax.set_yticks(range(len(rows)), labels)
        for tick, (_name, row) in zip(ax.get_yticklabels(), rows):
            if row is None:
                tick.set_color(WARN)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(0, 1.16)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("kept fraction of the dense layer (label: kept/dense)")
        ax.grid(axis="y", visible=False)
        ax.set_title(f"Trial #{candidate.trial}: structure kept per layer", loc="left")
        ax.legend(handles=[Line2D([], [], color=c, lw=6, label=k) for k, c in KIND_COLOURS.items()],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        return to_svg(fig, f"sparsity-{candidate.trial}")
