"""The reference output a configuration's first process publishes for the later ones (export_cache.py): the later
processes check against it."""

import pytest
import torch

from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV, REFERENCE_FILE
from hwbench_pipeline.bench.failures import BenchmarkFailure
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, measure_inference
from hwbench_pipeline.bench.trackers.stats import StoppingRule

RULE = StoppingRule(min_samples=3, max_seconds=0.1, warmup_max_seconds=0.05, processes=1, max_processes=1)


def test_the_first_process_publishes_its_reference_output_and_the_later_ones_check_against_it(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(tmp_path))
    first = InferenceConfig("bert", "tiny", "cpu-torch", 1, 8, threads=1, rule=RULE)
    later = InferenceConfig("bert", "tiny", "cpu-torch", 1, 8, threads=1, rule=RULE, count_flops=False)
    row = measure_inference(first, "reference")
    published = torch.load(tmp_path / REFERENCE_FILE, weights_only=True)
    stored = published["output"]
    assert row["flops_per_call"] > 0 and stored.dtype == torch.float32 and stored.abs().sum() > 0
    assert measure_inference(later, "reference")["max_abs_diff"] < 1e-4
    # a later process checks against the published output, not one of its own: a wrong one fails it
    torch.save({**published, "output": torch.ones_like(stored) * 1e3}, tmp_path / REFERENCE_FILE)
    with pytest.raises(BenchmarkFailure, match="differ|tolerance|mismatch"):
        measure_inference(later, "reference")
    # one published for another model or other inputs is not used: the process computes its own
    torch.save({"output": torch.ones_like(stored) * 1e3, "fingerprint": "another model"}, tmp_path / REFERENCE_FILE)
    assert measure_inference(later, "reference")["max_abs_diff"] < 1e-4
