"""inference_runs[target]: measure the profile's configurations on one target, validate, store."""

from hwbench_pipeline.assets.measurement import MeasurementAsset, measurement_asset
from hwbench_pipeline.bench.scenarios.inference import InferenceScenario
from hwbench_pipeline.warehouse.storing import StoredRun
from hwbench_pipeline.warehouse.validation import inference_suite


def _latency_range(stored: StoredRun) -> dict:
    p50s = sorted(r["p50_ms"] for r in stored.valid)
    return {"fastest_p50_ms": p50s[0] if p50s else None, "slowest_p50_ms": p50s[-1] if p50s else None}


inference_runs = measurement_asset(MeasurementAsset(
    InferenceScenario(),
    description="Every inference configuration of the profile on this partition's target, each measured by "
                "several short fresh processes in rounds over the partition (docs/measurement.md). Failures "
                "become classified rows; rows that fail validation go to quarantine.",
    results_check="Great Expectations suite on the rows this run stored: schema, non-null unique keys, positive "
                  "latencies, p50 ≤ p90 ≤ p99, throughput consistent with batch/latency; at least one "
                  "configuration measured.",
    suite=inference_suite,
    timeout_s=lambda profile: profile.timeout_s,
    results_required=True,
    extra_metadata=_latency_range,
))
