"""Baselines on SSL's harness: the same dense checkpoint, training budget, exact compaction,
recovery fine-tune, accuracy / MACs / TVM latency measurement and study format.

Methods (``result["method"]``, parameters in ``result["method_params"]``):

* ``l1`` -- uniform magnitude filter pruning (Li et al. 2017): :mod:`hwssl.baselines.l1`
* ``torch-pruning`` -- DepGraph group-norm sparse learning + pruning:
  :mod:`hwssl.baselines.depgraph` (its module docstring explains how TP fits the harness)
* ``dense`` -- the unmodified dense model: :mod:`hwssl.baselines.dense`

``ssl`` itself stays in :func:`hwssl.evaluate.evaluate_candidate`; :func:`evaluate_method`
dispatches every method, SSL included, so scripts can loop over methods.

Budget: every method starts from the same cached dense checkpoint and spends
``train.ssl_epochs`` (SSL: group-Lasso fine-tune; L1: masked fine-tune; TP: sparse
learning) plus ``train.recover_epochs`` (shared recovery after compaction); ``dense``
only gets the recovery fine-tune.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hwssl.baselines._common import RATIO, FilterMask, MethodError, filter_sites, kept_count, resolve_ratios
from hwssl.config.space import SearchSpace

__all__ = ["METHODS", "BASELINES", "MethodError", "FilterMask", "filter_sites", "kept_count", "resolve_ratios",
           "evaluate_method", "fresh_start", "sample_method_params", "RatioRange", "check_params", "site_names"]

BASELINES = ("l1", "torch-pruning", "dense")
METHODS = ("ssl",) + BASELINES


def _sparsifier(method: str) -> Callable[..., Any]:
    if method == "l1":
        from hwssl.baselines.l1 import l1_sparsify
        return l1_sparsify
    if method == "torch-pruning":
        from hwssl.baselines.depgraph import tp_sparsify
        return tp_sparsify
    if method == "dense":
        from hwssl.baselines.dense import dense_sparsify
        return dense_sparsify
    raise MethodError(f"unknown method {method!r}; expected one of {list(METHODS)}")


def check_params(method: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`MethodError` for an unknown method or fixed parameters it does not take
    (ratios are checked against the model when a trial resolves them)."""
    if method not in METHODS:
        raise MethodError(f"unknown method {method!r}; expected one of {list(METHODS)}")
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


def evaluate_method(space: SearchSpace, method: str, params: Mapping[str, Any] | None = None, *,
                    profiles: Sequence[Any] = (), tune: bool = True, trials_per_task: int | None = None,
                    per_layer: bool = False, save_dir: str | Path | None = None, progress: Any = None,
                    start: Any = None, precision: str = "fp32", int8: bool | None = None) -> dict[str, Any]:
    """One candidate of any method, end to end; the same result dict as
    :func:`hwssl.evaluate.evaluate_candidate` plus ``baseline`` (what the method did).
    ``start`` (from :func:`hwssl.evaluate.prepare`) is reused when given."""
    from hwssl.evaluate import compaction_round, finish_candidate, prepare, ssl_sparsify

    params = dict(params or {})
    if method != "ssl":
        check_params(method, params)
    start = prepare(space, progress) if start is None else fresh_start(start)
    if method == "ssl":
        strengths = params or dict(space.strengths)
        sparse, phase = ssl_sparsify(start, strengths, progress, channel_round=compaction_round(space, profiles))
        params, info = strengths, None
    else:
        sparse, phase, info = _sparsifier(method)(start, params, progress)
    result = finish_candidate(start, sparse, method=method, params=params, sparsify=phase, profiles=profiles,
                              tune=tune, trials_per_task=trials_per_task, per_layer=per_layer,
                              save_dir=save_dir, progress=progress, precision=precision, int8=int8)
    if info is not None:
        result["baseline"] = info
    result.update(getattr(phase, "record", None) or {})  # hardware-aware SSL's budget and weights
    return result


@dataclasses.dataclass(frozen=True)
class RatioRange:
    """How a search samples pruning ratios: one ``ratio`` for every site, or one per site."""

    low: float = 0.1
    high: float = 0.9
    per_layer: bool = False


def sample_method_params(trial: Any, space: SearchSpace, method: str, ratio_range: RatioRange,
                         fixed: Mapping[str, Any] | None = None, site_names: Sequence[str] = ()) -> dict[str, Any]:
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
    from hwssl.data import dataset_info
    from hwssl.models import build_model, model_spec

    info = dataset_info(space.data.name)
    spec = model_spec(space.model.name, info.in_channels, info.image_size, info.num_classes, space.model.width)
    return [s.name for s in filter_sites(build_model(spec))]
