"""Measuring one inference configuration in its worker process: build, export or convert, check against the
torch output, time under the stopping rule, and return one result row (or its classified failure row).

Runs inside a fresh worker process (see :mod:`hwbench_pipeline.bench.dispatch`), so the RSS high-water mark
is this configuration's own and nothing another configuration loaded is still warm.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.config_key import ATTENTION, DEFAULT_ATTENTION
from hwbench_pipeline.bench.precision import CALIBRATION_BATCHES
from hwbench_pipeline.bench.scenarios.inference.config import InferenceConfig
from hwbench_pipeline.bench.scenarios.inference.timing import (
    call_ms,
    check_agreement,
    forward_counting_flops,
    time_calls,
)
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields, measured_or_failure, now, series_fields
from hwbench_pipeline.bench.trackers.stats import summarize


def measure_inference(cfg: InferenceConfig, run_id: str) -> dict:
    """Measure one configuration. Raises on failure (see :func:`run_configuration`)."""
    import torch

    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.backends.export_cache import load_reference, save_reference
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.quality import task_quality
    from hwbench_pipeline.bench.trackers.core_speed import slowest_core_ms
    from hwbench_pipeline.bench.trackers.memory import current_rss_mb, rss_high_water_mb
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times

    started = now()
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
    # the first process counts FLOPs and publishes the reference output; the later ones load it when they built
    # the same model and inputs (export_cache.py)
    fingerprint = reference_fingerprint(model, inputs)
    reference, flops = (None, None) if cfg.count_flops else (load_reference(fingerprint), None)
    if cfg.count_flops:
        reference, flops = forward_counting_flops(model, inputs, models.forward)
    elif reference is None:
        with torch.inference_mode():
            reference = models.forward(model, inputs)
    reference = reference.float().cpu()
    save_reference(reference, fingerprint)
    t0 = time.perf_counter()
    # FLOPs and the reference came from the eager model; the timed one runs what the configuration asks for
    attention_ran = models.use_default_attention(model) if cfg.attention == DEFAULT_ATTENTION else ATTENTION
    # a static int8 recipe calibrates on inputs made the same way with other seeds, never on the timed ones
    calibration = [models.make_inputs(cfg.family, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed + 1 + i,
                                      model=model) for i in range(CALIBRATION_BATCHES)] \
        if cfg.quantization == "static" else []
    runner = backend.prepare(model, inputs, models.forward, target.torch_device, cfg.spec, calibration=calibration)
    # build + prepare (export/convert/compile), not the checks nor the writing of the export cache
    load_s = build_s + time.perf_counter() - t0 - runner.cache_write_s
    try:
        first_call_ms = call_ms(runner)
        # a request the backend turned into another format (fp16 weights run in fp32 by ONNX Runtime's CPU
        # provider) carries the error of both: it is held to the looser of their bounds
        bound = backend.tolerance(cfg.spec)
        if runner.precision != cfg.precision:
            bound = max(bound, backend.tolerance(runner.precision))
        agreement = check_agreement(runner.output(), reference, bound, cfg.label)

        # a runner whose model runs in other processes (a browser) names them: their CPU time is not other work
        own_pids = runner.own_pids() if hasattr(runner, "own_pids") else ()
        cpu_before, core_before = read_cpu_times(own_pids), slowest_core_ms()
        samples, warmup_calls, stop_reason = time_calls(runner, cfg.rule)
        load, core_after = load_between(cpu_before, read_cpu_times(own_pids)), slowest_core_ms()
        device_peak = runner.peak_memory_mb()
        precision_ran = runner.precision
        # what a runner adds about where it ran (a browser's version, cold start, bytes downloaded)
        runner_fields = runner.row_fields() if hasattr(runner, "row_fields") else {}
    finally:
        runner.release()

    peak_rss = rss_high_water_mb()  # before the task model below is built: this row's memory is its own
    # the trained weights' task accuracy at this precision, from the same backend path (bench/quality.py); the
    # timing stands whatever happens to this second model, and the row says why it has no accuracy
    quality: dict = {}
    if cfg.trained_weights:
        try:
            quality = task_quality(cfg.family, cfg.preset, Path(cfg.trained_weights), cfg.target, cfg.spec)
        except Exception as exc:  # noqa: BLE001 - any failure of the task model is reported on the row
            quality = {"task_note": f"task accuracy not measured: {type(exc).__name__}: {exc}".splitlines()[0]}
    stats = summarize(samples)
    p50_s = stats["p50_ms"] / 1e3
    tokens = models.tokens_per_call(cfg.family, config, cfg.batch_size, cfg.seq_len)
    contaminated = is_contaminated(load)
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": precision_ran,
        "attention_ran": attention_ran,
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
        "peak_rss_mb": peak_rss,
        "device_peak_mb": device_peak,
        "flops_per_call": flops,
        "max_abs_diff": agreement.max_abs_diff,
        "max_rel_diff": agreement.max_rel_diff,
        "mean_rel_diff": agreement.mean_rel_diff,
        **quality,
        "achieved_gflops": flops / p50_s / 1e9 if flops else None,
        **load_fields(load, contaminated),
        "slowest_core_ms": max(core_before, core_after) if core_before and core_after else None,
        **series_fields(samples, started),
        **runner_fields,
    }


def reference_fingerprint(model: Any, inputs: dict) -> str:
    """What a published reference output was computed from: the inputs' bytes and the sum of the weights."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(inputs):
        value = inputs[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    with torch.no_grad():
        # summed in float64 without a float64 copy of each weight (a full-size model's weights are gigabytes)
        digest.update(repr(sum(float(p.sum(dtype=torch.float64)) for p in model.parameters())).encode())
    return digest.hexdigest()


def failure_row(cfg: InferenceConfig, run_id: str, failure_class: str, message: str,
                started: datetime | None = None) -> dict:
    return failure_fields("inference", cfg.key_fields(), run_id, failure_class, message, started)


def run_configuration(cfg: InferenceConfig, run_id: str) -> dict:
    """Measure one configuration; any failure becomes a classified failure row instead of an exception."""
    return measured_or_failure(measure_inference, failure_row, cfg, run_id)
