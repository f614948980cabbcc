"""inference_results: the validated results of every target, queryable through the DuckDB catalog."""

import dagster as dg

from hwbench_pipeline.assets.runs import inference_runs
from hwbench_pipeline.resources.warehouse import WarehouseResource


@dg.asset(deps=[inference_runs], group_name="warehouse", pool="hwbench_warehouse")
def inference_results(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Views over the Parquet files in data/hwbench.duckdb: ``inference_results`` (every run, the history)
    and ``inference_results_latest`` (newest run per configuration), likewise for failures, models, runs…"""
    catalog = warehouse.warehouse().refresh_catalog()
    # the figures come through the views just built, as any reader of the catalog sees them
    with warehouse.get_connection() as connection:
        latest_rows, history_rows, runs = connection.execute(
            "SELECT (SELECT count(*) FROM inference_results_latest), count(*), count(DISTINCT run_id) "
            "FROM inference_results").fetchone()
        per_target = connection.execute("SELECT target, count(*) FROM inference_results_latest "
                                        "GROUP BY target ORDER BY target").fetchall()
    return dg.MaterializeResult(metadata={
        "catalog": dg.MetadataValue.path(str(catalog)),
        "latest_rows": latest_rows,
        "history_rows": history_rows,
        "runs": runs,
        "per_target": dg.MetadataValue.md("\n".join(
            f"- `{t}`: {n} configurations" for t, n in per_target) or "none"),
        "query_example": dg.MetadataValue.md(
            f"```python\nimport duckdb\ncon = duckdb.connect('{catalog}', read_only=True)\n"
            "con.sql('SELECT target, family, batch_size, p50_ms FROM inference_results_latest').pl()\n```"),
    })
