"""Greedy decoding through a backend's Generator with a timestamp per token, and the statistics users ask
about: time to first token, inter-token latency, tokens per second (docs/generation.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hwbench_pipeline.bench.trackers.stats import StoppingRule


@dataclass
class Sequence:
    """One generated batch of sequences: its tokens (batch, new) and when each step's tokens were known."""

    tokens: list  # (batch,) int64 tensors, one per step
    start_ns: int
    token_ns: list[int]  # the moment each step's tokens were back on the host, in order

    @property
    def ttft_ms(self) -> float:
        return (self.token_ns[0] - self.start_ns) / 1e6

    @property
    def inter_token_ms(self) -> list[float]:
        return [(b - a) / 1e6 for a, b in zip(self.token_ns, self.token_ns[1:], strict=False)]

    @property
    def total_ms(self) -> float:
        return (self.token_ns[-1] - self.start_ns) / 1e6

    def token_matrix(self):
        import torch

        return torch.stack(self.tokens, dim=1)


def generate(generator, inputs: dict, new_tokens: int) -> Sequence:
    """Prefill ``inputs`` and decode until ``new_tokens`` tokens per sequence, each step fed the previous
    step's greedy tokens: the k-th token cannot exist before the (k-1)-th came back."""
    perf = time.perf_counter_ns
    start = perf()
    token = generator.start(inputs)
    tokens, stamps = [token], [perf()]
    for _ in range(new_tokens - 1):
        token = generator.next(token)
        tokens.append(token)
        stamps.append(perf())
    return Sequence(tokens, start, stamps)


def time_sequences(generator, inputs: dict, new_tokens: int, rule: StoppingRule) -> tuple[list[Sequence], int, str]:
    """Warm up, then generate whole sequences until the stopping rule, applied to their end-to-end latency,
    says so. Returns (measured sequences, warm-up sequences, why it stopped)."""
    perf = time.perf_counter_ns
    warm: list[float] = []
    start = perf()
    while not rule.warmup_done(warm, (perf() - start) / 1e9):
        warm.append(generate(generator, inputs, new_tokens).total_ms)
    measured: list[Sequence] = []
    start = perf()
    while True:
        measured.append(generate(generator, inputs, new_tokens))
        reason = rule.stop_reason([s.total_ms for s in measured], (perf() - start) / 1e9)
        if reason:
            return measured, len(warm), reason


def percentiles(values: list[float], prefix: str) -> dict[str, float | None]:
    """``<prefix>_p50_ms``, ``_p90_ms``, ``_p99_ms`` and ``_mean_ms`` of ``values`` (None when empty)."""
    if not values:
        return {f"{prefix}_{name}_ms": None for name in ("p50", "p90", "p99", "mean")}
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return {f"{prefix}_p50_ms": p50, f"{prefix}_p90_ms": p90, f"{prefix}_p99_ms": p99,
            f"{prefix}_mean_ms": float(np.mean(values))}


def sequence_figures(sequences: list[Sequence], batch_size: int, prompt_tokens: int, new_tokens: int) -> dict:
    """Row fields of measured sequences: TTFT and inter-token latency percentiles over all sequences and steps,
    and throughput: decode tokens/s from the median inter-token latency, end-to-end tokens/s from the median
    sequence (prefill included), prefill tokens/s from the median TTFT."""
    ttft = [s.ttft_ms for s in sequences]
    itl = [t for s in sequences for t in s.inter_token_ms]
    figures = {**percentiles(ttft, "ttft"), **percentiles(itl, "itl")}
    total_p50 = float(np.median([s.total_ms for s in sequences]))
    figures["tokens_per_s"] = batch_size * new_tokens / (total_p50 / 1e3)
    figures["decode_tokens_per_s"] = batch_size / (figures["itl_p50_ms"] / 1e3) if itl else None
    figures["prefill_tokens_per_s"] = batch_size * prompt_tokens / (figures["ttft_p50_ms"] / 1e3)
    figures["ttft_samples_ms"] = ttft
    figures["itl_samples_ms"] = itl
    return figures


def leading_matches(tokens, reference) -> int:
    """How many leading steps every sequence of ``tokens`` (batch, new) agrees with ``reference``."""
    same = (tokens == reference).all(dim=0).tolist()
    return next((i for i, ok in enumerate(same) if not ok), len(same))
