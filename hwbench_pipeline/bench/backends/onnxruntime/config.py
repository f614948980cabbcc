"""Settings of the ONNX Runtime backend."""

from __future__ import annotations

#: accepted difference from the torch fp32 eager output, relative to the output's scale (see check_agreement).
# ORT fuses attention, LayerNorm, GELU and MatMul+Add and orders reductions differently from torch, so fp32
# outputs differ in the last bits. Measured on an AVX2 CPU, 1 thread, max |diff| / max |torch output|, over
# the 12 families that export: tiny 1e-7..1.2e-6, small 4e-7..2.0e-6 (xclip highest), bert base seq 128
# 8e-7. 1e-3 leaves a wide margin for bigger models, batches and other CPUs (other GEMM kernels) while still
# catching a wrong graph (a wrong op, a dropped mask, a misplaced input give differences of order 0.1-1).
# On CUDA TF32 is switched off (below) so that the same bound can apply; not yet measured on a GPU.
TOLERANCE: dict[str, float] = {"fp32": 1e-3}

#: precisions run per device kind; fp16 would need a converted graph (onnxconverter-common / float16 pass)
# with its own accuracy checks, which is not implemented, so it is not offered rather than faked.
PRECISIONS: dict[str, tuple[str, ...]] = {"cpu": ("fp32",), "cuda": ("fp32",), "rocm": ("fp32",)}

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
