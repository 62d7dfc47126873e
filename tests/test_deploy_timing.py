"""The load-resistant timing protocol: interleaved rounds, spread, re-measuring, noisy flag, thread counts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tvm

from deploy_support import fast_cpu_profile, tiny_net
from hwssl.config.profile import TimingSettings, load_profile
from hwssl.deploy.candidate import Net, measure_candidate, measure_pair
from hwssl.deploy.compile import compile_model
from hwssl.deploy.measure import configure_tvm_threads, time_vm
from hwssl.deploy.target import make_target
from hwssl.deploy.timing import Timing, time_interleaved


def _busy(n: int):
    """A real workload timed with perf_counter: ``n`` additions, 3 samples per round."""
    def one_round() -> list[float]:
        out = []
        for _ in range(3):
            t0 = time.perf_counter()
            sum(range(n))
            out.append((time.perf_counter() - t0) * 1e3)
        return out
    return one_round


def test_interleaved_rounds_alternate_order_and_report_median_spread_and_rounds() -> None:
    calls: list[int] = []

    def logged(i, runner):
        def one_round():
            calls.append(i)
            return runner()
        return one_round

    settings = TimingSettings(rounds=3, max_rounds=3, max_spread=10.0)
    small, big = time_interleaved([logged(0, _busy(2_000)), logged(1, _busy(200_000))], settings)
    assert calls == [0, 1, 1, 0, 0, 1]  # alternating order: neither always runs first
    for t in (small, big):
        assert t.rounds == 3 and len(t.samples_ms) == 9 and len(t.round_medians_ms) == 3
        q1, q3 = t.iqr_ms
        assert min(t.samples_ms) <= q1 <= t.median_ms <= q3 <= max(t.samples_ms)
        assert t.spread == pytest.approx((q3 - q1) / t.median_ms)
        assert not t.noisy
    assert big.median_ms > small.median_ms
    record = big.summary("tvm")
    assert record["tvm"] == big.median_ms and record["tvm_rounds"] == 3 and len(record["tvm_samples_ms"]) == 9
    json.dumps(record)


def test_series_that_settle_stop_at_the_minimum_rounds() -> None:
    # a series whose samples are all equal has spread 0: no extra rounds
    equal = time_interleaved([lambda: [1.0, 1.0]], TimingSettings(rounds=2, max_rounds=9, max_spread=0.0))[0]
    assert equal.rounds == 2 and not equal.noisy and equal.spread == 0.0


def test_a_side_series_never_asks_for_more_rounds_but_is_flagged_noisy() -> None:
    """The peer runtime (side) is timed in the rounds the main series takes and no more."""
    spread = iter(range(1, 1000))
    unsettled = lambda: [1.0, float(next(spread)) * 10]  # noqa: E731 -- never within any spread threshold
    settings = TimingSettings(rounds=2, max_rounds=6, max_spread=0.05)
    main_t, side_t = time_interleaved([lambda: [1.0, 1.0], unsettled], settings, side=[False, True])
    assert main_t.rounds == side_t.rounds == 2 and side_t.noisy and not main_t.noisy
    main_t, side_t = time_interleaved([lambda: [1.0, 1.0], unsettled], settings)   # not side: it drives
    assert side_t.rounds == 6 and side_t.noisy


def test_threshold_zero_remeasures_real_tvm_up_to_the_cap_and_flags_noisy(tmp_path: Path) -> None:
    model, x = tiny_net()
    profile = load_profile(fast_cpu_profile(tmp_path))
    compiled = compile_model(model, x, profile, make_target(profile))
    vm = tvm.relax.VirtualMachine(compiled.executable, tvm.cpu())
    xt = [tvm.runtime.tensor(x.numpy())]
    configure_tvm_threads(1)
    strict = TimingSettings(warmup=1, number=5, repeat=3, min_repeat_ms=1, rounds=2, max_rounds=4, max_spread=0.0)
    (t,) = time_interleaved([lambda: time_vm(vm, tvm.cpu(), xt, strict)], strict)
    assert t.rounds == 4 and t.noisy and len(t.samples_ms) == 12 and t.median_ms > 0
    loose = TimingSettings(warmup=1, number=5, repeat=3, min_repeat_ms=1, rounds=2, max_rounds=4, max_spread=100.0)
    (t,) = time_interleaved([lambda: time_vm(vm, tvm.cpu(), xt, loose)], loose)
    assert t.rounds == 2 and not t.noisy


def test_best_thread_count_is_the_latency_and_is_recorded(tmp_path: Path) -> None:
    model, x = tiny_net()
    profile = load_profile(fast_cpu_profile(tmp_path, threads=2))
    r = measure_candidate(model, x, profile, arch_key="tiny", tune=False, cache_dir=tmp_path)
    assert set(r["tvm_by_threads"]) == {"1", "2"}
    assert r["threads"] == r["tvm_threads"] and r["threads"] in (1, 2)
    assert r["tvm"] == min(r["tvm_by_threads"].values()) == r["tvm_by_threads"][str(r["threads"])]
    assert len(r["tvm_samples_ms"]) == profile.timing.repeat * r["tvm_rounds"]
    assert profile.timing.rounds <= r["tvm_rounds"] <= profile.timing.max_rounds
    assert r["tvm_iqr_ms"][0] <= r["tvm"] <= r["tvm_iqr_ms"][1]
    assert isinstance(r["noisy"], list)
    # ONNX Runtime: same thread counts, its own best
    assert set(r["onnxruntime_by_threads"]) == {"1", "2"} and r["onnxruntime"] > 0
    assert r["onnxruntime"] == r["onnxruntime_by_threads"][str(r["onnxruntime_threads"])]
    assert r["onnx_max_abs_diff"] <= 1e-5 and r["torch"] > 0 and r["torch_threads"] == 2


def test_a_pair_is_timed_together_and_retimed_from_cached_builds(tmp_path: Path) -> None:
    small, x = tiny_net(0, channels=4)
    dense, _ = tiny_net(1, channels=16)
    profile = load_profile(fast_cpu_profile(tmp_path, threads=1, rounds=2, max_rounds=2))
    cand, ref = measure_pair(Net(small, "small", per_layer=True), Net(dense, "dense"), x, profile, tune=False,
                             cache_dir=tmp_path)
    assert cand["cached"] is False and ref["cached"] is False
    assert cand["tvm_rounds"] == ref["tvm_rounds"] == 2  # one loop times both
    assert cand["vs_dense"]["tvm"] == pytest.approx(cand["tvm"] / ref["tvm"])
    assert cand["per_layer"] and not ref["per_layer"]
    assert sorted(p.suffix for p in (tmp_path / "latency" / profile.name).iterdir()) == \
        [".json", ".json", ".onnx", ".onnx", ".so", ".so"]
    again, ref2 = measure_pair(Net(small, "small", per_layer=True), Net(dense, "dense"), x, profile, tune=False,
                               cache_dir=tmp_path)
    assert again["cached"] is True and ref2["cached"] is True  # builds reused ...
    assert again["tvm_samples_ms"] != cand["tvm_samples_ms"]  # ... but timed afresh, together
    assert again["per_layer"] == cand["per_layer"] and again["compile_s"] == cand["compile_s"]
    assert again["vs_dense"]["tvm"] == pytest.approx(again["tvm"] / ref2["tvm"])


def test_timing_summary_of_one_sample() -> None:
    t = Timing([2.0])
    assert t.iqr_ms == (2.0, 2.0) and t.spread == 0.0


def test_a_series_that_cannot_win_its_group_stops_being_timed() -> None:
    """Thread counts of one network compete: one far slower than the fastest after a round is retired."""
    settings = TimingSettings(rounds=3, max_rounds=3, max_spread=10.0)
    fast, slow, other = time_interleaved([_busy(2_000), _busy(1_000_000), _busy(1_000_000)], settings,
                                         groups=["net", "net", "other"], threads=[1, 2, 1])
    assert fast.rounds == 3 and slow.rounds == 1 and other.rounds == 3  # 'other' is the best of its group
    assert (fast.threads, slow.threads) == (1, 2)


def test_cpus_for_pinning_are_the_allowed_ones_busiest_first() -> None:
    from hwssl.deploy.timing import allowed_cpus, cpus_busiest_first

    order = cpus_busiest_first(0.05)
    assert sorted(order) == allowed_cpus()
    assert configure_tvm_threads(1, True, order) == 1
