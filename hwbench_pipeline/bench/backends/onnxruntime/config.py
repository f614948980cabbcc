"""Settings of the ONNX Runtime backend."""

from __future__ import annotations

#: accepted difference from the torch fp32 eager output, relative to the output's scale (see check_agreement).
# ORT fuses attention, LayerNorm, GELU and MatMul+Add and orders reductions differently from torch, so fp32
# outputs differ in the last bits. Measured on an AVX2 CPU, 1 thread, max |diff| / max |torch output|, over
# the 12 families that export: tiny 1e-7..1.2e-6, small 4e-7..2.0e-6 (xclip highest), bert base seq 128
# 8e-7. 1e-3 leaves a wide margin for bigger models, batches and other CPUs (other GEMM kernels) while still
# catching a wrong graph (a wrong op, a dropped mask, a misplaced input give differences of order 0.1-1).
# On CUDA TF32 is switched off (below) so that the same bound can apply; not yet measured on a GPU.
TOLERANCE: dict[str, float] = {
    "fp32": 1e-3,
    # Derived models, same measure (AVX-512 VNNI CPU, 1 thread; bert/vit/llama tiny at batch 1 seq 16, small at
    # batch 1 and 8 seq 128; static calibrated on 4 batches of other seeds, two seed sets):
    #   fp16 (the CPU runs its MatMuls in fp32 between casts): 4e-4..1.5e-3 -> 1e-2
    #   int8-dynamic: bert 0.005/0.014, vit 0.012/0.056-0.062, llama 0.023/0.041-0.050 -> 0.15
    #   int8-static: bert 0.027-0.098/0.025-0.078, vit 0.031-0.045/0.065-0.087, llama 0.042-0.066/0.068-0.092
    #   -> 0.25. Static error is mostly calibration coverage: 4 batch-1 batches leave ranges the timed input
    #   exceeds (bert tiny 0.027-0.098 by seed set, t5/clip tiny 0.12, clap tiny 0.36: beyond the bound); with
    #   16 batches bert/t5/clap tiny give 0.008-0.026.
    # The int8 bounds overlap what a broken graph gives (0.1-1): for int8 this check only catches gross
    # breakage; that integer kernels ran is checked on the executed graph instead (graph.py).
    "fp16": 1e-2,
    "int8-dynamic": 0.15,
    "int8-static": 0.25,
}

#: why a precision spec is not offered on a device kind (backend.unsupported_reason adds what it detects: on
# the CPU, whether the provider has a bf16 / fp16 MatMul kernel)
_INT8_ON_CUDA = ("ORT runs quantized models on NVIDIA GPUs through TensorRT (its 'quantization on GPU' docs), "
                 "which this backend does not use; the CUDA provider's int8 kernels cover a few ops only and "
                 "have not been verified here")
REFUSED: dict[tuple[str, str], str] = {
    # offered, an int8 label could sit on work the CUDA provider runs dequantized in fp32
    ("int8-dynamic", "cuda"): _INT8_ON_CUDA,
    ("int8-static", "cuda"): _INT8_ON_CUDA,
}
#: bf16 on any device: ORT's converter writes fp16 only (onnxruntime.transformers.float16), and on the CPU
# the provider has no bf16 MatMul/Gemm/Add kernels either (probed: NOT_IMPLEMENTED)
NO_BF16_CONVERTER = ("onnxruntime has no fp32->bf16 model converter (onnxruntime.transformers.float16 writes "
                     "fp16 only), so there is no bf16 graph to run")
#: device kinds that run fp32 only: recent onnxruntime has no ROCm provider to try anything else on
FP32_ONLY_KINDS: tuple[str, ...] = ("rocm",)

#: the ORT execution provider that runs each GPU device kind (torch addresses both as cuda:N). onnxruntime
# 1.32 no longer has a ROCm provider (AMD GPUs go through MIGraphXExecutionProvider, not wired here), so
# rocm targets are only offered by older ROCm builds of onnxruntime.
GPU_PROVIDERS: dict[str, str] = {"cuda": "CUDAExecutionProvider", "rocm": "ROCMExecutionProvider"}
#: what to do when a GPU provider is missing (shown with the reason a target is skipped)
GPU_HINTS: dict[str, str] = {
    "cuda": "the CUDA build is the onnxruntime-gpu package",
    "rocm": "recent onnxruntime releases have no ROCm provider; AMD GPUs go through MIGraphXExecutionProvider, "
            "which this backend does not use",
}

#: CUDA provider options: TF32 off so "fp32" is IEEE fp32 as the label says (ORT enables TF32 by default
# on Ampere and newer, which costs ~1e-3 relative accuracy and would be a silent precision change).
CUDA_PROVIDER_OPTIONS: dict[str, str] = {"use_tf32": "0"}

