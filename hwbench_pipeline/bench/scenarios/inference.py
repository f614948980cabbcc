"""Inference scenario: build one model, time its forward pass on one target, return one result row.

Runs inside a fresh worker process (see :mod:`hwbench_pipeline.bench.dispatch`), so the RSS high-water
mark is this configuration's own and nothing another configuration loaded is still warm.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hwbench_pipeline.bench.config_key import identity_fields
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields, measured_or_failure
from hwbench_pipeline.bench.trackers.stats import StoppingRule, summarize


@dataclass(frozen=True)
class InferenceConfig:
    family: str
    preset: str
    target: str
    batch_size: int
    seq_len: int
    precision: str = "fp32"
    threads: int = 1
    rule: StoppingRule = field(default_factory=StoppingRule)
    count_flops: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.seq_len < 1 or self.threads < 1:
            raise ValueError(f"batch, sequence and threads must be positive: {self.label}")

    @property
    def label(self) -> str:
        return (f"{self.target} {self.family}/{self.preset} bs={self.batch_size} seq={self.seq_len} "
                f"{self.precision} t={self.threads}")

    def key_fields(self) -> dict[str, object]:
        return {
            "target": self.target,
            "family": self.family,
            "preset": self.preset,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "precision": self.precision,
            "threads": self.threads,
            **identity_fields(self.family, self.preset),
        }


def _now() -> datetime:
    return datetime.now(UTC)


def forward_counting_flops(model, inputs, forward):
    """One forward pass under torch's FLOP counter: (output, FLOPs), or (output, None) when the counter cannot
    trace the model. The counter only observes operators, so the output is the plain forward's; it serves as
    the torch reference as well, saving a forward pass (seconds for the larger presets)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            output = forward(model, inputs)
        return output, float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - a model the counter cannot trace still gets measured
        with torch.inference_mode():
            return forward(model, inputs), None


def count_flops(model, inputs, forward) -> float | None:
    """FLOPs of one forward pass, counted by torch's FLOP counter (attention included: models use eager)."""
    return forward_counting_flops(model, inputs, forward)[1]


def check_agreement(output, reference, tolerance: float, label: str) -> tuple[float, float]:
    """Largest absolute difference from the torch fp32 output, and that relative to the output's scale.

    Raises a ``numerical_mismatch`` failure when the relative difference exceeds the backend's tolerance for
    the precision that ran: a fast wrong answer is not a result.
    """
    from hwbench_pipeline.bench.failures import BenchmarkFailure

    if tuple(output.shape) != tuple(reference.shape):
        raise BenchmarkFailure("numerical_mismatch",
                               f"{label}: output shape {tuple(output.shape)} != torch {tuple(reference.shape)}")
    diff = float((output.float() - reference).abs().max())
    scale = float(reference.abs().max()) or 1.0
    if not math.isfinite(diff) or diff / scale > tolerance:
        raise BenchmarkFailure("numerical_mismatch", f"{label}: max |diff| {diff:.3g} is {diff / scale:.3g} of the "
                                                     f"output scale {scale:.3g}, above the tolerance {tolerance:g}")
    return diff, diff / scale


def time_calls(runner, rule: StoppingRule) -> tuple[list[float], int, str]:
    """Warm up until stable, then sample until the stopping rule says so. Returns (samples ms, warmup calls, why)."""
    perf = time.perf_counter_ns
    warm: list[float] = []
    start = perf()
    while not rule.warmup_done(warm, (perf() - start) / 1e9):
        t0 = perf()
        runner()
        warm.append((perf() - t0) / 1e6)
    samples: list[float] = []
    start = perf()
    while True:
        t0 = perf()
        runner()
        samples.append((perf() - t0) / 1e6)
        reason = rule.stop_reason(samples, (perf() - start) / 1e9)
        if reason:
            return samples, len(warm), reason


def measure_inference(cfg: InferenceConfig, run_id: str) -> dict:
    """Measure one configuration. Raises on failure (see :func:`run_configuration`)."""
    import torch

    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.environment import environment_fields
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.trackers.memory import current_rss_mb, rss_high_water_mb
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times

    started = _now()
    target = parse_target(cfg.target)
    torch.set_num_threads(cfg.threads)
    backend = load_backend(target.backend)
    models.import_model_code(cfg.family)
    baseline_rss = current_rss_mb()

    t0 = time.perf_counter()
    config = models.build_config(cfg.family, cfg.preset)
    model = models.build_model(cfg.family, cfg.preset, seed=cfg.seed)
    inputs = models.make_inputs(cfg.family, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed, model=model)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    if cfg.count_flops:
        reference, flops = forward_counting_flops(model, inputs, models.forward)
    else:
        with torch.inference_mode():
            reference, flops = models.forward(model, inputs), None
    reference = reference.float().cpu()
    t0 = time.perf_counter()
    runner = backend.prepare(model, inputs, models.forward, target.torch_device, cfg.precision)
    load_s = build_s + time.perf_counter() - t0  # build + prepare (export/convert/compile), not the checks
    try:
        t0 = time.perf_counter()
        runner()
        first_call_ms = (time.perf_counter() - t0) * 1e3
        max_abs_diff, max_rel_diff = check_agreement(runner.output(), reference,
                                                     backend.tolerance(runner.precision), cfg.label)

        cpu_before = read_cpu_times()
        samples, warmup_calls, stop_reason = time_calls(runner, cfg.rule)
        load = load_between(cpu_before, read_cpu_times())
        device_peak = runner.peak_memory_mb()
        precision_ran = runner.precision
    finally:
        runner.release()

    stats = summarize(samples)
    p50_s = stats["p50_ms"] / 1e3
    tokens = models.tokens_per_call(cfg.family, config, cfg.batch_size, cfg.seq_len)
    contaminated = is_contaminated(load)
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": precision_ran,
        "backend": target.backend,
        "device_kind": target.device_kind,
        "status": "ok",
        "params": int(params),
        "n_samples": len(samples),
        "warmup_calls": warmup_calls,
        "stop_reason": stop_reason,
        "ci_target": cfg.rule.ci_target,
        **stats,
        "throughput_samples_s": cfg.batch_size / p50_s,
        "throughput_tokens_s": tokens / p50_s if tokens else None,
        "first_call_ms": first_call_ms,
        "load_s": load_s,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": rss_high_water_mb(),
        "device_peak_mb": device_peak,
        "flops_per_call": flops,
        "max_abs_diff": max_abs_diff,
        "max_rel_diff": max_rel_diff,
        "achieved_gflops": flops / p50_s / 1e9 if flops else None,
        **load_fields(load, contaminated),
        "samples_ms": [float(s) for s in samples],
        "worker_pid": os.getpid(),
        "started_at": started,
        "finished_at": _now(),
        **environment_fields(),
    }


def failure_row(cfg: InferenceConfig, run_id: str, failure_class: str, message: str,
                started: datetime | None = None) -> dict:
    return failure_fields("inference", cfg.key_fields(), run_id, failure_class, message, started)


def run_configuration(cfg: InferenceConfig, run_id: str) -> dict:
    """Measure one configuration; any failure becomes a classified failure row instead of an exception."""
    return measured_or_failure(measure_inference, failure_row, cfg, run_id)
