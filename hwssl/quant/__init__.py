"""Integer-only deployment: post-training int8 variants of compacted networks, compiled by TVM with
int8 x int8 -> int32 kernels, and a check of that claim on the compiled IR.

Route (see ``hwssl/quant/README.md`` for what was tried and why the others
fail with this TVM/PyTorch): the quantised network is written as explicit
PyTorch integer ops (:func:`quantize_model`), exported, and imported with
converters that keep convolutions and matmuls integer
(:func:`import_integer_model`). :func:`integer_report` walks the compiled
module's Relax and TIR. :func:`quantize_and_measure` does it all for one
candidate and one hardware profile.

Submodules that import TVM (``importer``, ``check``, ``measure``) load on
first use, so ``import hwssl.quant`` stays cheap.
"""

from __future__ import annotations


from hwssl._lazy import lazy_getattr
from hwssl.quant._convert import Int8Net, quantize_model
from hwssl.quant._fixedpoint import QSpec, QuantError

__all__ = ["Int8Net", "QSpec", "QuantError", "quantize_model", "import_integer_model", "integer_convert_map",
           "integer_report", "check_module", "compile_int8", "quantize_and_measure", "integer_io_report",
           "ROUTE"]

_LAZY = {
    "import_integer_model": "hwssl.quant.importer",
    "integer_convert_map": "hwssl.quant.importer",
    "integer_report": "hwssl.quant.check",
    "check_module": "hwssl.quant.check",
    "compile_int8": "hwssl.quant.measure",
    "quantize_and_measure": "hwssl.quant.measure",
    "integer_io_report": "hwssl.quant.measure",
    "ROUTE": "hwssl.quant.measure",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