#: inter-op pool size; the intra-op pool follows torch.get_num_threads() (the scenario's thread count)
INTER_OP_THREADS = 1

#: opset of the legacy TorchScript exporter (the fallback); the dynamo exporter uses its own default
LEGACY_OPSET = 18

#: prefix of the temporary directory each prepared model is exported into (removed on release)
TMP_PREFIX = "hwbench-onnx-"

#: this backend's entry in a configuration's export cache (export_cache.py): ``<exporter>/model.onnx`` and the
#: external data file beside it, the exporter's folder naming the exporter that wrote it
CACHE_ENTRY = "onnxruntime"

#: substrings (lower case) of exporter / ORT errors that mean an operator has no ONNX translation or kernel
UNSUPPORTED_OPERATOR_MARKERS: tuple[str, ...] = (
    "no onnx function found",          # dynamo exporter: aten op without a torchlib translation
    "unsupportedoperatorerror",        # legacy exporter: missing symbolic
    "exporting the operator",          # legacy exporter: "Exporting the operator 'aten::x' ... is not supported"
    "unsupported: onnx export of",     # legacy exporter, older wording
    "could not find an implementation for",  # onnxruntime: no kernel for a node
    "not_implemented",                 # onnxruntime status code of the same
)

#: substrings (lower case) of onnxruntime load errors that mean the exported model itself is invalid
INVALID_MODEL_MARKERS: tuple[str, ...] = ("invalid_graph", "invalid_protobuf", "load model from")

# ----------------------------------------------------------------------------------------------------------
# Precision recipes (quantize.py). Every non-fp32 model is derived at prepare time from the fp32 export.
# ----------------------------------------------------------------------------------------------------------

#: int8 weights, symmetric, one scale per tensor (ORT's defaults; per-channel scales were not consistently more
# accurate on the catalog models: vit small 0.077 -> 0.043, llama small 0.058 -> 0.070, and quantize 2-5x slower)
WEIGHT_TYPE = "QInt8"
#: int8-static: QDQ, not QOperator. QDQ is the format ORT recommends and fuses per provider itself
# (DequantizeLinear -> MatMul -> QuantizeLinear becomes QLinearMatMul/QGemm on the CPU); QOperator ran 2-7x
# slower than QDQ here, and fails to load after pre-processing (the quantizer feeds LayerNormalization an
# int8 tensor). Accuracy of the two, same recipe otherwise: bert/vit/llama small 0.038/0.077/0.058 (QDQ)
# vs 0.024/0.077/0.062 (QOperator).
STATIC_QUANT_FORMAT = "QDQ"
#: uint8 activations (U8S8): the x86 int8 GEMM kernels (VPMADDUBSW, VNNI) take unsigned activations; with
# int8 (S8S8) activations the CPU provider left the activation x activation MatMuls unfused (fp32) and ran
# slower than fp32. On x86 CPUs without VNNI, U8S8 can saturate (ORT docs): there the weights use 7 bits
# (reduce_range, bench/cpu_features.py).
STATIC_ACTIVATION_TYPE = "QUInt8"
#: only the weight-carrying ops: quantizing every op (Add, Softmax, Mul, the ORT default) tripled the error
# (vit small 0.34 instead of 0.077, bert small 0.080 instead of 0.038) for no gain in speed
STATIC_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Conv")
#: MinMax: the calibration batches come from the same generator as the timed inputs, so their observed range
# is the range the timed call sees; Percentile/Entropy clip outliers, which pays off with many real samples,
# not with 4 generated batches (Percentile: vit 0.059, bert 0.036, llama 0.072 vs MinMax 0.077/0.038/0.058),
# and they build histograms (2x the quantization time).
STATIC_CALIBRATION_METHOD = "MinMax"

#: nodes that carry a model's arithmetic, as ORT writes them in the optimized graph (graph.py): the format
# of their operands is the format that ran
FLOAT_HEAVY_OPS: frozenset[str] = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "FusedMatMul", "FusedGemm", "FusedConv", "Attention",
    "MultiHeadAttention", "GroupQueryAttention", "NhwcConv",
})
INTEGER_HEAVY_OPS: frozenset[str] = frozenset({
    "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "QLinearConv",
    "ConvInteger", "QAttention", "QOrderedMatMul",
})

#: the graph a derived model's session executes, written by ORT (SessionOptions.optimized_model_filepath)
#: beside the derived model and read back to tell what ran; removed once read
SESSION_GRAPH_FILE = "session-optimized.onnx"
