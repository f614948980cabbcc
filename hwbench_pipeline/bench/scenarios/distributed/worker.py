"""What runs inside each Ray Train worker: device set-up, the data-parallel or pipeline training step, and
timing and gathering every rank's figures (and the driver's GPU probe, which lands where a worker would)."""

from __future__ import annotations

import os
import socket
import time
import traceback
from typing import Any

from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError, classify
from hwbench_pipeline.bench.scenarios.distributed.config import DistributedConfig
from hwbench_pipeline.bench.scenarios.distributed.placement import is_accelerator, worker_resources

BATCH_POOL = 8  # distinct batches each rank cycles through (generated before timing starts)


def _largest_layer_list(model: Any) -> tuple[str, int]:
    """(dotted name, length) of the ModuleList holding most parameters: the model's stack of layers."""
    import torch

    best: tuple[int, str, int] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, name, len(module))
    if best is None:
        raise UnsupportedConfigurationError(f"{type(model).__name__} has no stack of layers to split or shard")
    return best[1], best[2]


def _freeze_unreached(step: Any, batch: Any) -> int:
    """Freeze parameters the loss does not reach (a pooler under a mean-pooled head): DDP would wait for their
    gradients forever and FSDP would shard dead weight. Returns how many parameters were frozen."""
    step.loss(batch).backward()
    frozen = 0
    for param in step.model.parameters():
        if param.requires_grad and param.grad is None:
            param.requires_grad_(False)
            frozen += param.numel()
        param.grad = None
    return frozen


