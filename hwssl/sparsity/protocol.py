"""What :func:`hwssl.train.train_phase` needs from a regulariser (SSL's group Lasso, a baseline's
filter mask, the sparsity methods to come)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Regularizer(Protocol):
    """``active``: anything to do at all; ``penalty()``: a differentiable term added to the loss
    (subgradient mode); ``proximal_step(lr)``: applied right after each optimiser step (proximal
    mode); ``zero_small(threshold)``: snap tiny weights to exact zeros."""

    @property
    def active(self) -> bool: ...

    def penalty(self) -> torch.Tensor: ...

    def proximal_step(self, lr: float) -> None: ...

    def zero_small(self, threshold: float = 0.0) -> None: ...
