"""hardware_recommendations: per model, the best measured target and batch for latency and throughput."""

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.predict.recommender import recommend_measured
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.warehouse.validation import recommendations_suite


@dg.asset(deps=[inference_results], group_name="predict", pool="hwbench_warehouse", check_specs=[
    check_spec("recommendations", "hardware_recommendations",
               "Each model and objective has one recommendation with a positive figure and a named source.")])
def hardware_recommendations(context: dg.AssetExecutionContext, settings: HwbenchSettings) -> dg.MaterializeResult:
    """Measured optima only: the lowest median latency and the highest throughput per catalog model."""
    warehouse = settings.warehouse()
    rows = recommend_measured(warehouse.read("inference_results", latest=True), context.run.run_id)
    if not rows:
        raise dg.Failure("no measured results to recommend from; materialize inference_runs first")
    path = warehouse.write("recommendations", rows, run_id=context.run.run_id)
    table = ["| model | objective | target | batch | value |", "|---|---|---|---:|---:|"]
    table += [f"| {r['family']}/{r['preset']} | {r['objective']} | {r['target']} | {r['batch_size']} | "
              f"{r['value']:.3f} {r['unit']} |" for r in rows]
    check = stored_table_check(warehouse, "recommendations", recommendations_suite(), context.run.run_id, "all",
                               required=True)
    return dg.MaterializeResult(check_results=[check], metadata={
        "models": len({(r["family"], r["preset"]) for r in rows}),
        "path": dg.MetadataValue.path(str(path)),
        "recommendations": dg.MetadataValue.md("\n".join(table)),
    })
