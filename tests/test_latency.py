"""The latency model on real builds: the spec walker against TVM's compiled kernels, a model fitted on
measured LeNet-sized candidates predicting a held-out one, device keying, prediction speed."""

from __future__ import annotations

import collections
import copy
import json
import statistics
import time
from pathlib import Path

import pytest
import torch

from deploy_support import fast_cpu_profile
from hwssl.compact import arch_key
from hwssl.config.profile import load_profile
from hwssl.latency import LatencyModelError, load_model, model_path, observe, predictor, spec_kernels
from hwssl.latency.kernels import from_measured
from hwssl.latency.record import measure_with_model
from hwssl.models import build_model, model_spec
from hwssl.models.layers import canonical_columns

# Held-out accuracy the model must meet on this shared 2-core machine: other processes load it while the
# test runs (load average 8 during development), two timings of the same untuned LeNet taken a minute apart
# differed by up to ~2x, and one run missed a factor of 2 by 0.5 %. So the prediction must be within a
# factor of 3 of the measurement taken in the same test; the ordering check below is the sharper one. The
# held-out net shares most kernel shapes with the measured ones; its one new conv is priced by the
# regression and its measured neighbours. The ±10 % target is checked by bench/latency_model.py on an idle
# machine.
HELD_OUT_FACTOR = 3.0
PREDICT_BUDGET_MS = 10.0


def lenet(c1: int, c2: int, f1: int, columns_every: int | None = None) -> dict:
    """A compacted LeNet spec (width 0.5 input sizes) with the given kept widths; ``columns_every``
    lowers conv2 to the shape columns (c, i, j) with (c + i + j) % columns_every == 0."""
    spec = model_spec("lenet", 1, (28, 28), 10, 0.5)
    layers = spec["layers"]
    layers[0]["out"], layers[2]["in"], layers[2]["out"] = c1, c1, c2
    layers[5]["in"], layers[5]["out"], layers[6]["in"] = c2 * 16, f1, f1
    if columns_every:
        cols = [[c, i, j] for c in range(c1) for i in range(5) for j in range(5) if (c + i + j) % columns_every == 0]
        layers[2]["columns"] = [list(x) for x in canonical_columns(cols)]
    return spec


def compacted_resnet() -> dict:
    """ResNet-20 (width 0.25, 16x16) with removed blocks (with and without a shortcut conv), a channel
    gather with a bias map, and a padded lowered conv with one offset keeping every channel."""
    spec = model_spec("resnet20", 1, (16, 16), 10, 0.25)
    b = spec["stages"][0][1]
    spec["stages"][0][1] = {"removed": True, "stride": 1, "in": b["in"], "out": b["out"], "downsample": False,
                            "const": [b["out"], 1, 1], "relu": True}
    b = spec["stages"][1][0]
    spec["stages"][1][0] = {"removed": True, "stride": 2, "in": b["in"], "out": b["out"], "downsample": True,
                            "const": None, "relu": True}
    b = spec["stages"][1][1]
    b["conv1"].update(in_index=[0, 1, 3, 5, 6], bias_map=[6, 8, 8], out=6)
    b["conv2"]["in"] = 6
    cols = [[c, i, j] for c in range(16) for i in range(3) for j in range(3) if (c + i) % 2 == 0 or (i, j) == (1, 1)]
    spec["stages"][2][2]["conv2"]["columns"] = [list(x) for x in canonical_columns(cols)]
    return spec


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return load_profile(fast_cpu_profile(tmp_path_factory.mktemp("prof"), threads=1))


def test_spec_kernels_are_the_kernels_tvm_compiles(profile):
    import hwssl.deploy  # noqa: F401  (sets TVM_NUM_THREADS before TVM starts)
    from hwssl.deploy.compile import build, import_model, prepare
    from hwssl.deploy.measure import kernel_arg_shapes
    from hwssl.deploy.target import make_target

    target = make_target(profile)
    for spec in (lenet(8, 16, 100, columns_every=3), compacted_resnet()):
        model = build_model(spec).eval()
        compiled = build(prepare(import_model(model, torch.randn(1, *spec["input"]), profile), target), target)
        built = collections.Counter(
            from_measured({"name": k.name, "args": kernel_arg_shapes(k), "out_shape": list(k.out[0])}).key
            for k in compiled.kernels)
        walked = collections.Counter(k.key for k in spec_kernels(spec))
        assert built == walked, (dict(built - walked), dict(walked - built))


