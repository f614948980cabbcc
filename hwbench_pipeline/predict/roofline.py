"""The analytical roofline: what a target's measured peaks say a configuration needs at the very least.

A call needs ``flops / peak GFLOP/s`` of compute and ``bytes / peak GB/s`` of memory traffic; it takes at
least the larger of the two. Bytes are the weights (read once per call) plus an activation estimate: every
output element of a matrix multiply whose inner dimension is about the hidden size costs ``2 x hidden``
FLOPs, so ``flops / (2 x hidden)`` elements are written and read back once. Training costs three forward
passes of compute (forward, two backward products) and touches weights, gradients and two Adam moments.

The bound is a floor, not an estimate: measured latencies sit several times above it. The roofline
*baseline* and *fallback* scale it by the efficiency (bound / measured) seen on a target's own measurements.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hwbench_pipeline.bench.precision import BYTES_PER_WEIGHT, format_expr

TRAINING_FLOPS_FACTOR = 3.0
TRAINING_WEIGHT_COPIES = 4.0  # weights, gradients, two Adam moments
ACTIVATION_TRAFFIC = 2.0  # each activation element written once and read once


def with_estimates(frame: pl.DataFrame) -> pl.DataFrame:
    """Add weight/activation bytes, effective peaks and the roofline bound (``roofline_ms``) to a feature frame.

    Needs: params, flops_per_call, hidden_size, precision, mode, threads, peak_gflops, peak_gbps,
    peak_threads, device_kind.
    """
    # precision is a spec (int8-static): its number format sets the bytes per value
    bytes_per_value = format_expr().replace_strict(
        BYTES_PER_WEIGHT, default=4, return_dtype=pl.Float64)
    training = pl.col("mode") == "training"
    hidden = pl.col("hidden_size").cast(pl.Float64).fill_null(512.0).clip(lower_bound=1.0)
    # A CPU peak was measured at peak_threads; fewer threads get a proportional share (more get no more).
    thread_share = pl.when(pl.col("device_kind") == "cpu").then(
        (pl.col("threads").cast(pl.Float64) / pl.col("peak_threads").cast(pl.Float64).clip(lower_bound=1.0))
        .clip(upper_bound=1.0)).otherwise(1.0)
    flops = pl.col("flops_per_call") * pl.when(training).then(TRAINING_FLOPS_FACTOR).otherwise(1.0)
    frame = frame.with_columns(
        weight_bytes=pl.col("params").cast(pl.Float64) * bytes_per_value,
        activation_bytes=pl.col("flops_per_call") / (2.0 * hidden) * bytes_per_value,
        effective_gflops=pl.col("peak_gflops") * thread_share,
        effective_gbps=pl.col("peak_gbps") * thread_share,
        work_flops=flops,
    )
    traffic = (pl.col("weight_bytes") * pl.when(training).then(TRAINING_WEIGHT_COPIES).otherwise(1.0)
               + pl.col("activation_bytes") * ACTIVATION_TRAFFIC)
    return frame.with_columns(
        traffic_bytes=traffic,
        compute_ms=pl.col("work_flops") / (pl.col("effective_gflops") * 1e9) * 1e3,
        memory_ms=traffic / (pl.col("effective_gbps") * 1e9) * 1e3,
    ).with_columns(
        roofline_ms=pl.max_horizontal("compute_ms", "memory_ms"),
        arithmetic_intensity=pl.col("work_flops") / traffic,
    )


def memory_floor_mb(frame: pl.DataFrame, process_baseline_mb: pl.Expr | float) -> pl.Expr:
    """The least resident memory a configuration needs: the process itself, the weights (x4 when training)
    and the activations of one layer's worth of the call held at once."""
    layers = pl.col("layers").cast(pl.Float64).fill_null(1.0).clip(lower_bound=1.0)
    training = pl.col("mode") == "training"
    weights = pl.col("weight_bytes") * pl.when(training).then(TRAINING_WEIGHT_COPIES).otherwise(1.0)
    # training keeps every layer's activations for the backward pass; inference about one layer's
    activations = pl.when(training).then(pl.col("activation_bytes")).otherwise(pl.col("activation_bytes") / layers)
    baseline = process_baseline_mb if isinstance(process_baseline_mb, pl.Expr) else pl.lit(process_baseline_mb)
    return baseline + (weights + activations) / 2**20


class Efficiency:
    """Roofline bound / measured latency on past measurements, per backend (pooled when a backend has none).

    ``scale`` is the median of log(measured / bound); the interval comes from that ratio's spread.
    """

    def __init__(self, log_ratio: np.ndarray, backends: np.ndarray, level: float) -> None:
        self.level = level
        self.by_backend = {b: _ratio_stats(log_ratio[backends == b], level) for b in np.unique(backends)}
        self.pooled = _ratio_stats(log_ratio, level) if log_ratio.size else None

    def stats(self, backend: str) -> tuple[float, float, float] | None:
        found = self.by_backend.get(backend)
        return found if found is not None else self.pooled

    def as_dict(self) -> dict:
        return {"level": self.level, "pooled": self.pooled, "by_backend": self.by_backend}


def _ratio_stats(log_ratio: np.ndarray, level: float) -> tuple[float, float, float] | None:
    if log_ratio.size < 3:
        return None
    tail = (1 - level) / 2
    return (float(np.median(log_ratio)), float(np.quantile(log_ratio, tail)), float(np.quantile(log_ratio, 1 - tail)))


def fit_overhead_model(frame: pl.DataFrame, min_rows: int = 5) -> dict[str, list[float]]:
    """Per backend (and ``*`` pooled): ``[ms per leaf module, measured/bound factor]`` of the two-term model
    ``latency ≈ a x leaf_modules + b x roofline bound``.

    A small model's latency is mostly per-operation dispatch (a fixed cost per module call); a large one's is
    the roofline bound over an efficiency. Non-negative least squares on relative errors fits both terms.
    """
    from scipy.optimize import nnls

    def solve(rows: pl.DataFrame) -> list[float] | None:
        if rows.height < min_rows:
            return None
        measured = rows["p50_ms"].to_numpy()
        terms = np.column_stack([rows["leaf_modules"].cast(pl.Float64).fill_null(0.0).to_numpy(),
                                 rows["roofline_ms"].to_numpy()])
        coef, _ = nnls(terms / measured[:, None], np.ones(rows.height))
        return [float(c) for c in coef] if coef.any() else None

    out = {}
    for (backend,), rows in frame.group_by(["backend"]):
        found = solve(rows)
        if found:
            out[str(backend)] = found
    pooled = solve(frame)
    if pooled:
        out["*"] = pooled
    return out


def overhead_model_ms(frame: pl.DataFrame, coefficients: dict[str, list[float]] | None) -> np.ndarray:
    """The two-term model's latency per row (the bare roofline bound where no coefficients apply)."""
    bound = frame["roofline_ms"].to_numpy()
    if not coefficients:
        return bound
    leaves = frame["leaf_modules"].cast(pl.Float64).fill_null(0.0).to_numpy()
    out = bound.astype(float).copy()
    for i, backend in enumerate(frame["backend"].to_list()):
        coef = coefficients.get(backend) or coefficients.get("*")
        if coef:
            out[i] = coef[0] * leaves[i] + coef[1] * bound[i]
    return np.where(out > 0, out, bound)
