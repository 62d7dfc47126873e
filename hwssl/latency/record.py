"""Measure a network and record the latency model's prediction beside the measurement."""

from __future__ import annotations

from typing import Any

import torch

from hwssl.config.profile import HardwareProfile
from hwssl.latency.store import observe, wants_breakdown


def measure_with_model(model: torch.nn.Module, example: torch.Tensor, profile: HardwareProfile, *,
                       spec: dict[str, Any], arch_key: str, tune: bool, trials_per_task: int | None = None,
                       per_layer: bool = False, source: str = "search", reuse_timings: bool = True
                       ) -> dict[str, Any]:
    """:func:`hwssl.deploy.measure_candidate`, plus ``predicted_ms`` and ``latency_model`` (see
    :func:`hwssl.latency.observe`): the profile's model predicts ``spec`` before the measurement is
    added to it. The per-kernel breakdown is also taken when the model has not seen some of the
    spec's kernel shapes yet (what it fits kernels from)."""
    from hwssl.deploy import measure_candidate

    breakdown = per_layer or wants_breakdown(profile, spec, tuned=tune)
    latency = measure_candidate(model, example, profile, arch_key=arch_key, tune=tune,
                                trials_per_task=trials_per_task, per_layer=breakdown, reuse_timings=reuse_timings)
    latency.update(observe(profile, spec, latency, arch_key=arch_key, source=source))
    return latency


def measure_pair_with_model(candidate: torch.nn.Module, dense: torch.nn.Module, example: torch.Tensor,
                            profile: HardwareProfile, *, spec: dict[str, Any], dense_spec: dict[str, Any],
                            arch_key: str, dense_arch_key: str, tune: bool, trials_per_task: int | None = None,
                            per_layer: bool = False, source: str = "search"
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`hwssl.deploy.measure_pair` (the candidate and its dense reference timed together, so
    their ratio holds under load), with the model's prediction recorded for each as in
    :func:`measure_with_model`."""
    from hwssl.deploy.candidate import Net, measure_pair

    cand, ref = measure_pair(
        Net(candidate, arch_key, per_layer or wants_breakdown(profile, spec, tuned=tune)),
        Net(dense, dense_arch_key, wants_breakdown(profile, dense_spec, tuned=tune)),
        example, profile, tune=tune, trials_per_task=trials_per_task)
    cand.update(observe(profile, spec, cand, arch_key=arch_key, source=source))
    ref.update(observe(profile, dense_spec, ref, arch_key=dense_arch_key, source=source))
    return cand, ref
