"""The sensors against a real Dagster instance: new hardware → partition → a run that really measures; new catalog
families → a run of just those; new results → one refresh once nothing is measuring any more."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.bench.profiles import load_profile
from hwbench_pipeline.definitions import defs
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.sensors import (
    PARTITION_TAG,
    families_never_run,
    new_catalog_model_sensor,
    new_hardware_target_sensor,
    profile_for_families,
    refresh_after_measurement_sensor,
)
from hwbench_pipeline.warehouse.store import Warehouse

#: the code location with every sensor of sensors.py, whether or not definitions.py lists them all yet
CODE_LOCATION = dg.Definitions(
    assets=defs.assets, jobs=defs.jobs, resources=defs.resources,
    sensors=[new_hardware_target_sensor, new_catalog_model_sensor, refresh_after_measurement_sensor],
)
#: a run of the smallest real configuration: one tiny model, one batch, a short stopping rule
TINY = {"presets": ["tiny"], "batch_sizes": [1], "seq_lens": [16], "precisions": ["fp32"], "threads": 1,
        "stopping": {"ci_target": 0.05, "min_samples": 5, "max_seconds": 0.3, "warmup_max_seconds": 0.2},
        "timeout_s": 180}


def write_profile(path: Path, families: list[str]) -> Path:
    path.write_text(yaml.safe_dump({"description": "sensor test", "families": families, **TINY}))
    return path


def evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, settings: HwbenchSettings | None = None,
             warehouse: WarehouseResource | None = None, cursor: str | None = None):
    """One tick, as the daemon evaluates it. The context is closed afterwards: an unclosed one leaves Dagster's
    context-local state storage pointing at its instance after that is gone, which breaks later tests."""
    given = {"settings": settings, "warehouse": warehouse}
    resources = {key: resource for key, resource in given.items() if resource is not None} or None
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=CODE_LOCATION, cursor=cursor,
                                 resources=resources) as context:
        return sensor.evaluate_tick(context)


def execute_request(instance: dg.DagsterInstance, sensor: dg.SensorDefinition, request: dg.RunRequest,
                    data_dir: Path) -> dg.ExecuteInProcessResult:
    """Run what the daemon would launch for ``request``: the sensor's job, its partition, config and tags (the
    data directory is the test's, as a launchpad override would set it)."""
    run_config = {"resources": {**request.run_config["resources"],
                                "warehouse": {"config": {"data_dir": str(data_dir)}}}}
    tags = {k: v for k, v in request.tags.items() if not k.startswith("dagster/partition")}
    job = CODE_LOCATION.resolve_job_def(sensor.job_name)
    return job.execute_in_process(instance=instance, partition_key=request.partition_key, run_config=run_config,
                                  tags=tags, raise_on_error=False)


def add_unfinished_run(instance: dg.DagsterInstance, partition: str) -> dg.DagsterRun:
    """A measurement run of ``partition`` that has been created and not started yet."""
    job = CODE_LOCATION.resolve_job_def(new_hardware_target_sensor.job_name)
    return instance.create_run_for_job(job, tags={PARTITION_TAG: partition})


# ---- fast: no measurement ------------------------------------------------------------------------------------

def test_a_known_target_is_not_new(tmp_path):
    detected = [t.key for t in detect_targets()]
    settings = HwbenchSettings(profile=str(write_profile(tmp_path / "p.yaml", ["bert"])))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("hardware_targets", detected)
        again = evaluate(new_hardware_target_sensor, instance, settings)
        assert not again.run_requests and again.skip_message == "no new hardware target"


def test_nothing_measured_yet_means_no_family_is_new(tmp_path):
    assert families_never_run(WarehouseResource(data_dir=str(tmp_path)), ["bert", "vit"], ["cpu-torch"]) == {}


def test_a_profile_for_new_families_keeps_every_other_key(tmp_path):
    base = write_profile(tmp_path / "base.yaml", ["bert", "vit", "t5"])
    path = profile_for_families(str(base), ["vit", "t5"], tmp_path / "derived")
    derived, original = load_profile(str(path)), load_profile(str(base))
    assert derived.families == ("t5", "vit")
    assert (derived.presets, derived.batch_sizes, derived.stopping) == (
        original.presets, original.batch_sizes, original.stopping)
    # A built-in profile by name works too, and the same request writes the same file.
    quick = profile_for_families("quick", ["bert"], tmp_path / "derived")
    assert load_profile(str(quick)).families == ("bert",)
    assert profile_for_families("quick", ["bert"], tmp_path / "derived") == quick


def test_new_results_request_one_refresh_once_nothing_is_measuring():
    with dg.instance_for_test() as instance:
        def tick(cursor=None):
            return evaluate(refresh_after_measurement_sensor, instance, cursor=cursor)

        assert tick().skip_message == "no new measurement since the last refresh"
        # A materialization of one partition, as a run launched anywhere records it; another target still measures.
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch", "cpu-openvino"])
        instance.report_runless_asset_event(dg.AssetMaterialization("inference_runs", partition="cpu-torch"))
        pending = add_unfinished_run(instance, "cpu-openvino")
        waiting = tick()
        assert not waiting.run_requests and "cpu-openvino" in waiting.skip_message
        assert waiting.cursor is None  # nothing consumed: the materialization is seen again next time

        instance.report_run_canceled(pending)
        requested = tick()
        assert len(requested.run_requests) == 1 and requested.run_requests[0].job_name in (None, "refresh_job")
        assert refresh_after_measurement_sensor.job_name == "refresh_job"
        assert tick(requested.cursor).skip_message == "no new measurement since the last refresh"


