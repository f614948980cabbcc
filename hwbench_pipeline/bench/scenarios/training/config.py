"""One training configuration, and the defaults of the training loop that every training scenario shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwbench_pipeline.bench.config_key import key_fields
from hwbench_pipeline.bench.trackers.stats import StoppingRule

LOSS_WINDOW = 5  # training losses averaged when deciding whether the target was reached
EVAL_SAMPLES = 32  # held-out samples for the initial / final loss and accuracy
MAX_GRAD_NORM = 1.0  # gradient clipping, as common trainers do by default
WARMUP_STEPS = 10  # linear learning-rate warm-up
# AdamW learning rate per preset when none is given: narrower models take larger steps. Chosen on the
# standard tasks here: at 3e-3 the tiny presets of 12 of 13 families reach half their initial loss within
# 60 steps (whisper-tiny needs 1e-3 and ~100 steps). Small presets at batch 4: at 1e-3 (with warm-up) the
# training loss of bert and vit halved but their held-out loss ended higher (unstable); at 3e-4 bert, vit
# and llama reached half in 39, 23 and 40 steps with held-out accuracy 100 %, 97 % and 72 %; whisper-small
# learned at neither within 40.
DEFAULT_LEARNING_RATES = {"tiny": 3e-3, "small": 3e-4, "base": 3e-4, "full": 1e-4}


@dataclass(frozen=True)
class TrainingConfig:
    family: str
    preset: str
    target: str
    batch_size: int
    seq_len: int
    precision: str = "fp32"
    threads: int = 1
    rule: StoppingRule = field(default_factory=StoppingRule)
    convergence_steps: int = 0  # 0: no convergence run in this configuration
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[preset]
    target_fraction: float = 0.5
    memory_budget_mb: float | None = None  # None: memory_budget_fraction of the device's free memory
    memory_budget_fraction: float = 0.5
    count_flops: bool = True
    seed: int = 0
    # where an fp32 convergence run that learned keeps its weights (bench/trained.py), for inference to measure
    # the task accuracy of lower precisions against; None: they are discarded. Not part of the key.
    keep_weights_dir: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.seq_len < 1 or self.threads < 1:
            raise ValueError(f"batch, sequence and threads must be positive: {self.label}")
        if self.convergence_steps < 0:
            raise ValueError(f"convergence_steps must be >= 0, got {self.convergence_steps}")
        if not 0 < self.target_fraction < 1:
            raise ValueError(f"target_fraction must be between 0 and 1, got {self.target_fraction}")
        if not 0 < self.memory_budget_fraction <= 1:
            raise ValueError(f"memory_budget_fraction must be in (0, 1], got {self.memory_budget_fraction}")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LEARNING_RATES.get(self.preset, 3e-4))
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    @property
    def label(self) -> str:
        return (f"{self.target} train {self.family}/{self.preset} bs={self.batch_size} seq={self.seq_len} "
                f"{self.precision} t={self.threads}")

    def key_fields(self) -> dict[str, object]:
        return key_fields(self)

    def sweep_key(self) -> tuple:
        """What a batch-size sweep holds fixed: everything but the batch."""
        return (self.target, self.family, self.preset, self.seq_len, self.precision, self.threads)
