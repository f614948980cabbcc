"""Distributed training scenario on Ray Train: data parallel (DDP), sharded data parallel (FSDP2) and pipeline
parallel (``torch.distributed.pipelining``) over 1..N workers; one row per (strategy, workers) configuration.

Each configuration is one ``TorchTrainer.fit()`` with fresh worker processes (gloo on CPU targets, nccl on
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

from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.config_key import identity_fields
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError, classify
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields

STRATEGIES = ("ddp", "fsdp", "pipeline")
BATCH_POOL = 8  # distinct batches each rank cycles through (generated before timing starts)
LOSS_WINDOW = 5  # the end loss is the mean of the last LOSS_WINDOW steps (one step's loss is noisy)
RESOURCE_SHARE_DECIMALS = 4  # Ray accepts fractional resources with up to 4 decimals
PROGRESS_POLL_S = 0.5
# Ray Train's defaults, tuned for long jobs, would slow short benchmark runs down or fail them on a busy host:
# a 60 s limit on starting the workers, 2 s between health polls (the run's end is noticed that late), and a
# preemption watcher and metrics actors (extra processes). Values the user set in the environment win.
RAY_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
}

ProgressHook = Callable[["DistributedConfig", dict], None]
ResultHook = Callable[[int, int, "DistributedConfig", dict], None]


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
        return {
            "target": self.target, "family": self.family, "preset": self.preset, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "precision": self.precision, "threads": self.threads,
            "strategy": self.strategy, "workers": self.workers, **identity_fields(self.family, self.preset),
        }


def _now() -> datetime:
    return datetime.now(UTC)


# ---- placement ----------------------------------------------------------------------------------------------


def _is_accelerator(target: str) -> bool:
    """CUDA and ROCm devices (nccl/rccl); everything else here is a CPU target (gloo)."""
    return target.split("-", 1)[0] != "cpu"


def unsupported_target_reason(target: str) -> str | None:
    """Why distributed training cannot run on this target at all, or None: it trains torch models, on CPUs
    (gloo) or CUDA/ROCm GPUs (nccl); Apple MPS has no multi-process backend."""
    from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target

    try:
        parsed = parse_target(target)
    except UnknownTargetError as exc:
        return str(exc)
    if parsed.backend != "torch":
        return f"distributed training runs torch models; target {target} uses the {parsed.backend} runtime"
    if parsed.device_kind == "mps":
        return "distributed training needs gloo (CPU) or nccl (CUDA/ROCm); Apple MPS has no multi-process backend"
    return None


def worker_resources(cfg: DistributedConfig) -> dict[str, float]:
    """Ray resources each worker reserves: its CPUs (and a GPU on accelerator targets), plus an equal share of
    the node slot and of the target's resource, so that ``workers`` of them together hold one unit."""
    from hwbench_pipeline.bench.dispatch import NODE_SLOT, target_resource

    scale = 10**RESOURCE_SHARE_DECIMALS
    share = math.floor(scale / cfg.workers) / scale
    resources = {"CPU": float(cfg.threads), NODE_SLOT: share, target_resource(cfg.target): share}
    if _is_accelerator(cfg.target):
        resources["GPU"] = 1.0
    return resources


def placement_refusal(cfg: DistributedConfig, nodes: Sequence[dict]) -> str | None:
    """Why the cluster (``ray.nodes()``) can never place this configuration's workers, or None when it can.

    Counts per node how many workers fit in its total resources (a worker cannot straddle nodes, so summing
    ``ray.cluster_resources()`` would overcount) and compares the sum with the number of workers."""
    need = worker_resources(cfg)
    fits: dict[str, int] = {}
    for node in nodes:
        if not node.get("Alive", True):
            continue
        have = node.get("Resources", {})
        fits[node.get("NodeID", "?")] = min(int(have.get(name, 0.0) / amount + 1e-9) for name, amount in need.items())
    capacity = sum(fits.values())
    if capacity >= cfg.workers:
        return None
    wanted = ", ".join(f"{k}: {v:g}" for k, v in need.items())
    per_node = ", ".join(f"node {node[:8]}: {n}" for node, n in fits.items() if n) or "no node has all of them"
    return (f"{cfg.workers} workers each needing {{{wanted}}} cannot be placed: the cluster has room for "
            f"{capacity} ({per_node}); use fewer workers or threads per worker, or add nodes with these resources")


