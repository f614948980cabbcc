"""One inference configuration: what is measured, at which shape and precision, with which stopping rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwbench_pipeline.bench.config_key import METHOD, SPREAD_METHOD, inference_attention, key_fields
from hwbench_pipeline.bench.precision import NO_QUANTIZATION, SPECS, parse_spec, spec_name
from hwbench_pipeline.bench.trackers.stats import StoppingRule


@dataclass(frozen=True)
class InferenceConfig:
    family: str
    preset: str
    target: str
    batch_size: int
    seq_len: int
    precision: str = "fp32"
    threads: int = 1
    #: the int8 recipe (bench/precision.py); "none" for the float formats
    quantization: str = NO_QUANTIZATION
    #: weights the training scenario kept for this model (bench/trained.py): with them the row gets the task
    #: accuracy this precision costs (bench/quality.py). None: output error only
    trained_weights: str | None = None
    rule: StoppingRule = field(default_factory=StoppingRule)
    count_flops: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.seq_len < 1 or self.threads < 1:
            raise ValueError(f"batch, sequence and threads must be positive: {self.label}")
        if parse_spec(self.spec) != (self.precision, self.quantization):  # int8 needs its recipe, floats none
            raise ValueError(f"precision {self.precision!r} with quantization {self.quantization!r} is no precision "
                             f"spec; known: {', '.join(SPECS)}")

    @property
    def label(self) -> str:
        return (f"{self.target} {self.family}/{self.preset} bs={self.batch_size} seq={self.seq_len} "
                f"{self.spec} t={self.threads}")

    @property
    def spec(self) -> str:
        """The precision as users name it: ``fp32``, ``int8-static``."""
        return spec_name(self.precision, self.quantization)

    @property
    def attention(self) -> str:
        """The attention implementation asked for (config_key.inference_attention)."""
        return inference_attention(self.target)

    def key_fields(self) -> dict[str, object]:
        method = SPREAD_METHOD if self.rule.max_processes > 1 else METHOD
        return key_fields(self, self.attention, method)
