"""Settings of the torch eager backend."""

from __future__ import annotations

import torch

#: precision name -> autocast dtype (None: run the fp32 weights as they are)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

#: fp16 has no fast kernels on CPUs: benchmarking it there by accident measures a slow path, so it is refused.
CPU_PRECISIONS_REFUSED = ("fp16",)

#: accepted difference from the fp32 eager output, relative to the output's scale (see check_agreement)
# fp32 allows for TF32 convolutions and other kernels on accelerators; on the CPU the same kernels give 0.
TOLERANCE = {"fp32": 2e-3, "bf16": 0.1, "fp16": 0.05}
