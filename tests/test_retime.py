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

    after_study = load_study(STUDY, url)
    after = {t.number: t.record for t in trial_records(after_study)}
    front_after = [int(n) for n in pareto_frame(after_study, "cpu_test")["trial"]]
    assert all(after[n].is_final("cpu_test") for n in front + front_after)  # one fidelity on the front
    for number, record in after.items():
        assert record.cheap_latency("cpu_test").to_dict() == before[number].cheap_latency("cpu_test").to_dict()
        if record.is_final("cpu_test"):
            final, dense = record.latency("cpu_test"), record.dense_latency("cpu_test")
            assert final.tuned and final.extra["trials_per_task"] == 1 and final.tvm > 0
            assert dense.tuned and dense.extra["trials_per_task"] == 1  # the dense net re-timed with the same budget
            assert record.speedup("cpu_test") == pytest.approx(dense.tvm / final.tvm)
        else:
            assert record.latency("cpu_test") is record.cheap_latency("cpu_test") or \
                record.latency("cpu_test").to_dict() == record.cheap_latency("cpu_test").to_dict()

    # --again times the front afresh although it holds final timings (all in the same minutes)
    samples = {n: after[n].latency("cpu_test").samples for n in front_after}
    assert main(["retime", "--study", STUDY, "--storage", url, "--profile", str(journal_study["profile"]),
                 "--trials-per-task", "1", "--again"]) == 0
    again = {t.number: t.record for t in trial_records(load_study(STUDY, url))}
    assert all(again[n].latency("cpu_test").samples != samples[n] for n in front_after)
    after = again

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


def _planted_study(journal_study, name: str, plants):
    """A copy of the journal study's first and last real trials, with planted cheap TVM timings,
    accuracies and MACs: ``plants`` = ((tvm ms, val accuracy delta, test accuracy delta[, MACs]), ...)
    for A and B. Unless planted, B has more MACs than A, so only the timings decide B's place."""
    import copy

    import optuna

    source = load_study(STUDY, journal_study["url"])
    trials = sorted((t for t in source.get_trials() if t.user_attrs.get("result")), key=lambda t: t.number)
    a, b = trials[0], trials[-1]
    target = optuna.create_study(study_name=name, storage=source._storage, directions=source.directions)
    for key, value in source.user_attrs.items():
        if not key.startswith("final_latency"):
            target.set_user_attr(key, value)
    for n, (trial, (tvm, acc_delta, test_delta, *macs)) in enumerate(zip((a, b), plants)):
        result = copy.deepcopy(trial.user_attrs["result"])
        result["flops"] = macs[0] if macs else 1000 * (n + 1)
        result["accuracy"] = a.user_attrs["result"]["accuracy"] + acc_delta
        result["accuracy_test"] = a.user_attrs["result"]["accuracy_test"] + test_delta
        result["latency_ms"]["cpu_test"]["tvm"] = tvm
        result["latency_ms"]["cpu_test"].pop("cached", None)
        target.add_trial(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions,
            values=[result["accuracy"], result["latency_ms"]["cpu_test"]["tvm"]],
            user_attrs={**trial.user_attrs, "result": result}))
    return target


def test_retime_iterates_until_the_front_holds_final_timings_only(journal_study):
    """Trial B is dominated by A's cheap timing; A's full re-timing is slower than B's cheap one, so B
    joins the front and is re-timed in a second round: no front point keeps a cheap timing.

    The two records are the journal study's real trials; only their cheap TVM timings are planted
    (A 1 ns, B 10 ns, B one point less accurate) so that the order change is certain. Every re-timing
    is a real build and measurement."""
    target = _planted_study(journal_study, "planted", ((1e-6, 0.0, 0.0), (1e-5, -0.01, 0.0)))
    assert [int(n) for n in pareto_frame(target, "cpu_test")["trial"]] == [0]   # B dominated by A's cheap time

    lines: list[str] = []
    from hwssl.config.profile import load_profile
    from hwssl.retime import retime_pareto
    done = retime_pareto(target, [load_profile(journal_study["profile"])], trials_per_task=1,
                         say=lines.append)

    assert done["cpu_test"] == [0, 1]
    assert any("round 2: trials [1] joined the front" in line for line in lines), lines
    records = {t.number: t.record for t in trial_records(target)}
    front = [int(n) for n in pareto_frame(target, "cpu_test")["trial"]]
    assert front and all(records[n].is_final("cpu_test") for n in front)
    assert records[1].latency("cpu_test").tvm > 1e-3   # a real, fully tuned timing replaced the planted one


