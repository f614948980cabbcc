"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources."""

import dagster as dg

from hwbench_pipeline.assets import ALL_ASSETS
from hwbench_pipeline.jobs import (
    catalog_job,
    comparison_job,
    coverage_job,
    inference_job,
    measurement_job,
    planned_round_job,
    refresh_job,
)
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.schedules import (
    daily_planned_round_schedule,
    nightly_quick_schedule,
    weekly_architectures_schedule,
    weekly_full_schedule,
)
from hwbench_pipeline.sensors import (
    new_catalog_model_sensor,
    new_hardware_target_sensor,
    refresh_after_measurement_sensor,
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[catalog_job, inference_job, measurement_job, coverage_job, comparison_job, refresh_job, planned_round_job],
    schedules=[nightly_quick_schedule, weekly_full_schedule, weekly_architectures_schedule,
               daily_planned_round_schedule],
    sensors=[new_hardware_target_sensor, new_catalog_model_sensor, refresh_after_measurement_sensor],
    # the defaults; the launchpad overrides any field for one run (resources.warehouse.config.data_dir, …)
    resources={"settings": HwbenchSettings(), "warehouse": WarehouseResource(), "ray": RayResource()},
)
