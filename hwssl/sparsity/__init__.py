"""Structured sparsity: SSL's groups, the group-Lasso regulariser and sparsity statistics."""

from hwssl.sparsity.groups import (GROUP_TYPES, ConvSite, DepthSite, SSLSites, StrengthError,
                                   resolve_strengths, ssl_sites, validate_strength_keys)
from hwssl.sparsity.regularizer import GroupLasso
from hwssl.sparsity.stats import count_macs, count_params, sparsity_stats

__all__ = ["GROUP_TYPES", "ConvSite", "DepthSite", "SSLSites", "StrengthError", "resolve_strengths",
           "ssl_sites", "validate_strength_keys", "GroupLasso", "count_macs", "count_params",
           "sparsity_stats"]
