"""The generation scenario: greedy token-by-token decoding of generative models, timed per token."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from hwbench_pipeline.bench.scenarios.base import Plan, Scenario, failure_line
from hwbench_pipeline.bench.scenarios.generation.config import MODEL_CACHE_PRECISION, GenerationConfig
from hwbench_pipeline.bench.scenarios.generation.measure import generation_failure_row, run_generation_configuration

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile


def unsupported_reason(cfg: GenerationConfig, backend, device_kind: str) -> str | None:
    """Why ``cfg`` cannot run on its target, known before building anything (None: try it)."""
    reason = backend.unsupported_reason(cfg.spec, device_kind)
    if reason is not None:
        return f"precision {cfg.spec} is not supported on {cfg.target}: {reason}"
    if cfg.cache_precision != MODEL_CACHE_PRECISION and backend.name != "torch":
        return (f"a {cfg.cache_precision} KV cache is offered on torch targets only (transformers' quantized "
                f"caches); {cfg.target} runs its cache in the model's precision")
    return None


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
        if not hasattr(backend, "generation_caches"):
            configs = profile.generation_configs(target, ("dynamic",))
            why = f"{parsed.backend} has no decode loop here"
            return Plan([], [generation_failure_row(c, run_id, "unsupported_configuration", why) for c in configs],
                        why)
        plan = Plan([], [])
        for cfg in profile.generation_configs(target, backend.generation_caches(parsed.device_kind)):
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
        return (f"{cfg.label}: TTFT p50 {row['ttft_p50_ms']:.1f} ms, ITL p50 {row['itl_p50_ms']:.2f} ms "
                f"(p99 {row['itl_p99_ms']:.2f}), {row['tokens_per_s']:.1f} tokens/s, {row['n_samples']} sequences, "
                f"{row['stop_reason']}{matched}{busy}")
