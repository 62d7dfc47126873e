"""Torch-Pruning (DepGraph, Fang et al. CVPR 2023) as a baseline: group-norm sparse
learning, then group-norm pruning at a ratio.

Pipeline (same budget as SSL):

1. ``GroupNormPruner`` is built on the trained dense model with
   ``GroupMagnitudeImportance(p=2)`` (``tp.importance.GroupNormImportance`` does not exist
   in 1.6.1). For ``train.ssl_epochs`` at ``train.ssl_lr`` -- SSL's sparsification budget --
   ``pruner.regularize(model)`` runs between ``backward()`` and ``step()`` of every batch
   (its sparse learning: a per-group L2 pull weighted by ``alpha**(rank)``, strongest on
   the least important groups; coefficient ``reg``).
2. ``pruner.step(interactive=True)`` decides which channels to remove: its own ranking
   (importance pooled over each coupled group), its own local (per-layer ratio) or global
   (one ratio, ranked across layers) allocation, its own rounding.
3. **Fit to the harness: TP decides, our compaction removes.** Each selected channel is
   translated into a zeroed filter of the group's root conv; the model keeps its dense
   architecture and goes through the shared :func:`hwssl.evaluate.finish_candidate`
   (verified exact compaction, recovery fine-tune, accuracy, MACs, TVM latency). TP's own
   ``group.prune()`` is never called on the measured model.

Why this and not letting TP prune physically and timing its module directly:

* **Same architecture space as SSL.** TP prunes only the groups whose root is one of
  SSL's filter sites (every other conv/linear is in ``ignored_layers``, which makes TP
  skip any group touching it). Left alone, TP would also shrink the residual stream
  (stem, second convs, shortcuts of a stage, coupled) and LeNet's fc1 -- things SSL's
  groups never remove by design. Comparing that against SSL would compare search spaces,
  not methods; on the same sites the comparison isolates *how* channels are chosen
  (sparse learning + group norm vs. group Lasso vs. L1).
* **Same compaction, spec and deploy path.** The result has the same plain-text
  architecture spec (rebuildable, exportable, cached by ``arch_key`` for TVM tuning),
  the same per-layer summary for the report, and the same exactness check. A module
  pruned by TP has no spec: it could be timed, but not stored, exported or rebuilt.
* **Exact, not approximate.** TP's physical pruning drops a removed channel's BatchNorm
  constant (``beta - gamma*mu/sigma``, passed through ReLU), so the pruned net differs
  from the net TP scored. Our compaction folds that constant into the consumer, so the
  compacted net equals the zeroed one (checked to 1e-4 per trial).
* Kept widths are identical to TP's own pruning (``tests/test_baselines.py`` prunes a
  copy with ``group.prune()`` and compares), so nothing of TP's decision is lost.

Parameters (``method_params``): ``ratio`` (and ``ratio.<layer>`` / ``ratio.<stage>``
for per-layer ratios, local mode only), ``reg`` (sparse-learning coefficient, default
5e-3: TP's reference 5e-4 is for ~100 CIFAR epochs, about 40x more steps than this
budget), ``alpha`` (``regularize``'s scaling, default 2**4), ``global`` (global ranking,
default false), ``round_to`` (TP's rounding of kept channels, default none; the profile's
``channel_round`` still applies in compaction, as for every method).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from hwssl.baselines._common import RATIO, FilterMask, MethodError, filter_sites, resolve_ratios
from hwssl.data.sets import first_images
from hwssl.evaluate import DenseStart
from hwssl.progress import Progress, phase_progress
from hwssl.train import PhaseResult, train_phase

FIT = "tp-selects-zeroed-filters: Torch-Pruning chooses channels on SSL's filter sites, hwssl compaction removes them"
DEFAULTS: dict[str, Any] = {"reg": 5e-3, "alpha": 16.0, "global": False, "round_to": None}
KNOWN = {"reg", "alpha", "global", "round_to"}


def tp_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with defaults filled in; unknown keys are an error."""
    unknown = sorted(k for k in params if k not in KNOWN and k != RATIO and not k.startswith(RATIO + "."))
    if unknown:
        raise MethodError(f"torch-pruning: unknown parameter(s) {unknown}; expected ratio[.<scope>], "
                          f"{sorted(KNOWN)}")
    out = dict(DEFAULTS, **params)
    if out["global"] and any(k.startswith(RATIO + ".") for k in params):
        raise MethodError("torch-pruning: per-layer ratios need local pruning (global = false)")
    if float(out["reg"]) < 0:
        raise MethodError(f"torch-pruning: reg must be >= 0, got {out['reg']}")
    return out


