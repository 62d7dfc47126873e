"""The HTML report, rendered from real studies.

* a tiny real search without a profile (cost axis = MACs), with a study name and
  space description full of HTML metacharacters;
* a study with two latency-shaped "profiles" whose numbers are real PyTorch
  timings of the tiny search's compacted models on this machine (TVM compiles
  would cost seconds per model), plus a failed trial and constraints.
"""

from __future__ import annotations

import html
import re
import shlex
import statistics
import subprocess
import sys
import time

import markupsafe
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from hwssl.compact import load_compacted
from hwssl.config import load_search_space
from hwssl.evaluate import dense_checkpoint, dense_spec, load_space_data
from hwssl.models import build_model
from hwssl.pareto import best_under, pareto_indices
from hwssl.report import build_report
from hwssl.report import fmt
from hwssl.report.collect import collect, export_command
from hwssl.search import SearchOptions, run_search

from conftest import TINY_SPACE

NASTY = "tiny <script>alert('x')</script> & co"
DESCRIPTION = "LeNet <b>bold</b> & <script>evil()</script> description"
PROFILES = {"torch_b1": 1, "torch_b8": 8}  # profile -> batch size, timed on 1 thread


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real 3-trial search on the tiny space (no profile), in its own storage and cache."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root / "cache"))
        space_file = root / "tiny.toml"
        space_file.write_text(TINY_SPACE.replace('name = "tiny"', f'name = "tiny<&>"\ndescription = "{DESCRIPTION}"')
                              .replace("high = 1.0", "high = 4.0"))
        space = load_search_space(space_file)
        storage = f"sqlite:///{root / 'r.db'}"
        study = run_search(SearchOptions(space=space, storage=storage, study_name=NASTY, trials=3,
                                         artifacts=str(root / "a"), quiet=True))
        splits = load_space_data(space)
        dense = build_model(dense_spec(space, splits))
        dense.load_state_dict(dense_checkpoint(space, splits)[0]["state"])
        example = splits.val.tensors[0][:1]
    return {"root": root, "storage": storage, "study": study, "space": space, "dense": dense.eval(),
            "example": example}


def _time_ms(model: torch.nn.Module, x: torch.Tensor, batch: int, runs: int = 20) -> float:
    """Median wall time of one forward pass of a ``batch``-image batch (PyTorch eager, 1 thread), really
    measured. (Two threads on this 2-core machine gave erratic ~80 ms passes, so the profiles vary the batch.)"""
    xb = x.repeat(batch, 1, 1, 1)
    with torch.no_grad():
        for _ in range(3):
            model(xb)
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(xb)
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def _per_layer_ms(model: torch.nn.Module, x: torch.Tensor) -> list[dict]:
    """Forward-hook timing of each conv/linear module (real measurements, 1 thread)."""
    spans: dict[str, list[float]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) or type(mod).__name__ == "CompactConv2d":
            spans[name] = []
            hooks.append(mod.register_forward_pre_hook(lambda _m, _i, n=name: spans[n].append(-time.perf_counter())))
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, _o, n=name: spans[n].__setitem__(-1, spans[n][-1] + time.perf_counter())))
    with torch.no_grad():
        for _ in range(8):
            model(x)
    for h in hooks:
        h.remove()
    return [{"name": n, "ms": statistics.median(v[3:]) * 1e3} for n, v in spans.items() if v]


