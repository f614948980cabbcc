"""The configuration of one distributed training run (model, target, strategy, number of workers) and the
strategies it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from hwbench_pipeline.bench.config_key import key_fields

STRATEGIES = ("ddp", "fsdp", "pipeline")


@dataclass(frozen=True)
class DistributedConfig:
    family: str
    preset: str
    target: str
    strategy: str
    workers: int
    batch_size: int  # global batch per step: split across data-parallel ranks, or into pipeline microbatches
    seq_len: int
    threads: int = 1  # torch threads of each worker (each worker also reserves this many Ray CPUs)
    steps: int = 20  # measured steps
    warmup_steps: int = 3
    microbatches: int = 4  # pipeline only
    max_failures: int = 1  # Ray Train restarts of the worker group after a worker dies
    learning_rate: float | None = None  # None: the training scenario's default for the preset
    precision: str = "fp32"
    timeout_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}")
        if self.precision != "fp32":
            raise ValueError(f"distributed runs measure fp32 only, got {self.precision!r}")
        if min(self.workers, self.batch_size, self.seq_len, self.threads, self.microbatches) < 1:
            raise ValueError(f"workers, batch, sequence, threads and microbatches must be positive: {self.label}")
        if self.steps < 3 or self.warmup_steps < 0 or self.max_failures < 0 or self.timeout_s <= 0:
            raise ValueError(f"need steps >= 3, warmup_steps >= 0, max_failures >= 0, timeout_s > 0: {self.label}")
        if self.strategy == "pipeline":
            if self.batch_size % self.microbatches:
                raise ValueError(f"{self.label}: batch {self.batch_size} is not divisible into "
                                 f"{self.microbatches} pipeline microbatches")
        elif self.batch_size % self.workers:
            raise ValueError(f"{self.label}: batch {self.batch_size} is not divisible by {self.workers} workers "
                             f"(each data-parallel rank takes an equal share)")

    @property
    def label(self) -> str:
        return (f"{self.target} {self.strategy} x{self.workers} {self.family}/{self.preset} bs={self.batch_size} "
                f"seq={self.seq_len} t={self.threads}")

    @property
    def rank_batch(self) -> int:
        """Samples one rank processes per step (a pipeline stage sees the whole batch)."""
        return self.batch_size if self.strategy == "pipeline" else self.batch_size // self.workers

    def key_fields(self) -> dict[str, object]:
        return {**key_fields(self), "strategy": self.strategy, "workers": self.workers}
