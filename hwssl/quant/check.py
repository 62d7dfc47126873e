"""Which arithmetic a compiled network really does: a walk over its Relax and TIR.

:func:`integer_report` inspects the module that :func:`hwssl.deploy.compile.build`
compiles (legalised and fused: every kernel is a TIR PrimFunc, and the
schedules applied later do not change any dtype). In each PrimFunc it visits
every block (``s_tir.SBlock``) and records

* multiply-accumulate blocks (a reduction ``acc = acc + a * b``: convolutions,
  matmuls) with the dtypes of the two operands as loaded from their buffers
  and of the accumulator;
* every floating-point operation (float-typed arithmetic, float<->int casts,
  float calls such as ``round``/``exp``, copies of float data).

Each kernel is placed from the Relax ``main`` that calls it: ``input`` if it
only reads the network's float input (input quantisation), ``output`` if its
float result only flows to the network's result (logits dequantisation),
otherwise ``inner``. The verdict ``integer_only`` requires every
multiply-accumulate to be 8-bit x 8-bit -> int32 and every float operation to
sit at the input or output; ``strict_integer_only`` requires no float at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.s_tir.stmt import SBlock

EIGHT_BIT = ("int8", "uint8")
Load = tvm.ir.TensorLoad  # what ``tirx.BufferLoad(...)`` builds
_ARITH = {tirx.Add: "add", tirx.Sub: "sub", tirx.Mul: "mul", tirx.Div: "div", tirx.Mod: "mod",
          tirx.FloorDiv: "floordiv", tirx.FloorMod: "floormod", tirx.Min: "min", tirx.Max: "max",
          tirx.Select: "select"}


def _dtype(expr: Any) -> str:
    ty = getattr(expr, "ty", None)
    return str(getattr(ty, "dtype", ty)) if ty is not None else ""


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def short_name(kernel: str, limit: int = 60) -> str:
    """A fused kernel's name, cut after ``limit`` characters (fusion can chain dozens of op names)."""
    return kernel if len(kernel) <= limit else f"{kernel[:limit]}..."


def _loads(expr: Any, buffer: Any) -> bool:
    """``expr`` is a load of ``buffer`` (TIR loads are ``ir.TensorLoad`` in TVM 0.27)."""
    return isinstance(expr, Load) and expr.source.same_as(buffer)


def _strip_casts(expr: Any) -> Any:
    while isinstance(expr, tirx.Cast):
        expr = expr.value
    return expr


@dataclass
class BlockInfo:
    kernel: str
    block: str
    out_dtype: str
    float_ops: Counter = field(default_factory=Counter)
    int_ops: Counter = field(default_factory=Counter)
    mac: dict[str, str] | None = None  # {"op", "a", "b", "acc", "mul"}
    reduction: str | None = None  # "max", "sum", ... for non-MAC reductions

    @property
    def uses_float(self) -> bool:
        return bool(self.float_ops)


def _mac(block: SBlock) -> dict[str, str] | None:
    """``acc[i] = acc[i] + (cast) a[j] * (cast) b[k]`` -> operand/accumulator dtypes."""
    body = block.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return None
    lhs, rhs = body.value.a, body.value.b
    if not _loads(lhs, body.buffer):
        lhs, rhs = rhs, lhs
        if not _loads(lhs, body.buffer):
            return None
    prod = _strip_casts(rhs)
    if not isinstance(prod, tirx.Mul):
        return None
    a, b = _strip_casts(prod.a), _strip_casts(prod.b)
    if not (isinstance(a, Load) and isinstance(b, Load)):
        return None
    name = block.name_hint.lower()
    op = "conv2d" if "conv" in name else "matmul" if ("matmul" in name or "dense" in name) else "mac"
    return {"op": op, "a": _dtype(a), "b": _dtype(b), "acc": str(body.buffer.dtype),
            "mul": _dtype(prod)}


def _reduction_kind(block: SBlock) -> str | None:
    body = block.body
    if not isinstance(body, tirx.BufferStore):
        return None
    for cls, name in ((tirx.Max, "max"), (tirx.Min, "min"), (tirx.Add, "sum")):
        if isinstance(body.value, cls):
            return name
    return type(body.value).__name__


