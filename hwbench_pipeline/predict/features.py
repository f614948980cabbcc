"""Features the predictor learns from: the model's shape and counted FLOPs, the workload, and the target's
measured peaks (from the ``hardware_targets`` table), plus the roofline bound they imply.

A feature frame has one row per configuration (model x target x batch x sequence x precision x threads x
mode). Measured rows become one by :func:`training_frame`; questions (nothing measured) by
:func:`query_frame`. Both go through :func:`with_hardware` and :func:`roofline.with_estimates`, so the
predictor sees the same columns either way.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hwbench_pipeline.predict import roofline
from hwbench_pipeline.predict.shapes import SHAPE_COLUMNS, FlopCounter, ModelSpec, describe, leaf_modules

NUMERIC_FEATURES = [
    "log_flops", "log_params", "log_weight_bytes", "log_activation_bytes", "log_intensity", "log_roofline_ms",
    "compute_bound", "layers", "hidden_size", "heads", "leaf_modules", "log_batch", "log_seq", "threads",
    "log_peak_gflops",
    "log_peak_gbps", "cpu_cores", "memory_gb",
]
CATEGORICAL_FEATURES = ["precision", "mode", "category", "backend", "device_kind"]
HARDWARE_COLUMNS = ["target", "device_kind", "backend", "peak_threads", "peak_gflops_fp32", "peak_gflops_bf16",
                    "peak_gflops_fp16", "peak_gbps", "cpu_cores", "memory_gb"]
QUERY_COLUMNS = ["family", "preset", "target", "batch_size", "seq_len", "precision", "threads", "mode"]


class MissingHardwareError(ValueError):
    """A configuration names a target that has no measured peaks."""


def hardware_rows(targets: pl.DataFrame) -> pl.DataFrame:
    """The newest row per target of the hardware_targets table, with only what the predictor reads."""
    if "_written_at" in targets.columns:
        targets = targets.sort("_written_at")
    present = [c for c in HARDWARE_COLUMNS if c in targets.columns]
    return targets.select(present).unique(subset=["target"], keep="last").sort("target")


def with_hardware(frame: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Join each configuration's target peaks; the compute peak is the one of the configuration's precision."""
    hardware = hardware_rows(targets).drop([c for c in ("device_kind", "backend") if c in frame.columns],
                                           strict=False)
    joined = frame.drop([c for c in hardware.columns if c != "target" and c in frame.columns]).join(
        hardware, on="target", how="left")
    missing = joined.filter(pl.col("peak_gbps").is_null())["target"].unique().to_list()
    if missing:
        raise MissingHardwareError(f"no measured peaks for target(s) {', '.join(sorted(missing))}; "
                                   "materialize hardware_targets on the host that has them")
    peak = pl.coalesce(
        pl.when(pl.col("precision") == p).then(pl.col(f"peak_gflops_{p}")) for p in ("fp32", "bf16", "fp16"))
    # A precision without a measured peak has no fast path there: the fp32 peak is the honest ceiling.
    return joined.with_columns(peak_gflops=pl.when(peak > 0).then(peak).otherwise(pl.col("peak_gflops_fp32")))


