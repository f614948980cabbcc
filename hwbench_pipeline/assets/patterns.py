"""failure_patterns: every current failure, from measurements and the coverage sweep, grouped by signature."""

import dagster as dg

from hwbench_pipeline.assets.coverage import architecture_coverage
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.bench.catalog.patterns import group_failures
from hwbench_pipeline.resources.warehouse import WarehouseResource


@dg.asset(deps=[inference_results, architecture_coverage], group_name="warehouse", pool="hwbench_warehouse")
def failure_patterns(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The newest failure of every configuration (``failures``) and every architecture probe
    (``architecture_coverage``) grouped into patterns, each with its count, the architectures and targets it
    hits, the probable cause and the fix to try; written whole to ``failure_patterns`` each run."""
    store = warehouse.warehouse()
    rows = [r for r in store.read("architecture_coverage", latest=True).iter_rows(named=True)
            if r["status"] != "ok"]
    rows += list(store.read("failures", latest=True).iter_rows(named=True))
    patterns = group_failures(rows)
    run_id = context.run.run_id
    if patterns:
        store.write("failure_patterns", [p.table_row(run_id) for p in patterns], run_id=run_id)
    top = "\n".join(f"- **{p.count}** × `{p.signature[:140]}`: {p.cause}; try: {p.fix}" for p in patterns[:10])
    return dg.MaterializeResult(metadata={"failures": len(rows), "patterns": len(patterns),
                                          "top_patterns": dg.MetadataValue.md(top or "no failures")})