def _block_info(kernel: str, block: SBlock) -> BlockInfo:
    body = block.body
    out_dtype = str(body.buffer.dtype) if isinstance(body, tirx.BufferStore) else ""
    info = BlockInfo(kernel, block.name_hint, out_dtype)

    def visit_expr(node: Any) -> Any:
        if isinstance(node, SBlock):
            return tvm_ffi.WalkResult.SKIP  # nested blocks are visited on their own
        if isinstance(node, tirx.Cast):
            src, dst = _dtype(node.value), _dtype(node)
            (info.float_ops if _is_float(src) or _is_float(dst) else info.int_ops)[f"cast {src}->{dst}"] += 1
        elif type(node) in _ARITH:
            dt = _dtype(node)
            (info.float_ops if _is_float(dt) else info.int_ops)[f"{_ARITH[type(node)]} {dt}"] += 1
        elif isinstance(node, tvm.ir.Call) and not isinstance(node, Load) and isinstance(node.op, tvm.ir.Op):
            dt = _dtype(node)
            name = node.op.name.split(".")[-1]
            if _is_float(dt) or any(_is_float(_dtype(a)) for a in node.args):
                info.float_ops[f"{name} {dt}"] += 1
            elif dt and dt != "bool":
                info.int_ops[f"{name} {dt}"] += 1
        elif isinstance(node, tirx.BufferStore) and _is_float(str(node.buffer.dtype)):
            if isinstance(node.value, Load):  # a float copy: no arithmetic, still float data
                info.float_ops[f"copy {node.buffer.dtype}"] += 1
        return tvm_ffi.WalkResult.ADVANCE

    for part in (block.init, block.body):
        if part is not None:
            tvm_ffi.structural_walk(part, visit_expr, order="pre")
    if any(int(iv.iter_type) == tirx.IterVar.CommReduce for iv in block.iter_vars):
        info.mac = _mac(block)
        if info.mac is None:
            info.reduction = _reduction_kind(block)
    return info


def primfunc_blocks(name: str, func: tirx.PrimFunc) -> list[BlockInfo]:
    """Every non-root block of one PrimFunc."""
    blocks: list[BlockInfo] = []

    def visit(node: Any) -> Any:
        if isinstance(node, SBlock) and node.name_hint != "root":
            blocks.append(_block_info(name, node))
        return tvm_ffi.WalkResult.ADVANCE

    tvm_ffi.structural_walk(func.body, ((SBlock,), visit), order="pre")
    return blocks


def _tensor_dtype(expr: Any) -> str:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else ""


def _bindings(main: relax.Function) -> list[Any]:
    body = main.body
    return [b for block in body.blocks for b in block.bindings] if isinstance(body, relax.SeqExpr) else []


def _call_tir(value: Any) -> tuple[str, list[Any]] | None:
    if isinstance(value, tvm.ir.Call) and getattr(value.op, "name", "") == "relax.call_tir":
        args = value.args[1]
        return value.args[0].name_hint, list(args.fields) if isinstance(args, relax.Tuple) else [args]
    return None


def kernel_positions(main: relax.Function, mac_kernels: set[str]
                     ) -> tuple[dict[str, set[str]], list[dict[str, str]], Counter]:
    """{kernel: {"input", "output"}} from the dataflow of float tensors in ``main``, the float
    results of any Relax call that is not a TIR kernel (library calls, builtins), and how many
    times ``main`` calls each kernel (identical layers share one PrimFunc).

    A kernel is at the input if it reads nothing but the network's float
    input and float values computed only from it; at the output if its float
    result flows only into the network's result. Kernels with a
    multiply-accumulate (``mac_kernels``) may sit at either end but do not
    extend the region past themselves: float data leaving a float
    convolution is "inner".
    """
    bindings = _bindings(main)
    from_input = {p for p in main.params if _is_float(_tensor_dtype(p))}
    places: dict[str, set[str]] = {}
    calls: Counter = Counter()
    others: list[dict[str, str]] = []
    for b in bindings:
        call = _call_tir(b.value)
        if call is not None:
            kernel, args = call
            places.setdefault(kernel, set())
            calls[kernel] += 1
            tensors = [a for a in args if isinstance(a, relax.Var)]
            if tensors and all(a in from_input for a in tensors):
                places[kernel].add("input")
                if _is_float(_tensor_dtype(b.var)) and kernel not in mac_kernels:
                    from_input.add(b.var)
        elif isinstance(b.value, relax.Var) and b.value in from_input:
            from_input.add(b.var)
        elif isinstance(b.value, tvm.ir.Call) and _is_float(_tensor_dtype(b.var)):
            others.append({"op": getattr(b.value.op, "name", str(b.value.op)), "dtype": _tensor_dtype(b.var)})
    ret = main.body.body if isinstance(main.body, relax.SeqExpr) else main.body
    to_output = set(ret.fields) if isinstance(ret, relax.Tuple) else {ret}
    for b in reversed(bindings):
        if b.var not in to_output or not _is_float(_tensor_dtype(b.var)):
            continue
        call = _call_tir(b.value)
        if call is not None:
            kernel, args = call
            places.setdefault(kernel, set()).add("output")
            if kernel not in mac_kernels:
                to_output.update(a for a in args if isinstance(a, relax.Var) and _is_float(_tensor_dtype(a)))
        elif isinstance(b.value, relax.Var):
            to_output.add(b.value)
    return places, others, calls


