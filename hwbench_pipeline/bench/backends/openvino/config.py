"""Settings of the OpenVINO backend (CPU plugin, models converted straight from torch)."""

from __future__ import annotations

import logging

#: precision spec -> OpenVINO element type name of INFERENCE_PRECISION_HINT. The int8 recipes run what they do
#: not quantize in f32, as the other backends' int8 does (the plugin's default would be bf16 where it has it).
OV_PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8-dynamic": "f32",
                                 "int8-static": "f32"}
#: element type name (a compiled model's hint, a runtime op's activation type) -> our number format
RAN_PRECISIONS: dict[str, str] = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}
#: OPTIMIZATION_CAPABILITIES entry the CPU plugin reports where it runs each spec natively.
# fp16 is offered only where the plugin reports FP16 (AVX512-FP16/AMX-FP16): elsewhere an f16 hint silently
# runs bf16 (or f32), the very numbers of the bf16 (fp32) row, so an fp16 row would only mislabel them.
CAPABILITIES: dict[str, str] = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8-dynamic": "INT8",
                                "int8-static": "INT8"}

#: compile properties besides precision and thread count. One stream and the latency hint: one request at a
#: time, all its threads on it. No pinning: the other backends do not pin either, and on a shared host two
#: pinned workers may land on the same core. No dynamic activation quantization (it would change what runs),
#: except for int8-dynamic, whose recipe it is (DYNAMIC_QUANTIZATION_GROUP_SIZE below).
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

#: DYNAMIC_QUANTIZATION_GROUP_SIZE of int8-dynamic (every other spec compiles with 0): activations quantized
#: per call in groups of 32 input channels, the CPU plugin's own default. Per-token (UINT64_MAX) is no multiple of
#: 16, which the x86 kernel needs: 2026.4 then silently runs weight-only decompression to f32.
DYNAMIC_QUANTIZATION_GROUP_SIZE = 32
#: nncf.CompressWeightsMode of int8-dynamic's weights: NNCF's default, per output channel
WEIGHT_COMPRESSION_MODE = "INT8_ASYM"
#: NNCF log level while it quantizes: its INFO tables (bit-width statistics) are not worker output
NNCF_LOG_LEVEL = logging.WARNING
# int8-static: NNCF's TRANSFORMER model type where the graph has attention, SmoothQuant off. SmoothQuant moves
# trained models' activation outliers into the weights; the catalog's random weights have none, and it made
# the int8 error of llama 3-5x worse (tiny 0.031 -> 0.14, small 0.047 -> 0.22) and of bert/vit 1.3-1.6x.
# Without TRANSFORMER, bert small and vit tiny/small reach 0.19-0.37: quantized softmax/normalization inputs.

#: runtime layer types where a model's multiply-adds are: the ops whose number format a row reports (on AMX
#: CPUs the plugin fuses bf16/f16 q/k/v projections and gated MLPs into QKVProjection and LLMMLP nodes)
HEAVY_LAYERS: tuple[str, ...] = ("FullyConnected", "MatMul", "Convolution", "Deconvolution", "QKVProjection",
                                 "LLMMLP")

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
# Measured for the other specs (1 thread, an AMD EPYC with AVX512-BF16/VNNI; bert, vit, llama at presets tiny
# and small; batch x sequence 1x16, 2x8, 4x64, 1x128 at small; calibration on 4 other-seed batches), largest:
# bf16 0.018 (vit small; bert <= 2.1e-3, llama <= 9.7e-3); int8-dynamic 0.035 (vit small; bert <= 0.010,
# llama <= 0.026); int8-static 0.068 (llama tiny; bert <= 0.012, vit <= 0.052, llama small <= 0.040). int8
# bounds keep 2-3x margins: a graph quantized without the TRANSFORMER type already gives 0.19-0.37.
# fp16 is not measured (no FP16 CPU here): bf16's bound, f16 has 3 more mantissa bits.
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "bf16": 0.1, "fp16": 0.1, "int8-dynamic": 0.1, "int8-static": 0.15}

#: phrases of OpenVINO's error text that mean an operator it lacks, lower case: the torch frontend's
#: "No conversion rule found for operations: aten::x", the CPU plugin's "Unsupported operation of type: X"
#: and "Cannot create X layer ... from unsupported opset". Any other conversion/compile error is export_error.
UNSUPPORTED_OPERATOR_MARKERS: tuple[str, ...] = (
    "no conversion rule found for operations",
    "unsupported operation of type",
    "from unsupported opset",
)
