"""Blocking asset checks that re-run a table's Great Expectations suite on the rows a run stored.

The check reads back what landed (not the rows held in memory), so it proves the stored data. A table the
run wrote nothing to passes only when nothing was expected of it.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.validation import validate


def check_spec(table: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(f"{table}_suite", asset=asset, blocking=True, description=description)


def stored_table_check(warehouse: Warehouse, table: str, suite, run_id: str, partition: str, *,
                       required: bool) -> dg.AssetCheckResult:
    """Validate this run's stored rows of ``table``; fail when ``required`` and nothing was stored."""
    stored = warehouse.read(table, where=f"run_id = '{run_id}' AND _partition = '{partition}'")
    return _suite_result(stored, table, suite, required=required)


def stored_file_check(path: Path | None, table: str, suite, *, required: bool) -> dg.AssetCheckResult:
    """Validate the rows of one file a run wrote (for tables whose rows carry other runs' ids, such as
    regressions, whose rows name the measurement run they judge)."""
    stored = pl.read_parquet(path) if path is not None else pl.DataFrame()
    return _suite_result(stored, table, suite, required=required)


def _suite_result(stored: pl.DataFrame, table: str, suite, *, required: bool) -> dg.AssetCheckResult:
    if not stored.height:
        return dg.AssetCheckResult(check_name=f"{table}_suite", passed=not required,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"summary": f"no {table} rows stored by this run", "rows": 0})
    # list and struct columns (raw samples, loss curves, per-rank figures) are in no expectation, and GX's
    # pandas datasource cannot evaluate them
    nested = [name for name, dtype in stored.schema.items() if isinstance(dtype, pl.List | pl.Struct)]
    outcome = validate(stored.drop(nested).to_pandas(), suite)
    return dg.AssetCheckResult(check_name=f"{table}_suite", passed=outcome.success,
                               severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"summary": outcome.summary(), "rows": stored.height})
