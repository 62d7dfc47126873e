"""The Pareto oracle the report and comparison rely on, against fronts worked out by hand.

Points (index: accuracy, cost): 0: (0.90, 2), 1: (0.80, 1), 2: (0.95, 4), 3: (0.85, 3), 4: (0.70, 1.5).
By cost: 1 (1, .80) -> 4 (1.5, .70, dominated by 1) -> 0 (2, .90) -> 3 (3, .85, dominated by 0) -> 2 (4, .95).
"""

from __future__ import annotations

import pytest

from hwssl.pareto import best_under, hypervolume, hypervolume_history, knee_index, pareto_indices

ACC = [0.90, 0.80, 0.95, 0.85, 0.70]
COST = [2.0, 1.0, 4.0, 3.0, 1.5]


def test_front_is_the_non_dominated_points_by_cost():
    assert pareto_indices(ACC, COST) == [1, 0, 2]
    assert pareto_indices([], []) == []
    assert pareto_indices([0.5], [3.0]) == [0]


def test_front_ties_keep_one_point():
    assert pareto_indices([0.5, 0.6], [1.0, 1.0]) == [1]          # same cost: the more accurate
    assert pareto_indices([0.5, 0.5], [2.0, 1.0]) == [1]          # same accuracy: the cheaper
    assert pareto_indices([0.5, 0.5], [1.0, 1.0]) == [0]          # identical points: the first only


def test_hypervolume_is_the_staircase_area_to_the_reference_point():
    # front (1, .80), (2, .90), (4, .95) against (acc .6, cost 5):
    # (2-1)*(.80-.6) + (4-2)*(.90-.6) + (5-4)*(.95-.6) = 0.2 + 0.6 + 0.35
    assert hypervolume(ACC, COST, 0.6, 5.0) == pytest.approx(1.15)
    # points no better than the reference add nothing: only (2, .90) and (4, .95) beat acc .85
    assert hypervolume(ACC, COST, 0.85, 5.0) == pytest.approx((4 - 2) * 0.05 + (5 - 4) * 0.10)
    assert hypervolume(ACC, COST, 0.6, 1.0) == 0.0               # nothing cheaper than cost 1
    assert hypervolume([], [], 0.0, 1.0) == 0.0


def test_hypervolume_history_grows_only_when_the_front_moves():
    # first 1..5 points: (2,.9) -> +(1,.8) -> +(4,.95) -> +(3,.85) dominated -> +(1.5,.7) dominated
    assert hypervolume_history(ACC, COST, 0.6, 5.0) == pytest.approx([0.9, 1.1, 1.15, 1.15, 1.15])


def test_knee_is_the_front_point_nearest_the_ideal_after_scaling():
    # scaled distances squared: trial 1 -> 1 + 0, trial 0 -> (1/3)^2 + (1/3)^2, trial 2 -> 0 + 1
    assert knee_index(ACC, COST) == 0
    assert knee_index([], []) is None
    assert knee_index([0.7], [9.0]) == 0
    assert knee_index([0.7, 0.7], [1.0, 1.0]) == 0                # a one-point front after ties


def test_best_under_a_budget():
    assert best_under(ACC, COST, min_accuracy=0.85) == 0          # fastest of 0 (2), 3 (3), 2 (4)
    assert best_under(ACC, COST, max_cost=3.0) == 0               # most accurate of 0, 1, 3, 4
    assert best_under(ACC, COST, max_cost=1.5) == 1
    assert best_under(ACC, COST, min_accuracy=0.9, max_cost=3.0) == 0
    assert best_under(ACC, COST, min_accuracy=0.99) is None
    assert best_under(ACC, COST, max_cost=0.5) is None
    assert best_under(ACC, COST) == 1                             # no constraint: the fastest
    assert best_under([0.9, 0.9], [2.0, 1.0], max_cost=3.0) == 1  # equal accuracy: the cheaper
