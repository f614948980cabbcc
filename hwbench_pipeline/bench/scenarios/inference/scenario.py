"""The inference scenario: one forward pass of a model on one target, timed under the stopping rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from hwbench_pipeline.bench.peaks import compare_with_peak
from hwbench_pipeline.bench.scenarios.base import Plan, Scenario, failure_line
from hwbench_pipeline.bench.scenarios.inference.config import InferenceConfig
from hwbench_pipeline.bench.scenarios.inference.measure import failure_row, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile


class InferenceScenario(Scenario):
    name = "inference"
    results_table = "inference_results"

    def plan(self, profile: Profile, target: str, run_id: str) -> Plan:
        from hwbench_pipeline.bench.backends import load_backend
        from hwbench_pipeline.bench.hardware import parse_target

        parsed = parse_target(target)
        backend = load_backend(parsed.backend)
        reasons = {spec: backend.unsupported_reason(spec, parsed.device_kind) for spec in profile.precisions}
        configs = profile.inference_configs(target)
        runnable = [c for c in configs if reasons[c.spec] is None]
        refused = [failure_row(c, run_id, "unsupported_configuration",
                               f"precision {c.spec} is not supported on {target}: {reasons[c.spec]}")
                   for c in configs if reasons[c.spec] is not None]
        return Plan(runnable, refused, "precision not supported here" if refused else "")

    def measure(self, cfg: InferenceConfig, run_id: str) -> dict:
        return run_configuration(cfg, run_id)

    def process_rule(self, cfg: InferenceConfig) -> StoppingRule:
        return cfg.rule

    def process_config(self, cfg: InferenceConfig, first: bool) -> InferenceConfig:
        # what does not change between processes is measured once: FLOPs, and the task accuracy
        return replace(cfg, rule=cfg.rule.per_process(), count_flops=cfg.count_flops and first,
                       trained_weights=cfg.trained_weights if first else None)

    def failure_row(self, cfg: InferenceConfig, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None) -> dict:
        return failure_row(cfg, run_id, failure_class, message, started)

    def finish(self, rows: list[dict], plan: Plan, run_id: str, peaks: dict | None) -> list[dict]:
        compare_with_peak(rows, peaks or {})
        return rows + plan.refused

    def describe(self, cfg: InferenceConfig, row: dict) -> str:
        if row["status"] != "ok":
            return failure_line(cfg, row)
        busy = " (busy machine)" if row.get("contaminated") else ""
        spread = f"±{100 * row['ci_rel_halfwidth']:.1f} % over {row['processes']} processes, " \
            if (row.get("processes") or 1) > 1 else ""
        return (f"{cfg.label}: p50 {row['p50_ms']:.3f} ms, {row['throughput_samples_s']:.1f} samples/s, "
                f"{spread}{row['n_samples']} samples, {row['stop_reason']}{busy}")
