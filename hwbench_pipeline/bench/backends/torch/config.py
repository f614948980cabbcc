"""Settings of the torch eager backend."""

from __future__ import annotations

import torch

#: number format -> autocast dtype (None: run the fp32 weights as they are). int8 is not autocast: its
#: weights are torchao tensors (INT8_LAYERS) and run without an autocast context.
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

#: CPU features that do bf16 / fp16 arithmetic natively (names of torch.cpu.get_capabilities()). A format is
#: offered on a CPU only when one of them is present and oneDNN also reports support: without them autocast
#: runs an emulated or reference path, so its timings would not measure that format.
NATIVE_CPU_FEATURES: dict[str, dict[str, tuple[str, ...]]] = {
    "bf16": {"x86_64": ("avx512_bf16", "amx_bf16"), "arm64": ("bf16", "sve_bf16")},
    "fp16": {"x86_64": ("avx512_fp16", "amx_fp16"), "arm64": ("fp16_arith",)},
}

#: Which layers int8 quantizes: every torch.nn.Linear except nn.MultiheadAttention's out_proj
# (NonDynamicallyQuantizableLinear, whose weight MHA reads directly), i.e. torchao's own default filter.
# Convolutions (also transformers' GPT-2 style Conv1D), embeddings, norms and attention's matmuls stay fp32.
# Recipes (torchao 0.18, Int8Tensor weights, int8 x int8 -> int32 torch._int_mm on the CPU):
#   int8-dynamic: Int8DynamicActivationInt8WeightConfig, weights per output channel, activations per token
#                 with their range taken from each call;
#   int8-static:  Int8StaticActivationInt8WeightConfig, weights per output channel, activations per tensor
#                 with a fixed symmetric scale max|input| / 127 observed over the calibration batches
#                 (/ 63 on CPUs without VNNI, where torchao halves the int8 range against overflow).
INT8_LAYERS = "torch.nn.Linear (not nn.MultiheadAttention.out_proj)"

#: int8 is reported (and run) only when at least this share of the model's matmul/conv weights (parameters
# of 2+ dims outside nn.Embedding) became int8: a model that is mostly convolutions (DETR's ResNet backbone,
# ~24 % Linear at tiny) would otherwise be labelled int8 while running mostly fp32.
INT8_MIN_WEIGHT_SHARE = 0.5

#: accepted difference from the fp32 eager output, relative to the output's scale (see check_agreement)
# fp32 allows for TF32 convolutions and other kernels on accelerators; on the CPU the same kernels give 0.
# int8, measured on an AMD EPYC (AVX512-VNNI, no AMX), torch 2.13 + torchao 0.18, max |diff| / max |fp32
# output| over seeds 0-2 x (batch 1, seq 16 | batch 4, seq 64; vit at its image size), 4 calibration batches
# of other seeds for static:
#   int8-dynamic: bert tiny 4e-4..5e-4, small 0.008..0.010; vit tiny 0.009..0.017, small 0.025..0.044;
#                 llama tiny 0.011..0.018, small 0.027..0.037. Bound 0.1: 2.3x the worst, and a broken graph
#                 (differences of order 0.1-1) still fails.
#   int8-static:  bert tiny 5e-4..0.002, small 0.010..0.012; vit tiny 0.009..0.024, small 0.042..0.071;
#                 llama tiny 0.018..0.124, small 0.035..0.048. The 0.124 is clipping, not a bug: llama tiny's
#                 first o_proj saw inputs up to 0.62 against a calibrated 0.45. Bound 0.25 (2x the worst): it
#                 only catches gross breakage; a broken graph giving 0.1-0.25 would pass for static int8.
# The other tiny families (seed 0, batch 2, seq 16): dynamic 0.006 (xclip)..0.034 (clap), static 0.010..0.137
# (clap; xclip 0.061); detr is refused (INT8_MIN_WEIGHT_SHARE).
TOLERANCE: dict[str, float] = {"fp32": 2e-3, "bf16": 0.1, "fp16": 0.05, "int8-dynamic": 0.1, "int8-static": 0.25}
