"""Training scenario: forward, backward and an AdamW step of one catalog model on one target; one row."""

from hwbench_pipeline.bench.scenarios.training.config import (
    DEFAULT_LEARNING_RATES,
    EVAL_SAMPLES,
    LOSS_WINDOW,
    MAX_GRAD_NORM,
    WARMUP_STEPS,
    TrainingConfig,
)
from hwbench_pipeline.bench.scenarios.training.measure import (
    TrainingStep,
    count_step_flops,
    measure_training,
    memory_budget_mb,
    run_convergence,
    run_training_configuration,
    steps_to_target,
    training_failure_row,
    unsupported_precision_reason,
)
from hwbench_pipeline.bench.scenarios.training.scenario import TrainingScenario, not_run_rows
from hwbench_pipeline.bench.scenarios.training.sweep import mark_batch_scaling, sweep_configs, sweep_skip_reason

__all__ = [
    "DEFAULT_LEARNING_RATES", "EVAL_SAMPLES", "LOSS_WINDOW", "MAX_GRAD_NORM", "WARMUP_STEPS", "TrainingConfig",
    "TrainingScenario", "TrainingStep", "count_step_flops", "mark_batch_scaling", "measure_training",
    "memory_budget_mb", "not_run_rows", "run_convergence", "run_training_configuration", "steps_to_target",
    "sweep_configs", "sweep_skip_reason", "training_failure_row", "unsupported_precision_reason",
]
