"""The candidates of a regularisation path: every snapshot of one SSL run compacted, recovered
and measured through :func:`hwssl.evaluate.finish_candidate` (the harness every method shares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hwssl.budget.path import HWSSLRun


def evaluate_path(start: Any, run: HWSSLRun, *, profiles: Sequence[Any] = (), units: str = "",
                  save_root: str | Path | None = None, **finish_kwargs: Any) -> list[dict[str, Any]]:
    """Compact, recover and measure every snapshot of ``run`` (one
    :func:`hwssl.evaluate.finish_candidate` call each). Each result carries ``target``,
    ``predicted`` (oracle units; also ``predicted_ms`` when ``units == "ms"``),
    ``predicted_ratio`` and ``budget`` besides the usual fields."""
    from hwssl.evaluate import finish_candidate  # deferred: evaluate imports torch-heavy modules

    results = []
    for n, snap in enumerate(run.snapshots):
        model = start.dense_model()
        model.load_state_dict(snap.state)
        strengths = {k: v * snap.strength for k, v in run.strengths.items()}
        save_dir = Path(save_root) / f"snapshot{n}" if save_root is not None else None
        result = finish_candidate(start, model, method="ssl", params=strengths, sparsify=run.phase,
                                  profiles=profiles, save_dir=save_dir, **finish_kwargs)
        result.update(target=snap.target, predicted=snap.predicted, predicted_ratio=snap.ratio,
                      budget=dict(snap.record(), mix=dict(run.strengths), filter_block=run.filter_block))
        if units == "ms":
            result["predicted_ms"] = snap.predicted
        results.append(result)
    return results
