"""Inference scenario: build one model, time its forward pass on one target, return one result row."""

from hwbench_pipeline.bench.scenarios.inference.config import InferenceConfig
from hwbench_pipeline.bench.scenarios.inference.measure import failure_row, measure_inference, run_configuration
from hwbench_pipeline.bench.scenarios.inference.scenario import InferenceScenario
from hwbench_pipeline.bench.scenarios.inference.timing import (
    call_ms,
    check_agreement,
    count_flops,
    forward_counting_flops,
    time_calls,
)

__all__ = ["InferenceConfig", "InferenceScenario", "call_ms", "check_agreement", "count_flops", "failure_row",
           "forward_counting_flops", "measure_inference", "run_configuration", "time_calls"]
