"""Multi-node placement on a simulated Ray cluster (``ray.cluster_utils.Cluster``): nodes advertise different
hardware targets, and each distributed run lands on the node that has its target."""

import pytest
import ray
from ray.cluster_utils import Cluster

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.launchers.ray import NODE_SLOT, target_resource
from hwbench_pipeline.bench.scenarios.distributed import DistributedConfig, DistributedScenario


def _config(target: str, workers: int = 1) -> DistributedConfig:
    return DistributedConfig(family="bert", preset="tiny", target=target, strategy="ddp", workers=workers,
                             batch_size=2 * workers, seq_len=16, steps=3, warmup_steps=1, timeout_s=300)


@pytest.fixture
def two_node_cluster():
    """A head without CPUs (only the driver's helpers run there) and two 1-CPU nodes: one advertises the CPU
    target, the other a GPU target (with a declared GPU that torch cannot see: this host has none)."""
    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cpu_node = cluster.add_node(num_cpus=1, resources={NODE_SLOT: 1, target_resource("cpu-torch"): 1})
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1,
                                    resources={NODE_SLOT: 1, target_resource("cuda0-torch"): 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield cpu_node.node_id, gpu_node.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_each_run_lands_on_the_node_that_advertises_its_target(two_node_cluster):
    cpu_node, gpu_node = two_node_cluster
    rows = run_configurations(DistributedScenario(),
                              [_config("cpu-torch"), _config("cuda0-torch"), _config("cpu-torch", workers=2)],
                              "multinode")
    on_cpu, on_gpu, too_many = rows
    # the CPU run trained on the CPU target's node (the node id each worker read from its own runtime context)
    assert on_cpu["status"] == "ok", on_cpu.get("message")
    assert on_cpu["rank_nodes"] == [cpu_node] and on_cpu["nodes"] == 1
    assert len(on_cpu["per_rank_throughput"]) == 1 and on_cpu["per_rank_throughput"][0] > 0
    assert {s["node_id"] for s in on_cpu["resource_samples"]} == {cpu_node}
    # the GPU target's worker resources led to the other node, where torch sees no CUDA device: skipped, saying so
    assert on_gpu["status"] == "failed" and on_gpu["failure_class"] == "unsupported_configuration"
    assert on_gpu["rank_nodes"] == [gpu_node] and "sees no CUDA device" in on_gpu["message"]
    # two 1-CPU workers on the one node with the CPU target: refused before anything starts
    assert too_many["failure_class"] == "unsupported_configuration" and "room for 1" in too_many["message"]