def test_a_network_with_fewer_macs_hidden_by_its_cheap_timing_is_retimed_in_the_first_round(journal_study):
    """B is dominated by A's cheap timing but has fewer MACs: cheap tuning's luck could be what
    hides it, so it is re-timed with A in the first round (the front against MACs is held at full
    fidelity too), not only if A's re-timing happens to expose it."""
    from hwssl.config.profile import load_profile
    from hwssl.retime import retime_pareto

    study = _planted_study(journal_study, "planted-macs", ((1e-6, 0.0, 0.0, 2000), (1e-5, -0.01, 0.0, 1000)))
    assert [int(n) for n in pareto_frame(study, "cpu_test")["trial"]] == [0]
    assert [int(n) for n in pareto_frame(study, None)["trial"]] == [1, 0]
    lines: list[str] = []
    assert retime_pareto(study, [load_profile(journal_study["profile"])], trials_per_task=1,
                         say=lines.append)["cpu_test"] == [0, 1]
    assert not any("round 2" in line for line in lines), lines
    assert all(t.record.is_final("cpu_test") for t in trial_records(study))


def test_retime_on_test_accuracy_too_retimes_the_test_front(journal_study):
    """B is dominated on validation accuracy but is the more accurate on test: re-timing the fronts of
    both accuracies (what bench/compare.py scores) re-times B in the first round, with A."""
    from hwssl.config.profile import load_profile
    from hwssl.retime import retime_pareto

    plants = ((1e-6, 0.0, 0.0), (1e-5, -0.01, +0.01))
    both = _planted_study(journal_study, "planted-both", plants)
    assert [int(n) for n in pareto_frame(both, "cpu_test", "accuracy_test")["trial"]] == [0, 1]
    profile = load_profile(journal_study["profile"])
    lines: list[str] = []
    assert retime_pareto(both, [profile], trials_per_task=1, say=lines.append,
                         accuracies=("accuracy", "accuracy_test"))["cpu_test"] == [0, 1]
    assert not any("round 2" in line for line in lines), lines
    assert all(t.record.is_final("cpu_test") for t in trial_records(both))


def test_a_front_retimed_in_another_tuning_database_is_retimed_in_this_one_and_only_once_and_the_dense_always(
        journal_study):
    """bench/compare.py re-times every method's front in one shared database: a final timing tuned in
    another database (a method's own) does not count as final there, and one tuned in it does."""
    import dataclasses

    from hwssl.config.profile import load_profile
    from hwssl.retime import retime_pareto

    study = _planted_study(journal_study, "two-databases", ((1e-6, 0.0, 0.0), (1e-5, -0.01, 0.0)))
    own = load_profile(journal_study["profile"])
    shared = dataclasses.replace(own, tuning=dataclasses.replace(own.tuning, database=str(
        journal_study["root"] / "shared-final")))
    assert retime_pareto(study, [own], trials_per_task=1, say=lambda _m: None)["cpu_test"]

    def databases() -> set[str]:
        return {t.record.latency("cpu_test").extra["database"] for t in trial_records(study)
                if t.record.is_final("cpu_test")}

    assert databases() == {str(own.database_dir())}
    for t in trial_records(study):  # each network's fastest of the profile's final_timings timings
        if t.record.is_final("cpu_test"):
            final = t.record.latency("cpu_test").extra
            assert final["final_timings"] == own.timing.final_timings == len(final["tvm_timings_ms"])
            assert t.record.latency("cpu_test").tvm == min(final["tvm_timings_ms"])
    again = retime_pareto(study, [shared], trials_per_task=1, say=lambda _m: None)["cpu_test"]
    front = [int(n) for n in pareto_frame(study, "cpu_test")["trial"]]
    assert again and set(front) <= set(again)
    assert str(shared.database_dir()) in databases()
    assert all(t.record.latency("cpu_test").extra["database"] == str(shared.database_dir())
               for t in trial_records(study) if t.number in front)
    assert (shared.database_dir()).is_dir()  # the shared database was tuned into
    dense_before = study.user_attrs["final_latency_dense"]["cpu_test"]["tvm_samples_ms"]
    assert retime_pareto(study, [shared], trials_per_task=1, say=lambda _m: None)["cpu_test"] == []
    # every speed-up divides by the dense time: it is timed afresh each time, never taken from the cache
    assert study.user_attrs["final_latency_dense"]["cpu_test"]["tvm_samples_ms"] != dense_before
    # again: the front members that hold final timings are timed afresh too (in the same minutes as the dense)
    before = {n: study.user_attrs[f"final_latency:{n}"]["cpu_test"]["tvm_timings_ms"] for n in front}
    assert sorted(retime_pareto(study, [shared], trials_per_task=1, say=lambda _m: None, again=True)["cpu_test"]) \
        == sorted(set(front) | set(int(n) for n in pareto_frame(study, None)["trial"]))
    assert all(study.user_attrs[f"final_latency:{n}"]["cpu_test"]["tvm_timings_ms"] != before[n] for n in front)