@pytest.fixture(scope="module")
def fitted(profile, tmp_path_factory):
    """Untuned real builds of five LeNet-sized candidates measured through the model hook, in order, in
    their own cache; then a held-out candidate predicted and measured."""
    root = tmp_path_factory.mktemp("latency")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSSL_CACHE", str(root))
        records = []
        for spec in (lenet(10, 25, 250), lenet(8, 16, 100), lenet(10, 16, 250), lenet(8, 25, 100, columns_every=3),
                     lenet(4, 8, 100)):
            lat = measure_with_model(build_model(spec).eval(), torch.randn(1, 1, 28, 28), profile, spec=spec,
                                     arch_key=arch_key(spec), tune=False)
            records.append((spec, lat))
        model = load_model(profile, tuned=False)
        held_out = lenet(8, 25, 250)
        predicted = model.predict(held_out)
        measured = measure_with_model(build_model(held_out).eval(), torch.randn(1, 1, 28, 28), profile,
                                      spec=held_out, arch_key=arch_key(held_out), tune=False)
    return {"root": root, "records": records, "model": model, "held_out": held_out, "predicted": predicted,
            "measured": measured}


def test_every_measurement_records_a_prediction_made_before_it_was_added(fitted):
    records = fitted["records"]
    first = records[0][1]
    assert first["predicted_ms"] is None and first["latency_model"]["points"] == 0  # nothing seen yet
    for n, (_, lat) in enumerate(records[1:], start=1):
        assert lat["tvm"] > 0 and lat["predicted_ms"] > 0
        assert lat["latency_model"]["points"] == n  # the n measurements before this one, not itself
        assert lat["per_layer"] and all("args" in row for row in lat["per_layer"])  # new shapes: breakdown taken
    assert Path(first["latency_model"]["file"]).name == "latency_model_untuned.json"


def test_model_fitted_on_measured_lenets_predicts_a_held_out_one(fitted):
    measured = fitted["measured"]
    assert measured["predicted_ms"] == pytest.approx(fitted["predicted"], rel=1e-9)  # the hook predicted the same
    ratio = fitted["predicted"] / measured["tvm"]
    assert 1 / HELD_OUT_FACTOR <= ratio <= HELD_OUT_FACTOR, (fitted["predicted"], measured["tvm"])
    # a clearly smaller and a clearly larger net are ranked as measured (dense 10/25/250 vs 4/8/100)
    model = fitted["model"]
    (dense_spec, dense), (small_spec, small) = fitted["records"][0], fitted["records"][-1]
    assert (model.predict(dense_spec) > model.predict(small_spec)) == (dense["tvm"] > small["tvm"])


def test_lowered_conv_is_priced_by_its_gathers_and_gemm(fitted):
    model = fitted["model"]
    lowered = lenet(8, 25, 100, columns_every=3)
    explained = model.explain(lowered)
    kinds = collections.Counter(k.kind for k, _, _ in explained.kernels if k.layer == "conv2")
    assert kinds["slice"] == 25 and kinds["take"] == 25 and kinds["concat"] == 1 and kinds["conv"] == 1
    assert all(source == "table" for k, _, source in explained.kernels)  # every shape was measured


def test_a_removed_residual_block_saves_its_kernels(fitted):
    model = fitted["model"]
    dense = model_spec("resnet20", 1, (16, 16), 10, 0.25)
    cut = copy.deepcopy(dense)
    b = cut["stages"][0][1]
    cut["stages"][0][1] = {"removed": True, "stride": 1, "in": b["in"], "out": b["out"], "downsample": False,
                           "const": None, "relu": True}
    assert len(spec_kernels(cut)) == len(spec_kernels(dense)) - 2
    saved = model.predict(dense) - model.predict(cut)
    blocks = model.explain(dense).by_layer()
    assert saved == pytest.approx(model.calibration.scale * (blocks["layer1.1.conv1"] + blocks["layer1.1.conv2"])
                                  + 2 * model.calibration.per_kernel)


