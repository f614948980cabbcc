"""What a generation configuration cannot run on its target, known before anything is built."""

from __future__ import annotations

from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION
from hwbench_pipeline.bench.scenarios.generation.config import GenerationConfig


def unsupported_reason(cfg: GenerationConfig, backend, device_kind: str) -> str | None:
    """Why ``cfg`` cannot run on its target, known before building anything (None: try it)."""
    reason = backend.unsupported_reason(cfg.spec, device_kind)
    if reason is not None:
        return f"precision {cfg.spec} is not supported on {cfg.target}: {reason}"
    if cfg.cache_precision != MODEL_CACHE_PRECISION and backend.name != "torch":
        return (f"a {cfg.cache_precision} KV cache is offered on torch targets only (transformers' quantized "
                f"caches); {cfg.target} runs its cache in the model's precision")
    return None
