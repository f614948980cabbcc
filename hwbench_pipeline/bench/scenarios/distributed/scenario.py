"""The distributed training scenario: one Ray Train job per (strategy, workers) configuration."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.scenarios.base import RAY_TRAIN, Plan, Scenario, failure_line
from hwbench_pipeline.bench.scenarios.distributed.config import DistributedConfig
from hwbench_pipeline.bench.scenarios.distributed.placement import (
    is_accelerator,
    placement_refusal,
    unsupported_target_reason,
    worker_resources,
)
from hwbench_pipeline.bench.scenarios.distributed.rows import add_scaling_efficiency, failure_row, result_row
from hwbench_pipeline.bench.scenarios.distributed.worker import accelerator_refusal, train_worker

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile


class DistributedScenario(Scenario):
    name = "distributed"
    results_table = "distributed_results"
    keeps_samples = False
    launcher = RAY_TRAIN
    run_id_suffix = "-distributed"
    #: a distributed run is long, and a busy host is already in its row; it is not measured twice
    retry_contaminated = 0

    def plan(self, profile: Profile, target: str, run_id: str) -> Plan:
        configs = profile.distributed_configs(target)
        why_not = unsupported_target_reason(target)
        note = why_not or ""
        if not profile.distributed:
            note = "the profile has no distributed section"
        if why_not:
            return Plan([], [failure_row(c, run_id, "unsupported_configuration", why_not) for c in configs], note)
        return Plan(configs, [], note)

    def failure_row(self, cfg: DistributedConfig, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None, **extra: Any) -> dict:
        return failure_row(cfg, run_id, failure_class, message, started, **extra)

    def finish(self, rows: list[dict], plan: Plan, run_id: str, peaks: dict | None) -> list[dict]:
        add_scaling_efficiency(rows)
        return rows + plan.refused

    def describe(self, cfg: DistributedConfig, row: dict) -> str:
        if row["status"] != "ok":
            return failure_line(cfg, row, width=300)
        busy = " (busy machine)" if row.get("contaminated") else ""
        ranks = ", ".join(f"{v:.1f}" for v in row["per_rank_throughput"])
        return (f"{cfg.label}: {row['throughput_samples_s']:.1f} samples/s (ranks: {ranks}), step p50 "
                f"{row['p50_ms']:.1f} ms, loss {row['loss_start']:.3f} -> {row['loss_end']:.3f}, attempts "
                f"{row['attempts']}{busy}")

    # ---- what the Ray Train launcher asks of it -------------------------------------------------------------
    def refusal(self, cfg: DistributedConfig, nodes: list[dict]) -> str | None:
        return unsupported_target_reason(cfg.target) or placement_refusal(cfg, nodes)

    def probe_refusal(self, cfg: DistributedConfig) -> tuple[str | None, dict]:
        return accelerator_refusal(cfg) if is_accelerator(cfg.target) else (None, {})

    def trainer(self, cfg: DistributedConfig, loop_config: dict, storage: str) -> Any:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        accelerator = is_accelerator(cfg.target)
        return TorchTrainer(
            train_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=accelerator,
                                         resources_per_worker=worker_resources(cfg), placement_strategy="PACK"),
            # gloo on CPUs, nccl on GPUs; the process group's own timeout turns a hung collective into an error
            torch_config=TorchConfig(backend="nccl" if accelerator else "gloo", timeout_s=int(cfg.timeout_s)),
            run_config=RunConfig(name=loop_config["key"], storage_path=storage,
                                 failure_config=FailureConfig(max_failures=cfg.max_failures)),
        )

    def row_from_result(self, cfg: DistributedConfig, run_id: str, payload: dict, *, started: datetime,
                        fit_s: float) -> dict:
        return result_row(cfg, run_id, payload, started=started, fit_s=fit_s)