def test_model_file_fitted_on_another_cpu_is_refused(fitted, profile, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSSL_CACHE", str(fitted["root"]))
    path = model_path(profile, tuned=False)
    data = json.loads(path.read_text())
    data["identity"]["device"] = "x86_64|Some Other CPU|64"
    path.write_text(json.dumps(data))
    before = path.read_text()
    with pytest.raises(LatencyModelError) as err:
        load_model(profile, tuned=False)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "Some Other CPU" in message
    assert fitted["model"].identity.device in message
    spec = lenet(4, 8, 100)
    extra = observe(profile, spec, {"tvm": 0.1, "tuned": False}, arch_key=arch_key(spec))
    assert extra == {"latency_model_error": message}
    assert path.read_text() == before  # a refused file is left alone


def test_prediction_of_a_spec_is_fast(fitted):
    model = fitted["model"]
    specs = [lenet(8, 24, 120, columns_every=2), compacted_resnet(), model_spec("resnet20", 3, (32, 32), 10)]
    for spec in specs:
        model.predict(spec)
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            value = model.predict(spec)
            samples.append((time.perf_counter() - t0) * 1e3)
        assert value > 0
        assert statistics.median(samples) < PREDICT_BUDGET_MS, (spec["model"], samples)


def test_predictor_is_a_plain_callable_over_specs(fitted, profile, monkeypatch):
    monkeypatch.setenv("HWSSL_CACHE", str(fitted["root"] / "fresh"))
    predict = predictor(profile)  # no model file yet: an empty model
    assert predict(lenet(4, 8, 100)) > 0
    spec = copy.deepcopy(fitted["held_out"])
    assert spec_kernels(spec) == spec_kernels(fitted["held_out"])  # the walk does not mutate specs


def test_a_retuned_kernel_is_priced_at_its_new_database_time():
    """A final re-timing tunes a kernel again: its measured time taken before scales with the database's
    best time, and networks measured before keep the kernel sum of their moment (the calibration holds)."""
    from hwssl.latency.model import Identity, LatencyModel

    spec = lenet(8, 16, 100)
    conv = next(k for k in spec_kernels(spec) if k.kind == "conv")
    model = LatencyModel(identity=Identity("dev", "key", "x86"))
    model.set_database([(conv, 0.10)])
    for k in spec_kernels(spec):  # a breakdown: every kernel measured, one of them tuned
        model.add_kernel(k, 0.12 if k == conv else 0.01, "a")
    model.add_measurement(spec, 0.5, arch_key="a")
    model.refit()
    before, calibration = model.predict(spec), model.calibration
    assert model.kernel_ms(conv) == pytest.approx(0.12)

    model.set_database([(conv, 0.05)])  # re-tuned at the full budget: twice as fast
    model.refit()
    assert model.kernel_ms(conv) == pytest.approx(0.06)
    assert model.calibration == calibration
    assert before - model.predict(spec) == pytest.approx(calibration.scale * 0.06)

    saved = LatencyModel.from_json(model.to_json())  # the moment's times survive a save
    saved.set_database([(conv, 0.05)])
    saved.refit()
    assert saved.predict(spec) == pytest.approx(model.predict(spec))


def test_a_database_only_kernel_is_priced_at_what_measured_kernels_cost_beside_their_database_times():
    from hwssl.latency.model import Identity, LatencyModel

    conv1, conv2 = [k for k in spec_kernels(lenet(8, 16, 100)) if k.kind == "conv"]
    model = LatencyModel(identity=Identity("dev", "key", "x86"))
    model.set_database([(conv1, 0.10), (conv2, 0.20)])
    model.add_kernel(conv1, 0.15, "a")  # inside the network: 1.5x the tuner's time
    model.refit()
    assert model.kernel_ms(conv1) == pytest.approx(0.15)
    assert model.kernel_ms(conv2) == pytest.approx(0.30)


def test_group_savings_are_priced_by_the_regressions_not_by_a_lucky_table_entry():
    """Cheap tuning gave conv1 a slower schedule at 16 filters than at 20: the lookup table reproduces
    that, the smooth prediction (what latency-weighted SSL prices savings with) does not."""
    from hwssl.budget.cost import CostOracle
    from hwssl.latency.model import Identity, LatencyModel

    model = LatencyModel(identity=Identity("dev", "key", "x86"))
    for c1, ms in ((20, 0.006), (16, 0.0105), (12, 0.004), (8, 0.003)):
        conv1 = next(k for k in spec_kernels(lenet(c1, 16, 100)) if k.kind == "conv")
        model.add_kernel(conv1, ms, f"c1={c1}")
    model.refit()
    wide, narrow = lenet(20, 16, 100), lenet(16, 16, 100)
    assert model.predict(narrow) > model.predict(wide)
    assert model.predict_smooth(narrow) < model.predict_smooth(wide)
    oracle = CostOracle("latency", model.predict, "ms", smooth=model.predict_smooth)
    assert oracle.weigh == model.predict_smooth


def _seeded_with_dense_resnet(measured_over_sum: float = 1.5):
    """A model that has seen one network, the dense ResNet-20: its kernels at 20 ns per MAC (or element)
    plus 5 us each, the whole net at ``measured_over_sum`` times their sum (what start_oracle seeds)."""
    from hwssl.latency.fit import work
    from hwssl.latency.model import Identity, LatencyModel

    spec = model_spec("resnet20", 1, (28, 28), 10)
    model = LatencyModel(identity=Identity("dev", "key", "x86", lanes=16))
    kernels = spec_kernels(spec)
    for k in kernels:
        model.add_kernel(k, 0.005 + 2e-8 * work(k), "dense")
    total = sum(0.005 + 2e-8 * work(k) for k in kernels)
    model.add_measurement(spec, measured_over_sum * total, arch_key="dense")
    model.refit()
    return model, spec


def test_removing_a_filter_from_a_simd_wide_conv_saves_latency_in_every_stage():
    """ResNet-20's stages are 16, 32 and 64 filters wide. A lane term (MACs per largest divisor of the
    width up to the SIMD lanes) priced 31 filters 16x dearer than 32, so the filter groups of the two
    wider stages got latency weight 0; on the x86 profile time per MAC does not jump like that."""
    from hwssl.budget.weights import group_savings, normalised_weights
    from hwssl.sparsity.regularizer import GroupLasso

    model, spec = _seeded_with_dense_resnet()
    net = build_model(spec)
    reg = GroupLasso(net, {"depth": 1.0, "filter": 0.1}, filter_block=1, filter_bn=True)
    savings = group_savings(net, reg, model.predict_smooth)
    filters = {s.site: s.per_group for s in savings if s.group_type == "filter"}
    assert len(filters) == 9 and all(saved > 0 for saved in filters.values()), filters
    weights = normalised_weights(savings)
    # a channel of the first stage (28x28, 16 wide) costs more than one of the last (7x7, 64 wide)
    assert weights[("filter", "layer1.1.conv1")] > weights[("filter", "layer3.1.conv1")] > 0


def test_a_model_seeded_with_one_network_prices_a_smaller_net_by_the_kernels_it_keeps():
    """One network measured at 1.5x its kernel sum: the gap goes into the calibration's scale, not into a
    fixed per-network cost that every candidate would pay, so a net (two of every stage's three blocks
    removed) is predicted at the share of the dense kernel time it keeps (a fixed cost had priced a
    ResNet-20 candidate at 0.36x the dense net; it measured 0.11x)."""
    model, spec = _seeded_with_dense_resnet()
    assert model.calibration.scale == pytest.approx(1.5, rel=0.05)
    small = copy.deepcopy(spec)
    for stage in small["stages"]:
        for i in (1, 2):
            c = stage[i]["out"]
            stage[i] = {"removed": True, "stride": 1, "in": c, "out": c, "downsample": False, "const": None,
                        "relu": True}
    dense_sum = sum(model.kernel_ms(k) for k in spec_kernels(spec))
    small_sum = sum(model.kernel_ms(k) for k in spec_kernels(small))
    ratio = model.predict(small) / model.predict(spec)
    assert ratio == pytest.approx(small_sum / dense_sum, rel=0.1)