def with_shapes(frame: pl.DataFrame, specs: dict[str, ModelSpec] | None = None,
                models: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add the shape columns per (family, preset): from the models table where it has them, else described."""
    pairs = frame.select("family", "preset").unique()
    rows = []
    catalog = {}
    if models is not None and models.height:
        keep = [c for c in SHAPE_COLUMNS if c in models.columns]
        for row in models.select("family", "preset", *keep).iter_rows(named=True):
            catalog[(row["family"], row["preset"])] = row
    for family, preset in pairs.iter_rows():
        spec = (specs or {}).get(f"{family}/{preset}") or ModelSpec(family, preset)
        known = catalog.get((family, preset))
        if known and spec.config is None and all(known.get(c) is not None for c in ("params", "category")):
            shape = {c: known.get(c) for c in SHAPE_COLUMNS}
        else:
            shape = describe(spec)
        rows.append({"family": family, "preset": preset, **shape, "leaf_modules": leaf_modules(spec)})
    shapes = pl.DataFrame(rows, schema={"family": pl.String, "preset": pl.String, "category": pl.String,
                                        "params": pl.Int64, "layers": pl.Int64, "hidden_size": pl.Int64,
                                        "heads": pl.Int64, "intermediate_size": pl.Int64, "vocab_size": pl.Int64,
                                        "leaf_modules": pl.Int64})
    return frame.drop([c for c in [*SHAPE_COLUMNS, "leaf_modules"] if c in frame.columns]).join(
        shapes, on=["family", "preset"], how="left")


def with_flops(frame: pl.DataFrame, counter: FlopCounter, specs: dict[str, ModelSpec] | None = None) -> pl.DataFrame:
    """FLOPs per call (per-sample count x batch) and where the count came from."""
    per_sample, source = [], []
    for family, preset, seq in frame.select("family", "preset", "seq_len").iter_rows():
        spec = (specs or {}).get(f"{family}/{preset}") or ModelSpec(family, preset)
        flops, how = counter.per_sample(spec, int(seq))
        per_sample.append(flops)
        source.append(how)
    return frame.with_columns(
        flops_per_call=pl.Series(per_sample, dtype=pl.Float64) * pl.col("batch_size").cast(pl.Float64),
        flops_source=pl.Series(source, dtype=pl.String),
    )


def derived(frame: pl.DataFrame) -> pl.DataFrame:
    """Roofline estimates and the log-scaled features."""
    frame = roofline.with_estimates(frame)
    log = lambda c: pl.col(c).cast(pl.Float64).clip(lower_bound=1e-12).log10()  # noqa: E731
    return frame.with_columns(
        log_flops=log("flops_per_call"),
        log_params=log("params"),
        log_weight_bytes=log("weight_bytes"),
        log_activation_bytes=log("activation_bytes"),
        log_intensity=log("arithmetic_intensity"),
        log_roofline_ms=log("roofline_ms"),
        compute_bound=(pl.col("compute_ms") >= pl.col("memory_ms")).cast(pl.Float64),
        log_batch=log("batch_size"),
        log_seq=log("seq_len"),
        log_peak_gflops=log("peak_gflops"),
        log_peak_gbps=log("peak_gbps"),
    )


def training_frame(results: pl.DataFrame, models: pl.DataFrame | None = None,
                   targets: pl.DataFrame | None = None) -> pl.DataFrame:
    """Measured rows (status ok, measured FLOPs) as a feature frame. Without ``targets`` the hardware columns
    are left out (the saved predictor fills them from the peaks it was trained with)."""
    ok = results.filter((pl.col("status") == "ok") & pl.col("flops_per_call").is_not_null()
                        & (pl.col("p50_ms") > 0))
    if "mode" not in ok.columns:
        ok = ok.with_columns(mode=pl.lit("inference"))
    frame = with_shapes(ok, models=models)
    if targets is None:
        return frame
    return derived(with_hardware(frame, targets))


def query_frame(queries: list[dict] | pl.DataFrame, targets: pl.DataFrame, counter: FlopCounter,
                specs: dict[str, ModelSpec] | None = None, models: pl.DataFrame | None = None) -> pl.DataFrame:
    """Configurations to predict (QUERY_COLUMNS each) as a feature frame."""
    frame = queries if isinstance(queries, pl.DataFrame) else pl.DataFrame(queries, schema={
        "family": pl.String, "preset": pl.String, "target": pl.String, "batch_size": pl.Int64,
        "seq_len": pl.Int64, "precision": pl.String, "threads": pl.Int64, "mode": pl.String})
    frame = with_flops(with_shapes(frame, specs, models), counter, specs)
    return derived(with_hardware(frame, targets))


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
