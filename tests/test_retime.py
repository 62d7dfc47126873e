"""Multi-fidelity re-timing on a real tiny study kept in a ``journal:`` file: ``hwssl search``
(cheap tuning), ``hwssl retime`` (a larger budget for the Pareto trials and the dense net), then
``hwssl report`` -- all through the same journal storage."""

from __future__ import annotations

import csv

import pytest

from hwssl.cli import main
from hwssl.results import pareto_frame, trial_records
from hwssl.storage import load_study

from conftest import TINY_SPACE
from deploy_support import fast_cpu_profile

STUDY = "journal-retime"


@pytest.fixture
def journal_study(tmp_path):
    root = tmp_path
    space = root / "tiny.toml"
    space.write_text(TINY_SPACE)
    profile = fast_cpu_profile(root)
    url = f"journal:{root / 'study.log'}"
    rc = main(["search", "--space", str(space), "--profile", str(profile), "--storage", url, "--study", STUDY,
               "--trials", "2", "--no-tune", "--no-final-tune", "--no-report", "--quiet",
               "--artifacts", str(root / "artifacts")])
    assert rc == 0
    return {"url": url, "profile": profile, "root": root}


def test_search_retime_and_report_share_a_journal_storage(journal_study, capsys):
    url = journal_study["url"]
    study = load_study(STUDY, url)
    before = {t.number: t.record for t in trial_records(study)}
    assert len(before) == 2 and not any(r.is_final("cpu_test") for r in before.values())
    front = [int(n) for n in pareto_frame(study, "cpu_test")["trial"]]

    assert main(["retime", "--study", STUDY, "--storage", url, "--profile", str(journal_study["profile"]),
                 "--trials-per-task", "1"]) == 0
    assert f"re-timed the Pareto-optimal trials of {STUDY!r}" in capsys.readouterr().out

    after = {t.number: t.record for t in trial_records(load_study(STUDY, url))}
    for number, record in after.items():
        assert record.is_final("cpu_test") == (number in front)
        assert record.cheap_latency("cpu_test").to_dict() == before[number].cheap_latency("cpu_test").to_dict()
        if number in front:
            final, dense = record.latency("cpu_test"), record.dense_latency("cpu_test")
            assert final.tuned and final.extra["trials_per_task"] == 1 and final.tvm > 0
            assert dense.tuned and dense.extra["trials_per_task"] == 1  # the dense net re-timed with the same budget
            assert record.speedup("cpu_test") == pytest.approx(dense.tvm / final.tvm)
        else:
            assert record.latency("cpu_test") is record.cheap_latency("cpu_test") or \
                record.latency("cpu_test").to_dict() == record.cheap_latency("cpu_test").to_dict()

    out = journal_study["root"] / "report"
    assert main(["report", "--study", STUDY, "--storage", url, "--out", str(out)]) == 0
    rows = {int(r["trial"]): r for r in csv.DictReader((out / "trials.csv").open())}
    for number, record in after.items():
        assert float(rows[number]["tvm_ms:cpu_test"]) == pytest.approx(record.latency("cpu_test").tvm, rel=1e-9)
    assert STUDY in (out / "report.html").read_text()


def test_retime_of_a_study_without_profiles_says_so(tmp_path, capsys):
    import optuna

    from hwssl.storage import open_storage
    url = f"journal:{tmp_path / 'p.log'}"
    optuna.create_study(study_name="plain", storage=open_storage(url, create=True))
    assert main(["retime", "--study", "plain", "--storage", url]) == 2
    assert "no hardware profile to re-time on" in capsys.readouterr().err
