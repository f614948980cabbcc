"""The configurations a profile asks about on the known targets, and which of them nobody measured."""

from __future__ import annotations

import polars as pl

from hwbench_pipeline.bench.config_key import ATTENTION, identity_fields, inference_attention
from hwbench_pipeline.bench.precision import parse_spec
from hwbench_pipeline.bench.profiles import Profile, effective_seq_len
from hwbench_pipeline.predict.recommender import failure_for, target_precisions

KEY = ["family", "preset", "target", "batch_size", "seq_len", "precision", "threads", "mode"]


def profile_space(profile: Profile, targets: pl.DataFrame) -> pl.DataFrame:
    """Every family x preset x target x batch x sequence x precision of the profile (inference)."""
    runs = target_precisions(targets)
    rows = []
    for family in profile.families:
        for preset in profile.presets:
            seqs = sorted({effective_seq_len(family, preset, s) for s in profile.seq_lens})
            for target, precisions in sorted(runs.items()):
                for precision in profile.precisions:
                    if precision not in precisions:
                        continue
                    rows += [(family, preset, target, b, s, precision, profile.threads, "inference")
                             for b in profile.batch_sizes for s in seqs]
    return pl.DataFrame(rows, schema=dict.fromkeys(KEY, pl.String) | {
        "batch_size": pl.Int64, "seq_len": pl.Int64, "threads": pl.Int64}, orient="row")


def unmeasured(space: pl.DataFrame, results: pl.DataFrame, failures: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """(configurations with neither a result nor a known failure, n measured, n known to fail).

    Only a result or failure of the configuration's own mode answers it: a training step with the same model
    and shape does not measure an inference candidate. A configuration known to fail gets no prediction:
    measured to fail, or covered by a failure that holds for other shapes too (see recommender.failure_for).
    """
    if "mode" not in space.columns:
        raise ValueError("unmeasured needs the space's 'mode' column (inference, training …)")
    modes = space["mode"].unique().to_list()
    if "scenario" in failures.columns:
        failures = failures.filter(pl.col("scenario").is_in(modes))
    keys = KEY if "mode" in results.columns else [k for k in KEY if k != "mode"]
    measured = results.select(keys).unique() if results.height else pl.DataFrame(schema=space.select(keys).schema)
    n_measured = space.join(measured, on=keys, how="semi").height
    todo = space.join(measured, on=keys, how="anti")
    by_model: dict[tuple[str, str], list[dict]] = {}
    for row in failures.iter_rows(named=True) if failures.height else []:
        by_model.setdefault((row["family"], row["preset"]), []).append(row)
    fails = [failure_for(by_model.get((r["family"], r["preset"]), []), r["target"], r["batch_size"], r["seq_len"],
                         r["precision"], r["threads"]) is not None for r in todo.iter_rows(named=True)]
    known = pl.Series(fails, dtype=pl.Boolean)
    return todo.filter(~known), n_measured, int(known.sum())


#: predictions-table metric -> (prediction column, low, high)
METRICS = {
    "latency_ms": ("latency_ms", "latency_low_ms", "latency_high_ms"),
    "throughput_samples_s": ("throughput_samples_s", "throughput_low", "throughput_high"),
    "peak_memory_mb": ("memory_mb", "memory_low_mb", "memory_high_mb"),
}


def prediction_rows(frame: pl.DataFrame, answer: pl.DataFrame, run_id: str, fingerprint: str) -> list[dict]:
    """Rows of the predictions table: one per configuration and metric, with interval, confidence and source."""
    rows = []
    for config, figures in zip(frame.select(KEY).iter_rows(named=True), answer.iter_rows(named=True), strict=True):
        level = figures["interval_level"]
        # the predictor's precision is a spec; the table keeps the number format and the recipe apart
        precision, quantization = parse_spec(config["precision"])
        identity = {**identity_fields(config["family"], config["preset"], _attention(config)),
                    "precision": precision, "quantization": quantization}
        for metric, (value, low, high) in METRICS.items():
            rows.append({
                "run_id": run_id, **config, **identity,
                "metric": metric, "value": float(figures[value]),
                "interval_low": float(figures[low]), "interval_high": float(figures[high]),
                "interval_level": None if level is None or level != level else float(level),
                "confidence": figures["confidence"], "source": figures["source"], "model_fingerprint": fingerprint,
                "held_out_mape": _finite(figures.get("held_out_mape")) if metric != "peak_memory_mb" else None,
            })
    return rows


def _attention(config: dict) -> str:
    """The attention the predicted configuration would be measured with (that of its measured neighbours)."""
    return inference_attention(config["target"]) if config["mode"] == "inference" else ATTENTION


def _finite(value) -> float | None:
    return float(value) if value is not None and value == value else None
