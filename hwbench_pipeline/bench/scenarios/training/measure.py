"""Measuring one training configuration in its worker: forward, backward and an AdamW step; one row.

Runs inside a fresh worker process (see :mod:`hwbench_pipeline.bench.dispatch`), so the RSS high-water mark
is this configuration's own. In that process, in order:

1. **Convergence** (when ``convergence_steps > 0``): the model trains on fresh batches of its family's
   standard task (:mod:`hwbench_pipeline.bench.tasks`, deterministic from the seed); the loss of every step is
   kept, and the loss of a held-out set is measured before and after. ``steps_to_target`` is the first step
   at which the mean of the last ``LOSS_WINDOW`` training losses is at or below ``target_fraction`` of the
   held-out initial loss. ``converged`` also needs the final held-out loss at or below that target: a run
   that never gets there, or whose held-out loss does not stay down (unstable), is ``converged = false``
   and its note says so. With ``keep_weights_dir``, the trained weights of an fp32 run that ended above
   chance are kept there (:func:`keep_trained_weights`, bench/trained.py) before the timed steps change them.
2. **FLOPs** of one step, counted by torch's FLOP counter over forward and backward (the AdamW update is
   element-wise and not counted), and of the forward alone.
3. **Step latency**: the same warm-up and stopping rule as inference, one timed call = one whole step
   (zero grads, forward, loss, backward, gradient clipping, optimizer step, device sync) on a fixed batch.

Peak memory is the RSS high-water mark on CPU and the allocator peak on CUDA; it is compared with the memory
budget (given, or a fraction of what the device has free when the worker starts). Batch-size sweeps use
:func:`sweep_skip_reason` and :func:`mark_batch_scaling`: each batch runs in its own process, larger batches
are not run once one is over the budget or out of memory, and the largest batch that fitted is recorded,
never extrapolated.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime
from typing import Any

from hwbench_pipeline.bench.config_key import ATTENTION
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields, measured_or_failure, now, series_fields
from hwbench_pipeline.bench.scenarios.training.config import (
    EVAL_SAMPLES,
    LOSS_WINDOW,
    MAX_GRAD_NORM,
    WARMUP_STEPS,
    TrainingConfig,
)
from hwbench_pipeline.bench.trackers.stats import summarize

# ---- precision ----------------------------------------------------------------------------------------------


def unsupported_precision_reason(precision: str, device_kind: str) -> str | None:
    """Why torch training cannot run ``precision`` on that kind of device here, or None when it can."""
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.precision import FLOAT_PRECISIONS

    backend = load_backend("torch")
    trainable = [p for p in backend.precisions(device_kind) if p in FLOAT_PRECISIONS]
    if precision in trainable:
        return None
    # int8 is an inference recipe; a float format is refused for the reason the backend detected
    why = "training runs in float formats only (int8 is an inference recipe)" if precision not in FLOAT_PRECISIONS \
        else backend.unsupported_reason(precision, device_kind)
    return f"precision {precision} is not supported for training on {device_kind} here: {why} " \
           f"(supported: {', '.join(trainable)})"


def _autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    import torch

    from hwbench_pipeline.bench.backends.torch.config import AUTOCAST_DTYPES

    dtype = AUTOCAST_DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device_type, dtype=dtype)


# ---- one step -----------------------------------------------------------------------------------------------


class TrainingStep:
    """One optimizer step of a TaskModel: cross-entropy over its class scores, AdamW (fused where torch has the
    kernel) with a linear warm-up, gradient clipping, and a GradScaler for fp16 (loss scaling; bf16 and fp32
    need none)."""

    def __init__(self, task_model: Any, device: Any, precision: str, learning_rate: float) -> None:
        import torch

        self.model = task_model
        self.device = device
        self.precision = precision
        # the fused AdamW kernel (one pass over each parameter) is ~4x faster than the per-tensor loop on a CPU
        self.fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(task_model.parameters(), lr=learning_rate, fused=self.fused or None)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def loss(self, batch: Any) -> Any:
        import torch

        with _autocast(self.precision, self.device.type):
            scores = self.model(batch.inputs)
        return torch.nn.functional.cross_entropy(scores.float(), batch.labels)

    def __call__(self, batch: Any) -> Any:
        """Run one step; returns the (detached) loss once the device has finished the step."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
        self.schedule.step()
        _synchronize(self.device)
        return loss.detach()


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step_flops(step: TrainingStep, batch: Any) -> tuple[float | None, float | None]:
    """(FLOPs of forward + backward, FLOPs of the forward alone), counted; gradients are discarded."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            step.loss(batch).backward()
        total = float(counter.get_total_flops())
        step.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            step.loss(batch)
        return total, float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - a model the counter cannot trace still gets measured
        step.optimizer.zero_grad(set_to_none=True)
        return None, None


# ---- convergence --------------------------------------------------------------------------------------------


def _held_out(step: TrainingStep, family: str, config: Any, cfg: TrainingConfig) -> tuple[float, float]:
    """(mean loss, accuracy) on the held-out split, in eval mode, in chunks of the configuration's batch (so
    the memory peak stays the training step's)."""
    import torch

    from hwbench_pipeline.bench import tasks

    step.model.eval()
    losses, correct, seen, chunk = 0.0, 0.0, 0, 0
    try:
        with torch.no_grad():
            while seen < EVAL_SAMPLES:
                size = min(cfg.batch_size, EVAL_SAMPLES - seen)
                batch = tasks.make_task_batch(family, config, size, cfg.seq_len, seed=cfg.seed, step=chunk,
                                              split="eval").to(step.device)
                with _autocast(cfg.precision, step.device.type):
                    scores = step.model(batch.inputs).float()
                losses += float(torch.nn.functional.cross_entropy(scores, batch.labels, reduction="sum"))
                correct += tasks.accuracy(scores, batch.labels) * size
                seen += size
                chunk += 1
    finally:
        step.model.train()
    return losses / seen, correct / seen


