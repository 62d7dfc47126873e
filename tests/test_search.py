"""The search: a tiny real study, crash-and-resume with SIGKILL, and two concurrent workers."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from hwssl.config import load_search_space
from hwssl.record import TrialRecord
from hwssl.results import pareto_frame, trials_frame
from hwssl.search import SearchError, SearchOptions, run_search


def _search_cmd(space, storage, study, *extra):
    return [sys.executable, "-m", "hwssl.cli", "search", "--space", str(space), "--storage", storage,
            "--study", study, "--no-profile", "--quiet", "--heartbeat-interval", "1", "--grace-period", "3", "--no-report", *extra]


def test_tiny_study_stores_every_field_and_a_front(tiny_space_file, tmp_path):
    space = load_search_space(tiny_space_file)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    opts = SearchOptions(space=space, storage=storage, study_name="tiny", trials=3, artifacts=str(tmp_path / "a"),
                         quiet=True)
    study = run_search(opts)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for trial in done:
        result = trial.user_attrs["result"]
        assert TrialRecord.from_dict(result).to_dict() == result  # stored in the record's current layout
        assert result["strengths"] == trial.user_attrs["strengths"] and result["method"] == "ssl"
        assert result["max_abs_diff_compacted"] <= 1e-4 and result["flops"] <= result["flops_dense"]
        assert trial.values == [result["accuracy"], result["flops"]]
        assert (tmp_path / "a" / "tiny" / f"trial-{trial.number:04d}" / "weights.pt").exists()
    assert study.user_attrs["objectives"] == ["accuracy", "macs"]
    front = pareto_frame(study)
    assert 1 <= len(front) <= 3
    assert len(trials_frame(study)) == 3

    # a second run without --resume refuses to clobber the study; with resume it reaches the new target
    with pytest.raises(SearchError, match="--resume"):
        run_search(opts)
    opts.resume, opts.trials = True, 4
    assert len(run_search(opts).get_trials(states=(TrialState.COMPLETE,))) == 4


def test_resumed_study_proposes_new_parameters_instead_of_replaying_its_first_trials(tiny_space_file, tmp_path):
    space = load_search_space(tiny_space_file)
    opts = SearchOptions(space=space, storage=f"sqlite:///{tmp_path / 'r.db'}", study_name="r", trials=1,
                         sampler="random", artifacts=str(tmp_path / "a"), quiet=True)
    run_search(opts)
    opts.resume, opts.trials = True, 2
    first, second = run_search(opts).get_trials(states=(TrialState.COMPLETE,))
    assert first.params != second.params


def test_sigkilled_worker_loses_no_finished_trial_and_its_running_trial_is_retried(tiny_space_file, tmp_path):
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    cmd = _search_cmd(tiny_space_file, storage, "kill", "--trials", "3", "--set", "train.ssl_epochs=6",
                      "--artifacts", str(tmp_path / "a"))
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        before = None
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                study = optuna.load_study(study_name="kill", storage=storage)
            except KeyError:
                continue
            trials = study.get_trials()
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if complete and running and running[0].params:  # params are sampled just after the trial starts
                before = {t.number: (t.values, t.user_attrs["result"]["accuracy"]) for t in complete}
                killed = running[0].number
                killed_params = running[0].params
                break
        assert before is not None, "never saw a complete and a running trial"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(4)  # past the grace period: the dead worker's heartbeat is stale
    resumed = subprocess.run(cmd + ["--resume"], env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="kill", storage=storage)
    by_number = {t.number: t for t in study.get_trials()}
    for number, (values, acc) in before.items():
        assert by_number[number].state == TrialState.COMPLETE
        assert by_number[number].values == values and by_number[number].user_attrs["result"]["accuracy"] == acc
    assert by_number[killed].state == TrialState.FAIL
    retried = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == by_number[killed]._trial_id
               or t.system_attrs.get("retry_history")]
    assert retried and retried[0].params == killed_params and retried[0].state == TrialState.COMPLETE
    assert len([t for t in by_number.values() if t.state == TrialState.COMPLETE]) == 3


def test_two_workers_share_one_study_without_collisions(tiny_space_file, tmp_path):
    storage = f"sqlite:///{tmp_path / 'two.db'}"
    cmd = _search_cmd(tiny_space_file, storage, "two", "--trials", "4", "--resume",
                      "--artifacts", str(tmp_path / "a"))
    workers = [subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()[-2000:]
    study = optuna.load_study(study_name="two", storage=storage)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 4
    assert all("result" in t.user_attrs for t in complete)


@pytest.mark.skipif(not os.environ.get("HWSSL_TEST_POSTGRES_URL"),
                    reason="set HWSSL_TEST_POSTGRES_URL (postgresql://...) to run against a real PostgreSQL")
def test_postgresql_storage_runs_a_study(tiny_space_file, tmp_path):
    space = load_search_space(tiny_space_file)
    name = f"pg-{os.getpid()}-{int(time.time())}"
    opts = SearchOptions(space=space, storage=os.environ["HWSSL_TEST_POSTGRES_URL"], study_name=name, trials=2,
                         artifacts=str(tmp_path / "a"), quiet=True)
    study = run_search(opts)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


BUDGET_SPACE = """
name = "tiny_budget"
[model]
name = "lenet"
[data]
name = "mnist5k"
train_subset = 600
val_subset = 200
test_subset = 200
[train]
batch_size = 32
dense_epochs = 2
dense_lr = 0.02
ssl_epochs = 4
ssl_lr = 0.02
recover_epochs = 1
recover_lr = 0.002
[ssl]
check_every = 2
latency_weighted = true
[search]
trials = 2
sampler = "random"
mode = "budget"
[search.budget]
target = { low = 0.3, high = 0.7, log = false }
[search.budget.mix."filter"]
low = 0.1
high = 0.5
[search.budget.mix."channel"]
low = 0.1
high = 0.5
"""


def test_budget_mode_trials_sample_a_target_and_a_mix(tmp_path):
    path = tmp_path / "tiny_budget.toml"
    path.write_text(BUDGET_SPACE)
    opts = SearchOptions(space=load_search_space(path), storage=f"sqlite:///{tmp_path / 's.db'}", trials=2,
                         artifacts=str(tmp_path / "a"), quiet=True)
    study = run_search(opts)
    assert study.user_attrs["search_mode"] == "budget"
    assert study.user_attrs["budget_ranges"]["target"]["low"] == 0.3
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2
    for trial in done:
        result = trial.user_attrs["result"]
        target = trial.params["target"]
        assert 0.3 <= target <= 0.7 and trial.user_attrs["target"] == target == result["target"]
        assert set(result["strengths"]) == {"filter", "channel"}
        assert result["predicted_ratio"] <= target and result["budget"]["reached"]
        assert result["predicted"] == result["flops"] and result["oracle"] == "macs"
    frame = trials_frame(study)
    assert frame["target"].tolist() == [t.params["target"] for t in done]
    assert frame["reached_ratio"].tolist() == [t.user_attrs["result"]["predicted_ratio"] for t in done]
    assert frame["predicted"].tolist() == frame["macs"].tolist() and "path_of" not in frame


def test_budget_search_with_the_latency_oracle_prices_in_ms_from_the_first_trial(tmp_path, capsys):
    """End to end on a real (untuned) profile: trial 0 finds no latency model data, measures the dense
    net first to seed it (saying so in its record) and prices in ms; trial 1 finds the model fitted."""
    from deploy_support import fast_cpu_profile
    from hwssl.config.profile import load_profile

    path = tmp_path / "tiny_budget.toml"
    # latency does not shrink like MACs (each kernel keeps its dispatch cost), so the targets are looser;
    # no latency weights: a model fitted on two nets can price a group's marginal saving at 0 (no push)
    text = BUDGET_SPACE.replace("latency_weighted = true", 'oracle = "latency"')
    path.write_text(text.replace("target = { low = 0.3, high = 0.7, log = false }",
                                 "target = { low = 0.6, high = 0.9, log = false }"))
    profile = load_profile(fast_cpu_profile(tmp_path, threads=1))
    opts = SearchOptions(space=load_search_space(path), storage=f"sqlite:///{tmp_path / 's.db'}", trials=2,
                         artifacts=str(tmp_path / "a"), profiles=[profile], tune=False)
    study = run_search(opts)
    first, second = [t.user_attrs["result"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert first["oracle"] == "latency" and "the dense net was measured first" in first["oracle_note"]
    assert "oracle_note" not in second
    for rec in (first, second):
        assert rec["oracle_units"] == "ms" and rec["oracle_profile"] == profile.name
        assert rec["predicted_ms"] == rec["predicted"]
        assert rec["budget"]["reached"], (rec["target"], rec["budget"]["final_ratio"])
        assert rec["predicted_ratio"] <= rec["target"]
        assert rec["budget"]["predicted_dense"] != rec["flops_dense"]   # ms, not MACs
    err = capsys.readouterr().err
    assert "has no data yet" not in err
    line = next(x for x in err.splitlines() if x.startswith("[trial 1] done"))
    assert f"target {second['target']:.3g} -> predicted {second['predicted']:.4g} ms" in line
    frame = trials_frame(study)
    assert frame["predicted_ms"].iloc[1] == second["predicted_ms"] and frame["oracle"].tolist() == ["latency"] * 2


def test_path_mode_turns_one_ssl_run_into_several_trials(tmp_path):
    path = tmp_path / "tiny_path.toml"
    text = BUDGET_SPACE.replace('mode = "budget"', 'mode = "path"').replace(
        "target = { low = 0.3, high = 0.7, log = false }", "target = { low = 0.3, high = 0.7 }\npath_points = 3")
    path.write_text(text)
    space = load_search_space(path)
    assert space.search.path_targets() == [0.7, 0.5, 0.3]
    opts = SearchOptions(space=space, storage=f"sqlite:///{tmp_path / 's.db'}", trials=3,
                         artifacts=str(tmp_path / "a"), quiet=True)
    study = run_search(opts)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3                                  # one SSL run, three candidates
    first = done[0]
    assert [t.user_attrs["target"] for t in done] == [0.7, 0.5, 0.3]
    assert all(t.user_attrs["path_of"] == first.number for t in done[1:])
    assert all(t.params == first.params for t in done)
    results = [t.user_attrs["result"] for t in done]
    assert len({r["arch_key"] for r in results}) == 3
    for t, r in zip(done, results):
        assert r["predicted_ratio"] <= r["target"] and t.values == [r["accuracy"], r["flops"]]
        assert (tmp_path / "a" / r["saved_to"] / "weights.pt").exists()
    assert len(pareto_frame(study)) >= 1
    from hwssl.report import build_report
    build_report(study, tmp_path / "report", opts.storage)
    csv = (tmp_path / "report" / "trials.csv").read_text().splitlines()
    assert len(csv) == 1 + len(done)                      # every snapshot is a row of the report
    frame = trials_frame(study)
    assert frame["path_of"].tolist()[1:] == [first.number] * 2 and frame["target"].tolist() == [0.7, 0.5, 0.3]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<th class=\"num\">path of</th>" in html and f"#{first.number}</td>" in html


def test_ctrl_c_on_a_journal_storage_keeps_finished_trials_and_exits_130(tiny_space_file, tmp_path):
    """SIGINT (Ctrl-C) mid-search: the finished trials are read back from the journal file and
    printed, and the exit status says 'interrupted' (the journal used to be opened as a URL)."""
    from hwssl.storage import StudyNotFound, load_study

    storage = f"journal:{tmp_path / 'j.log'}"
    cmd = _search_cmd(tiny_space_file, storage, "ctrl-c", "--trials", "3", "--set", "train.ssl_epochs=6",
                      "--artifacts", str(tmp_path / "a"))
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.time() + 240, False
        while time.time() < deadline and not seen:
            time.sleep(0.5)
            try:
                seen = bool(load_study("ctrl-c", storage).get_trials(states=(TrialState.COMPLETE,)))
            except (StudyNotFound, Exception):
                continue
        assert seen, "never saw a complete trial"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert f"stored in {storage}" in out and "Traceback" not in err
    assert "interrupted: finished trials are saved" in err
    assert load_study("ctrl-c", storage).get_trials(states=(TrialState.COMPLETE,))


def _dashboard_get(app, path: str) -> dict:
    """One GET through optuna-dashboard's WSGI app (the same app `optuna-dashboard URL` serves)."""
    import json
    from wsgiref.util import setup_testing_defaults

    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_shows_the_trials_and_named_objectives_of_a_study(tiny_space_file, tmp_path):
    from optuna_dashboard import wsgi

    space = load_search_space(tiny_space_file)
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    opts = SearchOptions(space=space, storage=storage, study_name="dash", trials=2, artifacts=str(tmp_path / "a"),
                         quiet=True)
    study = run_search(opts)
    assert study.metric_names == ["val_accuracy", "macs"]

    app = wsgi(storage)
    [summary] = _dashboard_get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "dash" and summary["directions"] == ["maximize", "minimize"]
    detail = _dashboard_get(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["val_accuracy", "macs"]
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(complete) == 2
    by_number = {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    for t in complete:
        assert t["values"] == by_number[t["number"]].values
    assert detail["best_trials"], "the Pareto front is shown"


def test_resuming_a_study_without_metric_names_names_them(tiny_space_file, tmp_path):
    from hwssl.search import open_study

    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(storage=storage, study_name="old", directions=["maximize", "minimize"])
    assert old.metric_names is None
    opts = SearchOptions(space=load_search_space(tiny_space_file), storage=storage, study_name="old", resume=True,
                         artifacts=str(tmp_path / "a"), quiet=True)
    assert open_study(opts).metric_names == ["val_accuracy", "macs"]
    assert optuna.load_study(study_name="old", storage=storage).metric_names == ["val_accuracy", "macs"]
