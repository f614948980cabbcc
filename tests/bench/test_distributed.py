"""Distributed training on Ray Train: configuration checks, placement, resource sampling (fast); DDP, FSDP and
pipeline runs through the distributed_runs asset, and a worker killed mid-run (slow: real Ray, real models)."""

import os
import signal
import time

import psutil
import pytest

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.launchers.ray import NODE_SLOT, target_resource
from hwbench_pipeline.bench.profiles import ProfileError, load_profile
from hwbench_pipeline.bench.scenarios.distributed import DistributedConfig, DistributedScenario, placement_refusal
from hwbench_pipeline.bench.trackers.resource_sampler import NodeLoadWindow, ResourceSampler, combine_load_windows
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import store_measurements
from hwbench_pipeline.warehouse.validation import distributed_suite

RESULTS_CHECK = "distributed_results_suite"


def _config(**kw) -> DistributedConfig:
    base = dict(family="bert", preset="tiny", target="cpu-torch", strategy="ddp", workers=2, batch_size=4,
                seq_len=16, steps=5, warmup_steps=1)
    return DistributedConfig(**{**base, **kw})


def _node(node_id: str, cpus: float, targets: tuple[str, ...] = ("cpu-torch",), alive: bool = True) -> dict:
    resources = {"CPU": cpus, NODE_SLOT: 1.0, **{target_resource(t): 1.0 for t in targets}}
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_impossible_batches_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="batch 6 is not divisible by 4 workers"):
        _config(workers=4, batch_size=6)
    with pytest.raises(ValueError, match="not divisible into 4 pipeline microbatches"):
        _config(strategy="pipeline", batch_size=6, microbatches=4)
    with pytest.raises(ValueError, match="unknown strategy 'tp'"):
        _config(strategy="tp")


def test_placement_counts_workers_per_node_not_summed_resources():
    nodes = [_node("a" * 16, 2), _node("b" * 16, 2), _node("c" * 16, 8, targets=()), _node("d" * 16, 8, alive=False)]
    assert placement_refusal(_config(workers=4, batch_size=4), nodes) is None  # 2 + 2 on the target's nodes
    # 4 CPUs in the cluster, but no node has 3 for one worker of 3 threads
    why = placement_refusal(_config(workers=1, threads=3), nodes)
    assert why is not None and "room for 0" in why
    why = placement_refusal(_config(workers=5, batch_size=5), nodes)
    assert "5 workers" in why and "room for 4" in why and "node aaaaaaaa: 2" in why
    assert placement_refusal(_config(target="cuda0-torch", workers=1), nodes).startswith("1 workers")  # no GPU


def test_resource_sampler_sees_a_busy_process_and_its_load():
    sampler = ResourceSampler("node-x", [os.getpid()], interval_s=0.05).start()
    window = NodeLoadWindow([os.getpid()])
    window.begin()
    sampler.set_phase("measure")
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        sum(i * i for i in range(10_000))
    load = window.end()
    samples = sampler.stop()
    assert len(samples) >= 4
    measured = [s for s in samples if s["phase"] == "measure"]
    assert max(s["workers_cpu_percent"] for s in measured) > 30  # this process spun a core
    assert all(s["workers_rss_mb"] > 10 and s["node_memory_used_mb"] > 0 for s in samples)
    assert all(s["gpu_util_percent"] is None for s in samples)  # no GPU asked for: never guessed
    assert load["own"] > 0 and load["total"] > 0
    combined = combine_load_windows([load, {**load, "own": 0.0}])  # two workers on one host: own time adds up
    assert 0 <= combined.foreign_fraction <= combined.busy_fraction <= 1


def test_profiles_list_distributed_configurations_fewest_workers_first(tmp_path):
    quick = load_profile("quick").distributed_configs("cpu-torch")
    assert {c.strategy for c in quick} == {"ddp", "fsdp"} and {c.workers for c in quick} == {1, 2}
    assert [c.workers for c in quick if c.strategy == "ddp"] == [1, 2]
    assert load_profile("smoke").distributed_configs("cpu-torch") == []  # a profile without the section runs none
    bad = tmp_path / "bad.yaml"
    base = "families: [bert]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [16]\nprecisions: [fp32]\n"
    bad.write_text(base + "distributed: {families: [bert], presets: [tiny], strategies: [ddp], workers: [1, 2], "
                          "batch_size: 5, seq_len: 16}\n")
    with pytest.raises(ProfileError, match="batch 5 is not divisible by 2 workers"):
        load_profile(str(bad))
    bad.write_text(base + "distributed: {families: [bert], presets: [tiny], strategies: [zero3], workers: [1], "
                          "batch_size: 4, seq_len: 16}\n")
    with pytest.raises(ProfileError, match="unknown strategies zero3"):
        load_profile(str(bad))