def steps_to_target(curve: list[float], target: float, window: int = LOSS_WINDOW) -> int | None:
    """The first step count after which the mean of the last ``window`` losses is <= target (None: never)."""
    for n in range(1, len(curve) + 1):
        recent = curve[max(0, n - window):n]
        if len(recent) == min(window, len(curve)) and sum(recent) / len(recent) <= target:
            return n
    return None


def run_convergence(step: TrainingStep, family: str, config: Any, cfg: TrainingConfig) -> dict:
    """Train ``cfg.convergence_steps`` steps on the standard task; the loss curve and the convergence figures."""
    import numpy as np
    import torch

    from hwbench_pipeline.bench import tasks

    # dropout draws from torch's generator, wav2vec2's time masking from numpy's: both seeded, so a run repeats
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    initial_loss, initial_accuracy = _held_out(step, family, config, cfg)
    curve = []
    for i in range(cfg.convergence_steps):
        batch = tasks.make_task_batch(family, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed, step=i)
        curve.append(float(step(batch.to(step.device))))
    final_loss, final_accuracy = _held_out(step, family, config, cfg)
    target = cfg.target_fraction * initial_loss
    reached = steps_to_target(curve, target)
    held = final_loss <= target
    if reached is not None and held:
        note = (f"training loss reached {cfg.target_fraction:.0%} of the initial {initial_loss:.3f} after {reached} "
                f"of {len(curve)} steps; held-out loss {final_loss:.3f}, accuracy {final_accuracy:.0%}")
    elif reached is not None:
        note = (f"NOT CONVERGED (unstable): the training loss reached {cfg.target_fraction:.0%} of the initial "
                f"{initial_loss:.3f} after {reached} steps, but the held-out loss ended at {final_loss:.3f} "
                f"(accuracy {final_accuracy:.0%}) after {len(curve)} steps")
    else:
        tail = curve[-LOSS_WINDOW:]
        note = (f"NOT CONVERGED: the training loss did not fall to {cfg.target_fraction:.0%} of the initial "
                f"{initial_loss:.3f} within {len(curve)} steps (last {len(tail)} steps' mean "
                f"{sum(tail) / len(tail):.3f}); held-out loss {final_loss:.3f}, accuracy {final_accuracy:.0%}")
    return {
        "task": tasks.FAMILY_TASKS[family],
        "convergence_steps": len(curve),
        "initial_loss": initial_loss,
        "final_loss": final_loss,
        "target_fraction": cfg.target_fraction,
        "steps_to_target": reached,
        "converged": reached is not None and held,
        "convergence_note": note,
        "initial_accuracy": initial_accuracy,
        "final_accuracy": final_accuracy,
        "chance_accuracy": 1.0 / tasks.NUM_CLASSES,
        "loss_curve": curve,
    }


