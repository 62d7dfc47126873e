"""Hardware-aware SSL: cost oracles over architecture specs, latency-weighted group Lasso,
budget-targeted SSL and regularisation paths (several candidates from one SSL run)."""

from hwssl.budget.controller import BudgetController, Snapshot
from hwssl.budget.oracle import ORACLES, Predict, oracle, spec_macs
from hwssl.budget.candidates import evaluate_path
from hwssl.budget.path import HWSSLRun, hw_options_on, hw_ssl, resolve_filter_block, ssl_path
from hwssl.budget.weights import GroupSaving, LatencyWeighting, group_savings, normalised_weights

__all__ = ["BudgetController", "Snapshot", "ORACLES", "Predict", "oracle", "spec_macs", "HWSSLRun", "evaluate_path",
           "hw_options_on", "hw_ssl", "resolve_filter_block", "ssl_path", "GroupSaving", "LatencyWeighting",
           "group_savings", "normalised_weights"]
