"""performance_predictor: XGBoost latency model trained on every measured row."""

import dagster as dg

from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.predict.predictor import NotEnoughDataError, train
from hwbench_pipeline.resources.settings import HwbenchSettings


@dg.asset(deps=[inference_results], group_name="predict", pool="hwbench_warehouse")
def performance_predictor(context: dg.AssetExecutionContext, settings: HwbenchSettings) -> dg.MaterializeResult:
    """Predicts median latency from the model's shape, the workload and the target. Its held-out error
    (leaving out one whole family at a time) is in the metadata: read it before trusting a prediction."""
    warehouse = settings.warehouse()
    try:
        schema = train(warehouse.read("inference_results", latest=True), warehouse.read("models", latest=True),
                       settings.predictor_dir)
    except NotEnoughDataError as exc:
        raise dg.Failure(str(exc)) from exc
    evaluation = schema["evaluation"]
    metadata = {
        "model_path": dg.MetadataValue.path(str(settings.predictor_dir / schema["model_file"])),
        "training_rows": schema["n_rows"],
        "training_fingerprint": schema["training_fingerprint"],
        "evaluation_method": evaluation["method"],
        "held_out_families": evaluation["n_groups"],
    }
    for name in ("mape", "median_ape", "within_10pct", "within_20pct"):
        if evaluation[name] is not None:
            metadata[f"held_out_{name}"] = dg.MetadataValue.float(round(evaluation[name], 4))
    context.log.info(f"predictor: {schema['n_rows']} rows, held-out MAPE {evaluation['mape']}")
    return dg.MaterializeResult(metadata=metadata)