# ---- trained weights ----------------------------------------------------------------------------------------


#: "above chance" means a guessing model would score this high on the held-out set less often than this
CHANCE_SIGNIFICANCE = 0.01


def above_chance(accuracy: float, samples: int, chance: float, significance: float = CHANCE_SIGNIFICANCE) -> bool:
    """Whether ``accuracy`` on ``samples`` held-out samples is above chance by more than luck: a model guessing
    at ``chance`` scores at least as many right with probability below ``significance`` (binomial tail).

    On 32 samples of a 4-way task a guesser beats 25 % two times in five; the bar this sets there is 15/32."""
    correct = round(accuracy * samples)
    tail = sum(math.comb(samples, k) * chance**k * (1 - chance) ** (samples - k) for k in range(correct, samples + 1))
    return correct > chance * samples and tail < significance


def keep_trained_weights(step: TrainingStep, cfg: TrainingConfig, convergence: dict, run_id: str) -> str | None:
    """Keep the weights a convergence run trained under ``cfg.keep_weights_dir`` (bench/trained.py); the path
    written, or None where they are not kept.

    Kept only from fp32 training: the weights are the reference that the task accuracy of every lower precision
    is judged against (bench/quality.py), so they must not carry another precision's training error themselves.
    Kept only when the held-out accuracy after training is above chance (:func:`above_chance`): a model at
    chance has learned nothing a precision could lose, so its accuracy drop would be noise. The bar is chance
    rather than ``converged`` (loss at the target fraction): a model that learned part of the task still shows
    what a precision costs, and its metadata carries the accuracy it reached."""
    from hwbench_pipeline.bench import trained
    from hwbench_pipeline.bench.config_key import model_config_hash

    if not cfg.keep_weights_dir or not cfg.convergence_steps or cfg.precision != "fp32":
        return None
    if not above_chance(convergence["final_accuracy"], EVAL_SAMPLES, convergence["chance_accuracy"]):
        return None
    metadata = trained.TrainedMetadata(
        family=cfg.family, preset=cfg.preset, config_hash=model_config_hash(cfg.family, cfg.preset),
        task=convergence["task"], seed=cfg.seed, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
        steps=convergence["convergence_steps"], final_accuracy=convergence["final_accuracy"],
        final_loss=convergence["final_loss"], learning_rate=float(cfg.learning_rate), run_id=run_id,
        precision=cfg.precision)
    return str(trained.save_trained(cfg.keep_weights_dir, step.model, metadata))


# ---- memory -------------------------------------------------------------------------------------------------


def memory_budget_mb(cfg: TrainingConfig, device: Any) -> float:
    """The configuration's memory budget in MiB: given, or a fraction of what the device has free now."""
    if cfg.memory_budget_mb is not None:
        return float(cfg.memory_budget_mb)
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return cfg.memory_budget_fraction * free / 2**20
    import psutil

    return cfg.memory_budget_fraction * psutil.virtual_memory().available / 2**20


# ---- measuring ----------------------------------------------------------------------------------------------


