"""The sparsification methods a search can run, each registered once.

A :class:`Method` says how a trial samples its parameters, how it sparsifies the
dense model (a ``(sparse model, training phase, info)`` triple that the shared
harness :func:`hwssl.evaluate.finish_candidate` then compacts, fine-tunes and
measures), which fixed parameters it accepts and how its parameters read in a
table. Built in: ``ssl`` (group-Lasso strengths), and the baselines ``l1``,
``torch-pruning`` and ``dense`` (see :mod:`hwssl.baselines`). A new method is one
:func:`register` call; the search, the CLI and the comparison pick it up by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hwssl.baselines import BASELINES, MethodError, RatioRange, check_params as check_baseline_params
from hwssl.baselines import fresh_start, sample_ratios
from hwssl.config.space import SearchSpace
from hwssl.progress import Progress
from hwssl.settings import MeasureSettings

Sparsify = Callable[[Any, Mapping[str, Any], "Progress | None"], tuple[Any, Any, "dict[str, Any] | None"]]


@dataclass(frozen=True)
class Sampling:
    """How a search samples a method's parameters: the ratio range (baselines) and the fixed ones."""

    ratio: RatioRange = field(default_factory=RatioRange)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    site_names: Sequence[str] = ()


@dataclass(frozen=True)
class Method:
    name: str
    summary: str                                              # one line for --help and docs
    sparsify: Sparsify                                        # (DenseStart, params, progress) -> triple
    sample: Callable[[Any, SearchSpace, Sampling], dict[str, Any]]   # (optuna trial, space, sampling)
    check_params: Callable[[Mapping[str, Any]], None] = lambda params: None
    samples_ratios: bool = False                              # pruning ratios: a ratio range, --ratios sweeps
    records_strengths: bool = False                           # trial attribute "strengths" (else "method_params")
    single_point: bool = False                                # every trial is the same model: one trial

    def trial_attrs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What a search trial records about its sampled parameters (Optuna user attributes);
        SSL's budget ``target`` is an attribute of its own beside the strengths (the mix)."""
        if self.records_strengths:
            target, strengths = split_target(params)
            return {"strengths": strengths, **({"target": target} if target is not None else {})}
        return {"method": self.name, "method_params": dict(params)}

    def describe(self, params: Mapping[str, Any]) -> str:
        """Parameters as short text for tables (``ratio=0.3 reg=0.005``; SSL: non-zero strengths)."""
        if self.records_strengths:
            return " ".join(f"{k}={v:.2g}" for k, v in params.items() if isinstance(v, (int, float)) and v) or "-"
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def method_names() -> list[str]:
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; expected one of {method_names()}") from None


# -- SSL --------------------------------------------------------------------------------------------------------

TARGET = "target"   # SSL parameter: budget target, a fraction of the dense net's predicted cost