def _data_parallel_model(task_model: Any, strategy: str, device: Any) -> Any:
    import torch

    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(task_model, device_ids=[device] if device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    # FSDP2: one shard group per layer (their all-gathers overlap with compute), then the rest at the root.
    for module in list(task_model.modules()):
        if isinstance(module, torch.nn.ModuleList):
            for layer in module:
                if any(p.requires_grad for p in layer.parameters()):
                    fully_shard(layer)
    fully_shard(task_model)
    return task_model


class _PipelineStep:
    """One GPipe step of this rank's pipeline stage. The model is split at its layer stack by the tracer
    frontend (``pipeline()`` with ``SplitPoint``s); AdamW with the training scenario's warm-up updates the
    stage's own parameters. Gradients are not clipped: a global norm would need a collective across stages."""

    def __init__(self, task_model: Any, batch: Any, cfg: DistributedConfig, rank: int, world: int,
                 device: Any, learning_rate: float) -> None:
        import torch
        from torch.distributed.pipelining import ScheduleGPipe, SplitPoint, pipeline

        from hwbench_pipeline.bench.scenarios.training import WARMUP_STEPS

        layers, count = _largest_layer_list(task_model)
        if count < world:
            raise UnsupportedConfigurationError(f"{cfg.label}: {count} layers cannot make {world} pipeline stages")
        self.keys = sorted(batch.inputs)
        positional = _positional(task_model, self.keys)
        micro = tuple(batch.inputs[k][: cfg.batch_size // cfg.microbatches] for k in self.keys)
        split = {f"model.{layers}.{(i * count) // world}": SplitPoint.BEGINNING for i in range(1, world)}
        try:
            pipe = pipeline(positional, mb_args=micro, split_spec=split)
        except Exception as exc:  # noqa: BLE001 - the tracer's own message says what it could not export
            raise BenchmarkFailure("export_error", f"pipeline tracer could not split {cfg.label}: "
                                                   f"{type(exc).__name__}: {exc}") from exc
        # The split graph may feed stage 0 its inputs in another order than the model's (seen with bert in
        # torch 2.13): read the order off the graph and pass the inputs that way.
        placeholders = [n.name for n in pipe.split_gm.graph.nodes if n.op == "placeholder"]
        first_stage = next(n for n in pipe.split_gm.graph.nodes if n.op == "call_module")
        self.order = [placeholders.index(a.name) for a in first_stage.args]
        self.stage = pipe.build_stage(rank, device)
        self.model = self.stage.submod
        self.first, self.last = rank == 0, rank == world - 1
        self.schedule = ScheduleGPipe(self.stage, n_microbatches=cfg.microbatches, loss_fn=_cross_entropy)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))

    def __call__(self, batch: Any) -> float | None:
        """Run one step; the mean microbatch loss on the last stage, None on the others."""
        self.optimizer.zero_grad(set_to_none=True)
        args = [batch.inputs[k] for k in self.keys]
        kwargs: dict[str, Any] = {}
        losses: list = []
        if self.last:
            kwargs = {"target": batch.labels, "losses": losses}
        if self.first:
            self.schedule.step(*(args[i] for i in self.order), **kwargs)
        else:
            self.schedule.step(**kwargs)
        self.optimizer.step()
        self.lr_schedule.step()
        return float(sum(float(v) for v in losses) / len(losses)) if losses else None


def _cross_entropy(scores: Any, labels: Any) -> Any:
    import torch

    return torch.nn.functional.cross_entropy(scores.float(), labels)


def _positional(task_model: Any, keys: list[str]) -> Any:
    """The TaskModel called with its inputs as positional tensors, in ``keys`` order (what the tracer takes)."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = task_model

        def forward(self, *args: Any) -> Any:
            return self.model(dict(zip(keys, args, strict=True)))

    return Positional()


def _rank_info(ctx: Any) -> dict:
    import ray

    runtime = ray.get_runtime_context()
    return {
        "rank": ctx.get_world_rank(),
        "local_rank": ctx.get_local_rank(),
        "pid": os.getpid(),
        "node_id": runtime.get_node_id(),
        "host": socket.gethostname(),
        "resources": {k: float(v) for k, v in runtime.get_assigned_resources().items()},
    }


def _all_gather(value: Any, world: int) -> list:
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def _probe_device() -> dict:
    """What a GPU worker would get on the node where Ray places it (runs as a Ray task there)."""
    import ray
    import torch
    import torch.distributed as dist

    return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "devices": torch.cuda.device_count(),
            "nccl": dist.is_available() and dist.is_nccl_available()}


def accelerator_refusal(cfg: DistributedConfig) -> tuple[str | None, dict]:
    """For a GPU target, run a probe with one worker's resources (so it lands where a worker would) and say
    why nccl training cannot run there (no CUDA device visible, no NCCL in that torch), or None when it can.
    Starting Ray Train without this would fail inside its backend setup, after every retry."""
    import ray

    need = worker_resources(cfg)
    probe = ray.remote(max_retries=0)(_probe_device).options(
        num_cpus=need.pop("CPU"), num_gpus=need.pop("GPU"), resources=need)
    try:
        found = ray.get(probe.remote(), timeout=cfg.timeout_s)
    except (ray.exceptions.RayError, TimeoutError) as exc:  # GetTimeoutError is both
        return f"the GPU probe for {cfg.target} did not run: {type(exc).__name__}: {exc}", {}
    where = f"node {found['node_id'][:8]} ({found['host']}) advertises {cfg.target}, but torch {found['torch']} there"
    if not found["cuda"] or not found["devices"]:
        return f"{where} sees no CUDA device: nccl training is skipped", found
    if not found["nccl"]:
        return f"{where} has no NCCL backend", found
    return None, found


def _device(target: str, label: str) -> Any:
    import ray.train.torch
    import torch

    if not is_accelerator(target):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UnsupportedConfigurationError(
            f"{label}: target {target} needs CUDA, but torch {torch.__version__} in the worker on "
            f"{socket.gethostname()} sees no CUDA device")
    device = ray.train.torch.get_device()
    torch.cuda.set_device(device)
    return device


def _setup(cfg: DistributedConfig, rank: int, world: int, device: Any) -> tuple[Any, list, dict]:
    """(step function, this rank's batches, facts) for this rank; raises a classified failure."""
    import torch

    from hwbench_pipeline.bench import models, tasks
    from hwbench_pipeline.bench.scenarios.training import DEFAULT_LEARNING_RATES, TrainingStep

    learning_rate = cfg.learning_rate or DEFAULT_LEARNING_RATES.get(cfg.preset, 3e-4)
    task_model, config = tasks.trainable(cfg.family, cfg.preset, seed=cfg.seed)
    task_model.to(device)
    # Data-parallel ranks draw different samples; pipeline stages must all see the same batch.
    seed = cfg.seed if cfg.strategy == "pipeline" else cfg.seed + 7919 * rank
    pool = min(BATCH_POOL, cfg.steps + cfg.warmup_steps)
    batches = [tasks.make_task_batch(cfg.family, config, cfg.rank_batch, cfg.seq_len, seed=seed, step=i).to(device)
               for i in range(pool)]
    facts = {"params": sum(p.numel() for p in task_model.parameters()), "learning_rate": learning_rate,
             "task": tasks.FAMILY_TASKS[cfg.family],
             "text_tokens_per_step": models.tokens_per_call(cfg.family, config, cfg.batch_size, cfg.seq_len)}
    if cfg.strategy == "pipeline":
        step = _PipelineStep(task_model, batches[0], cfg, rank, world, device, learning_rate)
        facts["frozen_params"] = 0
        return step, batches, facts
    step = TrainingStep(task_model, device, cfg.precision, learning_rate)
    facts["frozen_params"] = _freeze_unreached(step, batches[0])
    step = TrainingStep(_data_parallel_model(task_model, cfg.strategy, device), device, cfg.precision,
                        learning_rate)
    torch.manual_seed(cfg.seed)
    return step, batches, facts


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_worker(loop_config: dict) -> dict | None:
    """Ray Train's ``train_loop_per_worker``: set up, train, time every step, gather every rank's figures.

    Returns the gathered payload on rank 0 (Ray Train hands rank 0's return value to ``fit()``'s caller)."""
    import ray
    import ray.train
    import torch

    from hwbench_pipeline.bench.trackers.memory import rss_high_water_mb
    from hwbench_pipeline.bench.trackers.resource_sampler import NodeLoadWindow, ResourceSampler

    started = time.perf_counter()
    cfg = DistributedConfig(**loop_config["cfg"])
    monitor, key = loop_config["monitor"], loop_config["key"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.threads)
    info = _rank_info(ctx)
    ranks = _all_gather(info, world)
    attempt = ray.get(monitor.begin.remote(key, ranks)) if rank == 0 else None

    local = [r["pid"] for r in ranks if r["node_id"] == info["node_id"]]
    sampler = window = None
    if info["local_rank"] == 0:
        gpu = torch.cuda.current_device() if torch.cuda.is_available() and is_accelerator(cfg.target) else None
        sampler = ResourceSampler(info["node_id"], local, gpu_index=gpu).start()
        window = NodeLoadWindow(local)

    failure = None
    try:
        device = _device(cfg.target, cfg.label)
        step, batches, facts = _setup(cfg, rank, world, device)
    except Exception as exc:  # noqa: BLE001 - every rank reports; rank 0 turns the first into the failure row
        failure = (classify(exc), f"rank {rank}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
    failures = [f for f in _all_gather(failure, world) if f]
    if failures:
        if sampler:
            sampler.stop()
        return {"failure": failures[0], "ranks": ranks, "attempt": attempt} if rank == 0 else None

    setup_s = time.perf_counter() - started
    losses: list[float | None] = []
    step_ms: list[float] = []
    if sampler:
        sampler.set_phase("warmup")
    for i in range(cfg.warmup_steps + cfg.steps):
        if i == cfg.warmup_steps:
            if sampler:
                sampler.set_phase("measure")
            if window:
                window.begin()
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss = step(batch)
        _synchronize(device)
        elapsed = time.perf_counter() - t0
        losses.append(None if loss is None else float(loss))
        if i >= cfg.warmup_steps:
            step_ms.append(elapsed * 1e3)
        if rank == 0:
            monitor.progress.remote(key, i + 1)  # fire and forget: the driver shows progress
    load = window.end() if window else None
    samples = sampler.stop() if sampler else []
    device_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    mine = {
        **info, "step_ms": step_ms, "losses": losses, "peak_rss_mb": rss_high_water_mb(),
        "device_peak_mb": device_peak, "resource_samples": samples, "load": load, "setup_s": setup_s,
        "backend": torch.distributed.get_backend(), **facts,
    }
    gathered = _all_gather(mine, world)
    return {"ranks": gathered, "attempt": attempt} if rank == 0 else None