def measure_training(cfg: TrainingConfig, run_id: str) -> dict:
    """Measure one training configuration. Raises on failure (see :func:`run_training_configuration`)."""
    import torch

    from hwbench_pipeline.bench import models, tasks
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.scenarios.inference import time_calls
    from hwbench_pipeline.bench.trackers.memory import current_rss_mb, rss_high_water_mb
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times

    started = now()
    target = parse_target(cfg.target)
    if target.backend != "torch":
        raise UnsupportedConfigurationError(
            f"training runs on torch targets; {cfg.target} is a {target.backend} inference runtime")
    refused = unsupported_precision_reason(cfg.precision, target.device_kind)
    if refused:
        raise UnsupportedConfigurationError(refused)
    torch.set_num_threads(cfg.threads)
    device = torch.device(target.torch_device)
    budget_mb = memory_budget_mb(cfg, device)
    models.import_model_code(cfg.family)
    baseline_rss = current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    t0 = time.perf_counter()
    task_model, config = tasks.trainable(cfg.family, cfg.preset, seed=cfg.seed)
    task_model.to(device)
    step = TrainingStep(task_model, device, cfg.precision, cfg.learning_rate)
    # a training batch the convergence run does not use
    timed_batch = tasks.make_task_batch(cfg.family, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                                        step=cfg.convergence_steps).to(device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in task_model.parameters())

    convergence = run_convergence(step, cfg.family, config, cfg) if cfg.convergence_steps else {
        "task": tasks.FAMILY_TASKS[cfg.family]}
    # now, before the timed steps: they keep stepping the optimizer on one fixed batch
    trained_weights = keep_trained_weights(step, cfg, convergence, run_id) if cfg.convergence_steps else None
    flops, forward_flops = count_step_flops(step, timed_batch) if cfg.count_flops else (None, None)

    t0 = time.perf_counter()
    step(timed_batch)
    first_step_ms = (time.perf_counter() - t0) * 1e3
    cpu_before = read_cpu_times()
    samples, warmup_calls, stop_reason = time_calls(lambda: step(timed_batch), cfg.rule)
    load = load_between(cpu_before, read_cpu_times())

    stats = summarize(samples)
    p50_s = stats["p50_ms"] / 1e3
    device_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    peak_rss = rss_high_water_mb()
    peak = device_peak if device_peak is not None else peak_rss
    tokens = timed_batch.text_tokens
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": cfg.precision,
        "attention_ran": ATTENTION,  # the model as built: training times eager attention
        "backend": target.backend,
        "device_kind": target.device_kind,
        "status": "ok",
        "modality": tasks.TASK_MODALITY[tasks.FAMILY_TASKS[cfg.family]],
        "objective": tasks.OBJECTIVES[cfg.family],
        "optimizer": "AdamW (fused)" if step.fused else "AdamW",
        "learning_rate": cfg.learning_rate,
        "params": int(params),
        "n_samples": len(samples),
        "warmup_calls": warmup_calls,
        "stop_reason": stop_reason,
        "ci_target": cfg.rule.ci_target,
        **stats,
        "throughput_samples_s": cfg.batch_size / p50_s,
        "throughput_tokens_s": tokens / p50_s if tokens else None,
        "first_step_ms": first_step_ms,
        "load_s": load_s,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": peak_rss,
        "device_peak_mb": device_peak,
        "memory_budget_mb": budget_mb,
        "within_budget": peak <= budget_mb,
        "flops_per_step": flops,
        "forward_flops_per_step": forward_flops,
        "achieved_gflops": flops / p50_s / 1e9 if flops else None,
        **convergence,
        "trained_weights": trained_weights,
        **load_fields(load, is_contaminated(load)),
        **series_fields(samples, started),
    }


def training_failure_row(cfg: TrainingConfig, run_id: str, failure_class: str, message: str,
                         started: datetime | None = None) -> dict:
    return failure_fields("training", cfg.key_fields(), run_id, failure_class, message, started)


def run_training_configuration(cfg: TrainingConfig, run_id: str) -> dict:
    """Measure one training configuration; any failure becomes a classified failure row, not an exception."""
    return measured_or_failure(measure_training, training_failure_row, cfg, run_id)
