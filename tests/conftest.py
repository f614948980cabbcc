import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # test clusters (ray.cluster_utils) need no token
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

# tests/ holds shared fixture builders (measured_warehouse.py) that test modules import by name
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def measured_warehouse(tmp_path_factory) -> Path:
    """A data directory with two real runs of tiny models, the predictor and regression findings (shared by
    the notebook and report tests)."""
    from measured_warehouse import build_measured_warehouse

    return build_measured_warehouse(tmp_path_factory.mktemp("measured_data"))


SWEEP_PROFILE = """
description: distributed test sweep
families: [bert]
presets: [tiny]
batch_sizes: [1]
seq_lens: [16]
precisions: [fp32]
distributed:
  families: [bert]
  presets: [tiny]
  strategies: [ddp, fsdp, pipeline]
  workers: [1, 2]
  batch_size: 4
  seq_len: 16
  steps: 5
  warmup_steps: 1
  microbatches: 2
  threads_per_worker: 1
  timeout_s: 300
"""


@pytest.fixture(scope="session")
def distributed_sweep(tmp_path_factory):
    """The distributed_runs asset on cpu-torch with DDP, FSDP and pipeline on 1 and 2 workers (a private local
    Ray instance; a few minutes). Shared by the distributed tests and the report's distributed section."""
    import dagster as dg

    from hwbench_pipeline.assets.distributed import distributed_runs
    from hwbench_pipeline.resources.ray import RayResource
    from hwbench_pipeline.resources.settings import HwbenchSettings
    from hwbench_pipeline.resources.warehouse import WarehouseResource
    from hwbench_pipeline.warehouse.store import Warehouse

    root = tmp_path_factory.mktemp("sweep")
    profile = root / "sweep.yaml"
    profile.write_text(SWEEP_PROFILE)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("HWBENCH_LOCK_DIR", str(root / "locks"))
        mp.delenv("RAY_ADDRESS", raising=False)
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch"])
        result = dg.materialize(
            [distributed_runs], partition_key="cpu-torch", instance=instance, raise_on_error=False,
            resources={"settings": HwbenchSettings(profile=str(profile)),
                       "warehouse": WarehouseResource(data_dir=str(root / "data")),
                       "ray": RayResource(address="")})
    # The instance is closed before any other test runs: an instance left open for the session would leave
    # Dagster's context-local state storage pointing at it when fixtures of other modules close theirs.
    return result, Warehouse(root / "data")
