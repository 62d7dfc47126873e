"""Uniform magnitude filter pruning (Li et al. 2017, "Pruning Filters for Efficient ConvNets").

At every filter site (the convs whose filters SSL may remove) the filters with the
smallest L1 norm in the *trained dense* model are zeroed, ``ratio`` of them per layer
(per-layer ratios via ``ratio.<layer>`` / ``ratio.<stage>``). The pruned network is then
fine-tuned for the same number of epochs, learning rate and batch size as SSL's
sparsification phase (``train.ssl_epochs`` at ``train.ssl_lr``) with the masks re-applied
after every optimiser step, and handed to the shared
:func:`hwssl.evaluate.finish_candidate` (exact compaction, recovery fine-tune, accuracy,
MACs, latency). Both phases together are Li et al.'s retraining; SSL gets exactly the
same two phases, so the training budget is equal.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from hwssl.baselines._common import FilterMask, filter_l1, filter_sites, kept_count, resolve_ratios
from hwssl.evaluate import DenseStart
from hwssl.progress import Progress, phase_progress
from hwssl.train import PhaseResult, train_phase


@torch.no_grad()
def l1_masks(model: nn.Module, params: Mapping[str, Any]) -> FilterMask:
    """Keep masks of the highest-L1 filters at every filter site; ties keep the lower index."""
    sites = filter_sites(model)
    ratios = resolve_ratios(sites, params)
    masks = {}
    for site in sites:
        norms = filter_l1(site.conv)
        keep = torch.zeros(norms.numel(), dtype=torch.bool)
        order = torch.argsort(norms, descending=True, stable=True)
        keep[order[:kept_count(norms.numel(), ratios[site.name])]] = True
        masks[site.name] = (site.conv, keep)
    return FilterMask(masks)


def l1_sparsify(start: DenseStart, params: Mapping[str, Any], progress: Progress | None = None
                ) -> tuple[nn.Module, PhaseResult, dict[str, Any]]:
    """Prune the dense model by filter L1 norm, then fine-tune it masked for SSL's budget."""
    space, t = start.space, start.space.train
    model = start.dense_model()
    mask = l1_masks(model, params)
    mask.apply()
    phase = train_phase(model, start.splits.train, phase="l1-finetune", epochs=t.ssl_epochs, lr=t.ssl_lr,
                        batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                        seed=space.seed + 1, regularizer=mask, mode="proximal", zero_threshold=0.0,
                        threads=t.threads, on_step=phase_progress(progress, "l1-finetune"))
    mask.apply()
    start.wall["sparsify"] = phase.wall_s
    info = {"ranking": "filter L1 norm of the trained dense model (Li et al. 2017), per layer",
            "finetune": f"{t.ssl_epochs} epochs at lr {t.ssl_lr} with masks (= SSL's sparsification budget)",
            "masks": mask.summary()}
    return model, phase, info
