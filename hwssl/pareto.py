"""Pareto analysis of (accuracy up, latency down) points: front, hypervolume, knee, budget picks."""

from __future__ import annotations

from typing import Sequence


def pareto_indices(acc: Sequence[float], cost: Sequence[float]) -> list[int]:
    """Indices of non-dominated points (maximise ``acc``, minimise ``cost``), sorted by cost."""
    order = sorted(range(len(acc)), key=lambda i: (cost[i], -acc[i]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return front


def hypervolume(acc: Sequence[float], cost: Sequence[float], ref_acc: float, ref_cost: float) -> float:
    """Area dominated by the points and bounded by the reference point (``ref_acc`` worst accuracy,
    ``ref_cost`` worst cost); points worse than the reference contribute nothing."""
    pts = [(c, a) for a, c in zip(acc, cost) if a > ref_acc and c < ref_cost]
    if not pts:
        return 0.0
    idx = pareto_indices([a for _, a in pts], [c for c, _ in pts])
    front = sorted((pts[i] for i in idx), key=lambda p: p[0])  # cost ascending, acc ascending
    area = 0.0
    for k, (c, a) in enumerate(front):
        next_cost = front[k + 1][0] if k + 1 < len(front) else ref_cost
        area += (next_cost - c) * (a - ref_acc)
    return area


def hypervolume_history(acc: Sequence[float], cost: Sequence[float], ref_acc: float, ref_cost: float
                        ) -> list[float]:
    """Hypervolume of the first k points, for k = 1..n (does the search still improve?)."""
    return [hypervolume(acc[:k], cost[:k], ref_acc, ref_cost) for k in range(1, len(acc) + 1)]


def knee_index(acc: Sequence[float], cost: Sequence[float]) -> int | None:
    """The front point closest to the utopia point after scaling both axes to [0, 1]."""
    front = pareto_indices(acc, cost)
    if not front:
        return None
    a_lo, a_hi = min(acc[i] for i in front), max(acc[i] for i in front)
    c_lo, c_hi = min(cost[i] for i in front), max(cost[i] for i in front)

    def dist(i: int) -> float:
        da = (a_hi - acc[i]) / (a_hi - a_lo) if a_hi > a_lo else 0.0
        dc = (cost[i] - c_lo) / (c_hi - c_lo) if c_hi > c_lo else 0.0
        return da * da + dc * dc

    return min(front, key=dist)


def best_under(acc: Sequence[float], cost: Sequence[float], *, min_accuracy: float | None = None,
               max_cost: float | None = None) -> int | None:
    """Fastest point with accuracy >= ``min_accuracy``; or most accurate with cost <= ``max_cost``;
    with both, the fastest point meeting both."""
    ok = [i for i in range(len(acc))
          if (min_accuracy is None or acc[i] >= min_accuracy) and (max_cost is None or cost[i] <= max_cost)]
    if not ok:
        return None
    if min_accuracy is not None or max_cost is None:
        return min(ok, key=lambda i: (cost[i], -acc[i]))
    return max(ok, key=lambda i: (acc[i], -cost[i]))
