"""What a compiled OpenVINO model really runs, read from its runtime (execution) graph.

The CPU plugin annotates each executed node (``compiled.get_runtime_model()``) with its ``layerType`` and the
element types of its ports. The number format of a heavy op is that of its activation input: a FullyConnected
fed i8/u8 computes in int8 (statically quantized), one fed f32 with i8/u8 weights only decompresses them to
f32 unless the plugin quantizes its activations per call (dynamic quantization, invisible in the graph: the
caller says whether it is on and observed). Its ``runtimePrecision`` is not used: for compressed weights it
names the weights' type (u8) though the arithmetic runs in f32.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from hwbench_pipeline.bench.backends.openvino.config import HEAVY_LAYERS, RAN_PRECISIONS

INT8_TYPES = ("u8", "i8")


def _shape(port: Any) -> list[int] | None:
    shape = port.get_partial_shape()
    return [int(d.get_length()) for d in shape] if shape.is_static else None


def _multiply_adds(op: Any) -> float:
    """The op's multiply-adds from its static shapes (1 where a shape is unknown): output elements times the
    reduced length (weights per output channel; a MatMul's inner dimension)."""
    out = _shape(op.output(0))
    ins = [_shape(op.input(i)) for i in range(min(op.get_input_size(), 2))]
    if out is None or len(ins) < 2 or ins[0] is None or ins[1] is None or not ins[0]:
        return 1.0
    layer = op.get_rt_info()["layerType"].astype(str)
    weights = ins[1]
    if layer == "MatMul":  # both operands are activations: the inner length is the first's last dimension
        return float(math.prod(out) * ins[0][-1])
    # FullyConnected [N, K], Convolution [OC, IC, k...], grouped [G, OC/G, IC/G, k...]: weights per output
    per_output = math.prod(weights) / max(1, weights[0] * (weights[1] if len(weights) > len(out) else 1))
    return float(math.prod(out) * per_output)


def heavy_op_formats(compiled: Any, *, dynamic_int8: bool = False) -> dict[str, float]:
    """Share of the heavy ops' multiply-adds (HEAVY_LAYERS) run in each number format (fp32, bf16, fp16, int8).

    ``dynamic_int8``: the plugin quantizes activations per call where weights are i8/u8 and activations f32.
    """
    work: dict[str, float] = defaultdict(float)
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) not in HEAVY_LAYERS:
            continue
        activations = op.get_input_element_type(0).get_type_name()
        weights = op.get_input_element_type(1).get_type_name() if op.get_input_size() > 1 else ""
        if activations in INT8_TYPES or (dynamic_int8 and activations == "f32" and weights in INT8_TYPES):
            form = "int8"
        else:
            form = RAN_PRECISIONS.get(activations, activations)
        work[form] += _multiply_adds(op)
    total = sum(work.values())
    return {form: amount / total for form, amount in work.items()} if total else {}


def executed_precision(compiled: Any, *, dynamic_int8: bool = False) -> str:
    """The number format doing most of the heavy ops' multiply-adds; where the model has no heavy op, the
    inference precision the compiled model reports."""
    shares = heavy_op_formats(compiled, dynamic_int8=dynamic_int8)
    if shares:
        return max(shares, key=shares.__getitem__)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return RAN_PRECISIONS.get(hint, hint)
