"""Baselines on SSL's harness: the same dense checkpoint, training budget, exact compaction,
recovery fine-tune, accuracy / MACs / TVM latency measurement and study format.

Methods (``result["method"]``, parameters in ``result["method_params"]``):

* ``l1`` -- uniform magnitude filter pruning (Li et al. 2017): :mod:`hwssl.baselines.l1`
* ``torch-pruning`` -- DepGraph group-norm sparse learning + pruning:
  :mod:`hwssl.baselines.depgraph` (its module docstring explains how TP fits the harness)
* ``dense`` -- the unmodified dense model: :mod:`hwssl.baselines.dense`

Each is registered once in :mod:`hwssl.methods` (SSL included); :func:`hwssl.methods.evaluate_method`
dispatches every method, so scripts can loop over methods.

Budget: every method starts from the same cached dense checkpoint and spends
``train.ssl_epochs`` (SSL: group-Lasso fine-tune; L1: masked fine-tune; TP: sparse
learning) plus ``train.recover_epochs`` (shared recovery after compaction); ``dense``
only gets the recovery fine-tune.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

from hwssl.baselines._common import (RATIO, FilterMask, MethodError, check_family, filter_sites, kept_count,
                                     resolve_ratios)
from hwssl.config.space import SearchSpace

__all__ = ["BASELINES", "MethodError", "FilterMask", "filter_sites", "kept_count", "resolve_ratios",
           "fresh_start", "sample_ratios", "RatioRange", "check_params", "site_names", "check_family",
           "check_space"]

BASELINES = ("l1", "torch-pruning", "dense")


def check_params(method: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`MethodError` for an unknown method or fixed parameters it does not take
    (ratios are checked against the model when a trial resolves them)."""
    if method not in BASELINES:
        raise MethodError(f"not a baseline: {method!r}; expected one of {list(BASELINES)}")
    if method == "torch-pruning":
        from hwssl.baselines.depgraph import tp_params
        tp_params(params)
    elif method in ("l1", "dense"):
        extra = sorted(k for k in params if method == "dense" or (k != RATIO and not k.startswith(RATIO + ".")))
        if extra:
            raise MethodError(f"{method}: unknown parameter(s) {extra}"
                              + ("; l1 takes only ratio[.<scope>]" if method == "l1" else "; dense takes none"))


def fresh_start(start: Any) -> Any:
    """A copy of a :class:`hwssl.evaluate.DenseStart` with its own wall-clock record, so a
    sweep loads the data and the dense checkpoint once."""
    return dataclasses.replace(start, wall={"dense": 0.0}, t0=time.perf_counter())


@dataclasses.dataclass(frozen=True)
class RatioRange:
    """How a search samples pruning ratios: one ``ratio`` for every site, or one per site."""

    low: float = 0.1
    high: float = 0.9
    per_layer: bool = False


def sample_ratios(trial: Any, method: str, ratio_range: RatioRange, fixed: Mapping[str, Any] | None = None,
                  site_names: Sequence[str] = ()) -> dict[str, Any]:
    """A baseline's parameters for one Optuna trial: the pruning ratio(s), plus ``fixed`` ones."""
    if method not in BASELINES:
        raise MethodError(f"not a baseline: {method!r}")
    params = dict(fixed or {})
    if method == "dense":
        return params
    if ratio_range.per_layer:
        for name in site_names:
            params[f"{RATIO}.{name}"] = trial.suggest_float(f"{RATIO}.{name}", ratio_range.low, ratio_range.high)
    else:
        params[RATIO] = trial.suggest_float(RATIO, ratio_range.low, ratio_range.high)
    return params


def site_names(space: SearchSpace) -> list[str]:
    """Names of the filter sites of a space's dense model (no training, no data loading)."""
    from hwssl.config.space import space_model_spec
    from hwssl.models import build_model

    return [s.name for s in filter_sites(build_model(space_model_spec(space)))]


def check_space(method: str, space: SearchSpace) -> None:
    """:func:`check_family` for a space's network (read without training or loading data)."""
    if method in ("l1", "torch-pruning"):
        from hwssl.config.space import space_model_spec
        check_family(method, space_model_spec(space)["family"])
