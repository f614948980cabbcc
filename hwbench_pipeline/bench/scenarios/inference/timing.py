"""Timing and checking one model's calls: FLOPs of a forward pass, agreement with the torch reference, and a
series of timed calls under a stopping rule (shared by the inference and training scenarios and the probes)."""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from hwbench_pipeline.bench.trackers.stats import StoppingRule


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


class Agreement(NamedTuple):
    """How far a backend's output is from the torch fp32 output: the quality a precision costs."""

    max_abs_diff: float
    max_rel_diff: float  # max |diff| / max |reference|
    mean_rel_diff: float  # mean |diff| / max |reference|


def check_agreement(output, reference, tolerance: float, label: str) -> Agreement:
    """Largest absolute difference from the torch fp32 output, that and the mean difference relative to the
    output's scale (its largest magnitude: element-wise relative errors explode near zero outputs).

    Raises a ``numerical_mismatch`` failure when the relative difference exceeds the backend's tolerance for
    the precision that ran: a fast wrong answer is not a result.
    """
    from hwbench_pipeline.bench.failures import BenchmarkFailure

    if tuple(output.shape) != tuple(reference.shape):
        raise BenchmarkFailure("numerical_mismatch",
                               f"{label}: output shape {tuple(output.shape)} != torch {tuple(reference.shape)}")
    error = (output.float() - reference).abs()
    diff = float(error.max())
    scale = float(reference.abs().max()) or 1.0
    if not math.isfinite(diff) or diff / scale > tolerance:
        raise BenchmarkFailure("numerical_mismatch", f"{label}: max |diff| {diff:.3g} is {diff / scale:.3g} of the "
                                                     f"output scale {scale:.3g}, above the tolerance {tolerance:g}")
    return Agreement(diff, diff / scale, float(error.mean()) / scale)


def call_ms(runner: Any) -> float:
    """One call's duration in ms: as the runner times it where the model runs (a browser page's
    performance.now(), ``timed_call``), else around the call here."""
    timed = getattr(runner, "timed_call", None)
    if timed is not None:
        return timed()
    t0 = time.perf_counter_ns()
    runner()
    return (time.perf_counter_ns() - t0) / 1e6


def time_calls(runner, rule: StoppingRule) -> tuple[list[float], int, str]:
    """Warm up until stable, then sample until the stopping rule says so. Returns (samples ms, warmup calls, why)."""
    perf = time.perf_counter_ns
    warm: list[float] = []
    start = perf()
    while not rule.warmup_done(warm, (perf() - start) / 1e9):
        warm.append(call_ms(runner))
    samples: list[float] = []
    start = perf()
    while True:
        samples.append(call_ms(runner))
        reason = rule.stop_reason(samples, (perf() - start) / 1e9)
        if reason:
            return samples, len(warm), reason
