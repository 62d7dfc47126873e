"""The HTML report of a search: Pareto fronts per profile, hypervolume, candidates, what to deploy."""

from hwssl.report.builder import build_report, default_out_dir
from hwssl.storage import StudyNotFound, display_url, load_study

__all__ = ["build_report", "default_out_dir", "load_study", "display_url", "StudyNotFound"]
