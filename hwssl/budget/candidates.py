"""The candidates of a regularisation path: every snapshot of one SSL run compacted, recovered
and measured through :func:`hwssl.evaluate.finish_candidate` (the harness every method shares)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from hwssl.budget.path import HWSSLRun


def evaluate_path(start: Any, run: HWSSLRun, *, profiles: Sequence[Any] = (), units: str = "",
                  save_root: str | Path | None = None, **finish_kwargs: Any) -> list[dict[str, Any]]:
    """Compact, recover and measure every snapshot of ``run`` (one
    :func:`hwssl.evaluate.finish_candidate` call each). Each result carries ``target``,
    ``predicted`` (oracle units; also ``predicted_ms`` when ``units == "ms"``),
    ``predicted_ratio`` and ``budget`` besides the usual fields.

    Each snapshot is finished as an SSL phase that ended at its own step, so with
    ``ssl.recover_unused`` it recovers for the SSL epochs left after *its* target was met: an early
    snapshot trains as many epochs in all as the last one (and as a baseline), not fewer."""
    from hwssl.evaluate import finish_candidate  # deferred: evaluate imports torch-heavy modules

    results = []
    for n, snap in enumerate(run.snapshots):
        model = start.dense_model()
        model.load_state_dict(snap.state)
        strengths = {k: v * snap.strength for k, v in run.strengths.items()}
        save_dir = Path(save_root) / f"snapshot{n}" if save_root is not None else None
        phase = replace(run.phase, steps=snap.step)   # ssl.recover_unused counts from this snapshot's step
        result = finish_candidate(start, model, method="ssl", params=strengths, sparsify=phase,
                                  profiles=profiles, save_dir=save_dir, **finish_kwargs)
        result.update(target=snap.target, predicted=snap.predicted, predicted_ratio=snap.ratio,
                      budget=dict(snap.record(), mix=dict(run.strengths), filter_block=run.filter_block))
        if units == "ms":
            result["predicted_ms"] = snap.predicted
        results.append(result)
    return results
