"""Render a study into ``<out>/report.html`` (one self-contained file) and ``<out>/trials.csv``."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

import jinja2
import optuna

import hwssl
from hwssl.report import fmt, plots
from hwssl.report.collect import ReportData, collect, safe_dir_name
from hwssl.report.latency import LatencySection, collect_latency

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt.FILTERS)
    return env


def draw(data: ReportData) -> str:
    """Attach every figure to ``data``; returns the hypervolume figure ('' when there is nothing to draw)."""
    for front in data.fronts:
        front.svg = plots.front_svg(front)
    if data.ranks is not None:
        optimal = {n for f in data.fronts for n in f.front}
        data.ranks.svg = plots.rank_svg(data.ranks, optimal)
    for cand in data.candidates:
        if cand.layers or cand.blocks_removed:
            cand.svg = plots.sparsity_svg(cand)
    for view in data.comparisons:
        view.svg = plots.comparison_svg(view)
    return plots.hypervolume_svg(data.fronts) if any(f.hv for f in data.fronts) else ""


def draw_latency(section: LatencySection) -> None:
    """Attach the latency-model figures (predicted vs measured, per-layer breakdowns)."""
    from hwssl.report import latency_plots

    for view in section.predictions:
        if view.points:
            view.svg = latency_plots.predicted_svg(view)
    for view in section.breakdowns:
        view.svg = latency_plots.breakdown_svg(view)


def render(data: ReportData, hv_svg: str = "", lat: LatencySection | None = None) -> str:
    """The report's HTML text (every study-supplied string is escaped)."""
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return _environment().get_template("report.html.j2").render(d=data, hv_svg=hv_svg, generated=generated,
                                                                  inf=float("inf"), version=hwssl.__version__,
                                                                  lat=lat)


def build_report(study: optuna.Study, out_dir: str | Path, storage_url: str,
                 compare: Sequence[optuna.Study] = ()) -> Path:
    """Write ``report.html`` and ``trials.csv`` for ``study`` into ``out_dir``; returns the HTML path.

    ``storage_url`` is only printed (password hidden) in the export commands of the report.
    ``compare``: other studies of the same space and profiles (e.g. the baselines of
    ``hwssl search --method``), overlaid in a "Methods compared" section.
    """
    data = collect(study, storage_url, compare)
    hv_svg = draw(data)
    lat = collect_latency(study)
    draw_latency(lat)
    html = render(data, hv_svg, lat)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # write-then-rename, with per-process temporary names: several workers may finish at once
    csv_tmp = out / f".trials.csv.{os.getpid()}.tmp"
    data.frame.to_csv(csv_tmp, index=False)
    csv_tmp.replace(out / "trials.csv")
    path = out / "report.html"
    tmp = out / f".report.html.{os.getpid()}.tmp"
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def default_out_dir(study_name: str) -> Path:
    """``reports/<study name made filesystem-safe>``."""
    return Path("reports") / safe_dir_name(study_name)
