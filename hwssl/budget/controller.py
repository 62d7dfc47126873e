"""Budget-targeted SSL: the global strength adapts until the predicted cost meets a target.

Every ``check_every`` steps the current zero pattern is mapped to the architecture compaction
would build (:func:`hwssl.compact.compacted_spec`) and priced by the oracle. While the cost
ratio (cost / dense cost) is above the next target, a multiplicative controller steers the
global strength ``g`` (``GroupLasso.strength``) so the ratio falls at the pace that meets the
remaining targets by ``finish_at`` of the phase: no progress since the last check -> ``g *=
up``; progress faster or slower than that pace -> ``g`` scales by the pace ratio (clamped
to [1/up, up]). When the ratio reaches a target a snapshot of the weights is taken; after the
last target the phase stops (the pattern is held: the zero groups are removed by compaction
and the recovery fine-tune follows as usual).

Overshoot: group Lasso shrinks many groups together, so one stretch of steps can zero far more
than the next target asks for. A check that lands more than ``tolerance`` below the target
restores the weights of the previous accepted check (one further back on each retry, up to
``keep_states``), sets the strength below both its value then and now (divided by ``up**2``)
and checks every step until that target is met. At most ``max_rollbacks`` times per target;
then the overshoot is accepted (on a small net one group can be worth more than the
tolerance). The optimiser's momentum is not rolled back. So a met target is met within
``tolerance`` unless its rollbacks ran out; ``rollbacks`` in the record counts them. Whatever
was derived from the overshooting weights is stale after a rollback: ``on_restore(step)`` is
called after every restore (latency-weighted SSL recomputes its group weights there; priced at
the overshoot, where most groups are down to their last block and save nothing, they were all 0;
the restored net's groups then had no push and grew back (the predicted ratio went back to 1.0),
and a LeNet run for 0.32 of the dense latency stalled and kept its 0.40 state).

Unreachable targets: when the mix cannot get the cost down to the target (only filter groups,
say, and the minimum kept widths already cost more), the controller would raise the strength
without bound until the net is destroyed and the weights overflow to NaN. Past ``max_strength``
it stops instead, restores the first state that reached the lowest cost, and records
``stalled``.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from hwssl.budget.oracle import Predict
from hwssl.compact import arch_key, compacted_spec
from hwssl.sparsity.regularizer import GroupLasso


@dataclass
class Snapshot:
    """The weights of one SSL run when its predicted cost first met ``target``."""

    target: float                  # fraction of the dense predicted cost
    predicted: float               # predicted cost reached (oracle units: ms for a latency model)
    predicted_dense: float
    step: int
    strength: float                # global strength multiplier at that step
    spec: dict[str, Any]           # the compacted architecture this pattern maps to
    state: dict[str, torch.Tensor]
    also_meets: list[float] = field(default_factory=list)  # looser targets first met at the same check

    @property
    def ratio(self) -> float:
        return self.predicted / self.predicted_dense if self.predicted_dense > 0 else 0.0

    @property
    def arch_key(self) -> str:
        return arch_key(self.spec)

    def record(self) -> dict[str, Any]:
        """What a trial records about its budget: target, predicted cost reached, where."""
        return {"target": self.target, "predicted": self.predicted, "predicted_dense": self.predicted_dense,
                "predicted_ratio": round(self.ratio, 5), "step": self.step, "strength": self.strength,
                "also_meets": self.also_meets}


class BudgetController:
    """``on_step`` callback of :func:`hwssl.train.train_phase` (returns True to stop the phase)."""

    def __init__(self, model: nn.Module, reg: GroupLasso, predict: Predict, targets: Sequence[float], *,
                 check_every: int = 5, up: float = 1.5, finish_at: float = 0.7, tolerance: float = 0.05,
                 max_rollbacks: int = 6, keep_states: int = 4, channel_round: int = 1, min_shape_sparsity: float = 0.25,
                 extra: Sequence[Callable[[int, int, float], bool]] = (), max_strength: float = 1e4,
                 on_restore: Callable[[int], object] | None = None) -> None:
        if any(not 0 < t for t in targets):
            raise ValueError(f"targets must be positive fractions of the dense cost, got {list(targets)}")
        self.model, self.reg, self.predict = model, reg, predict
        self.targets = sorted(targets, reverse=True)
        self.check_every, self.up, self.finish_at = max(1, check_every), up, finish_at
        self.every = self.check_every
        self.tolerance, self.max_rollbacks, self.rollbacks = tolerance, max_rollbacks, 0
        self.target_rollbacks = 0
        # the last accepted checks: (state, strength, ratio); what an overshoot rolls back to
        self.accepted: deque[tuple[dict[str, torch.Tensor], float, float]] = deque(maxlen=keep_states)
        self.accepted.append((copy.deepcopy(model.state_dict()), reg.strength, 1.0))
        self.kw = dict(channel_round=channel_round, min_shape_sparsity=min_shape_sparsity)
        self.extra = list(extra)
        self.on_restore = on_restore
        self.dense = predict(compacted_spec(model, **self.kw))
        self.next = 0
        self.last_ratio = 1.0
        self.last_cost = self.dense
        self.snapshots: list[Snapshot] = []
        self.trajectory: list[dict[str, float]] = []
        # a target the mix cannot reach (e.g. only filter groups, and the kept minimum widths already
        # cost more): the strength would grow without bound, destroy the net and overflow to NaN
        self.max_strength = max_strength
        self.stalled = False
        self.best: tuple[float, dict[str, torch.Tensor]] = (1.0, self.accepted[0][0])  # first state at the lowest ratio

    @property
    def done(self) -> bool:
        return self.next >= len(self.targets)

    def check(self, step: int, total: int, final: bool = False) -> bool:
        """Price the current pattern, snapshot newly met targets, steer the strength; ``final``
        (the phase has ended) only prices and snapshots, without rollback or steering."""
        spec = compacted_spec(self.model, **self.kw)
        cost = self.predict(spec)
        ratio = cost / self.dense if self.dense > 0 else 0.0
        self.last_cost = cost
        self.trajectory.append({"step": step, "strength": self.reg.strength, "ratio": round(ratio, 5)})
        if (not final and ratio < self.targets[self.next] - self.tolerance
                and self.target_rollbacks < self.max_rollbacks):
            # back to an accepted check, further back on each retry, and weaker than both then and now
            depth = min(len(self.accepted), 1 + self.target_rollbacks)
            state, strength, self.last_ratio = self.accepted[-depth]
            while len(self.accepted) > depth:
                self.accepted.pop()
            self.model.load_state_dict(state)
            self._restored(step)
            self.reg.strength = min(strength, self.reg.strength) / self.up ** 2
            self.accepted[-1] = (state, self.reg.strength, self.last_ratio)
            self.rollbacks += 1
            self.target_rollbacks += 1
            self.every = 1
            self.trajectory[-1]["rollback"] = True
            return False
        self.accepted.append((copy.deepcopy(self.model.state_dict()), self.reg.strength, ratio))
        if ratio < self.best[0]:
            self.best = (ratio, self.accepted[-1][0])
        met = []
        while not self.done and ratio <= self.targets[self.next]:
            met.append(self.targets[self.next])
            self.next += 1
        if met:
            self.snapshots.append(Snapshot(met[-1], cost, self.dense, step, self.reg.strength, spec,
                                           self.accepted[-1][0], met[:-1]))
            self.every = self.check_every
            self.target_rollbacks = 0
        if self.done or final:
            return True
        # multiplicative control of the global strength toward the pace that meets the targets in time
        progress = self.last_ratio - ratio
        checks_left = max(1.0, (self.finish_at * total - step) / self.check_every)
        pace = (ratio - self.targets[-1]) / checks_left
        if progress <= 0:
            factor = self.up
        else:
            factor = min(self.up, max(1 / self.up, pace / progress))
        if self.reg.strength * factor > self.max_strength:
            # unreachable with this mix: stop at the first state that reached the lowest cost
            self.model.load_state_dict(self.best[1])
            self._restored(step)
            self.last_cost = self.best[0] * self.dense
            self.stalled = True
            self.trajectory[-1]["stalled"] = True
            return True
        self.reg.strength *= factor
        self.last_ratio = ratio
        return False

    def _restored(self, step: int) -> None:
        if self.on_restore is not None:
            self.on_restore(step)

    def __call__(self, step: int, total: int, loss: float) -> bool:
        stop = False
        for hook in self.extra:
            stop = bool(hook(step, total, loss)) or stop
        if step % self.every == 0 and not self.done:
            stop = self.check(step, total) or stop
        return stop

    def record(self) -> dict[str, Any]:
        ratio = self.last_cost / self.dense if self.dense > 0 else 0.0
        return {"targets": self.targets, "predicted_dense": self.dense, "reached": self.done, "stalled": self.stalled,
                "predicted_final": self.last_cost, "final_ratio": round(ratio, 5), "tolerance": self.tolerance,
                "rollbacks": self.rollbacks, "snapshots": [s.record() for s in self.snapshots],
                "strength_trajectory": self.trajectory}