@pytest.fixture(scope="module")
def timed(searched):
    """A two-profile study whose latencies are PyTorch timings of the searched models, measured here."""
    storage, src, x = searched["storage"], searched["study"], searched["example"]
    study = optuna.create_study(study_name="timed <two> & profiles", storage=storage,
                                directions=["maximize", "minimize", "minimize"])
    for key, value in src.user_attrs.items():
        study.set_user_attr(key, value)
    study.set_user_attr("objectives", ["accuracy"] + [f"latency_ms:{p}" for p in PROFILES])
    study.set_user_attr("profiles", [{"name": p, "path": "", "tuned": False,
                                      "target": f"PyTorch eager, 1 thread, batch {b} (test stand-in for a TVM target)"}
                                     for p, b in PROFILES.items()])
    dense_ms = {p: _time_ms(searched["dense"], x, b) for p, b in PROFILES.items()}
    for trial in src.get_trials(states=(TrialState.COMPLETE,)):
        result = dict(trial.user_attrs["result"])
        model = load_compacted(result["saved_to"])
        latency, dense = {}, {}
        for p, b in PROFILES.items():
            ms = _time_ms(model, x, b)
            latency[p] = {"tvm": ms, "torch": ms, "tuned": False, "target": p}
            dense[p] = {"tvm": dense_ms[p], "torch": dense_ms[p], "tuned": False, "target": p}
        latency["torch_b1"]["per_layer"] = _per_layer_ms(model, x)
        latency["torch_b8"]["per_layer"] = []  # present but empty: must render as "no breakdown"
        result["latency_ms"], result["latency_ms_dense"] = latency, dense
        study.add_trial(optuna.create_trial(
            params=trial.params, distributions=trial.distributions,
            values=[result["accuracy"]] + [latency[p]["tvm"] for p in PROFILES],
            user_attrs={"strengths": trial.user_attrs["strengths"], "result": result}))
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={
        "fail_reason": "RuntimeError: <script>alert(1)</script> & broken", "strengths": {"filter.conv2": 0.5}}))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    budget = statistics.median(t.values[1] for t in done)
    study.set_user_attr("constraints", {"min_accuracy": 0.1, "max_latency_ms": {"torch_b1": budget}})
    return study


def _sections(text: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', text))


def _commands(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<pre class="cmd">(.*?)</pre>', text, re.S)]


def test_report_of_a_real_search_escapes_and_lists_every_trial(searched, tmp_path):
    study = searched["study"]
    path = build_report(study, tmp_path / "out", searched["storage"])
    text = path.read_text()

    assert _sections(text) >= {"summary", "deploy", "fronts", "hypervolume", "pareto", "candidates", "all-trials",
                               "failed"}
    # one front (MACs), the hypervolume and one sparsity figure per candidate, all inline SVG
    front = collect(study, searched["storage"]).fronts[0]
    assert text.count("<svg") == 2 + len(set(front.front) | {front.recommended})
    assert "<script" not in text.lower() and "<b>bold" not in text
    assert str(markupsafe.escape(NASTY)) in text and str(markupsafe.escape(DESCRIPTION)) in text
    # the export command survives escaping and shell-quoting: it names the real study
    (cmd,) = _commands(text)
    argv = shlex.split(cmd)
    assert argv[:4] == ["hwssl", "export", "--study", NASTY] and argv[argv.index("--trial") + 1] == str(front.recommended)
    assert cmd == export_command(NASTY, searched["storage"], front.recommended, None)
    # the Pareto table holds exactly the non-dominated trials
    done = study.get_trials(states=(TrialState.COMPLETE,))
    acc = [t.values[0] for t in done]
    macs = [t.values[1] for t in done]
    expected = sorted(done[i].number for i in pareto_indices(acc, macs))
    table = text.split('id="pareto"')[1].split("</section>")[0]
    assert sorted(int(n) for n in re.findall(r'<a href="#trial-(\d+)">', table)) == expected
    csv = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(csv) == len(study.get_trials()) == 3 and sorted(csv["trial"]) == [0, 1, 2]


def test_report_with_two_profiles_constraints_failures_and_per_layer_latency(timed, searched, tmp_path):
    path = build_report(timed, tmp_path / "out", searched["storage"])
    text = path.read_text()
    assert _sections(text) >= {"summary", "deploy", "fronts", "ranks", "hypervolume", "pareto", "candidates",
                               "failed"}
    data = collect(timed, searched["storage"])
    n_candidates = len(data.candidates)
    assert text.count("<svg") == 2 + 1 + 1 + n_candidates  # two fronts, ranks, hypervolume, candidates
    # untuned latencies are flagged wherever latencies appear
    assert text.count("UNTUNED") >= 2 + 2 * 2 and "Untuned latencies" in text
    # constraints: the recommendation on torch_b1 is the fastest trial meeting both constraints
    done = timed.get_trials(states=(TrialState.COMPLETE,))
    acc = [t.values[0] for t in done]
    lat = [t.values[1] for t in done]
    budget = timed.user_attrs["constraints"]["max_latency_ms"]["torch_b1"]
    want = done[best_under(acc, lat, min_accuracy=0.1, max_cost=budget)].number
    front = next(f for f in data.fronts if f.key == "torch_b1")
    assert front.recommended == want and front.constraints_met
    commands = _commands(text)
    assert len(commands) == 2 and f"--trial {want} --profile torch_b1" in commands[0]
    # per-layer latency: a table for torch_b1, a graceful note for the empty torch_b8 breakdown
    assert text.count("Per-layer latency on torch_b1") == n_candidates
    assert "No per-layer latency breakdown recorded on torch_b8" in text
    # failures, escaped
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt; &amp; broken" in text
    assert "<script" not in text.lower()
    csv = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(csv) == len(timed.get_trials()) == 4 and (csv["state"] == "FAIL").sum() == 1
    assert {"tvm_ms:torch_b1", "tvm_ms:torch_b8"} <= set(csv.columns)


def test_cli_report_writes_both_files_and_rejects_unknown_studies(searched, tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "hwssl.cli", "report", "--study", NASTY, "--storage",
                          searched["storage"], "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (out / "report.html").is_file() and (out / "trials.csv").is_file()
    assert str(out / "report.html") in run.stdout

    from hwssl.cli import main
    assert main(["report", "--study", "nope", "--storage", searched["storage"], "--out", str(tmp_path / "x")]) == 2
    missing = tmp_path / "missing.db"
    assert main(["report", "--study", "x", "--storage", f"sqlite:///{missing}"]) == 2
    assert not missing.exists()  # never creates an empty database by accident


def test_report_of_a_study_without_complete_trials(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="empty & <new>")
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "ValueError: bad"}))
    text = build_report(study, tmp_path, "postgresql://user:secret@db.example/hwssl").read_text()
    assert "No complete trial yet" in text and "ValueError: bad" in text
    assert "secret" not in text  # a storage password is never written into a report
    assert "empty &amp; &lt;new&gt;" in text