def split_target(params: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """SSL parameters -> (budget target or None, the strengths or mix)."""
    rest = {k: v for k, v in params.items() if k != TARGET}
    return (float(params[TARGET]) if params.get(TARGET) is not None else None), rest


def sample_strengths(trial: Any, space: SearchSpace, sampling: Sampling | None = None) -> dict[str, float]:
    """One strength per searched key (log-uniform by default); a key with a
    ``zero_probability`` is first switched on or off by a categorical choice."""
    return sample_ranges(trial, space.search.strengths, dict(space.strengths))


def sample_ssl(trial: Any, space: SearchSpace, sampling: Sampling | None = None) -> dict[str, float]:
    """``search.mode``: ``strengths`` samples the strengths; ``budget`` samples a ``target`` and a mix
    (the relative strengths budget-targeted SSL scales); ``path`` samples the mix only (its
    targets are the space's ``path_targets``, see :mod:`hwssl.search.path`)."""
    mode = space.search.mode
    if mode == "strengths":
        return sample_strengths(trial, space, sampling)
    mix = sample_ranges(trial, space.search.budget_mix, {})
    if mode == "budget":
        rng = space.search.budget_target
        return {TARGET: trial.suggest_float(TARGET, rng.low, rng.high, log=rng.log), **mix}
    return mix


def sample_ranges(trial: Any, ranges: Mapping[str, Any], strengths: dict[str, float]) -> dict[str, float]:
    """Sample each range of ``ranges`` into ``strengths`` (see :func:`sample_strengths`)."""
    for key, rng in ranges.items():
        if rng.zero_probability > 0:
            # a categorical whose choices encode the probability keeps the sampler's prior honest
            n_off = max(1, round(10 * rng.zero_probability))
            choices = ["off"] * n_off + ["on"] * max(1, 10 - n_off)
            labels = [f"{c}{i}" for i, c in enumerate(choices)]
            if trial.suggest_categorical(f"{key}:switch", labels).startswith("off"):
                strengths[key] = 0.0
                continue
        strengths[key] = trial.suggest_float(key, rng.low, rng.high, log=rng.log)
    return strengths


def _ssl_sparsify(start: Any, params: Mapping[str, Any], progress: Progress | None) -> tuple[Any, Any, None]:
    from hwssl.evaluate import ssl_sparsify

    target, strengths = split_target(params)
    sparse, phase = ssl_sparsify(start, strengths or dict(start.space.strengths), progress, target=target)
    return sparse, phase, None


def _baseline_sparsify(name: str) -> Sparsify:
    def run(start: Any, params: Mapping[str, Any], progress: Progress | None) -> tuple[Any, Any, Any]:
        if name == "l1":
            from hwssl.baselines.l1 import l1_sparsify as sparsify
        elif name == "torch-pruning":
            from hwssl.baselines.depgraph import tp_sparsify as sparsify
        else:
            from hwssl.baselines.dense import dense_sparsify as sparsify
        return sparsify(start, params, progress)
    return run


register(Method("ssl", "searches per-group SSL strengths (group Lasso, proximal step), or a latency "
                       "budget and a strength mix (hardware-aware SSL)", _ssl_sparsify,
                sample_ssl, records_strengths=True))
for _name, _summary in (("l1", "L1-norm filter pruning (Li et al. 2017) at a sampled ratio"),
                        ("torch-pruning", "Torch-Pruning DepGraph group-norm sparse learning at a sampled ratio"),
                        ("dense", "the unmodified dense model (one point)")):
    register(Method(_name, _summary, _baseline_sparsify(_name),
                    lambda trial, space, s, _n=_name: sample_ratios(trial, _n, s.ratio, s.fixed, s.site_names),
                    lambda params, _n=_name: check_baseline_params(_n, params),
                    samples_ratios=_name != "dense", single_point=_name == "dense"))
assert set(BASELINES) <= set(_REGISTRY)


def evaluate_method(space: SearchSpace, method: str, params: Mapping[str, Any] | None = None, *,
                    profiles: Sequence[Any] = (), measure: MeasureSettings = MeasureSettings(),
                    save_dir: str | Path | None = None, progress: Progress | None = None,
                    start: Any = None) -> dict[str, Any]:
    """One candidate of any registered method, end to end; the same result as
    :func:`hwssl.evaluate.evaluate_candidate` plus ``baseline`` (what a baseline did).
    ``start`` (from :func:`hwssl.evaluate.prepare`) is reused when given."""
    from hwssl.evaluate import finish_candidate, prepare, sparsify_halving

    spec = get_method(method)
    params = dict(params or {})
    spec.check_params(params)
    from hwssl.baselines import check_family, check_space
    if start is None:
        check_space(method, space)  # a baseline that cannot prune this family refuses before training
    else:
        check_family(method, start.spec["family"])
    start = (prepare(space, progress) if start is None else fresh_start(start)).for_profiles(profiles, measure)
    retried = sparsify_halving(lambda s: spec.sparsify(s, params, progress), start)
    sparse, phase, info = retried.result
    retried.note(phase, "sparsify_diverged")
    if method == "ssl":
        params = split_target(params)[1] or dict(space.strengths)
    result = finish_candidate(start, sparse, method=method, params=params, sparsify=phase, profiles=profiles,
                              measure=measure, save_dir=save_dir, progress=progress)
    if info is not None:
        result["baseline"] = info
    return result