def test_a_planned_round_that_landed_requests_a_refresh_that_retrains_the_predictor():
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("planned_runs"))
        requested = evaluate(refresh_after_measurement_sensor, instance)
        assert len(requested.run_requests) == 1
        assert requested.run_requests[0].tags["hwbench/refresh_after"] == "planned_runs"
        refreshed = {k.to_user_string() for k in CODE_LOCATION.resolve_job_def("refresh_job").asset_layer
                     .executable_asset_keys}
        assert "performance_predictor" in refreshed
        # the round is refreshed once: the next tick, from the cursor, has nothing new
        again = evaluate(refresh_after_measurement_sensor, instance, cursor=requested.cursor)
        assert not again.run_requests and "no new measurement" in again.skip_message


# ---- slow: the sensor's requested run measures for real -------------------------------------------------------

@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """A fresh instance; the new-target sensor ticks; its cpu-torch run executes with a one-family profile."""
    root = tmp_path_factory.mktemp("sensor")
    data_dir = root / "data"
    settings = HwbenchSettings(profile=str(write_profile(root / "bert.yaml", ["bert"])))
    with dg.instance_for_test() as instance:
        tick = evaluate(new_hardware_target_sensor, instance, settings)
        for request in tick.dynamic_partitions_requests:  # what the daemon does with the tick's requests
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        request = next(r for r in tick.run_requests if r.partition_key == "cpu-torch")
        result = execute_request(instance, new_hardware_target_sensor, request, data_dir)
        yield instance, tick, result, root, Warehouse(data_dir)


@pytest.mark.slow
def test_a_new_target_gets_its_partition_and_a_run_that_measures(backfilled):
    instance, tick, result, root, warehouse = backfilled
    detected = sorted(t.key for t in detect_targets())
    assert sorted(k for r in tick.dynamic_partitions_requests for k in r.partition_keys) == detected
    assert sorted(r.partition_key for r in tick.run_requests) == detected
    assert {r.run_config["resources"]["settings"]["config"]["profile"] for r in tick.run_requests} == {
        str(root / "bert.yaml")}

    assert result.success, [e.message for e in result.get_step_failure_events()]
    # The run materializes every measurement asset of the benchmarks group for the new partition.
    measurements = dg.AssetSelection.groups("benchmarks").resolve(CODE_LOCATION.resolve_asset_graph())
    assert {e.asset_key for e in result.get_asset_materialization_events()} == measurements
    assert instance.get_materialized_partitions(dg.AssetKey("inference_runs")) == {"cpu-torch"}
    meta = instance.get_latest_materialization_event(dg.AssetKey("inference_runs")).asset_materialization.metadata
    assert meta["profile"].value == "bert" and meta["measured"].value == 1
    rows = warehouse.read("inference_results")
    assert rows.select("target", "family", "preset").rows() == [("cpu-torch", "bert", "tiny")]
    assert rows["p50_ms"][0] > 0 and rows["n_samples"][0] >= 5


@pytest.mark.slow
def test_the_measurement_requests_one_refresh(backfilled):
    instance = backfilled[0]
    tick = evaluate(refresh_after_measurement_sensor, instance)
    assert len(tick.run_requests) == 1 and tick.run_requests[0].job_name in (None, "refresh_job")
    # the sensor's run measured every measurement asset of the partition: one refresh covers all four
    assert tick.run_requests[0].tags["hwbench/refresh_after"] == \
        "distributed_runs,generation_runs,inference_runs,training_runs"


@pytest.mark.slow
def test_a_family_new_to_the_catalog_gets_a_run_of_just_that_family(backfilled):
    instance, _, _, root, warehouse = backfilled
    settings = HwbenchSettings(profile=str(write_profile(root / "bert_vit.yaml", ["bert", "vit"])))
    warehouse_resource = WarehouseResource(data_dir=str(warehouse.data_dir))
    tick = evaluate(new_catalog_model_sensor, instance, settings, warehouse_resource)
    # Only cpu-torch has results; the other targets' first runs are new_hardware_target_sensor's business.
    assert [r.partition_key for r in tick.run_requests] == ["cpu-torch"]
    request = tick.run_requests[0]
    assert request.tags["hwbench/new_families"] == "vit"
    derived = request.run_config["resources"]["settings"]["config"]["profile"]
    assert load_profile(derived).families == ("vit",) and derived.startswith(str(warehouse.data_dir / "profiles"))
    again = evaluate(new_catalog_model_sensor, instance, settings, warehouse_resource)
    assert again.run_requests[0].run_key == request.run_key  # the daemon launches one run per key, once

    pending = add_unfinished_run(instance, "cpu-torch")
    busy = evaluate(new_catalog_model_sensor, instance, settings, warehouse_resource)
    assert not busy.run_requests and "in flight on cpu-torch" in busy.skip_message
    instance.report_run_canceled(pending)

    result = execute_request(instance, new_catalog_model_sensor, request, warehouse.data_dir)
    assert result.success, [e.message for e in result.get_step_failure_events()]
    assert sorted(warehouse.read("inference_results")["family"]) == ["bert", "vit"]
    done = evaluate(new_catalog_model_sensor, instance, settings, warehouse_resource)
    assert not done.run_requests and done.skip_message.startswith("every family of profile bert_vit")
