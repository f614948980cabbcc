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

from hwbench_pipeline.bench.precision import PRECISIONS, format_expr
from hwbench_pipeline.predict import roofline
from hwbench_pipeline.predict.generation_modes import (
    has_generation_rows,
    is_generation_mode,
    learnable,
    with_generation_flops,
    with_query_context,
)
from hwbench_pipeline.predict.shapes import SHAPE_COLUMNS, FlopCounter, ModelSpec, describe, leaf_modules

NUMERIC_FEATURES = [
    "log_flops", "log_params", "log_weight_bytes", "log_activation_bytes", "log_intensity", "log_roofline_ms",
    "compute_bound", "layers", "hidden_size", "heads", "kv_heads", "log_intermediate", "log_vocab", "experts",
    "leaf_modules", "log_batch", "log_seq", "log_context", "threads", "log_peak_gflops", "log_peak_gbps",
    "cpu_cores", "memory_gb",
]
CATEGORICAL_FEATURES = ["precision", "mode", "category", "attention_kind", "backend", "device_kind"]
#: per-row shape columns a row may carry itself (a coverage probe measured them on the model it built)
SHAPE_SCHEMA = {"category": pl.String, "params": pl.Int64, "layers": pl.Int64, "hidden_size": pl.Int64,
                "heads": pl.Int64, "intermediate_size": pl.Int64, "vocab_size": pl.Int64, "kv_heads": pl.Int64,
                "experts": pl.Int64, "attention_kind": pl.String, "model_type": pl.String, "leaf_modules": pl.Int64}
HARDWARE_COLUMNS = ["target", "device_kind", "backend", "peak_threads", *(f"peak_gflops_{p}" for p in PRECISIONS),
                    "peak_gbps", "cpu_cores", "memory_gb"]
#: a decode question adds ``new_tokens`` (its context grows with each token; generation_modes.py)
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
    # precision is a spec (int8-static): its number format picks the peak
    peak = pl.coalesce(pl.when(format_expr() == p).then(pl.col(f"peak_gflops_{p}")) for p in PRECISIONS
                       if f"peak_gflops_{p}" in joined.columns)
    # A precision without a measured peak has no fast path there: the fp32 peak is the honest ceiling.
    return joined.with_columns(peak_gflops=pl.when(peak > 0).then(peak).otherwise(pl.col("peak_gflops_fp32")))


def registry_category(family: str, category: str | None) -> str | None:
    """The registry's category of a curated family (one vocabulary for every architecture); others keep theirs."""
    from hwbench_pipeline.bench.catalog.registry import architectures
    from hwbench_pipeline.bench.families import FAMILIES

    entry = architectures().get(family) if family in FAMILIES else None
    return entry.category if entry else category


