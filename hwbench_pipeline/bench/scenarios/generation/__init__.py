"""Generation scenario: greedy token-by-token decoding with a KV cache; time to first token, inter-token
latency, tokens per second and cache bytes per configuration (docs/generation.md)."""

from hwbench_pipeline.bench.scenarios.generation.config import (
    CACHE_NAMES,
    CACHE_PRECISIONS,
    DEFAULT_CACHE,
    GENERATION_RULE,
    MODEL_CACHE_PRECISION,
    GenerationConfig,
)
from hwbench_pipeline.bench.scenarios.generation.decode import Sequence, generate, sequence_figures, time_sequences
from hwbench_pipeline.bench.scenarios.generation.measure import (
    generation_failure_row,
    measure_generation,
    reference_generation,
    run_generation_configuration,
)
from hwbench_pipeline.bench.scenarios.generation.scenario import GenerationScenario

__all__ = [
    "CACHE_NAMES", "CACHE_PRECISIONS", "DEFAULT_CACHE", "GENERATION_RULE", "MODEL_CACHE_PRECISION",
    "GenerationConfig", "GenerationScenario", "Sequence", "generate", "generation_failure_row",
    "measure_generation", "reference_generation", "run_generation_configuration", "sequence_figures",
    "time_sequences",
]
