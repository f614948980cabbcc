"""One generation configuration: a model, a prompt length, how many tokens to generate greedily, the batch, the
precision, the KV cache and its precision, and the stopping rule over whole sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwbench_pipeline.bench.config_key import inference_attention, key_fields
from hwbench_pipeline.bench.precision import (  # noqa: F401 - CACHE_PRECISIONS re-exported
    CACHE_PRECISIONS,
    MODEL_CACHE_PRECISION,
    NO_QUANTIZATION,
    SPECS,
    parse_spec,
    spec_name,
)
from hwbench_pipeline.bench.trackers.stats import StoppingRule

#: what a profile's ``caches`` means when it names none: each backend's own default (GeneratingBackend)
DEFAULT_CACHE = "default"
#: every backend's cache implementations: torch's dynamic, static and compiled (static + torch.compile),
#: past key/values passed through an exported graph (ONNX Runtime), state kept inside the model (OpenVINO)
CACHE_NAMES = ("dynamic", "static", "compiled", "past-io", "stateful")
#: one generated sequence takes seconds, not milliseconds: a sample is a whole sequence, so fewer are needed
GENERATION_RULE = StoppingRule(ci_target=0.02, min_samples=5, max_seconds=20.0, warmup_min_calls=1,
                               warmup_window=1, warmup_max_seconds=5.0, processes=1, max_processes=1)


@dataclass(frozen=True)
class GenerationConfig:
    family: str
    preset: str
    target: str
    batch_size: int
    seq_len: int  # prompt tokens (the family's sequence meaning: t5's encoder input, whisper's decoder prompt)
    new_tokens: int  # generated greedily, every one of them: no early stop on an end-of-sequence token
    precision: str = "fp32"
    quantization: str = NO_QUANTIZATION
    #: the cache implementation asked for: one the target's backend offers (GeneratingBackend.generation_caches)
    cache: str = "dynamic"
    cache_precision: str = MODEL_CACHE_PRECISION
    #: recent tokens a quantized cache keeps unquantized (transformers' residual_length); recorded on the row
    residual_length: int = 0
    threads: int = 1
    rule: StoppingRule = field(default_factory=lambda: GENERATION_RULE)
    seed: int = 0
    #: after measuring in process, the same configuration streamed over hwbench serve-generate's WebSocket to
    #: this many concurrent clients each (bench/streaming.py); empty: not streamed. Not part of the key.
    stream_clients: tuple[int, ...] = ()
    #: where the learned copy decoder is kept (bench/kv_quality): with it, a quantized-cache row gets the quality
    #: its cache precision costs that model. None: no quality figures. Not part of the key.
    quality_dir: str | None = None

    def __post_init__(self) -> None:
        if min(self.batch_size, self.seq_len, self.new_tokens, self.threads) < 1:
            raise ValueError(f"batch, prompt, new tokens and threads must be positive: {self.label}")
        if any(c < 1 for c in self.stream_clients):
            raise ValueError(f"stream_clients must be positive counts, got {self.stream_clients}")
        if self.residual_length < 0:
            raise ValueError(f"residual_length must be zero or more, got {self.residual_length}")
        if parse_spec(self.spec) != (self.precision, self.quantization):
            raise ValueError(f"precision {self.precision!r} with quantization {self.quantization!r} is no precision "
                             f"spec; known: {', '.join(SPECS)}")

    @property
    def spec(self) -> str:
        return spec_name(self.precision, self.quantization)

    @property
    def label(self) -> str:
        kv = "" if self.cache_precision == MODEL_CACHE_PRECISION else f" kv={self.cache_precision}"
        return (f"{self.target} generate {self.family}/{self.preset} bs={self.batch_size} prompt={self.seq_len} "
                f"new={self.new_tokens} {self.spec} {self.cache}{kv} t={self.threads}")

    @property
    def attention(self) -> str:
        return inference_attention(self.target)

    def key_fields(self) -> dict[str, object]:
        fields = key_fields(self, self.attention)
        fields["cache_precision"] = self.cache_precision
        return {**fields, "new_tokens": self.new_tokens, "cache_implementation": self.cache}