def with_shapes(frame: pl.DataFrame, models: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add the shape columns per (family, preset): kept where a row carries them (a coverage probe's), else from
    the models table, else described from the catalog."""
    carried = (pl.col("leaf_modules").is_not_null() & pl.col("params").is_not_null()) \
        if {"leaf_modules", "params"} <= set(frame.columns) else pl.lit(False)
    own = frame.filter(carried)
    rest = frame.filter(~carried)
    catalog = {}
    if models is not None and models.height:
        keep = [c for c in SHAPE_COLUMNS if c in models.columns]
        for row in models.select("family", "preset", *keep).iter_rows(named=True):
            catalog[(row["family"], row["preset"])] = row
    rows = []
    for family, preset in rest.select("family", "preset").unique().iter_rows():
        known = catalog.get((family, preset))
        if known and all(known.get(c) is not None for c in ("params", "category", "attention_kind", "model_type")):
            shape = {c: known.get(c) for c in SHAPE_COLUMNS}
        else:
            shape = describe(ModelSpec(family, preset))
        rows.append({"family": family, "preset": preset, **shape,
                     "leaf_modules": leaf_modules(ModelSpec(family, preset))})
    shapes = pl.DataFrame(rows, schema={"family": pl.String, "preset": pl.String, **SHAPE_SCHEMA})
    described = rest.drop([c for c in SHAPE_SCHEMA if c in rest.columns]).join(
        shapes, on=["family", "preset"], how="left")
    both = pl.concat([described, own.with_columns(
        [pl.col(c).cast(t) if c in own.columns else pl.lit(None, t).alias(c) for c, t in SHAPE_SCHEMA.items()])],
        how="diagonal_relaxed") if own.height else described
    # the architecture is what leave-one-out evaluation holds out: the model type, whatever named the model
    curated = {f: registry_category(f, None) for f in both["family"].unique().to_list()}
    curated = {f: c for f, c in curated.items() if c is not None}
    return both.with_columns(
        category=pl.col("family").replace_strict(curated, default=pl.col("category"), return_dtype=pl.String),
        architecture=pl.coalesce("model_type", "family"))


def with_flops(frame: pl.DataFrame, counter: FlopCounter) -> pl.DataFrame:
    """FLOPs per call (per-sample count x batch) and where the count came from; a prefill or decode step's are
    worked out from counted forward passes (:mod:`~hwbench_pipeline.predict.generation_modes`)."""
    if has_generation_rows(frame):  # each kind counted its own way, the rows kept in the caller's order
        indexed = frame.with_row_index("_row")
        forward = with_flops(indexed.filter(~is_generation_mode(indexed)), counter)
        steps = with_generation_flops(indexed.filter(is_generation_mode(indexed)), counter)
        return pl.concat([forward, steps], how="diagonal_relaxed").sort("_row").drop("_row")
    per_sample, source = [], []
    for family, preset, seq in frame.select("family", "preset", "seq_len").iter_rows():
        flops, how = counter.per_sample(ModelSpec(family, preset), int(seq))
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
        log_intermediate=log("intermediate_size"),
        log_vocab=log("vocab_size"),
        log_weight_bytes=log("weight_bytes"),
        log_activation_bytes=log("activation_bytes"),
        log_intensity=log("arithmetic_intensity"),
        log_roofline_ms=log("roofline_ms"),
        compute_bound=(pl.col("compute_ms") >= pl.col("memory_ms")).cast(pl.Float64),
        log_batch=log("batch_size"),
        log_seq=log("seq_len"),
        # the positions attended: the sequence itself, but a decode step's cache (generation_modes.py)
        log_context=pl.coalesce(log("context_len"), log("seq_len")) if "context_len" in frame.columns
        else log("seq_len"),
        log_peak_gflops=log("peak_gflops"),
        log_peak_gbps=log("peak_gbps"),
    )


def training_frame(results: pl.DataFrame, models: pl.DataFrame | None = None,
                   targets: pl.DataFrame | None = None) -> pl.DataFrame:
    """Measured rows (status ok, measured FLOPs) as a feature frame. Without ``targets`` the hardware columns
    are left out (the saved predictor fills them from the peaks it was trained with)."""
    ok = results.filter((pl.col("status") == "ok") & (pl.col("flops_per_call").is_not_null()
                                                      | is_generation_mode(results)) & (pl.col("p50_ms") > 0))
    if "mode" not in ok.columns:
        ok = ok.with_columns(mode=pl.lit("inference"))
    steps = is_generation_mode(ok)
    if has_generation_rows(ok):  # generation rows carry no FLOPs: they are worked out from counted forward passes
        shaped = learnable(with_shapes(ok.filter(steps), models=models))
        counted = with_generation_flops(shaped, FlopCounter.from_results(results))
        frame = pl.concat([with_shapes(ok.filter(~steps), models=models), counted], how="diagonal_relaxed")
    else:
        frame = with_shapes(ok, models=models)
    if targets is None:
        return frame
    return derived(with_hardware(frame, targets))


def query_frame(queries: list[dict] | pl.DataFrame, targets: pl.DataFrame, counter: FlopCounter,
                models: pl.DataFrame | None = None) -> pl.DataFrame:
    """Configurations to predict (QUERY_COLUMNS each) as a feature frame."""
    frame = queries if isinstance(queries, pl.DataFrame) else pl.DataFrame(queries, schema={
        "family": pl.String, "preset": pl.String, "target": pl.String, "batch_size": pl.Int64,
        "seq_len": pl.Int64, "precision": pl.String, "threads": pl.Int64, "mode": pl.String})
    frame = with_flops(with_shapes(with_query_context(frame), models), counter)
    return derived(with_hardware(frame, targets))


def vocabulary(frame: pl.DataFrame) -> dict[str, list[str]]:
    return {c: sorted(str(v) for v in frame[c].drop_nulls().unique().to_list()) for c in CATEGORICAL_FEATURES}


def feature_names(vocab: dict[str, list[str]]) -> list[str]:
    return NUMERIC_FEATURES + [f"{c}={v}" for c in CATEGORICAL_FEATURES for v in vocab[c]]


def feature_matrix(frame: pl.DataFrame, vocab: dict[str, list[str]],
                   numeric: list[str] | None = None) -> np.ndarray:
    """Numeric features as they are (missing → NaN, which XGBoost handles) plus one-hot categoricals.
    ``numeric``: the numeric features a saved predictor was trained with (an older one may lack a newer one)."""
    columns = [frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in numeric or NUMERIC_FEATURES]
    for c in CATEGORICAL_FEATURES:
        values = frame[c].cast(pl.String).to_list()
        columns += [np.array([v == level for v in values], dtype=float) for level in vocab[c]]
    return np.column_stack(columns) if columns else np.empty((frame.height, 0))
