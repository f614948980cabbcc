"""Settings of the OpenVINO backend (CPU plugin, models converted straight from torch)."""

from __future__ import annotations

#: our precision name -> OpenVINO element type name of INFERENCE_PRECISION_HINT
OV_PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}
#: what the compiled model reports back (Type.get_type_name()) -> our precision name
RAN_PRECISIONS: dict[str, str] = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
#: OPTIMIZATION_CAPABILITIES entry the CPU plugin reports where it runs each precision natively
CAPABILITIES: dict[str, str] = {"fp32": "FP32", "bf16": "BF16"}

#: compile properties besides precision and thread count. One stream and the latency hint: one request at a
#: time, all its threads on it. No pinning: the other backends do not pin either, and on a shared host two
#: pinned workers may land on the same core. No dynamic activation quantization (it would change what runs).
#: Hyper-threading allowed: the thread count asked for decides, counted in logical CPUs as torch counts them
#: (the plugin still caps it at the CPUs it sees; the backend reads the count back and refuses a capped one).
#: EXECUTION_MODE_HINT is the plugin's default, stated so that a changed default cannot change the numbers; the
#: explicit INFERENCE_PRECISION_HINT decides the precision (a bf16 request on a CPU without bf16 compiles as f32).
COMPILE_PROPERTIES: dict[str, object] = {
    "NUM_STREAMS": 1,
    "PERFORMANCE_HINT": "LATENCY",
    "EXECUTION_MODE_HINT": "PERFORMANCE",
    "ENABLE_CPU_PINNING": False,
    "ENABLE_HYPER_THREADING": True,
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
}

#: this backend's entry in a configuration's export cache (export_cache.py): a folder with the converted model
#: as saved by ``ov.save_model`` (the graph file and its weights file beside it), and the graph file's name
CACHE_ENTRY = "openvino"
CACHE_MODEL = "model.xml"

#: accepted difference from the torch fp32 eager output, relative to the output's scale (see check_agreement).
# Measured (openvino 2026.4.1, torch 2.13, 1 thread, an AVX2-only AMD EPYC, f32), 12 families that convert:
# preset tiny 1.3e-7 .. 1.2e-6 (wav2vec2 largest), preset small 4.3e-7 .. 3.9e-6 (clip largest), bert base at
# sequence 128 8.9e-7. OpenVINO fuses ops and reorders reductions (and other ISAs pick other kernels), so the
# bound keeps a ~25x margin over the largest seen while staying far below what a bf16 run gives.
# bf16 (only where the CPU plugin reports BF16): 8 mantissa bits, as torch's own bf16 tolerance.
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "bf16": 0.1}

#: phrases of OpenVINO's error text that mean an operator it lacks, lower case: the torch frontend's
#: "No conversion rule found for operations: aten::x", the CPU plugin's "Unsupported operation of type: X"
#: and "Cannot create X layer ... from unsupported opset". Any other conversion/compile error is export_error.
UNSUPPORTED_OPERATOR_MARKERS: tuple[str, ...] = (
    "no conversion rule found for operations",
    "unsupported operation of type",
    "from unsupported opset",
)
