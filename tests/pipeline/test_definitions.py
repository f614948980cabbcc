import dagster as dg

from hwbench_pipeline.definitions import defs


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_graph_has_every_stage_schedule_and_sensor():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"model_catalog", "hardware_targets", "inference_runs", "training_runs", "distributed_runs",
                    "generation_runs", "inference_results", "performance_predictor", "predictions",
                    "hardware_recommendations", "regression_report", "comparison_report", "architecture_coverage",
                    "failure_patterns", "interleaved_comparisons", "benchmark_plan", "planned_runs"}
    for measured in ("inference_runs", "training_runs", "distributed_runs", "generation_runs", "architecture_coverage"):
        assert graph.get(dg.AssetKey(measured)).partitions_def.name == "hardware_targets"
    assert defs.resolve_schedule_def("nightly_quick_schedule").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("new_hardware_target_sensor") is not None
    # The coverage sweep is opt-in: outside the benchmarks group that the schedules and sensors select.
    benchmarks = dg.AssetSelection.groups("benchmarks").resolve(graph)
    assert dg.AssetKey("architecture_coverage") not in benchmarks and dg.AssetKey("inference_runs") in benchmarks
    # The interleaved comparisons span two targets: unpartitioned, outside that group, with a job of their own.
    assert graph.get(dg.AssetKey("interleaved_comparisons")).partitions_def is None
    assert dg.AssetKey("interleaved_comparisons") not in benchmarks
    assert defs.resolve_job_def("comparison_job") is not None
    # The planner's round covers every target of the host: unpartitioned, outside that group, with a job of its own
    # that retrains the predictor, plans and measures the plan.
    for planned in ("benchmark_plan", "planned_runs"):
        assert graph.get(dg.AssetKey(planned)).partitions_def is None and dg.AssetKey(planned) not in benchmarks
    job = defs.resolve_job_def("planned_round_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "performance_predictor", "benchmark_plan", "planned_runs"}
    assert graph.get(dg.AssetKey("planned_runs")).parent_keys == {dg.AssetKey("benchmark_plan")}
    assert defs.resolve_schedule_def("daily_planned_round_schedule").job_name == "planned_round_job"
    # The validation gate is blocking: a failed suite stops the predictor and the report in the same run.
    specs = sorted(graph.get(dg.AssetKey("inference_runs")).check_keys, key=lambda k: k.name)
    assert [c.name for c in specs] == ["failures_suite", "inference_results_suite", "latency_samples_suite"]
    assert all(graph.get_check_spec(spec).blocking for spec in specs)
    for asset in ("training_runs", "distributed_runs", "generation_runs", "predictions", "hardware_recommendations",
                  "regression_report", "interleaved_comparisons", "planned_runs"):
        checks = graph.get(dg.AssetKey(asset)).check_keys
        assert checks and all(graph.get_check_spec(c).blocking for c in checks), asset
