"""inference_results: the validated results of every target, queryable through the DuckDB catalog."""

import dagster as dg
import polars as pl

from hwbench_pipeline.assets.runs import inference_runs
from hwbench_pipeline.resources.settings import HwbenchSettings


@dg.asset(deps=[inference_runs], group_name="warehouse", pool="hwbench_warehouse")
def inference_results(context: dg.AssetExecutionContext, settings: HwbenchSettings) -> dg.MaterializeResult:
    """Views over the Parquet files in data/hwbench.duckdb: ``inference_results`` (every run, the history)
    and ``inference_results_latest`` (newest run per configuration), likewise for failures, models, runs…"""
    warehouse = settings.warehouse()
    catalog = warehouse.refresh_catalog()
    latest = warehouse.read("inference_results", latest=True)
    history = warehouse.read("inference_results")
    per_target = latest.group_by("target").agg(pl.len().alias("configurations")).sort("target")
    return dg.MaterializeResult(metadata={
        "catalog": dg.MetadataValue.path(str(catalog)),
        "latest_rows": latest.height,
        "history_rows": history.height,
        "runs": history["run_id"].n_unique() if history.height else 0,
        "per_target": dg.MetadataValue.md("\n".join(
            f"- `{t}`: {n} configurations" for t, n in per_target.iter_rows()) or "none"),
        "query_example": dg.MetadataValue.md(
            f"```python\nimport duckdb\ncon = duckdb.connect('{catalog}', read_only=True)\n"
            "con.sql('SELECT target, family, batch_size, p50_ms FROM inference_results_latest').pl()\n```"),
    })
