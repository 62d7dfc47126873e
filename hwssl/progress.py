"""Progress callbacks: ``progress(phase, step, total)`` as the CLI and the search show it."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]
StepCallback = Callable[[int, int, float], None]


def phase_progress(progress: Progress | None, phase: str) -> StepCallback | None:
    """The ``on_step(step, total, loss)`` callback of a training loop that reports ``phase``."""
    return (lambda i, n, _loss: progress(phase, i, n)) if progress else None