# ---- inside each worker -------------------------------------------------------------------------------------


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

    if not _is_accelerator(target):
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
        gpu = torch.cuda.current_device() if torch.cuda.is_available() and _is_accelerator(cfg.target) else None
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


# ---- on the driver ------------------------------------------------------------------------------------------


def _run_monitor_class():
    import ray

    @ray.remote(num_cpus=0)
    class RunMonitor:
        """Counts each configuration's attempts (Ray Train restarts the whole worker group after a failure)
        and holds its progress and worker pids, for the driver's progress reports."""

        def __init__(self) -> None:
            self.state: dict[str, dict] = {}

        def begin(self, key: str, ranks: list[dict]) -> int:
            attempt = self.state.get(key, {}).get("attempt", 0) + 1
            self.state[key] = {"attempt": attempt, "step": 0, "ranks": ranks}
            return attempt

        def progress(self, key: str, step: int) -> None:
            self.state.setdefault(key, {"attempt": 0, "ranks": []})["step"] = step

        def status(self, key: str) -> dict | None:
            return self.state.get(key)

    return RunMonitor


@contextlib.contextmanager
def _ray_train_environment(timeout_s: float) -> Iterator[None]:
    """Ray Train reads these from the driver's environment (and passes them to its controller)."""
    wanted = {**RAY_TRAIN_ENV, "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(max(120.0, timeout_s / 2))}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if saved[k] is None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _trainer(cfg: DistributedConfig, loop_config: dict, storage: str) -> Any:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    accelerator = _is_accelerator(cfg.target)
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


def _failure_class(exc: BaseException) -> str:
    """Failure class of a failed ``fit()``: a worker that died is ``worker_crashed``; a worker's own
    exception keeps its class (out of memory, ...)."""
    failures = getattr(exc, "worker_failures", None) or {}
    for err in failures.values():
        cause = getattr(err, "cause", None) or err
        if isinstance(cause, BenchmarkFailure):
            return cause.failure_class
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(s in text for s in ("actordiederror", "actor died", "died unexpectedly", "connection closed by peer",
                               "workerhealthcheck", "sigkill", "node died")):
        return "worker_crashed"
    if "timeout" in text or "timed out" in text:
        return "timeout"
    return classify(exc)


def _watch(cfg: DistributedConfig, fit: Callable[[], Any], monitor: Any, key: str,
           on_progress: ProgressHook | None) -> Any:
    """Run ``fit`` on a thread, reporting progress while it runs; raises TimeoutError past the limit."""
    import ray

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"hwbench-fit-{key}", daemon=True)
    thread.start()
    deadline = time.monotonic() + cfg.timeout_s
    last = None
    while thread.is_alive():
        thread.join(PROGRESS_POLL_S)
        if on_progress:
            status = ray.get(monitor.status.remote(key))
            if status and status != last:
                last = status
                on_progress(cfg, {**status, "steps": cfg.warmup_steps + cfg.steps})
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cfg.label}: no result after {cfg.timeout_s:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def failure_row(cfg: DistributedConfig, run_id: str, failure_class: str, message: str,
                started: datetime | None = None, **extra: Any) -> dict:
    """A classified failure; ``extra`` (attempts, where the ranks ran) is kept for the caller."""
    return failure_fields("distributed", cfg.key_fields(), run_id, failure_class,
                          f"{cfg.strategy} x{cfg.workers}: {message}", started, **extra)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _loss_curve(ranks: list[dict]) -> list[float]:
    """The loss of each step, averaged over the ranks that computed one (all data-parallel ranks; the last
    pipeline stage)."""
    curve = []
    for values in zip(*(r["losses"] for r in ranks), strict=True):
        known = [v for v in values if v is not None]
        if known:
            curve.append(sum(known) / len(known))
    return curve


def _host_load(ranks: list[dict]) -> dict[str, Any]:
    """Machine load over the measured steps: each host's busy and steal time, and what neither this run's
    workers nor the hypervisor used (foreign); the worst host decides whether the run is contaminated."""
    from hwbench_pipeline.bench.trackers.resource_sampler import combine_load_windows
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated

    load = combine_load_windows([r["load"] for r in ranks if r.get("load")])
    return load_fields(load, is_contaminated(load))


def result_row(cfg: DistributedConfig, run_id: str, payload: dict, *, started: datetime, fit_s: float) -> dict:
    """The row of one finished configuration, from the payload every rank contributed to."""
    from hwbench_pipeline.bench.environment import environment_fields
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.trackers.resource_sampler import summarize_samples
    from hwbench_pipeline.bench.trackers.stats import summarize

    ranks = sorted(payload["ranks"], key=lambda r: r["rank"])
    if len(ranks) != cfg.workers:
        raise RuntimeError(f"{cfg.label}: {len(ranks)} ranks reported, expected {cfg.workers}")
    per_rank_p50 = [_median(r["step_ms"]) for r in ranks]
    per_rank = [cfg.rank_batch / (p50 / 1e3) for p50 in per_rank_p50]
    total = min(per_rank) if cfg.strategy == "pipeline" else sum(per_rank)
    global_step_ms = [max(values) for values in zip(*(r["step_ms"] for r in ranks), strict=True)]
    stats = summarize(global_step_ms)
    curve = _loss_curve(ranks)
    tail = curve[-LOSS_WINDOW:]
    samples = [s for r in ranks for s in r["resource_samples"]]
    first = ranks[0]
    tokens = first["text_tokens_per_step"]
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": cfg.precision,
        "backend": first["backend"],
        "device_kind": parse_target(cfg.target).device_kind,
        "status": "ok",
        "task": first["task"],
        "learning_rate": first["learning_rate"],
        "params": first["params"],
        "frozen_params": first["frozen_params"],
        "rank_batch": cfg.rank_batch,
        "microbatches": cfg.microbatches if cfg.strategy == "pipeline" else None,
        "nodes": len({r["node_id"] for r in ranks}),
        "rank_nodes": [r["node_id"] for r in ranks],
        "rank_hosts": [r["host"] for r in ranks],
        "rank_pids": [r["pid"] for r in ranks],
        "n_samples": len(global_step_ms),
        "warmup_steps": cfg.warmup_steps,
        **stats,
        "per_rank_throughput": per_rank,
        "per_rank_p50_ms": per_rank_p50,
        "samples_ms": global_step_ms,
        "per_rank_samples_ms": [r["step_ms"] for r in ranks],
        "ranks_reported": len(ranks),
        "min_rank_throughput": min(per_rank),
        "throughput_samples_s": total,
        "throughput_tokens_s": tokens / (stats["p50_ms"] / 1e3) if tokens else None,
        "scaling_efficiency": None,  # filled in by add_scaling_efficiency once the 1-worker row is known
        "baseline_throughput_samples_s": None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
        "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in ranks],
        "device_peak_mb": max((r["device_peak_mb"] for r in ranks if r["device_peak_mb"] is not None), default=None),
        "loss_start": curve[0] if curve else None,
        "loss_end": sum(tail) / len(tail) if tail else None,
        "loss_curve": curve,
        **summarize_samples(samples),
        "resource_samples": samples,
        **_host_load(ranks),
        "attempts": payload.get("attempt"),
        "max_failures": cfg.max_failures,
        "setup_s": first["setup_s"],
        "fit_s": fit_s,
        "started_at": started,
        "finished_at": _now(),
        **environment_fields(),
    }


