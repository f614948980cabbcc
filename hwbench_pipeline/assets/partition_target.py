"""The hardware target a partition names: parsed, checked to be reachable, and its measured peaks."""

import dagster as dg

from hwbench_pipeline.assets.catalog import model_catalog
from hwbench_pipeline.assets.hardware import hardware_targets
from hwbench_pipeline.bench import hardware
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.resources.ray import RayResource

#: what every measurement asset shares: one partition per hardware target, the catalog and the targets' peaks
#: upstream, the "benchmarks" group (schedules and sensors select it) and the warehouse writers' pool
MEASUREMENT_ASSET = {
    "partitions_def": hardware_target_partitions,
    "deps": [model_catalog, hardware_targets],
    "group_name": "benchmarks",
    "pool": "hwbench_warehouse",
}


def resolve_target(target_key: str, ray: RayResource) -> hardware.HardwareTarget:
    """The partition's target; a Dagster failure with the reason when it is unknown or not reachable (on a
    local Ray, only this host's targets are)."""
    try:
        target = hardware.parse_target(target_key)
    except hardware.UnknownTargetError as exc:
        raise dg.Failure(str(exc)) from exc
    if not ray.cluster_address:
        here = [t.key for t in hardware.detect_targets()]
        if target_key not in here:
            raise dg.Failure(f"hardware target {target_key} is not available on this host and RAY_ADDRESS is "
                             f"unset; available here: {', '.join(here)}")
    return target

