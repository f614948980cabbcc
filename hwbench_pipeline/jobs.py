"""Jobs: the catalog, the per-target measurements, and the refresh of everything downstream."""

import dagster as dg

from hwbench_pipeline.assets import (
    COMPARISONS,
    COVERAGE,
    DOWNSTREAM,
    MEASUREMENTS,
    PLANNING,
    UNPARTITIONED_UPSTREAM,
    inference_runs,
    performance_predictor,
)

catalog_job = dg.define_asset_job(
    "catalog_job", selection=UNPARTITIONED_UPSTREAM,
    description="Rebuild the model catalog and detect this host's hardware targets.",
)
inference_job = dg.define_asset_job(
    "inference_job", selection=[inference_runs],
    description="Measure the profile's inference configurations on one hardware target (one partition).",
)
measurement_job = dg.define_asset_job(
    "measurement_job", selection=MEASUREMENTS,
    description="Measure the profile's inference, training and distributed-training configurations on one "
                "hardware target (one partition).",
)
coverage_job = dg.define_asset_job(
    "coverage_job", selection=COVERAGE,
    description="The coverage sweep of the profile's architectures section on one hardware target (one partition): "
                "every architecture of transformers built at its tiny preset and run once. Resumable.",
)
comparison_job = dg.define_asset_job(
    "comparison_job", selection=COMPARISONS,
    description="Measure the profile's comparisons (two targets, two precisions) interleaved on this host and test "
                "them pair by pair.",
)
refresh_job = dg.define_asset_job(
    "refresh_job", selection=DOWNSTREAM,
    description="Refresh the DuckDB catalog, retrain the predictor, rebuild recommendations and the report.",
)

planned_round_job = dg.define_asset_job(
    "planned_round_job", selection=[performance_predictor, *PLANNING],
    description="One round of the benchmark planner: retrain the predictor on every stored measurement, plan the "
                "configurations of the profile's planner space that should teach it most on each target of this "
                "host (benchmark_plan), and measure them (planned_runs).",
)


def profile_run_config(profile: str) -> dict:
    return {"resources": {"settings": {"config": {"profile": profile}}}}
