"""torch eager on CPU, CUDA, ROCm (torch addresses it as cuda) and MPS."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from hwbench_pipeline.bench.backends.torch.config import AUTOCAST_DTYPES, CPU_PRECISIONS_REFUSED, TOLERANCE
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError


def _cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchRunner:
    def __init__(self, model: torch.nn.Module, inputs: dict[str, Any], forward: Any, device: str,
                 precision: str) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        self.forward = forward
        self.precision = precision
        self.from_cache = False  # torch runs the model itself: nothing is exported, so nothing is cached
        self.cache_write_s = 0.0
        self._autocast_dtype = AUTOCAST_DTYPES[precision]
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _context(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def __call__(self) -> Any:
        with torch.inference_mode(), self._context():
            out = self.forward(self.model, self.inputs)
        self._synchronize()
        return out

    def output(self) -> torch.Tensor:
        return self().float().cpu()

    def peak_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return None

    def release(self) -> None:
        del self.model, self.inputs
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class TorchBackend:
    name = "torch"

    def available(self, device_kind: str) -> tuple[bool, str]:
        if device_kind == "cpu":
            return True, ""
        if device_kind in ("cuda", "rocm"):
            return (torch.cuda.is_available(), f"torch {torch.__version__} sees no {device_kind} device")
        if device_kind == "mps":
            mps = getattr(torch.backends, "mps", None)
            return (bool(mps and mps.is_available()), "no MPS device")
        return False, f"torch does not run on {device_kind}"

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        if device_kind == "cpu":
            ok = ["fp32"] + (["bf16"] if _cpu_bf16_supported() else [])
            return tuple(p for p in ok if p not in CPU_PRECISIONS_REFUSED)
        return ("fp32", "bf16", "fp16")

    def tolerance(self, precision: str) -> float:
        return TOLERANCE[precision]

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str) -> TorchRunner:
        kind = torch.device(device).type
        allowed = self.precisions("cpu" if kind == "cpu" else "cuda")
        if precision not in allowed:
            raise UnsupportedConfigurationError(
                f"precision {precision} is not supported by torch on {device} here (supported: {', '.join(allowed)})"
            )
        return TorchRunner(model, inputs, forward, device, precision)


BACKEND = TorchBackend()
