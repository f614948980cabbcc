"""The training scenario: forward, backward and an AdamW step per configuration, with a convergence run and a
batch-size sweep up to the memory budget."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from hwbench_pipeline.bench.peaks import compare_with_peak
from hwbench_pipeline.bench.scenarios.base import Plan, Scenario, failure_line
from hwbench_pipeline.bench.scenarios.training.config import TrainingConfig
from hwbench_pipeline.bench.scenarios.training.measure import (
    run_training_configuration,
    training_failure_row,
    unsupported_precision_reason,
)
from hwbench_pipeline.bench.scenarios.training.sweep import mark_batch_scaling, sweep_skip_reason

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile


class TrainingScenario(Scenario):
    name = "training"
    results_table = "training_results"
    run_id_suffix = "-training"

    def plan(self, profile: Profile, target: str, run_id: str) -> Plan:
        from hwbench_pipeline.bench.hardware import parse_target

        parsed = parse_target(target)
        requested = set(profile.training.batch_sizes) if profile.training else set()
        plan = Plan([], [], "" if profile.training else "the profile has no training section")
        for cfg in profile.training_configs(target):
            if parsed.backend != "torch":
                why = f"training runs on torch targets; {target} is a {parsed.backend} inference runtime"
            else:
                why = unsupported_precision_reason(cfg.precision, parsed.device_kind)
            if why is None:
                plan.runnable.append(cfg)
            elif cfg.batch_size in requested:  # sweep extensions of a refused configuration say nothing new
                plan.refused.append(training_failure_row(cfg, run_id, "unsupported_configuration", why))
        plan.named = [c for c in plan.runnable if c.batch_size in requested]
        return plan

    def measure(self, cfg: TrainingConfig, run_id: str) -> dict:
        return run_training_configuration(cfg, run_id)

    def failure_row(self, cfg: TrainingConfig, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None) -> dict:
        return training_failure_row(cfg, run_id, failure_class, message, started)

    def skip_reason(self, cfg: TrainingConfig, rows: list[dict]) -> str | None:
        return sweep_skip_reason(cfg, rows)

    def finish(self, rows: list[dict], plan: Plan, run_id: str, peaks: dict | None) -> list[dict]:
        rows = rows + not_run_rows(plan.named, rows, run_id)
        mark_batch_scaling(rows)
        compare_with_peak(rows, peaks or {})
        return rows + plan.refused

    def is_warning(self, row: dict) -> bool:
        return row["status"] != "ok" or row.get("converged") is False

    def describe(self, cfg: TrainingConfig, row: dict) -> str:
        if row["status"] != "ok":
            return failure_line(cfg, row)
        busy = " (busy machine)" if row.get("contaminated") else ""
        budget = "" if row["within_budget"] else f", OVER the {row['memory_budget_mb']:.0f} MiB budget"
        line = (f"{cfg.label}: step p50 {row['p50_ms']:.1f} ms, {row['throughput_samples_s']:.1f} samples/s, "
                f"peak {row['peak_rss_mb']:.0f} MiB{budget}{busy}")
        return f"{line}; {row['convergence_note']}" if row.get("convergence_note") else line


def not_run_rows(requested: list[TrainingConfig], rows: list[dict], run_id: str) -> list[dict]:
    """A ``skipped`` row for each batch size the profile asked for that its sweep did not run (a smaller batch
    was already over the memory budget or out of memory), with that reason: never ``out_of_memory``, a failure
    nobody observed."""
    done = {tuple(r[k] for k in ("family", "preset", "batch_size", "seq_len", "precision")) for r in rows}
    missing = []
    for cfg in requested:
        if (cfg.family, cfg.preset, cfg.batch_size, cfg.seq_len, cfg.precision) in done:
            continue
        reason = sweep_skip_reason(cfg, rows) or "not run"
        missing.append(training_failure_row(cfg, run_id, "skipped", f"not run: {reason}"))
    return missing