def add_scaling_efficiency(rows: list[dict]) -> None:
    """Set scaling_efficiency = throughput(N) / (N × throughput(1)) on every measured row whose series (same
    strategy, model, batch, threads) has a measured 1-worker row in ``rows``; the others stay None."""
    def series(row: dict) -> tuple:
        return tuple(row.get(k) for k in ("target", "family", "preset", "batch_size", "seq_len", "precision",
                                          "threads", "strategy"))

    baselines = {series(r): r["throughput_samples_s"] for r in rows if r.get("status") == "ok" and r["workers"] == 1}
    for row in rows:
        base = baselines.get(series(row)) if row.get("status") == "ok" else None
        if base:
            row["baseline_throughput_samples_s"] = base
            row["scaling_efficiency"] = row["throughput_samples_s"] / (row["workers"] * base)


def _run_one(cfg: DistributedConfig, run_id: str, monitor: Any, index: int,
             on_progress: ProgressHook | None) -> dict:
    started = _now()
    key = f"hwbench-{run_id[:12]}-{index}-{cfg.strategy}-x{cfg.workers}"
    storage = tempfile.mkdtemp(prefix="hwbench-ray-train-")
    loop_config = {"cfg": asdict(cfg), "monitor": monitor, "key": key}
    t0 = time.perf_counter()
    try:
        with _ray_train_environment(cfg.timeout_s):
            result = _watch(cfg, lambda: _trainer(cfg, loop_config, storage).fit(), monitor, key, on_progress)
    except TimeoutError as exc:
        return failure_row(cfg, run_id, "timeout", str(exc), started)
    except Exception as exc:  # noqa: BLE001 - a failed fit (out of retries) is a row, not an abort
        import ray

        status = ray.get(monitor.status.remote(key)) or {}
        return failure_row(cfg, run_id, _failure_class(exc), f"{type(exc).__name__}: {exc}", started,
                           attempts=status.get("attempt"))
    finally:
        _remove_tree(storage)
    payload = result.return_value
    if not payload:
        return failure_row(cfg, run_id, "runtime_error", "rank 0 returned no figures", started)
    if "failure" in payload:
        failure_class, message = payload["failure"]
        return failure_row(cfg, run_id, failure_class, message, started, attempts=payload.get("attempt"),
                           rank_nodes=[r["node_id"] for r in payload["ranks"]])
    return result_row(cfg, run_id, payload, started=started, fit_s=time.perf_counter() - t0)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(Path(path), ignore_errors=True)


