"""Whether one architecture runs on one target: build it at a preset, run a forward pass, compare with torch.

A probe is the coverage sweep's unit of work. It always ends in a row: ``ok`` with what ran (the input recipe,
parameters, shape, counted FLOPs, build time, first-call time and a short timed series on the target, all
measured), or ``failed`` with a failure class and the message.
It runs in a fresh process like every measurement, so a crash or a hang costs one row, not the sweep.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hwbench_pipeline.bench.config_key import config_hash
from hwbench_pipeline.bench.failures import BenchmarkFailure, classify
from hwbench_pipeline.bench.trackers.stats import StoppingRule

PROBE_METHOD_VERSION = 2  # bump when what a probe does changes: rows of another version are not compared
IMAGE_AND_TEXT_CATEGORIES = ("vision-language", "multimodal")
#: a probe's timed series: short (the sweep covers hundreds of architectures), with the usual warm-up check and
#: interval rule; a benchmark run of the same configuration measures it to the full rule
PROBE_RULE = StoppingRule(ci_target=0.02, min_samples=5, max_seconds=1.5, warmup_max_seconds=0.5)
#: a first call slower than this gets no timed series (five more calls would take the probe past its timeout);
#: the forward pass still counts for coverage
SERIES_MAX_FIRST_CALL_MS = 2000.0


@dataclass(frozen=True)
class ProbeConfig:
    model_type: str
    preset: str = "tiny"
    target: str = "cpu-torch"
    batch_size: int = 1
    seq_len: int = 16
    threads: int = 1
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.target} {self.model_type}/{self.preset}"


def missing_package(exc: BaseException) -> str | None:
    """The optional package a model said it needs, when that is why it failed."""
    text = str(exc)
    if isinstance(exc, ImportError) and "requires the" in text:
        return text.split("requires the", 1)[1].split("library", 1)[0].strip() or None
    if isinstance(exc, ModuleNotFoundError):
        return getattr(exc, "name", None)
    return None


def failure_class(exc: BaseException, stage: str) -> str:
    if isinstance(exc, BenchmarkFailure):
        return exc.failure_class
    if missing_package(exc):
        return "missing_dependency"
    if stage == "build":
        return "model_build_error"
    if stage == "export":
        found = classify(exc)
        return found if found in ("unsupported_operator", "unsupported_configuration") else "export_error"
    return classify(exc)


def probe_category(cfg: ProbeConfig) -> str | None:
    from hwbench_pipeline.bench.catalog.registry import architectures

    entry = architectures().get(cfg.model_type)
    return entry.category if entry else None


def runtime_version(target: str) -> str:
    """The version of the runtime a target runs on (a probe is re-run when it changes)."""
    from importlib.metadata import PackageNotFoundError, version

    package = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}.get(target.split("-", 1)[-1])
    try:
        return version(package) if package else "unknown"
    except PackageNotFoundError:
        return "absent"


def expected_config_hash(cfg: ProbeConfig) -> str | None:
    """The hash the probe's config will have, computed without building the model (None if it cannot be
    built: the probe itself then says why)."""
    from hwbench_pipeline.bench.catalog.generic import build_config

    try:
        return config_hash(build_config(cfg.model_type, cfg.preset))
    except Exception:  # noqa: BLE001 - the probe records the real failure
        return None


def raised_at(exc: BaseException) -> str | None:
    """``module:function`` of the innermost frame of the exception, the place a failure pattern is keyed on."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    frame = frames[-1]
    path = frame.filename.replace("\\", "/")
    module = path.split("site-packages/", 1)[-1].split("hwbench_pipeline/", 1)[-1]
    return f"{module.removesuffix('.py').replace('/', '.')}:{frame.name}"


def probe_row(cfg: ProbeConfig, run_id: str, **fields: Any) -> dict:
    import transformers

    return {
        "run_id": run_id, "model_type": cfg.model_type, "category": probe_category(cfg),
        "preset": cfg.preset, "target": cfg.target, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
        "threads": cfg.threads, "transformers_version": transformers.__version__,
        "runtime_version": runtime_version(cfg.target),
        "method_version": PROBE_METHOD_VERSION, "finished_at": datetime.now(UTC), **fields,
    }


