"""Which targets and cluster nodes can run a distributed configuration, and the Ray resources each of its
workers reserves."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hwbench_pipeline.bench.scenarios.distributed.config import DistributedConfig

RESOURCE_SHARE_DECIMALS = 4  # Ray accepts fractional resources with up to 4 decimals


def is_accelerator(target: str) -> bool:
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
    from hwbench_pipeline.bench.launchers.ray import NODE_SLOT, target_resource

    scale = 10**RESOURCE_SHARE_DECIMALS
    share = math.floor(scale / cfg.workers) / scale
    resources = {"CPU": float(cfg.threads), NODE_SLOT: share, target_resource(cfg.target): share}
    if is_accelerator(cfg.target):
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