def run_distributed(
    configs: Sequence[DistributedConfig],
    run_id: str,
    *,
    ray_address: str | None = None,
    lock_dir: Path | None = None,
    on_result: ResultHook | None = None,
    on_progress: ProgressHook | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Run every configuration on Ray Train, one after the other; one row each (result or failure), in order,
    with scaling efficiency filled in. Uses the Ray cluster at ``ray_address``, an already connected one, or a
    private local instance guarded by the host-wide measurement lock (see :mod:`..dispatch`)."""
    import ray

    from hwbench_pipeline.bench.dispatch import host_measurement_lock, ray_session

    targets = sorted({c.target for c in configs})
    lock = host_measurement_lock(lock_dir, log) if (lock_dir and not ray_address) else contextlib.nullcontext()
    rows: list[dict] = []
    with lock, ray_session(ray_address, targets):
        monitor = _run_monitor_class().options(
            scheduling_strategy=_driver_node_strategy()).remote()
        timed_out: str | None = None
        for i, cfg in enumerate(configs, start=1):
            refusal = unsupported_target_reason(cfg.target) or placement_refusal(cfg, ray.nodes())
            probed: dict = {}
            if not refusal and not timed_out and _is_accelerator(cfg.target):
                refusal, probed = accelerator_refusal(cfg)
            if timed_out:
                row = failure_row(cfg, run_id, "timeout", f"not started: {timed_out} did not finish in time and "
                                                          f"may still hold the workers")
            elif refusal:
                where = {"rank_nodes": [probed["node_id"]]} if probed else {}
                row = failure_row(cfg, run_id, "unsupported_configuration", refusal, **where)
            else:
                row = _run_one(cfg, run_id, monitor, i, on_progress)
                if row["status"] != "ok" and row["failure_class"] == "timeout":
                    timed_out = cfg.label
            rows.append(row)
            if on_result:
                on_result(i, len(configs), cfg, row)
        ray.kill(monitor)
    add_scaling_efficiency(rows)
    return rows


def _driver_node_strategy() -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
