"""The rows the distributed scenario produces on the driver: one result or failure row per configuration, and
the scaling efficiency across a series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hwbench_pipeline.bench.config_key import ATTENTION
from hwbench_pipeline.bench.scenarios.distributed.config import DistributedConfig
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields

LOSS_WINDOW = 5  # the end loss is the mean of the last LOSS_WINDOW steps (one step's loss is noisy)


def now() -> datetime:
    return datetime.now(UTC)


def failure_row(cfg: DistributedConfig, run_id: str, failure_class: str, message: str,
                started: datetime | None = None, **extra: Any) -> dict:
    """A classified failure; ``extra`` (attempts, where the ranks ran) is kept for the caller."""
    return failure_fields("distributed", cfg.key_fields(), run_id, failure_class,
                          f"{cfg.strategy} x{cfg.workers}: {message}", started, **extra)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _loss_curve(ranks: list[dict]) -> list[float]:
    """The loss of each step, averaged over the ranks that computed one (all data-parallel ranks; the last
    pipeline stage)."""
    curve = []
    for values in zip(*(r["losses"] for r in ranks), strict=True):
        known = [v for v in values if v is not None]
        if known:
            curve.append(sum(known) / len(known))
    return curve


def _host_load(ranks: list[dict]) -> dict[str, Any]:
    """Machine load over the measured steps: each host's busy and steal time, and what neither this run's
    workers nor the hypervisor used (foreign); the worst host decides whether the run is contaminated."""
    from hwbench_pipeline.bench.trackers.resource_sampler import combine_load_windows
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated

    load = combine_load_windows([r["load"] for r in ranks if r.get("load")])
    return load_fields(load, is_contaminated(load))


def result_row(cfg: DistributedConfig, run_id: str, payload: dict, *, started: datetime, fit_s: float) -> dict:
    """The row of one finished configuration, from the payload every rank contributed to."""
    from hwbench_pipeline.bench.environment import environment_fields
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.trackers.resource_sampler import summarize_samples
    from hwbench_pipeline.bench.trackers.stats import summarize

    ranks = sorted(payload["ranks"], key=lambda r: r["rank"])
    if len(ranks) != cfg.workers:
        raise RuntimeError(f"{cfg.label}: {len(ranks)} ranks reported, expected {cfg.workers}")
    per_rank_p50 = [_median(r["step_ms"]) for r in ranks]
    per_rank = [cfg.rank_batch / (p50 / 1e3) for p50 in per_rank_p50]
    total = min(per_rank) if cfg.strategy == "pipeline" else sum(per_rank)
    global_step_ms = [max(values) for values in zip(*(r["step_ms"] for r in ranks), strict=True)]
    stats = summarize(global_step_ms)
    curve = _loss_curve(ranks)
    tail = curve[-LOSS_WINDOW:]
    samples = [s for r in ranks for s in r["resource_samples"]]
    first = ranks[0]
    tokens = first["text_tokens_per_step"]
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": cfg.precision,
        "attention_ran": ATTENTION,  # the model as built: training times eager attention
        "backend": first["backend"],
        "device_kind": parse_target(cfg.target).device_kind,
        "status": "ok",
        "task": first["task"],
        "learning_rate": first["learning_rate"],
        "params": first["params"],
        "frozen_params": first["frozen_params"],
        "rank_batch": cfg.rank_batch,
        "microbatches": cfg.microbatches if cfg.strategy == "pipeline" else None,
        "nodes": len({r["node_id"] for r in ranks}),
        "rank_nodes": [r["node_id"] for r in ranks],
        "rank_hosts": [r["host"] for r in ranks],
        "rank_pids": [r["pid"] for r in ranks],
        "n_samples": len(global_step_ms),
        "warmup_steps": cfg.warmup_steps,
        **stats,
        "per_rank_throughput": per_rank,
        "per_rank_p50_ms": per_rank_p50,
        "samples_ms": global_step_ms,
        "per_rank_samples_ms": [r["step_ms"] for r in ranks],
        "ranks_reported": len(ranks),
        "min_rank_throughput": min(per_rank),
        "throughput_samples_s": total,
        "throughput_tokens_s": tokens / (stats["p50_ms"] / 1e3) if tokens else None,
        "scaling_efficiency": None,  # filled in by add_scaling_efficiency once the 1-worker row is known
        "baseline_throughput_samples_s": None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
        "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in ranks],
        "device_peak_mb": max((r["device_peak_mb"] for r in ranks if r["device_peak_mb"] is not None), default=None),
        "loss_start": curve[0] if curve else None,
        "loss_end": sum(tail) / len(tail) if tail else None,
        "loss_curve": curve,
        **summarize_samples(samples),
        "resource_samples": samples,
        **_host_load(ranks),
        "attempts": payload.get("attempt"),
        "max_failures": cfg.max_failures,
        "setup_s": first["setup_s"],
        "fit_s": fit_s,
        "started_at": started,
        "finished_at": now(),
        **environment_fields(),
    }


def add_scaling_efficiency(rows: list[dict]) -> None:
    """Set scaling_efficiency = throughput(N) / (N × throughput(1)) on every measured row whose series (same
    strategy, model, batch, threads) has a measured 1-worker row in ``rows``; the others stay None."""
    def series(row: dict) -> tuple:
        return tuple(row.get(k) for k in ("target", "family", "preset", "batch_size", "seq_len", "precision",
                                          "threads", "strategy"))

    baselines = {series(r): r["throughput_samples_s"] for r in rows if r.get("status") == "ok" and r["workers"] == 1}
    for row in rows:
        base = baselines.get(series(row)) if row.get("status") == "ok" else None
        if base:
            row["baseline_throughput_samples_s"] = base
            row["scaling_efficiency"] = row["throughput_samples_s"] / (row["workers"] * base)
