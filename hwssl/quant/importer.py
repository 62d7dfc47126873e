"""PyTorch integer network -> Relax, with convolutions and matmuls that stay integer.

TVM 0.27's PyTorch frontend emits every ``conv2d`` and ``matmul`` with
``out_dtype="float32"`` (hard-coded in ``base_fx_graph_translator.py`` and
``exported_program_translator.py``), whatever the input dtype: an int32
convolution exported from PyTorch is silently computed in float32. The
converters here replace the frontend's for ``convolution``/``conv2d``/``mm``/
``matmul``: when both operands are int8/uint8 tensors widened to int32 (how
:mod:`hwssl.quant._layers` writes them), the widening casts are dropped and
the op is emitted as int8 x int8 -> int32 (``out_dtype="int32"``), which is
exactly PyTorch's int32 result, since TVM casts each operand to the
accumulator type inside the reduction. Other integer operands keep their own
integer type; float operands go to the frontend's own converter, so float
networks import unchanged.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import Any, Callable

import torch

import hwssl.deploy  # noqa: F401  (sets TVM_NUM_THREADS before TVM starts its thread pool)
import tvm
from tvm import relax

NARROW = ("int8", "uint8")


def _dtype(expr: Any) -> str | None:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _narrow(importer: Any, expr: Any) -> Any:
    """The int8/uint8 tensor behind ``astype(x, "int32")``, or ``expr`` itself."""
    if isinstance(expr, relax.Var):
        bound = importer.block_builder.lookup_binding(expr)
        if (isinstance(bound, relax.Call) and getattr(bound.op, "name", "") == "relax.astype"
                and _dtype(expr) == "int32" and _dtype(bound.args[0]) in NARROW):
            return bound.args[0]
    return expr


def _int_operands(importer: Any, a: Any, b: Any) -> tuple[Any, Any, str] | None:
    """Integer operands (narrowed where possible) and the accumulator type; None for float ops."""
    da, db = _dtype(a), _dtype(b)
    if da is None or db is None or not (da.startswith(("int", "uint")) and db.startswith(("int", "uint"))):
        return None
    na, nb = _narrow(importer, a), _narrow(importer, b)
    if _dtype(na) in NARROW and _dtype(nb) in NARROW:
        return na, nb, "int32"
    if da != db:
        return None
    return a, b, da


def _int_conv2d(importer: Any, ops: tuple[Any, Any, str], bias: Any, stride: Any, padding: Any, dilation: Any,
                groups: Any) -> Any:
    """An integer conv2d accumulating in ``ops[2]``, plus the (integer) bias when there is one."""
    x, w, acc = ops
    out = importer.block_builder.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=padding, dilation=dilation,
                                                         groups=groups, out_dtype=acc))
    if bias is None:
        return out
    return importer.block_builder.emit(relax.op.add(out, relax.op.reshape(bias, (1, -1, 1, 1))))


def _convolution(node: Any, importer: Any) -> Any:
    """``aten.convolution`` (what ``run_decompositions`` leaves of ``conv2d``)."""
    args = importer.retrieve_args(node)
    ops = _int_operands(importer, args[0], args[1])
    transposed = bool(args[6]) if len(args) > 6 else False
    if ops is None or transposed or len(importer.shape_of(args[0])) != 4:
        return importer._convolution(node)
    return _int_conv2d(importer, ops, args[2], args[3], args[4], args[5], args[8] if len(args) > 8 else 1)


def _conv2d(node: Any, importer: Any) -> Any:
    """``aten.conv2d`` (seen when decompositions are off)."""
    args = importer.retrieve_args(node)
    ops = _int_operands(importer, args[0], args[1])
    if ops is None:
        return importer._conv2d(node)
    pick = lambda i, default: args[i] if len(args) > i else default  # noqa: E731
    return _int_conv2d(importer, ops, pick(2, None), pick(3, 1), pick(4, 0), pick(5, 1), pick(6, 1))


def _matmul(node: Any, importer: Any) -> Any:
    args = importer.retrieve_args(node)
    ops = _int_operands(importer, args[0], args[1])
    if ops is None:
        return importer._binary_op(partial(relax.op.linear_algebra.matmul, out_dtype="float32"),
                                   operator.matmul)(node)
    a, b, acc = ops
    return importer.block_builder.emit(relax.op.linear_algebra.matmul(a, b, out_dtype=acc))


def integer_convert_map() -> dict[str, Callable[[Any, Any], Any]]:
    """``custom_convert_map`` for ``from_exported_program``: integer-preserving conv/matmul converters."""
    return {"convolution.default": _convolution, "conv2d.default": _conv2d, "mm.default": _matmul,
            "matmul.default": _matmul}


def import_integer_model(model: torch.nn.Module, example: torch.Tensor) -> tvm.IRModule:
    """``torch.export`` + Relax frontend with :func:`integer_convert_map`; weights bound as constants.

    Dead bindings (the int32 copies of int8 tensors the narrowed ops no
    longer read) are removed, so no kernel widens a tensor for nothing.
    """
    from tvm.relax.frontend.torch import from_exported_program

    with torch.no_grad():
        exported = torch.export.export(model.eval(), (example,))
    from hwssl.deploy.compile import bounded_takes

    mod = from_exported_program(exported, keep_params_as_input=False, unwrap_unit_return_tuple=True,
                                custom_convert_map=integer_convert_map())
    return bounded_takes(relax.transform.DeadCodeElimination()(mod))
