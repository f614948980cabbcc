"""Distributed training scenario on Ray Train: data parallel (DDP), sharded data parallel (FSDP2) and pipeline
parallel (``torch.distributed.pipelining``) over 1..N workers; one row per (strategy, workers) configuration.

Each configuration is one ``TorchTrainer.fit()`` with fresh worker processes (``bench/launchers/ray_train.py``;
gloo on CPU targets, nccl on
CUDA targets, chosen from the target when the run starts). Every worker trains its family's standard task
(:mod:`hwbench_pipeline.bench.tasks`, the same loss, AdamW and warm-up as the training scenario) for a fixed
number of warm-up and measured steps, timing each step itself. At the end every rank's figures are gathered
(``all_gather_object``) and rank 0 returns them, so the row holds each rank's throughput, not rank 0's alone.

* **Throughput.** Data parallel: each rank's samples/s is its own batch over its median step time, and the
  total is their sum. Pipeline parallel: every rank (stage) sees every sample, so the total is the slowest
  stage's. Step-latency statistics are over the global step time (the slowest rank's, step by step).
* **Scaling efficiency** = throughput(N) / (N × throughput(1)), from the 1-worker row of the same run with
  the same strategy, model, batch and threads per worker (:func:`add_scaling_efficiency`). The global batch
  is fixed and split across data-parallel ranks (strong scaling); threads per worker are fixed too, so the
  comparison is between equal workers.
* **Resources.** The first worker of every node samples the node (CPU %, memory, its workers' CPU % and RSS,
  GPU utilisation when NVML is present) while the run trains (:mod:`..trackers.resource_sampler`).
* **Placement.** Workers ask for the target's resource (a share of ``hwbench_target:<key>`` and of the node
  slot, so N workers fill one node's single unit), so they land on nodes that advertise the target; a
  configuration the cluster cannot place is refused before it starts (:func:`placement_refusal`).
* **Faults.** A worker that dies mid-run is restarted by Ray Train (``FailureConfig(max_failures)``); the
  retried run starts again from step 0 and the row records the attempts. Out of retries, the configuration
  becomes a classified failure row. Nothing is written here: the caller stores the rows, whole, at the end.
"""

from hwbench_pipeline.bench.scenarios.distributed.config import STRATEGIES, DistributedConfig
from hwbench_pipeline.bench.scenarios.distributed.placement import placement_refusal, unsupported_target_reason
from hwbench_pipeline.bench.scenarios.distributed.rows import failure_row
from hwbench_pipeline.bench.scenarios.distributed.scenario import DistributedScenario

__all__ = [
    "STRATEGIES",
    "DistributedConfig",
    "DistributedScenario",
    "failure_row",
    "placement_refusal",
    "unsupported_target_reason",
]