@contextlib.contextmanager
def output_discarded() -> Iterator[None]:
    """Discard what native code prints on the process's stdout and stderr (an exporter dumps whole graphs when it
    fails); the row's message says what went wrong."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def probe_architecture(cfg: ProbeConfig, run_id: str) -> dict:
    """Build ``cfg.model_type`` at its preset and run one forward pass on ``cfg.target``; always returns a row."""
    with output_discarded():
        return _probe(cfg, run_id)


def _probe(cfg: ProbeConfig, run_id: str) -> dict:
    import torch

    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.catalog.describe import config_shape
    from hwbench_pipeline.bench.catalog.generic import (
        build_config,
        build_model,
        default_config_fixes,
        generic_forward,
        run_forward,
    )
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.scenarios.inference import call_ms, check_agreement, count_flops
    from hwbench_pipeline.bench.trackers.memory import current_rss_mb

    torch.set_num_threads(cfg.threads)
    stage, fields = "build", {"worker_pid": os.getpid(), "baseline_rss_mb": current_rss_mb()}
    try:
        t0 = time.perf_counter()
        fixes = default_config_fixes(cfg.model_type)
        if fixes:
            fields["config_fixes"] = "; ".join(f"{name}={value} ({why})" for name, value, why in fixes)
        config = build_config(cfg.model_type, cfg.preset)
        fields["config_hash"] = config_hash(config)
        model = build_model(config, seed=cfg.seed)
        fields["build_s"] = time.perf_counter() - t0
        fields["params"] = sum(p.numel() for p in model.parameters())
        fields["leaf_modules"] = sum(1 for m in model.modules() if next(m.children(), None) is None)
        fields.update(config_shape(config))
        stage = "forward"
        t0 = time.perf_counter()
        result = run_forward(model, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed)
        # a vision-language or image-text model fed text alone ran its language tower only
        fields["complete"] = not (result.recipe == "text" and probe_category(cfg) in IMAGE_AND_TEXT_CATEGORIES)
        fields.update(first_call_ms=(time.perf_counter() - t0) * 1e3, recipe=result.recipe,
                      recipes_failed=" | ".join(result.tried) or None, inputs=",".join(result.inputs),
                      output_shape="x".join(map(str, result.output.shape)))
        fields["flops_per_call"] = count_flops(model, result.inputs, generic_forward)
        target = parse_target(cfg.target)
        backend = load_backend(target.backend)
        stage = "export" if target.backend != "torch" else "run"
        experts = getattr(model.config, "_experts_implementation", None)
        runner = backend.prepare(model, result.inputs, generic_forward, target.torch_device, "fp32")
        if getattr(model.config, "_experts_implementation", None) != experts:  # the exporter needed it
            fields["config_fixes"] = "; ".join(filter(None, [fields.get("config_fixes"), (
                f"experts_implementation={model.config._experts_implementation} (exported: grouped matmuls do "
                "not trace; every expert runs on every token)")]))
        stage = "run"
        if target.backend != "torch":
            try:
                fields["first_call_ms"] = call_ms(runner)
                agreement = check_agreement(runner.output(), result.output.float(), backend.tolerance("fp32"),
                                            cfg.label)
            except BaseException:
                runner.release()  # a browser, a session: not left behind by a failed probe
                raise
            fields.update(max_abs_diff=agreement.max_abs_diff, max_rel_diff=agreement.max_rel_diff)
        if fields["first_call_ms"] <= SERIES_MAX_FIRST_CALL_MS:
            fields.update(timed_series(runner))
        else:
            runner.release()
            fields["stop_reason"] = "not_timed: first call too slow for a probe"
        return probe_row(cfg, run_id, status="ok", failure_class=None, message=None, stage=None, **fields)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified row
        message = f"{type(exc).__name__}: {exc}".strip()[:2000]
        if getattr(exc, "recipes_tried", None):
            fields["recipes_failed"] = " | ".join(exc.recipes_tried)
        return probe_row(cfg, run_id, status="failed", failure_class=failure_class(exc, stage), stage=stage,
                         message=message, missing_package=missing_package(exc), raised_at=raised_at(exc), **fields)


def timed_series(runner: Any) -> dict[str, Any]:
    """A short timed series of ``runner`` under :data:`PROBE_RULE`: its statistics, whether the host was busy
    meanwhile, and the process's peak memory."""
    from hwbench_pipeline.bench.scenarios.inference import time_calls
    from hwbench_pipeline.bench.scenarios.rows import load_fields
    from hwbench_pipeline.bench.trackers.memory import rss_high_water_mb
    from hwbench_pipeline.bench.trackers.stats import summarize
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times

    own_pids = runner.own_pids() if hasattr(runner, "own_pids") else ()  # a browser's processes
    before = read_cpu_times(own_pids)
    try:
        samples, warmup_calls, stop_reason = time_calls(runner, PROBE_RULE)
        load = load_between(before, read_cpu_times(own_pids))
    finally:
        runner.release()
    stats = summarize(samples)
    return {"p50_ms": stats["p50_ms"], "cv": stats["cv"], "n_samples": len(samples), "warmup_calls": warmup_calls,
            "stop_reason": stop_reason, "peak_rss_mb": rss_high_water_mb(), **load_fields(load, is_contaminated(load))}
