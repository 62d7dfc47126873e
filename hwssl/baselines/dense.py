"""The dense model itself: one point on every front.

It goes through the same :func:`hwssl.evaluate.finish_candidate` as every method:
compaction of a model without zero groups is the identity (verified like any other),
then the same recovery fine-tune and the same accuracy / MACs / latency measurement, so
its numbers are directly comparable (and its ``flops_ratio`` is 1).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from hwssl.evaluate import DenseStart
from hwssl.progress import Progress


def dense_sparsify(start: DenseStart, params: Mapping[str, Any], progress: Progress | None = None
                   ) -> tuple[nn.Module, None, dict[str, Any]]:
    if params:
        from hwssl.baselines._common import MethodError
        raise MethodError(f"the dense method takes no parameters, got {sorted(params)}")
    return start.dense_model(), None, {"note": "unmodified dense model; compaction is the identity"}
