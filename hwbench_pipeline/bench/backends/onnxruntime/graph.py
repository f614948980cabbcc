"""What number format a session really computes in, read from the graph ONNX Runtime optimized and ran.

``SessionOptions.optimized_model_filepath`` makes a session write the graph it executes after its own
transformations: fused quantized kernels (QLinearMatMul, MatMulIntegerToFloat...) and, where the provider has
no kernel for a type, the Cast nodes it inserted around a node (the CPU provider runs an fp16 MatMul as
Cast -> fp32 MatMul -> Cast). The format of the heavy nodes there is what ran, whatever was asked for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from onnx import TensorProto

from hwbench_pipeline.bench.backends.onnxruntime.config import FLOAT_HEAVY_OPS, INTEGER_HEAVY_OPS
from hwbench_pipeline.bench.precision import PRECISIONS

_FLOAT_FORMATS = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
_BOOL_OPS = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Xor",
                       "IsNaN", "IsInf"})
_INT64_OPS = frozenset({"Shape", "Size", "NonZero", "ArgMax", "ArgMin"})
#: the operands a node multiplies, by op type (others: inputs 0 and 1); the QLinear forms interleave scales
_OPERANDS: dict[str, tuple[int, ...]] = {"QLinearMatMul": (0, 3), "QGemm": (0, 3), "QLinearConv": (0, 3)}


def _output_type(node: onnx.NodeProto, types: dict[str, int]) -> int | None:
    """Element type of the node's first output, from its op's typing rule and its inputs' known types."""
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op == "Cast":
        return attrs["to"].i
    if op == "Constant" and "value" in attrs:
        return attrs["value"].t.data_type
    if op in _BOOL_OPS:
        return TensorProto.BOOL
    if op in _INT64_OPS:
        return TensorProto.INT64
    if op in ("MatMulInteger", "ConvInteger"):
        return TensorProto.INT32
    if op == "DynamicQuantizeLinear":
        return TensorProto.UINT8
    if op == "QuantizeLinear":
        return types.get(node.input[2]) if len(node.input) > 2 and node.input[2] else TensorProto.UINT8
    # the type of: the scale (DequantizeLinear), the values chosen (Where), the type copied (CastLike)
    index = {"DequantizeLinear": 1, "Where": 1, "CastLike": 1, "MatMulIntegerToFloat": 2,
             "DynamicQuantizeMatMul": 2}.get(op)
    if index is not None:
        return types.get(node.input[index]) if len(node.input) > index else None
    return next((types[name] for name in node.input if name in types), None)


def _graph_facts(graph: onnx.GraphProto) -> tuple[dict[str, int], set[str]]:
    """(element type of each value where it can be told, the values computed from initializers alone)."""
    types: dict[str, int] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    constant = {t.name for t in graph.initializer}
    types.update({t.name: t.data_type for t in graph.initializer})
    for _ in range(len(graph.node)):  # ORT writes nodes in topological order: one pass, rarely a second
        changed = False
        for node in graph.node:
            if node.output and node.output[0] not in types:
                found = _output_type(node, types)
                if found:
                    types[node.output[0]] = found
                    changed = True
            inputs = [name for name in node.input if name]
            if all(name in constant for name in inputs) and not set(node.output) <= constant:
                constant.update(node.output)  # Cast/Transpose/DequantizeLinear of a weight is still a weight
                changed = True
        if not changed:
            break
    return types, constant


def _node_format(node: onnx.NodeProto, types: dict[str, int]) -> str | None:
    if node.op_type in INTEGER_HEAVY_OPS:
        return "int8"
    for index in _OPERANDS.get(node.op_type, (0, 1)):
        if index < len(node.input) and node.input[index] in types:
            return _FLOAT_FORMATS.get(types[node.input[index]])
    return None


def heavy_node_formats(path: Path) -> Counter[str]:
    """How many heavy nodes (MatMul/Gemm/Conv/attention and their quantized forms) compute in each format.
    Those multiplying by a weight are counted when there are any; the weight matmuls carry most of the work
    at benchmark shapes and are the ones a quantizer or converter targets."""
    graph = onnx.load(str(path), load_external_data=False).graph
    types, constant = _graph_facts(graph)
    heavy = [n for n in graph.node if n.op_type in FLOAT_HEAVY_OPS or n.op_type in INTEGER_HEAVY_OPS]
    weighted = [n for n in heavy
                if any(i < len(n.input) and n.input[i] in constant for i in _OPERANDS.get(n.op_type, (0, 1)))]
    return Counter(f for f in (_node_format(n, types) for n in (weighted or heavy)) if f is not None)


def observed_precision(path: Path) -> tuple[str, Counter[str]]:
    """(the format most heavy nodes compute in, the counts); ties go to the wider format, and a graph with no
    heavy node it can type is fp32 (nothing ran narrower)."""
    counts = heavy_node_formats(path)
    if not counts:
        return "fp32", counts
    best = max(counts.values())
    return next(p for p in PRECISIONS if counts.get(p) == best), counts
