"""Training loops: dense pretraining, SSL fine-tuning, recovery fine-tuning, evaluation.

All loops are seedable and run on the CPU with ``threads`` torch threads (one
by default: on 2-core machines two threads gave erratic step times). The SSL
loop times every step in parts, so SSL's training overhead is a measured
ratio: (plain step + penalty + proximal/zeroing) / plain step, where "plain
step" is forward, loss, backward and optimiser step exactly as in the dense
loop.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from hwssl.data.sets import batches
from hwssl.sparsity.protocol import Regularizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class PhaseResult:
    phase: str
    epochs: float
    steps: int
    wall_s: float
    final_loss: float
    step_ms: float                  # mean wall time of a plain step (fwd, loss, bwd, optimiser step)
    ssl_ms: float = 0.0             # mean extra wall time per step spent on the SSL penalty / proximal step
    history: list[float] = field(default_factory=list)
    record: dict = field(default_factory=dict)  # extra facts of the phase (budget-targeted SSL: target, cost reached)

    @property
    def ssl_step_overhead(self) -> float:
        return (self.step_ms + self.ssl_ms) / self.step_ms if self.step_ms > 0 else 1.0

    def to_dict(self) -> dict:
        return {"phase": self.phase, "epochs": self.epochs, "steps": self.steps, "wall_s": round(self.wall_s, 3),
                "final_loss": self.final_loss, "step_ms": round(self.step_ms, 4), "ssl_ms": round(self.ssl_ms, 4)}


def set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_phase(model: nn.Module, data: Dataset, *, phase: str, epochs: float, lr: float,
                batch_size: int, momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                regularizer: Regularizer | None = None, mode: str = "proximal", zero_threshold: float = 0.0,
                threads: int = 1, on_step: Callable[[int, int, float], None] | None = None) -> PhaseResult:
    """SGD with momentum and a cosine learning rate over ``epochs`` (fractional epochs allowed).

    With a ``regularizer``: ``mode="subgradient"`` adds the group-Lasso penalty to
    the loss; ``mode="proximal"`` applies group soft-thresholding after each
    step instead. Either way weights below ``zero_threshold`` are zeroed after
    each step (Caffe SSL's behaviour). ``on_step(step, total, loss)`` runs after every step;
    returning True ends the phase there (budget-targeted SSL stops once its target is reached).
    """
    torch.set_num_threads(threads)
    gen = set_seed(seed)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total = max(0, int(round(epochs * steps_per_epoch)))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    use_reg = regularizer is not None and regularizer.active
    model.train()
    plain_s = ssl_s = 0.0
    step = 0
    losses: list[float] = []
    loss_value = float("nan")
    t_start = time.perf_counter()
    while step < total:
        for xb, yb in batches(data, batch_size, gen):
            if step >= total:
                break
            cur_lr = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            for group in opt.param_groups:
                group["lr"] = cur_lr
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            t1 = time.perf_counter()
            if use_reg and mode == "subgradient":
                regularizer.penalty().backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if use_reg:
                if mode == "proximal":
                    regularizer.proximal_step(cur_lr)
                regularizer.zero_small(zero_threshold)
            t4 = time.perf_counter()
            if use_reg:
                plain_s += (t1 - t0) + (t3 - t2)
                ssl_s += (t2 - t1) + (t4 - t3)
            else:
                plain_s += t4 - t0
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"{phase}: loss became {loss_value} at step {step} (lr {cur_lr:.3g})")
            if step % max(1, steps_per_epoch // 4) == 0:
                losses.append(round(loss_value, 4))
            step += 1
            if on_step is not None and on_step(step, total, loss_value) is True:
                total = step  # ends both loops
                break
    wall = time.perf_counter() - t_start
    model.eval()
    return PhaseResult(phase, epochs, step, wall, loss_value, 1000 * plain_s / max(step, 1),
                       1000 * ssl_s / max(step, 1), losses)


T = TypeVar("T")


@dataclass
class Retried(Generic[T]):
    """What :func:`halving_on_divergence` returns: the run's result, the learning rates that
    diverged (empty when the first run finished) and the rate that finished."""

    result: T
    failed: list[float]
    lr: float

    def record(self) -> dict[str, Any]:
        return {"diverged": self.failed, "lr": self.lr} if self.failed else {}

    def note(self, phase: PhaseResult | None, key: str) -> None:
        """Put :meth:`record` into ``phase.record[key]`` when a run diverged."""
        if self.failed and phase is not None:
            phase.record[key] = self.record()


def halving_on_divergence(run: Callable[[float], T], lr: float, retries: int = 2) -> Retried[T]:
    """``run(lr)``; when it raises :class:`TrainingDiverged`, again at half the rate, at most
    ``retries`` times (then the divergence propagates). ``run`` must start from the same state
    on every call (it is the caller's job to restore weights)."""
    failed: list[float] = []
    while True:
        try:
            return Retried(run(lr), failed, lr)
        except TrainingDiverged:
            if len(failed) >= retries:
                raise
            failed.append(lr)
            lr /= 2


def recover_phase(model: nn.Module, data: Dataset, *, lr: float, retries: int = 2, **kwargs: Any) -> PhaseResult:
    """:func:`train_phase` for fine-tuning a compacted net. A run whose loss diverges starts again
    from the net's weights before it, at half the learning rate (at most ``retries`` times); the
    result's ``record`` then says so (``diverged``: the learning rates that failed). A heavily
    pruned net can start near chance (budget-targeted SSL may shrink every kept filter on the way
    to a tight target), and such a start sometimes blows up at a rate the dense net trains at."""
    start = copy.deepcopy(model.state_dict())

    def run(rate: float) -> PhaseResult:
        model.load_state_dict(start)
        return train_phase(model, data, lr=rate, **kwargs)

    retried = halving_on_divergence(run, lr, retries)
    retried.result.record.update(retried.record())
    return retried.result


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, chunk: int = 1000) -> float:
    """Top-1 accuracy in eval mode, evaluated in chunks (large single batches are slow here)."""
    was_training = model.training
    model.eval()
    correct = 0
    for xb, yb in batches(data, chunk):
        correct += int((model(xb).argmax(1) == yb).sum())
    model.train(was_training)
    return correct / max(1, len(data))
