"""Hardware recommendations from measured results: per model, the best target and batch per objective."""

from __future__ import annotations

import polars as pl

OBJECTIVES = {
    # objective: (column, best is max?, unit)
    "latency": ("p50_ms", False, "ms"),
    "throughput": ("throughput_samples_s", True, "samples/s"),
}


def recommend_measured(results: pl.DataFrame, run_id: str) -> list[dict]:
    """For each (family, preset) with measurements: the measured optimum for each objective.

    Ties on the objective are broken by the smaller batch, then the target name, so the pick is stable.
    """
    ok = results.filter(pl.col("status") == "ok")
    rows: list[dict] = []
    for (family, preset), group in ok.group_by(["family", "preset"], maintain_order=True):
        for objective, (column, maximize, unit) in OBJECTIVES.items():
            ranked = group.sort([column, "batch_size", "target"], descending=[maximize, False, False])
            best = ranked.row(0, named=True)
            rows.append({
                "run_id": run_id,
                "family": family,
                "preset": preset,
                "objective": objective,
                "target": best["target"],
                "batch_size": best["batch_size"],
                "seq_len": best["seq_len"],
                "precision": best["precision"],
                "value": float(best[column]),
                "unit": unit,
                "source": "measured",
                "source_run_id": best["run_id"],
                "candidates": group.height,
            })
    return sorted(rows, key=lambda r: (r["family"], r["preset"], r["objective"]))
