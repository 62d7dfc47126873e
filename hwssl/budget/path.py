"""Hardware-aware SSL runs of a search space: latency-weighted, budget-targeted, filter-blocked,
and the regularisation path (several candidates from one SSL run).

``hw_ssl`` is the SSL fine-tune of :func:`hwssl.evaluate.ssl_sparsify` with the space's
``[ssl]`` options (``latency_weighted``, ``target``, ``filter_block``, ``oracle``) and a cost
oracle ``predict(spec) -> float``. ``ssl_path`` takes snapshots at successive targets of one
run; :func:`hwssl.budget.candidates.evaluate_path` compacts, recovers and measures each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from hwssl.budget.controller import BudgetController, Snapshot
from hwssl.budget.oracle import Predict
from hwssl.budget.weights import LatencyWeighting
from hwssl.sparsity.regularizer import GroupLasso
from hwssl.train import PhaseResult, train_phase

Progress = Callable[[str, int, int], None]


def resolve_filter_block(setting: int | str, channel_round: int) -> int:
    """``ssl.filter_block``: an int, or ``"channel_round"`` (the compaction's rounding)."""
    return channel_round if setting == "channel_round" else int(setting)


def hw_options_on(ssl: Any) -> bool:
    """Whether a space's ``[ssl]`` table asks for anything beyond the paper's SSL."""
    return bool(ssl.latency_weighted or ssl.target > 0 or ssl.filter_block != 1)


@dataclass
class HWSSLRun:
    model: nn.Module                      # the sparse dense-architecture model at the end of the run
    phase: PhaseResult
    strengths: dict[str, float]           # the mix (relative strengths) the run started from
    filter_block: int
    snapshots: list[Snapshot]
    controller: BudgetController | None
    weighting: LatencyWeighting | None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"filter_block": self.filter_block}
        if self.controller is not None:
            out["budget"] = self.controller.record()
            if len(self.controller.targets) == 1:  # budget-targeted SSL: the trial's own target and cost
                out.update(target=self.controller.targets[0], predicted=self.controller.last_cost,
                           predicted_ratio=out["budget"]["final_ratio"])
        if self.weighting is not None:
            out["latency_weights"] = self.weighting.history[-1]["weights"] if self.weighting.history else {}
        return out


def hw_ssl(start: Any, strengths: Mapping[str, float], *, targets: Sequence[float] = (),
           predict: Predict | None = None, weigh: Predict | None = None, channel_round: int | None = None,
           latency_weighted: bool | None = None, filter_block: int | str | None = None,
           progress: Progress | None = None) -> HWSSLRun:
    """SSL fine-tune of ``start`` (a :class:`hwssl.evaluate.DenseStart`) with the space's
    hardware-aware options (keyword arguments override them). With ``targets`` the global
    strength adapts and the run stops once the last (smallest) target is met. ``predict`` prices
    the zero pattern for the targets; ``weigh`` (default ``predict``) prices the group savings that
    weight the penalty (:attr:`hwssl.budget.cost.CostOracle.weigh`)."""
    space, t, ssl = start.space, start.space.train, start.space.ssl
    if predict is None:
        from hwssl.budget.cost import start_oracle

        oracle = start_oracle(start)
        predict, weigh = oracle.predict, weigh or oracle.weigh
    channel_round = channel_round if channel_round is not None else space.compact.channel_round
    weighted = ssl.latency_weighted if latency_weighted is None else latency_weighted
    block = resolve_filter_block(ssl.filter_block if filter_block is None else filter_block, channel_round)
    model = start.dense_model()
    reg = GroupLasso(model, strengths, scale_by_group_size=ssl.scale_by_group_size, filter_block=block,
                     filter_bn=ssl.filter_bn)
    if targets and not reg.active:
        raise ValueError(f"budget-targeted SSL scales a mix of strengths; every strength of {dict(strengths)} is 0")
    kw = dict(channel_round=channel_round, min_shape_sparsity=space.compact.min_shape_sparsity)
    weighting = None
    hooks: list[Callable[[int, int, float], bool]] = []
    if weighted and reg.active:
        weighting = LatencyWeighting(model, reg, weigh or predict, every=ssl.weight_every, **kw)
        weighting.refresh(0)
        hooks.append(weighting)
    if progress is not None:
        def report(i: int, n: int, _loss: float) -> bool:
            progress("ssl", i, n)
            return False
        hooks.append(report)
    controller = None
    if targets:
        controller = BudgetController(model, reg, predict, targets, check_every=ssl.check_every, extra=hooks,
                                      on_restore=weighting.refresh if weighting is not None else None, **kw)
        on_step = controller
    else:
        on_step = (lambda i, n, loss: any([h(i, n, loss) for h in hooks])) if hooks else None
    phase = train_phase(model, start.splits.train, phase="ssl", epochs=t.ssl_epochs, lr=t.ssl_lr,
                        batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                        seed=space.seed + 1, regularizer=reg, mode=ssl.mode, zero_threshold=ssl.zero_threshold,
                        threads=t.threads, on_step=on_step)
    if controller is not None and not controller.done:
        controller.check(phase.steps, phase.steps, final=True)  # the cost where the run ended, for the record
    start.wall["ssl"] = phase.wall_s
    run = HWSSLRun(model, phase, dict(strengths), block, controller.snapshots if controller else [], controller,
                   weighting)
    phase.record.update(run.record())
    return run


def ssl_path(start: Any, targets: Sequence[float], mix: Mapping[str, float], predict: Predict | None = None,
             **kwargs: Any) -> HWSSLRun:
    """One SSL run with snapshots at successive ``targets`` (fractions of the dense predicted
    cost, any order; met from the loosest to the tightest). ``mix`` holds the relative strengths
    per group type/scope; ``run.snapshots`` holds one snapshot per check that met new targets."""
    if not targets:
        raise ValueError("ssl_path needs at least one target")
    return hw_ssl(start, mix, targets=targets, predict=predict, **kwargs)
