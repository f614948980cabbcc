"""What the predictor and the recommender read from the warehouse, in one bundle.

Inference rows are ``mode = inference``. When the warehouse has a ``training_results`` table with rows, they
join as ``mode = training`` (one call = one optimizer step; its FLOPs are the forward pass's, the roofline
triples them). ``distributed_results`` is read when the table exists; both are optional.

Coverage probes (``architecture_coverage``) that ran completely and timed a series join as inference rows
marked ``measurement = probe``: hundreds of architectures at the tiny preset, each timed briefly (PROBE_RULE in
``bench/catalog/probe.py``). Probes of a curated family's model type are left out: that name's rows are the
curated presets, which are other configs than the probe's scaled default.

Generation rows (``generation_results``) join as two modes, ``prefill`` and ``decode``
(:mod:`hwbench_pipeline.predict.generation_modes`), with ``context_len`` and ``new_tokens``.

``precision`` is read as a spec (``int8-static``, see :func:`with_precision_specs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hwbench_pipeline.bench.precision import spec_expr
from hwbench_pipeline.predict.generation_modes import generation_as_results
from hwbench_pipeline.warehouse.schema import TABLES
from hwbench_pipeline.warehouse.store import Warehouse

#: generation columns kept on the prefill and decode rows beside the inference table's
GENERATION_COLUMNS = ("context_len", "new_tokens", "cache_implementation")


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


def probes_as_results(coverage: pl.DataFrame) -> pl.DataFrame:
    """Completed, timed coverage probes as inference rows (family = the model type, fp32, mode inference)."""
    from hwbench_pipeline.bench.families import FAMILIES
    from hwbench_pipeline.bench.hardware import parse_target

    if "p50_ms" not in coverage.columns:
        return pl.DataFrame()
    rows = coverage.filter((pl.col("status") == "ok") & pl.col("complete").fill_null(True)
                           & (pl.col("p50_ms") > 0) & pl.col("flops_per_call").is_not_null()
                           & ~pl.col("model_type").is_in(sorted(FAMILIES)))
    if not rows.height:
        return pl.DataFrame()
    kinds = {t: parse_target(t) for t in rows["target"].unique().to_list()}
    return rows.with_columns(
        family=pl.col("model_type"), precision=pl.lit("fp32"), precision_ran=pl.lit("fp32"),
        mode=pl.lit("inference"), measurement=pl.lit("probe"),
        backend=pl.col("target").replace_strict({t: k.backend for t, k in kinds.items()}),
        device_kind=pl.col("target").replace_strict({t: k.device_kind for t, k in kinds.items()}),
        throughput_samples_s=pl.col("batch_size").cast(pl.Float64) / pl.col("p50_ms") * 1e3,
        started_at=pl.col("finished_at"),
    )


def concat_rows(results: pl.DataFrame, more: pl.DataFrame) -> pl.DataFrame:
    """``results`` and ``more`` as one frame; timestamps take ``results``' dtype (read back from different tables,
    they can carry different zone names)."""
    same = [pl.col(c).cast(results.schema[c]) for c in more.columns
            if c in results.columns and results.schema[c] != more.schema[c]
            and isinstance(results.schema[c], pl.Datetime)]
    return pl.concat([results, more.with_columns(same)], how="diagonal_relaxed")


def with_precision_specs(frame: pl.DataFrame) -> pl.DataFrame:
    """``precision`` as a spec (``int8-static``; bench/precision.py): the predictor and the recommender treat
    each int8 recipe as a precision of its own, since both its speed and its quality differ."""
    if "quantization" not in frame.columns or "precision" not in frame.columns:
        return frame
    return frame.with_columns(precision=spec_expr())


def load(warehouse: Warehouse) -> WarehouseData:
    """The newest row per configuration of every table the predictor reads."""
    inference = warehouse.read("inference_results", latest=True)
    results = inference.filter(pl.col("status") == "ok").with_columns(mode=pl.lit("inference"))
    training = _optional(warehouse, "training_results")
    if training is not None and {"p50_ms", "peak_rss_mb", "batch_size", "seq_len"} <= set(training.columns):
        mapped = _training_as_results(training)
        mapped = mapped.select([c for c in mapped.columns if c in results.columns])
        results = pl.concat([results, mapped], how="diagonal_relaxed")
    generation = _optional(warehouse, "generation_results")
    steps = generation_as_results(generation) if generation is not None else pl.DataFrame()
    if steps.height:
        keep = [c for c in steps.columns if c in results.columns or c in GENERATION_COLUMNS]
        results = concat_rows(results, steps.select(keep))
    coverage = _optional(warehouse, "architecture_coverage")
    probes = probes_as_results(coverage) if coverage is not None else pl.DataFrame()
    if probes.height:
        results = concat_rows(results.with_columns(measurement=pl.lit("benchmark")), probes)
    failures = warehouse.read("failures", latest=True)
    return WarehouseData(
        results=with_precision_specs(results),
        failures=with_precision_specs(failures),
        models=warehouse.read("models", latest=True),
        targets=warehouse.read("hardware_targets", latest=True),
        distributed=_optional(warehouse, "distributed_results"),
    )
