"""Comparing studies: real tiny SSL, L1 and dense studies of one space, summarised on a shared
hypervolume reference and overlaid in the report (``hwssl report --compare``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from hwssl.cli import main
from hwssl.compare import REF_ACC_MARGIN, REF_COST, dominance_bands, front, summarise
from hwssl.config import load_search_space
from hwssl.pareto import hypervolume
from hwssl.report import build_report
from hwssl.results import FINAL_DENSE
from hwssl.search import SearchOptions, run_search

from conftest import TINY_SPACE


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root / "cache"))
        space_file = root / "tiny.toml"
        space_file.write_text(TINY_SPACE.replace("high = 1.0", "high = 4.0"))
        space = load_search_space(space_file)
        storage = f"sqlite:///{root / 'c.db'}"
        common = dict(space=space, storage=storage, artifacts=str(root / "a"), quiet=True)
        ssl = run_search(SearchOptions(study_name="ssl", trials=3, **common))
        l1 = run_search(SearchOptions(study_name="l1", method="l1", trials=2, ratios=(0.3, 0.7), **common))
        dense = run_search(SearchOptions(study_name="dense", method="dense", **common))
    return {"root": root, "storage": storage, "ssl": ssl, "l1": l1, "dense": dense}


def test_summaries_share_one_reference_and_the_dense_point_costs_one(studies):
    summaries, ref_acc = summarise([studies["ssl"], studies["l1"], studies["dense"]], None)
    assert [s.method for s in summaries] == ["ssl", "l1", "dense"]
    assert [len(s.points) for s in summaries] == [3, 2, 1]
    everything = [p for s in summaries for p in s.points]
    assert ref_acc == pytest.approx(min(p.accuracy for p in everything) - REF_ACC_MARGIN)
    (dense,) = summaries[2].points
    assert dense.rel == pytest.approx(1.0)
    for s in summaries:
        assert s.hv == pytest.approx(hypervolume([p.accuracy for p in s.points], [p.rel for p in s.points],
                                                 ref_acc, REF_COST))
        assert s.front == front(s.points) and s.trial_s > 0
    assert all(p.rel < 1.0 for p in summaries[1].points)  # L1 at 0.3 and 0.7 removes MACs


def test_dominance_bands_name_the_best_method_under_each_budget(studies):
    summaries, _ = summarise([studies["ssl"], studies["l1"], studies["dense"]], None)
    fronts = {s.method: s.front for s in summaries}
    bands = dominance_bands(fronts)
    assert bands[0][0] == pytest.approx(min(p.rel for pts in fronts.values() for p in pts))
    cuts = sorted({p.rel for pts in fronts.values() for p in pts})
    for lo, hi, winners, best in bands:
        inside = [c for c in cuts if lo <= c < hi]
        assert inside and inside[0] == lo
        for c in inside:  # the same methods win at every budget inside the band
            reachable = {m: max(p.accuracy for p in pts if p.rel <= c + 1e-12) for m, pts in fronts.items()
                         if any(p.rel <= c + 1e-12 for p in pts)}
            assert set(winners) == {m for m, a in reachable.items() if a == max(reachable.values())}
        assert best == reachable  # accuracies at the band's last budget


def test_report_overlays_the_compared_studies(studies, tmp_path):
    html = build_report(studies["ssl"], tmp_path, studies["storage"],
                        compare=[studies["l1"], studies["dense"]]).read_text()
    assert "Methods compared" in html
    for name in ("l1", "dense"):
        assert f'<td class="mono">{name}</td>' in html
    plain = build_report(studies["ssl"], tmp_path / "plain", studies["storage"]).read_text()
    assert "Methods compared" not in plain
    assert html.count("<svg") == plain.count("<svg") + 1  # the overlay figure


def test_cli_report_compare_and_unknown_study(studies, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "--study", "ssl", "--storage", studies["storage"], "--out", str(out),
                 "--compare", "l1"]) == 0
    assert "Methods compared" in (out / "report.html").read_text()
    assert main(["report", "--study", "ssl", "--storage", studies["storage"], "--compare", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_common_dense_prices_retimed_studies_against_one_dense_time_and_leaves_the_others(tmp_path):
    """bench/compare.py's pricing, on the saved pre-record study (tests/data/study_v1.db): the SSL
    study has a final re-timing of its dense net, the L1 study has none."""
    db = tmp_path / "v1.db"
    shutil.copy(Path(__file__).parent / "data" / "study_v1.db", db)
    url = f"sqlite:///{db}"
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    ssl = optuna.load_study(study_name=next(n for n in names if not n.endswith("l1")), storage=url)
    l1 = optuna.load_study(study_name=next(n for n in names if n.endswith("l1")), storage=url)
    final = ssl.user_attrs[FINAL_DENSE]["x86_cpu"]["tvm"]
    own, _ = summarise([ssl, l1], "x86_cpu")
    common, _ = summarise([ssl, l1], "x86_cpu", common_dense=True)
    assert all(p.cost_dense == final for p in common[0].points)
    assert {p.trial: p.cost for p in common[0].points} == {p.trial: p.cost for p in own[0].points}
    assert [(p.cost, p.cost_dense) for p in common[1].points] == [(p.cost, p.cost_dense) for p in own[1].points]
