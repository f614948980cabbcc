"""What every loaded Profile holds, whatever its file said (shared by the profile tests and the fuzzer)."""

import math

from hwbench_pipeline.bench.profiles import MAX_TIMEOUT_S, Profile
from hwbench_pipeline.bench.trackers.stats import StoppingRule


def _count(value) -> bool:
    return type(value) is int and value > 0


def _counts(values) -> bool:
    return (isinstance(values, tuple) and len(values) > 0 and all(map(_count, values))
            and len(set(values)) == len(values))


def _names(values) -> bool:
    return (isinstance(values, tuple) and len(values) > 0 and all(isinstance(v, str) for v in values)
            and len(set(values)) == len(values))


def _positive(value, high: float = math.inf) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and 0 < value <= high


def _timeout(value) -> bool:
    return type(value) is float and _positive(value, MAX_TIMEOUT_S)


def _rule(rule: StoppingRule) -> bool:
    return (_count(rule.processes) and _count(rule.max_processes) and rule.processes <= rule.max_processes
            and _positive(rule.ci_target) and rule.ci_target < 1 and _count(rule.min_samples)
            and rule.min_samples >= 3 and _count(rule.max_samples) and rule.max_samples >= rule.min_samples
            and _positive(rule.max_seconds) and _count(rule.warmup_window) and _positive(rule.warmup_window_seconds)
            and type(rule.warmup_min_calls) is int and rule.warmup_min_calls >= 0
            and math.isfinite(rule.warmup_max_seconds) and rule.warmup_max_seconds >= 0
            and math.isfinite(rule.warmup_tolerance) and 0 <= rule.warmup_tolerance <= 1)


def profile_violations(profile: Profile) -> list[str]:
    """The invariants ``profile`` breaks: positive integers, distinct list entries, finite bounded numbers."""
    checks = {
        "families": _names(profile.families), "presets": _names(profile.presets),
        "precisions": _names(profile.precisions), "batch_sizes": _counts(profile.batch_sizes),
        "seq_lens": _counts(profile.seq_lens), "threads": _count(profile.threads),
        "timeout_s": _timeout(profile.timeout_s), "stopping": _rule(profile.stopping),
        "memory_limit_mb": profile.memory_limit_mb is None or (type(profile.memory_limit_mb) is float
                                                               and _positive(profile.memory_limit_mb)),
    }
    if (t := profile.training) is not None:
        checks |= {
            "training.families": _names(t.families), "training.presets": _names(t.presets),
            "training.precisions": _names(t.precisions), "training.batch_sizes": _counts(t.batch_sizes),
            "training.seq_lens": _counts(t.seq_lens),
            "training.convergence_steps": type(t.convergence_steps) is int and t.convergence_steps >= 0,
            "training.convergence_batch": t.convergence_batch is None or (
                _count(t.convergence_batch) and t.convergence_batch in t.batch_sizes),
            "training.learning_rate": t.learning_rate is None or _positive(t.learning_rate, 1.0),
            "training.target_fraction": _positive(t.target_fraction) and t.target_fraction < 1,
            "training.max_batch": _count(t.max_batch) and t.max_batch >= max(t.batch_sizes),
            "training.memory_budget_mb": t.memory_budget_mb is None or _positive(t.memory_budget_mb),
            "training.memory_budget_fraction": _positive(t.memory_budget_fraction, 1.0),
            "training.stopping": _rule(t.stopping), "training.timeout_s": _timeout(t.timeout_s),
        }
    if (d := profile.distributed) is not None:
        checks |= {
            "distributed.families": _names(d.families), "distributed.presets": _names(d.presets),
            "distributed.strategies": _names(d.strategies), "distributed.workers": _counts(d.workers),
            "distributed.batch_size": _count(d.batch_size), "distributed.seq_len": _count(d.seq_len),
            "distributed.steps": _count(d.steps) and d.steps >= 3,
            "distributed.warmup_steps": type(d.warmup_steps) is int and d.warmup_steps >= 0,
            "distributed.threads_per_worker": _count(d.threads_per_worker),
            "distributed.microbatches": _count(d.microbatches),
            "distributed.max_failures": type(d.max_failures) is int and d.max_failures >= 0,
            "distributed.timeout_s": _timeout(d.timeout_s),
        }
    if (a := profile.architectures) is not None:
        checks |= {
            "architectures.models": _names(a.models), "architectures.batch_size": _count(a.batch_size),
            "architectures.seq_len": _count(a.seq_len), "architectures.timeout_s": _timeout(a.timeout_s),
        }
    if (g := profile.generation) is not None:
        checks |= {
            "generation.families": _names(g.families), "generation.presets": _names(g.presets),
            "generation.batch_sizes": _counts(g.batch_sizes), "generation.prompt_lens": _counts(g.prompt_lens),
            "generation.new_tokens": _count(g.new_tokens), "generation.precisions": _names(g.precisions),
            "generation.caches": _names(g.caches), "generation.cache_precisions": _names(g.cache_precisions),
            "generation.residual_length": type(g.residual_length) is int and g.residual_length >= 0,
            "generation.stream_clients": g.stream_clients == () or _counts(g.stream_clients),
            "generation.stopping": _rule(g.stopping), "generation.timeout_s": _timeout(g.timeout_s),
        }
    if (b := profile.browsers) is not None:
        checks |= {
            "browsers.families": _names(b.families), "browsers.presets": _names(b.presets),
            "browsers.batch_sizes": _counts(b.batch_sizes), "browsers.seq_lens": _counts(b.seq_lens),
            "browsers.stopping": _rule(b.stopping),
        }
    for i, c in enumerate(profile.comparisons):
        pairs = {"targets": c.targets, "precisions": c.precisions}
        checks |= {
            f"comparisons[{i}].names": all(isinstance(v, str) for v in (c.model, c.preset)),
            f"comparisons[{i}].shape": _count(c.batch_size) and _count(c.seq_len) and _count(c.pairs),
            f"comparisons[{i}].seconds_per_process": type(c.seconds_per_process) is float
            and _positive(c.seconds_per_process),
            f"comparisons[{i}].threshold": type(c.threshold) is float and _positive(c.threshold, 1.0),
            # two names each, and the sides differ in exactly one of target and precision
            f"comparisons[{i}].sides": all(isinstance(v, tuple) and len(v) == 2 for v in pairs.values())
            and sum(v[0] != v[1] for v in pairs.values()) == 1,
        }
    return sorted(name for name, holds in checks.items() if not holds)