def test_number_formats():
    assert fmt.pct(0.8834) == "88.34 %" and fmt.pct(None) == fmt.MISSING and fmt.pct(float("nan")) == fmt.MISSING
    assert [fmt.sig3(v) for v in (0.04123, 0.4123, 4.123, 41.23, 412.3, 4123)] == \
        ["0.0412", "0.412", "4.12", "41.2", "412", "4,123"]
    assert fmt.count(646500) == "646.5 k" and fmt.count(40_960_000) == "40.96 M" and fmt.count(512) == "512"
    assert fmt.ratio(1.234) == "1.23×" and fmt.strength(0.0) == "off" and fmt.ms(0.41) == "0.410 ms"
    assert fmt.seconds(42) == "42 s" and fmt.seconds(750) == "12.5 min"


def _hv_only_view(hv: list[float]):
    from hwssl.report.collect import FrontView
    n = len(hv)
    return FrontView(key="macs", profile=None, trials=list(range(n)), acc=[0.9] * n, acc_test=[None] * n,
                     cost=[1.0] * n, front=[0], knee=None, picks=[], recommended=None, recommended_note="",
                     constraints_met=False, min_accuracy=None, max_cost=None, dense_acc=None, dense_cost=None,
                     dense_note="", hv=hv)


@pytest.mark.parametrize("hv", [[0.0222, 0.0245, 0.0263, 0.0282],          # SSL vs L1 on LeNet: 2.2-2.8 %
                                [0.0201, 0.0203, 0.0207, 0.0208, 0.0212],  # a front that barely moves
                                [0.1, 0.5, 0.7]])
def test_hypervolume_axis_tick_labels_are_distinct_for_a_narrow_range(hv: list[float]) -> None:
    from hwssl.report.plots import hypervolume_svg
    svg = hypervolume_svg([_hv_only_view(hv)])
    # the SVG backend writes each text's string as a comment before its glyph paths
    labels = re.findall(r'<g id="ytick_\d+">.*?<!-- (.*?) -->', svg, re.S)
    assert len(labels) >= 3
    assert len(set(labels)) == len(labels), labels
    assert all(label.endswith("%") for label in labels)