def integer_report(fused: tvm.IRModule) -> dict[str, Any]:
    """The integer-only verdict of a legalised, fused module (see the module docstring).

    Returns ``integer_only``, ``strict_integer_only``, ``int_ops`` (one entry
    per multiply-accumulate or integer reduction block), ``float_ops`` (one
    entry per block doing float work, with its position) and counts
    (``*_macs`` count PrimFuncs, ``*_mac_calls`` the calls from ``main``:
    identical layers share one PrimFunc).
    """
    kernels = {gv.name_hint: primfunc_blocks(gv.name_hint, f) for gv, f in fused.functions.items()
               if isinstance(f, tirx.PrimFunc)}
    places, others, calls = kernel_positions(fused["main"], {k for k, bs in kernels.items()
                                                       if any(b.mac is not None for b in bs)})
    int_ops: list[dict[str, Any]] = []
    float_ops: list[dict[str, Any]] = []
    macs = {"int8": 0, "other_int": 0, "float": 0}
    mac_calls = {"int8": 0, "other_int": 0, "float": 0}
    for kernel, blocks in kernels.items():
        where = places.get(kernel, set())
        position = "input" if "input" in where else "output" if "output" in where else "inner"
        for info in blocks:
            if info.mac is not None:
                m = info.mac
                entry = {"kernel": kernel, "block": info.block, "op": m["op"], "operands": [m["a"], m["b"]],
                         "accumulator": m["acc"],
                         "desc": f"{m['op']} {m['a']} x {m['b']} -> {m['acc']} ({short_name(kernel)}/{info.block})"}
                entry["calls"] = calls[kernel]
                if _is_float(m["acc"]) or _is_float(m["a"]) or _is_float(m["b"]) or _is_float(m["mul"]):
                    macs["float"] += 1
                    mac_calls["float"] += calls[kernel]
                    float_ops.append({**entry, "ops": sorted(info.float_ops), "where": position,
                                      "desc": f"{position}: {entry['desc']}"})
                    continue
                eight = m["a"] in EIGHT_BIT and m["b"] in EIGHT_BIT and m["acc"] == "int32"
                macs["int8" if eight else "other_int"] += 1
                mac_calls["int8" if eight else "other_int"] += calls[kernel]
                int_ops.append({**entry, "int8": eight})
            elif info.reduction is not None and not info.uses_float:
                int_ops.append({"kernel": kernel, "block": info.block, "op": f"reduce_{info.reduction}",
                                "operands": [info.out_dtype], "accumulator": info.out_dtype, "int8": None,
                                "desc": f"reduce {info.reduction} {info.out_dtype} "
                                        f"({short_name(kernel)}/{info.block})"})
            if info.uses_float and info.mac is None:
                ops = sorted(info.float_ops)
                float_ops.append({"kernel": kernel, "block": info.block, "op": "elementwise"
                                  if info.reduction is None else f"reduce_{info.reduction}", "ops": ops,
                                  "where": position,
                                  "desc": f"{position}: {', '.join(ops)} ({short_name(kernel)}/{info.block})"})
    for other in others:
        float_ops.append({"kernel": None, "block": None, "op": other["op"], "ops": [other["dtype"]],
                          "where": "inner", "desc": f"inner: Relax call {other['op']} -> {other['dtype']}"})
    inner_float = [f for f in float_ops if f["where"] == "inner"]
    integer_only = macs["int8"] > 0 and macs["float"] == 0 and macs["other_int"] == 0 and not inner_float
    return {"integer_only": integer_only, "strict_integer_only": integer_only and not float_ops,
            "int_ops": int_ops, "float_ops": float_ops,
            "counts": {"int8_macs": macs["int8"], "other_int_macs": macs["other_int"], "float_macs": macs["float"],
                       "int8_mac_calls": mac_calls["int8"], "other_int_mac_calls": mac_calls["other_int"],
                       "float_mac_calls": mac_calls["float"], "float_blocks": len(float_ops),
                       "inner_float_blocks": len(inner_float)}}


def check_module(prepared: tvm.IRModule, target: tvm.target.Target) -> dict[str, Any]:
    """:func:`integer_report` of what :func:`hwssl.deploy.compile.build` compiles from ``prepared``."""
    from hwssl.deploy.compile import fuse

    return integer_report(fuse(prepared, target))
