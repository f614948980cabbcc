import dagster as dg

from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.definitions import defs
from hwbench_pipeline.sensors import new_hardware_target_sensor


def test_new_target_adds_its_partition_and_requests_its_runs():
    detected = [t.key for t in detect_targets()]
    assert "cpu-torch" in detected
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs)
        result = new_hardware_target_sensor.evaluate_tick(context)
        assert sorted(r.partition_key for r in result.run_requests) == sorted(detected)
        assert all(r.job_name in (None, "inference_job") for r in result.run_requests)
        added = [k for req in result.dynamic_partitions_requests for k in req.partition_keys]
        assert sorted(added) == sorted(detected)
        # What the daemon does with the request once the tick is stored:
        instance.add_dynamic_partitions("hardware_targets", added)

        # A target that is already a partition is not new: the next tick requests nothing.
        again = new_hardware_target_sensor.evaluate_tick(
            dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs))
        assert not again.run_requests and again.skip_message == "no new hardware target"


def test_new_inference_results_request_a_refresh_of_everything_downstream():
    from hwbench_pipeline.sensors import refresh_after_measurement_sensor

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs)
        assert not refresh_after_measurement_sensor.evaluate_tick(context).run_requests
        # A materialization of one partition, as a UI launch or a backfill records it:
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch"])
        instance.report_runless_asset_event(dg.AssetMaterialization("inference_runs", partition="cpu-torch"))
        result = refresh_after_measurement_sensor.evaluate_tick(
            dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs))
        assert len(result.run_requests) == 1
        assert result.run_requests[0].job_name in (None, "refresh_job")
