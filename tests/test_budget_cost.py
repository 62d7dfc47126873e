"""ssl.oracle = "latency": budget-targeted SSL priced by a profile's latency model, fitted on real
(untuned) TVM measurements of two LeNets; the dense net's measurement that seeds a model with no
data before an SSL run prices; the MAC fallback of ssl_oracle; the one-line refusal without a
profile."""

from __future__ import annotations

import pytest
import torch

from deploy_support import fast_cpu_profile
from hwssl.budget import spec_macs
from hwssl.budget.cost import OracleError, check_oracle, seed_trials_per_task, ssl_oracle, start_oracle
from hwssl.compact import arch_key, compacted_spec
from hwssl.config import load_search_space
from hwssl.config.profile import load_profile
from hwssl.evaluate import prepare, ssl_sparsify
from hwssl.latency import load_model, observe
from hwssl.models import build_model
from hwssl.settings import MeasureSettings

TOLERANCE = 0.05   # the budget controller's: a met target is met within 5 % of the dense predicted cost
LATENCY = ["model.width=1.0", "train.ssl_epochs=4", "ssl.check_every=2", "ssl.oracle=latency"]
UNTUNED = MeasureSettings(tune=False)


@pytest.fixture
def profile(tmp_path):
    return load_profile(fast_cpu_profile(tmp_path, threads=1))


def measure_two_lenets(start, profile) -> None:
    """The dense LeNet and a half-width one, built and timed untuned, fed to the profile's model."""
    from hwssl.latency.record import measure_with_model

    dense = start.spec
    half = compacted_spec(_halved(start.dense_model()))
    for spec in (dense, half):
        lat = measure_with_model(build_model(spec).eval(), torch.randn(1, *spec["input"]), profile, spec=spec,
                                 arch_key=arch_key(spec), tune=False)
        assert lat["tvm"] > 0


def _halved(model):
    """The dense model with the second half of every conv's filters zeroed (a real sparse pattern)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight[m.out_channels // 2:] = 0
                if m.bias is not None:
                    m.bias[m.out_channels // 2:] = 0
    return model


def test_budget_targeted_ssl_with_the_latency_oracle_meets_its_target_in_ms(tiny_space_file, profile):
    space = load_search_space(tiny_space_file, LATENCY + ["filter=0.3", "channel=0.3", "filter.conv2=0.3"])
    start = prepare(space).for_profiles([profile], UNTUNED)
    measure_two_lenets(start, profile)
    model = load_model(profile, tuned=False)
    assert model.fitted and model.points == 2
    _, phase = ssl_sparsify(start, dict(space.strengths), target=0.6)
    rec = phase.record
    assert rec["oracle"] == "latency" and rec["oracle_units"] == "ms" and rec["oracle_profile"] == profile.name
    assert rec["target"] == 0.6 and rec["budget"]["reached"]
    assert 0.6 - TOLERANCE <= rec["predicted_ratio"] <= 0.6
    # the costs are the model's milliseconds: dense and reached, as the model prices those specs now
    dense_ms = model.predict(start.spec)
    assert rec["budget"]["predicted_dense"] == pytest.approx(dense_ms)
    assert rec["predicted_ms"] == rec["predicted"] == pytest.approx(rec["predicted_ratio"] * dense_ms, rel=1e-4)
    assert rec["predicted_ms"] < dense_ms


def test_latency_oracle_without_data_prices_with_macs_and_says_so(tiny_space_file, profile, capsys):
    space = load_search_space(tiny_space_file, LATENCY)
    start = prepare(space).for_profiles([profile], UNTUNED)
    cost = ssl_oracle(space, start.profiles, tune=False)
    err = capsys.readouterr().err
    assert cost.name == "macs" and cost.units == "MACs" and "has no data yet" in cost.note
    assert err.count("\n") == 1 and err.startswith("warning: ") and profile.name in err
    assert cost.record({"predicted": 5.0}) == {"oracle": "macs", "oracle_units": "MACs",
                                               "oracle_profile": profile.name, "oracle_note": cost.note}
    assert cost.predict is spec_macs
    # one measurement later, the same space prices in ms
    observe(profile, start.spec, {"tvm": 0.2, "tuned": False}, arch_key=arch_key(start.spec))
    assert ssl_oracle(space, start.profiles, tune=False).units == "ms"


def test_a_cold_latency_model_is_seeded_with_the_dense_net_before_an_ssl_run_prices(tiny_space_file, profile):
    space = load_search_space(tiny_space_file, LATENCY)
    start = prepare(space).for_profiles([profile], UNTUNED)
    cost = start_oracle(start)
    model = load_model(profile, tuned=False)
    assert cost.name == "latency" and cost.units == "ms" and "the dense net was measured first" in cost.note
    assert model.fitted and model.points == 1
    assert cost.predict(start.spec) == pytest.approx(model.predict(start.spec))
    assert cost.predict(compacted_spec(_halved(start.dense_model()))) < cost.predict(start.spec)
    again = start_oracle(start)              # a model with data: nothing measured again, no note
    assert again.note == "" and load_model(profile, tuned=False).points == 1


def test_a_tuned_run_seeds_its_model_with_the_full_tuning_budget_of_the_front(tiny_space_file, tmp_path):
    """The seed sets the scale of every target, so it is tuned like the re-timed front, not with the
    cheap per-candidate budget (whose luck once priced a dense LeNet conv2 at 7.5x its tuned time)."""
    profile = load_profile(fast_cpu_profile(tmp_path, extra="trials_per_task = 3\nfull_trials_per_task = 17"))
    start = prepare(load_search_space(tiny_space_file, LATENCY))
    assert seed_trials_per_task(start.for_profiles([profile], MeasureSettings(tune=True)), profile) == 17
    cheap = start.for_profiles([profile], MeasureSettings(tune=True, trials_per_task=3))
    assert seed_trials_per_task(cheap, profile) == 17
    untuned = start.for_profiles([profile], UNTUNED)
    assert seed_trials_per_task(untuned, profile) == untuned.trials_per_task


def test_latency_oracle_without_a_profile_is_a_one_line_error(tiny_space_file):
    space = load_search_space(tiny_space_file, LATENCY + ["ssl.target=0.5"])
    with pytest.raises(OracleError) as err:
        check_oracle(space, [])
    assert "\n" not in str(err.value) and "ssl.oracle" in str(err.value) and "--profile" in str(err.value)
    plain = load_search_space(tiny_space_file, ["ssl.oracle=latency"])   # plain SSL never prices a spec
    check_oracle(plain, [])


def test_cli_evaluate_refuses_the_latency_oracle_without_a_profile(tiny_space_file, capsys):
    from hwssl.cli import main

    assert main(["evaluate", "--space", str(tiny_space_file), "--set", "ssl.oracle=latency",
                 "--set", "ssl.target=0.5", "--set", "filter=0.3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--profile" in err
