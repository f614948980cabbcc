"""Features the performance predictor learns from: the model's shape, the workload, and the target."""

from __future__ import annotations

import numpy as np
import polars as pl

NUMERIC_FEATURES = [
    "log_params", "layers", "hidden_size", "heads", "batch_size", "seq_len", "log_flops", "threads",
]
CATEGORICAL_FEATURES = ["target", "precision", "category"]


def training_frame(results: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """Measured rows joined with the catalog's shape columns (one row per measured configuration)."""
    shape = models.select("family", "preset", "category", "layers", "hidden_size", "heads").unique(
        subset=["family", "preset"], keep="last")
    joined = results.join(shape, on=["family", "preset"], how="left")
    return joined.with_columns(
        pl.col("params").cast(pl.Float64).log10().alias("log_params"),
        pl.col("flops_per_call").cast(pl.Float64).log10().alias("log_flops"),
    )


def vocabulary(frame: pl.DataFrame) -> dict[str, list[str]]:
    return {c: sorted(str(v) for v in frame[c].drop_nulls().unique().to_list()) for c in CATEGORICAL_FEATURES}


def feature_names(vocab: dict[str, list[str]]) -> list[str]:
    return NUMERIC_FEATURES + [f"{c}={v}" for c in CATEGORICAL_FEATURES for v in vocab[c]]


def feature_matrix(frame: pl.DataFrame, vocab: dict[str, list[str]]) -> np.ndarray:
    """Numeric features as they are (missing → NaN, which XGBoost handles) plus one-hot categoricals."""
    columns = [frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in NUMERIC_FEATURES]
    for c in CATEGORICAL_FEATURES:
        values = frame[c].cast(pl.String).to_list()
        columns += [np.array([v == level for v in values], dtype=float) for level in vocab[c]]
    return np.column_stack(columns) if columns else np.empty((frame.height, 0))
