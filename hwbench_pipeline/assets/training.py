"""training_runs[target]: train the profile's models on one target (step latency, memory, convergence,
batch-size sweep), validate, store."""

import dagster as dg

from hwbench_pipeline.assets.measurement import MeasurementAsset, measurement_asset
from hwbench_pipeline.bench.scenarios.training import TrainingScenario
from hwbench_pipeline.warehouse.storing import StoredRun
from hwbench_pipeline.warehouse.validation import training_suite


def _training_figures(stored: StoredRun) -> dict:
    valid = stored.valid
    with_convergence = [r for r in valid if r.get("convergence_steps")]
    largest = {(r["family"], r["preset"], r["seq_len"], r["precision"]): r for r in valid}.values()
    return {
        "converged": f"{sum(bool(r['converged']) for r in with_convergence)} of {len(with_convergence)}",
        "not_converged": ", ".join(f"{r['family']}/{r['preset']} bs={r['batch_size']}"
                                   for r in with_convergence if not r["converged"]) or "none",
        "largest_batch_in_budget": dg.MetadataValue.md("\n".join(
            f"- {r['family']}/{r['preset']} seq={r['seq_len']} {r['precision']}: {r['max_batch_in_budget']} "
            f"(stop: {r['batch_scaling_stop']})" for r in largest) or "none"),
    }


training_runs = measurement_asset(MeasurementAsset(
    TrainingScenario(),
    description="The profile's training configurations on this partition's target: forward, backward and an "
                "AdamW step per configuration, each in a fresh process, with a convergence run on the family's "
                "standard task and a batch-size sweep up to the memory budget. Failures become classified rows; "
                "rows that fail validation go to quarantine.",
    results_check="Great Expectations suite on the training rows this run stored: schema, non-null unique keys, "
                  "positive ordered step latencies, throughput = batch / p50, a memory budget, forward+backward "
                  "FLOPs above the forward's, sane convergence figures; at least one configuration measured when "
                  "the target can train.",
    suite=training_suite,
    timeout_s=lambda profile: profile.training.timeout_s if profile.training else profile.timeout_s,
    extra_metadata=_training_figures,
))