@pytest.mark.slow
def test_ddp_fsdp_and_pipeline_collect_every_ranks_throughput(distributed_sweep):
    result, warehouse = distributed_sweep
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[RESULTS_CHECK].passed, checks[RESULTS_CHECK].metadata
    rows = warehouse.read("distributed_results")
    failures = warehouse.read("failures")
    assert rows.height == 6, failures.select("message").to_series().to_list()
    for row in rows.iter_rows(named=True):
        assert row["backend"] == "gloo" and row["attempts"] == 1 and row["threads"] == 1
        per_rank = row["per_rank_throughput"]
        assert len(per_rank) == row["workers"] == row["ranks_reported"] and all(v > 0 for v in per_rank)
        combined = min(per_rank) if row["strategy"] == "pipeline" else sum(per_rank)
        assert row["throughput_samples_s"] == pytest.approx(combined)
        assert len(row["per_rank_samples_ms"]) == row["workers"] and len(row["samples_ms"]) == 5
        assert len(row["peak_rss_mb_per_rank"]) == row["workers"] and row["peak_rss_mb"] > 50
        assert len(row["loss_curve"]) == 6 and 0 < row["loss_end"] < 10 and 0 < row["loss_start"] < 10
        measured = [s for s in row["resource_samples"] if s["phase"] == "measure"]
        assert row["resource_sample_count"] == len(row["resource_samples"]) and measured
        assert all(s["workers_rss_mb"] > 0 for s in row["resource_samples"])
    # scaling efficiency comes from the measured 1-worker row of the same strategy in the same run
    by_key = {(r["strategy"], r["workers"]): r for r in rows.iter_rows(named=True)}
    for strategy in ("ddp", "fsdp", "pipeline"):
        one, two = by_key[(strategy, 1)], by_key[(strategy, 2)]
        assert one["scaling_efficiency"] == pytest.approx(1.0)
        expected = two["throughput_samples_s"] / (2 * one["throughput_samples_s"])
        assert two["scaling_efficiency"] == pytest.approx(expected)
        assert two["baseline_throughput_samples_s"] == pytest.approx(one["throughput_samples_s"])
    assert by_key[("pipeline", 2)]["microbatches"] == 2 and by_key[("ddp", 2)]["rank_batch"] == 2
    runs = warehouse.read("runs")
    assert runs.row(0, named=True)["scenario"] == "distributed" and runs.row(0, named=True)["n_ok"] == 6


def _descendant(pid: int) -> bool:
    return any(p.pid == pid for p in psutil.Process().children(recursive=True))


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried_or_recorded_and_nothing_partial_is_stored(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    retried = _config(steps=150, max_failures=1)
    lost = _config(steps=150, max_failures=0, seed=1)
    too_many = _config(workers=3, batch_size=6)
    killed: dict[DistributedConfig, int] = {}

    def kill_rank_1(cfg: DistributedConfig, status: dict) -> None:
        # once per configuration, in its first attempt, after a few steps: SIGKILL the rank-1 worker process
        if cfg in killed or status["attempt"] != 1 or status["step"] < 3 or cfg.workers < 2:
            return
        pid = next(r["pid"] for r in status["ranks"] if r["rank"] == 1)
        assert _descendant(pid)  # a worker of the Ray instance this test started, nothing else
        os.kill(pid, signal.SIGKILL)
        killed[cfg] = pid

    rows = run_configurations(DistributedScenario(), [retried, lost, too_many], "killtest",
                              lock_dir=tmp_path / "locks", on_progress=kill_rank_1)
    assert len(killed) == 2, killed
    ok, crashed, refused = rows
    assert ok["status"] == "ok" and ok["attempts"] == 2, ok.get("message")  # Ray Train started it again
    assert len(ok["per_rank_throughput"]) == 2 and killed[retried] not in ok["rank_pids"]
    assert crashed["status"] == "failed" and crashed["failure_class"] == "worker_crashed", crashed["message"]
    assert refused["failure_class"] == "unsupported_configuration" and "cannot be placed" in refused["message"]

    warehouse = Warehouse(tmp_path / "data")
    store_measurements(warehouse, rows, results_table="distributed_results", suite=distributed_suite(),
                       scenario="distributed", run_id="killtest", partition="cpu-torch", dagster_run_id="none",
                       profile="test", started=ok["started_at"], expected=True, with_samples=False)
    stored = warehouse.read("distributed_results")
    assert stored.height == 1 and stored.row(0, named=True)["attempts"] == 2
    assert len(stored.row(0, named=True)["samples_ms"]) == retried.steps  # the whole retried run, not a part
    assert sorted(warehouse.read("failures")["failure_class"]) == ["unsupported_configuration", "worker_crashed"]
    assert not list((tmp_path / "data").rglob("*.tmp"))
