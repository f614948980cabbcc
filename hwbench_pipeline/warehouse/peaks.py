"""The peaks a target's measurements are compared with: the newest ones measured on this host."""

from __future__ import annotations

import polars as pl

from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.bench.precision import PRECISIONS
from hwbench_pipeline.warehouse.store import Warehouse


def device_peaks(warehouse: Warehouse, target_key: str) -> dict[str, float | None]:
    """The newest measured peaks of this target on this host (empty until hardware_targets has run)."""
    host = environment_fields()["host"]
    targets = warehouse.read("hardware_targets", latest=False).filter(
        (pl.col("target") == target_key) & (pl.col("host") == host)).sort("_written_at", descending=True)
    if not targets.height:
        return {}
    row = targets.row(0, named=True)
    return {p: row.get(f"peak_gflops_{p}") for p in PRECISIONS}