def build_pruner(model: nn.Module, example: torch.Tensor, params: Mapping[str, Any]):
    """A GroupNormPruner restricted to the groups rooted at SSL's filter sites."""
    import torch_pruning as tp

    p = tp_params(params)
    sites = filter_sites(model)
    ratios = resolve_ratios(sites, p)
    site_convs = {s.conv for s in sites}
    ignored = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in site_convs]
    per_layer = None if p["global"] else {s.conv: ratios[s.name] for s in sites}
    was_training = model.training
    model.eval()  # tracing runs a forward pass: do not move BatchNorm statistics
    try:
        pruner = tp.pruner.GroupNormPruner(
            model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), reg=float(p["reg"]),
            global_pruning=bool(p["global"]), pruning_ratio=float(p.get(RATIO, 0.0)), pruning_ratio_dict=per_layer,
            ignored_layers=ignored, round_to=p["round_to"])
    finally:
        model.train(was_training)
    return pruner


class SparseLearning:
    """TP's ``regularize`` in :func:`hwssl.train.train_phase`'s regulariser protocol.

    ``train_phase(mode="subgradient")`` calls ``penalty().backward()`` between the loss's
    ``backward()`` and the optimiser's ``step()`` -- exactly where TP's regulariser must
    act on the gradients. :meth:`penalty` runs ``pruner.regularize`` there and returns a
    detached zero (nothing is added to the loss); the loop times it as the method's extra
    cost per step."""

    def __init__(self, pruner: Any, model: nn.Module, alpha: float) -> None:
        self.pruner, self.model, self.alpha = pruner, model, alpha

    @property
    def active(self) -> bool:
        return self.pruner.reg > 0

    def penalty(self) -> torch.Tensor:
        self.pruner.regularize(self.model, alpha=self.alpha)
        return torch.zeros((), requires_grad=True)

    def proximal_step(self, lr: float) -> None:
        raise AssertionError("Torch-Pruning's sparse learning runs in subgradient mode")

    def zero_small(self, threshold: float = 0.0) -> None:
        pass


@torch.no_grad()
def tp_selection(pruner: Any, model: nn.Module) -> FilterMask:
    """Run TP's pruning decision and translate it into filter masks on the site convs."""
    sites = filter_sites(model)
    by_conv = {s.conv: s for s in sites}
    keep = {s.name: torch.ones(s.conv.out_channels, dtype=torch.bool) for s in sites}
    for group in pruner.step(interactive=True):
        roots = [dep.target.module for dep, _ in group
                 if pruner.DG.is_out_channel_pruning_fn(dep.handler) and dep.target.module in by_conv]
        if len({id(r) for r in roots}) != 1:
            raise RuntimeError(f"a Torch-Pruning group touches {len(roots)} filter sites; expected exactly one")
        for dep, idxs in group:
            if dep.target.module is roots[0] and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                keep[by_conv[roots[0]].name][torch.as_tensor(idxs, dtype=torch.long)] = False
    for s in sites:  # global ranking may empty a layer; TP would break there, we keep its best filter
        if not keep[s.name].any():
            keep[s.name][int(s.conv.weight.pow(2).sum(dim=(1, 2, 3)).argmax())] = True
    return FilterMask({s.name: (s.conv, keep[s.name]) for s in sites})


def tp_sparsify(start: DenseStart, params: Mapping[str, Any], progress: Progress | None = None
                ) -> tuple[nn.Module, PhaseResult, dict[str, Any]]:
    """Sparse learning with TP's regulariser for SSL's budget, then TP's pruning decision as zeroed filters."""
    space, t = start.space, start.space.train
    p = tp_params(params)
    model = start.dense_model()
    example = first_images(start.splits.val, 1).clone()
    pruner = build_pruner(model, example, p)
    reg = SparseLearning(pruner, model, float(p["alpha"]))
    phase = train_phase(model, start.splits.train, phase="tp-sparse", epochs=t.ssl_epochs, lr=t.ssl_lr,
                        batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                        seed=space.seed + 1, regularizer=reg if reg.active else None, mode="subgradient",
                        zero_threshold=0.0, threads=t.threads, on_step=phase_progress(progress, "tp-sparse"))
    start.wall["sparsify"] = phase.wall_s
    mask = tp_selection(pruner, model)
    mask.apply()
    info = {"fit": FIT, "importance": "GroupMagnitudeImportance(p=2)", "pruner": "GroupNormPruner",
            "sparse_learning": f"{t.ssl_epochs} epochs at lr {t.ssl_lr}, regularize() between backward and step",
            "params_resolved": {k: v for k, v in p.items() if not k.startswith(RATIO)},
            "groups": len(pruner._groups), "masks": mask.summary()}
    return model, phase, info
