"""What the predictor and the recommender read from the warehouse, in one bundle.

Inference rows are ``mode = inference``. When the warehouse has a ``training_results`` table with rows, they
join as ``mode = training`` (one call = one optimizer step; its FLOPs are the forward pass's, the roofline
triples them). ``distributed_results`` is read when the table exists; both are optional.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hwbench_pipeline.warehouse.schema import TABLES
from hwbench_pipeline.warehouse.store import Warehouse


@dataclass
class WarehouseData:
    results: pl.DataFrame  # measured rows, status ok, with a mode column
    failures: pl.DataFrame
    models: pl.DataFrame
    targets: pl.DataFrame
    distributed: pl.DataFrame | None = None


def _optional(warehouse: Warehouse, table: str) -> pl.DataFrame | None:
    if table not in TABLES or not warehouse.files(table):
        return None
    frame = warehouse.read(table, latest=True)
    return frame if frame.height else None


def _training_as_results(training: pl.DataFrame) -> pl.DataFrame:
    flops = "forward_flops_per_step" if "forward_flops_per_step" in training.columns else "flops_per_step"
    return training.filter(pl.col("status") == "ok").with_columns(
        mode=pl.lit("training"), flops_per_call=pl.col(flops).cast(pl.Float64))


def load(warehouse: Warehouse) -> WarehouseData:
    """The newest row per configuration of every table the predictor reads."""
    inference = warehouse.read("inference_results", latest=True)
    results = inference.filter(pl.col("status") == "ok").with_columns(mode=pl.lit("inference"))
    training = _optional(warehouse, "training_results")
    if training is not None and {"p50_ms", "peak_rss_mb", "batch_size", "seq_len"} <= set(training.columns):
        mapped = _training_as_results(training)
        mapped = mapped.select([c for c in mapped.columns if c in results.columns])
        results = pl.concat([results, mapped], how="diagonal_relaxed")
    failures = warehouse.read("failures", latest=True)
    return WarehouseData(
        results=results,
        failures=failures,
        models=warehouse.read("models", latest=True),
        targets=warehouse.read("hardware_targets", latest=True),
        distributed=_optional(warehouse, "distributed_results"),
    )
