"""Batch-size sweeps: the batches a training configuration runs at, which to skip once one is over the memory
budget or out of memory, and the largest batch that fitted."""

from __future__ import annotations

from dataclasses import replace

from hwbench_pipeline.bench.scenarios.training.config import TrainingConfig


def sweep_configs(base: TrainingConfig, batch_sizes: list[int] | tuple[int, ...], max_batch: int,
                  convergence_batch: int | None = None) -> list[TrainingConfig]:
    """The listed batch sizes, then doublings of the largest up to ``max_batch``, in increasing order. Only the
    configuration at ``convergence_batch`` (default: the largest listed batch) keeps ``base``'s convergence
    run; the others time steps only."""
    sizes = sorted(set(batch_sizes))
    convergence_batch = convergence_batch or sizes[-1]
    if convergence_batch not in sizes:
        raise ValueError(f"convergence batch {convergence_batch} is not one of the batch sizes {sizes}")
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    return [replace(base, batch_size=b, convergence_steps=base.convergence_steps if b == convergence_batch else 0)
            for b in sizes]


def _stop_cause(row: dict) -> str | None:
    if row.get("status") == "ok":
        if row.get("within_budget") is False:
            return "memory_budget"
        return None
    return "out_of_memory" if row.get("failure_class") == "out_of_memory" else None


def sweep_skip_reason(cfg: TrainingConfig, rows: list[dict]) -> str | None:
    """Why ``cfg`` is not run: a smaller batch of its sweep was already over the memory budget or out of memory
    (the training scenario's ``skip_reason``)."""
    for row in rows:
        same = (row.get("target"), row.get("family"), row.get("preset"), row.get("seq_len"),
                row.get("precision"), row.get("threads")) == cfg.sweep_key()
        cause = _stop_cause(row) if same and row.get("batch_size", 0) < cfg.batch_size else None
        if cause == "memory_budget":
            return (f"batch {row['batch_size']} already peaked at {row.get('device_peak_mb') or row['peak_rss_mb']:.0f}"
                    f" MiB, over the {row['memory_budget_mb']:.0f} MiB memory budget")
        if cause == "out_of_memory":
            return f"batch {row['batch_size']} already ran out of memory"
    return None


def mark_batch_scaling(rows: list[dict]) -> None:
    """Set, on every training row, the largest batch of its sweep that ran within the memory budget and why
    the sweep stopped: memory_budget, out_of_memory, failure, or batch_cap (every batch up to the sweep's
    largest, ``max_batch`` or the largest listed, fitted)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row.get("target"), row.get("family"), row.get("preset"), row.get("seq_len"), row.get("precision"),
               row.get("threads"))
        groups.setdefault(key, []).append(row)
    for group in groups.values():
        group.sort(key=lambda r: r["batch_size"])
        fitted = [r["batch_size"] for r in group if r.get("status") == "ok" and r.get("within_budget")]
        causes = [c for c in map(_stop_cause, group) if c]
        if causes:
            stop = causes[0]
        elif group[-1].get("status") != "ok":
            stop = "failure"
        else:
            stop = "batch_cap"
        for row in group:
            if row.get("status") == "ok":
                row["max_batch_in_budget"] = max(fitted) if fitted else None
                row["batch_scaling_stop"] = stop
