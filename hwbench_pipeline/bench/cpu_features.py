"""What the host CPU can do, as torch detects it (``torch.cpu.get_capabilities``)."""

from __future__ import annotations

import functools
import platform

#: x86 instructions that multiply u8 by s8 into 32-bit sums in one step; without them the u8 x s8 kernels go
#: through 16-bit intermediate sums that can saturate (ONNX Runtime's and torchao's docs: reduce the range)
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.cache
def cpu_capabilities() -> dict[str, object]:
    import torch

    return dict(torch.cpu.get_capabilities())


def int8_saturates() -> bool:
    """Whether u8 x s8 int8 kernels can saturate here: an x86 CPU without VNNI or AMX-INT8."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not any(cpu_capabilities().get(name) for name in INT8_DOT_PRODUCT)
