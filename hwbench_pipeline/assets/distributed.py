"""distributed_runs[target]: train the profile's models on Ray Train (DDP, FSDP, pipeline) over 1..N workers on
one target, validate, store."""

import dagster as dg

from hwbench_pipeline.assets.measurement import MeasurementAsset, measurement_asset
from hwbench_pipeline.bench.scenarios.distributed import DistributedScenario
from hwbench_pipeline.warehouse.storing import StoredRun
from hwbench_pipeline.warehouse.validation import distributed_suite


def _distributed_figures(stored: StoredRun) -> dict:
    valid = stored.valid
    scaling = [f"- {r['strategy']} x{r['workers']} {r['family']}/{r['preset']}: {r['throughput_samples_s']:.1f} "
               f"samples/s, efficiency {r['scaling_efficiency']:.2f}" for r in valid if r["scaling_efficiency"]]
    return {
        "retried": sum(1 for r in valid if (r.get("attempts") or 1) > 1),
        "contaminated": sum(1 for r in valid if r.get("contaminated")),
        "scaling_efficiency": dg.MetadataValue.md("\n".join(scaling) or "none"),
    }


distributed_runs = measurement_asset(MeasurementAsset(
    DistributedScenario(),
    description="The profile's distributed training configurations on this partition's target: Ray Train runs "
                "DDP, FSDP and pipeline-parallel training over 1..N workers placed on nodes that advertise the "
                "target, each rank's throughput is collected, scaling efficiency is computed against the 1-worker "
                "run, and every node's resource use is sampled. Failures (a worker lost beyond its retries, a "
                "configuration the cluster cannot place) become classified rows; rows that fail validation go to "
                "quarantine.",
    results_check="Great Expectations suite on the distributed rows this run stored: keys with strategy and "
                  "workers, every rank reported a positive throughput, positive ordered step latencies, "
                  "throughput = batch / p50, scaling efficiency in (0, 2], losses present; at least one "
                  "configuration measured when the target can train.",
    suite=distributed_suite,
    timeout_s=lambda profile: profile.distributed.timeout_s if profile.distributed else profile.timeout_s,
    extra_metadata=_distributed_figures,
))
