"""predictions: every configuration of the profile that nobody measured, with a predicted figure and interval."""

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.features import query_frame
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.shapes import FlopCounter
from hwbench_pipeline.predict.space import prediction_rows, profile_space, unmeasured
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.validation import predictions_suite


@dg.asset(deps=[performance_predictor], group_name="predict", pool="hwbench_warehouse", check_specs=[
    check_spec("predictions", "predictions",
               "Each predicted figure is positive, inside its own interval, with a confidence and a source.")])
def predictions(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Latency, throughput and peak memory for every model x target x batch x sequence x precision of the
    profile that has no measurement, each labelled ``predicted`` (the XGBoost models, with a 90 % interval)
    or ``roofline`` (the fallback), with a confidence. Configurations known to fail (measured to fail, or
    covered by a model-level or out-of-memory failure) get no prediction."""
    store = warehouse.warehouse()
    inputs = data.load(store)
    predictor = Predictor.load(warehouse.predictor_dir)
    space = profile_space(settings.load_profile(), inputs.targets)
    todo, n_measured, n_failed = unmeasured(space, inputs.results, inputs.failures)
    run_id = context.run.run_id
    rows: list[dict] = []
    if todo.height:
        counter = FlopCounter.from_results(inputs.results, warehouse.predictor_dir / "flops_cache.json")
        frame = query_frame(todo, inputs.targets, counter, models=inputs.models)
        rows = prediction_rows(frame, predictor.predict(frame), run_id, predictor.schema["training_fingerprint"])
    path = store.write("predictions", rows, run_id=run_id) if rows else None
    check = stored_table_check(store, "predictions", predictions_suite(), run_id, "all", required=bool(rows))
    latency = [r for r in rows if r["metric"] == "latency_ms"]
    by_source = {s: sum(r["source"] == s for r in latency) for s in ("predicted", "roofline")}
    by_confidence = {c: sum(r["confidence"] == c for r in latency) for c in ("high", "medium", "low")}
    context.log.info(f"predictions: {len(latency)} configurations predicted, {n_measured} measured, "
                     f"{n_failed} known to fail")
    return dg.MaterializeResult(check_results=[check], metadata={
        "space": space.height,
        "measured": n_measured,
        "known_to_fail": n_failed,
        "predicted_configurations": len(latency),
        **{f"source_{k}": v for k, v in by_source.items()},
        **{f"confidence_{k}": v for k, v in by_confidence.items()},
        "model_fingerprint": predictor.schema["training_fingerprint"],
        "path": dg.MetadataValue.path(str(path)) if path else "nothing to predict",
    })
