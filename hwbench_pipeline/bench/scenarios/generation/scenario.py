"""The generation scenario: greedy token-by-token decoding of generative models, timed per token."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from hwbench_pipeline.bench.scenarios.base import Plan, Scenario, failure_line
from hwbench_pipeline.bench.scenarios.generation.config import GenerationConfig
from hwbench_pipeline.bench.scenarios.generation.measure import generation_failure_row, run_generation_configuration
from hwbench_pipeline.bench.scenarios.generation.refusals import unsupported_reason

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile


class GenerationScenario(Scenario):
    name = "generation"
    results_table = "generation_results"
    #: its per-token series live on its rows (ttft_samples_ms, itl_samples_ms), keyed by its own wider key
    keeps_samples = False
    run_id_suffix = "-generation"

    def plan(self, profile: Profile, target: str, run_id: str) -> Plan:
        from hwbench_pipeline.bench.backends import load_backend
        from hwbench_pipeline.bench.hardware import parse_target

        parsed = parse_target(target)
        backend = load_backend(parsed.backend)
        if profile.generation is None:
            return Plan([], [], "the profile has no generation section")
        caches = backend.generation_caches(parsed.device_kind) if hasattr(backend, "generation_caches") else ()
        if not caches:
            configs = profile.generation_configs(target, (profile.generation.caches[0],))
            why = f"{parsed.backend} has no decode loop on {parsed.device_kind} here"
            return Plan([], [generation_failure_row(c, run_id, "unsupported_configuration", why) for c in configs],
                        why)
        plan = Plan([], [])
        for cfg in profile.generation_configs(target, caches):
            why = unsupported_reason(cfg, backend, parsed.device_kind)
            if why is None:
                plan.runnable.append(cfg)
            else:
                plan.refused.append(generation_failure_row(cfg, run_id, "unsupported_configuration", why))
        plan.note = "some precisions or cache precisions are not supported here" if plan.refused else ""
        return plan

    def measure(self, cfg: GenerationConfig, run_id: str) -> dict:
        return run_generation_configuration(cfg, run_id)

    def failure_row(self, cfg: GenerationConfig, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None) -> dict:
        return generation_failure_row(cfg, run_id, failure_class, message, started)

    def is_warning(self, row: dict) -> bool:
        return row["status"] != "ok" or row.get("tokens_matching_reference", 0) < row.get("new_tokens", 0)

    def describe(self, cfg: GenerationConfig, row: dict) -> str:
        if row["status"] != "ok":
            return failure_line(cfg, row)
        busy = " (busy machine)" if row.get("contaminated") else ""
        matched = "" if row["tokens_matching_reference"] == cfg.new_tokens else \
            f", tokens as generate() for {row['tokens_matching_reference']} of {cfg.new_tokens} steps"
        itl = "" if row["itl_p50_ms"] is None else \
            f", ITL p50 {row['itl_p50_ms']:.2f} ms (p99 {row['itl_p99_ms']:.2f})"  # none with one new token
        return (f"{cfg.label}: TTFT p50 {row['ttft_p50_ms']:.1f} ms{itl}, {row['tokens_per_s']:.1f} tokens/s, "
                f"{row['n_samples']} sequences, {row['stop_reason']}{matched}{busy}")
