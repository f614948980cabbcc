"""Blocking asset checks that re-run a table's Great Expectations suite on the rows a run stored.

The check reads back what landed (not the rows held in memory), so it proves the stored data. A table the
run wrote nothing to passes only when nothing was expected of it.
"""

import dagster as dg

from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.validation import validate

#: list columns GX's pandas datasource cannot evaluate; they are not part of any expectation
_LIST_COLUMNS = ("samples_ms", "loss_curve", "per_rank_throughput", "resource_samples")


def check_spec(table: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(f"{table}_suite", asset=asset, blocking=True, description=description)


def stored_table_check(warehouse: Warehouse, table: str, suite, run_id: str, partition: str, *,
                       required: bool) -> dg.AssetCheckResult:
    """Validate this run's stored rows of ``table``; fail when ``required`` and nothing was stored."""
    stored = warehouse.read(table, where=f"run_id = '{run_id}' AND _partition = '{partition}'")
    if not stored.height:
        return dg.AssetCheckResult(check_name=f"{table}_suite", passed=not required,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"summary": f"no {table} rows stored by this run", "rows": 0})
    frame = stored.drop([c for c in _LIST_COLUMNS if c in stored.columns]).to_pandas()
    outcome = validate(frame, suite)
    return dg.AssetCheckResult(check_name=f"{table}_suite", passed=outcome.success,
                               severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"summary": outcome.summary(), "rows": stored.height})
