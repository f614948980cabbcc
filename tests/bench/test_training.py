"""The training scenario: real steps of tiny models, real convergence, real memory peaks in fresh processes."""

import dataclasses
import multiprocessing
import textwrap
from concurrent.futures import ProcessPoolExecutor

import polars as pl
import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.profiles import ProfileError, load_profile
from hwbench_pipeline.bench.scenarios.inference import count_flops
from hwbench_pipeline.bench.scenarios.training import (
    TrainingConfig,
    TrainingStep,
    mark_batch_scaling,
    not_run_rows,
    run_convergence,
    run_training_configuration,
    steps_to_target,
    sweep_configs,
    sweep_skip_reason,
    unsupported_precision_reason,
)
from hwbench_pipeline.bench.tasks import NUM_CLASSES, trainable
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.warehouse.validation import split_valid_rows, training_suite

QUICK_RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.5, warmup_min_calls=2, warmup_window=2,
                          warmup_max_seconds=0.2)


def _config(family="bert", batch=4, seq=16, **kw) -> TrainingConfig:
    return TrainingConfig(family, "tiny", "cpu-torch", batch, seq, threads=1, rule=QUICK_RULE, **kw)


# One family per modality; 60 steps at the tiny preset's default learning rate (3e-3), batch 8, seed 0.
@pytest.mark.parametrize(("family", "seq"), [("bert", 16), ("vit", 1), ("wav2vec2", 4000), ("clip", 8)],
                         ids=["text", "vision", "audio", "multimodal"])
def test_a_tiny_model_learns_the_standard_task_of_its_modality(family, seq):
    torch.set_num_threads(1)
    cfg = _config(family, batch=8, seq=seq, convergence_steps=60)
    task_model, config = trainable(family, "tiny", seed=cfg.seed)
    step = TrainingStep(task_model, torch.device("cpu"), "fp32", cfg.learning_rate)
    result = run_convergence(step, family, config, cfg)
    assert len(result["loss_curve"]) == 60
    assert result["converged"], result["convergence_note"]
    assert 1 <= result["steps_to_target"] <= 60
    assert result["final_loss"] < 0.6 * result["initial_loss"], result["convergence_note"]
    assert result["final_accuracy"] > 1.0 / NUM_CLASSES + 0.25  # well above chance on held-out samples


def test_a_run_whose_loss_does_not_fall_is_flagged():
    torch.set_num_threads(1)
    cfg = _config(convergence_steps=10, learning_rate=1e-9)  # a step too small to learn anything
    task_model, config = trainable("bert", "tiny")
    result = run_convergence(TrainingStep(task_model, torch.device("cpu"), "fp32", cfg.learning_rate),
                             "bert", config, cfg)
    assert result["converged"] is False and result["steps_to_target"] is None
    assert result["convergence_note"].startswith("NOT CONVERGED")


def test_steps_to_target_uses_the_running_mean_of_recent_losses():
    curve = [1.4, 1.3, 0.1, 1.3, 1.2, 0.5, 0.4, 0.4, 0.3]
    assert steps_to_target(curve, 0.75, window=3) == 7  # one low loss alone (step 3) is not convergence
    assert steps_to_target(curve, 0.1, window=3) is None


@pytest.fixture(scope="module")
def measured_row():
    return run_training_configuration(_config(batch=4, seq=16, convergence_steps=3), "test-run")


def test_a_training_row_is_a_measurement(measured_row):
    row = measured_row
    assert row["status"] == "ok", row.get("message")
    assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["n_samples"] == len(row["samples_ms"]) >= 5
    assert row["throughput_samples_s"] == pytest.approx(4 / (row["p50_ms"] / 1e3))
    assert row["throughput_tokens_s"] == pytest.approx(4 * 16 / (row["p50_ms"] / 1e3))
    # in this test process (not a fresh worker) freed memory may be reused: the peak is at least the baseline
    assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0 and row["within_budget"] is True
    assert row["memory_budget_mb"] > 0
    # forward + backward counts more than the forward alone, which equals inference's forward count
    bare = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", models.build_config("bert", "tiny"), 4, 16)
    assert row["flops_per_step"] > row["forward_flops_per_step"] >= count_flops(bare, inputs, models.forward) > 0
    assert row["achieved_gflops"] == pytest.approx(row["flops_per_step"] / (row["p50_ms"] / 1e3) / 1e9)
    # 3 steps cannot halve the loss: the row says the run did not converge
    assert len(row["loss_curve"]) == 3 and row["converged"] is False
    assert row["task"] == "text_keyword" and row["objective"] == "pooled_head"
    assert row["host"] and row["torch_version"] and row["worker_pid"] > 0


def test_the_training_suite_passes_a_real_row_and_quarantines_a_broken_one(measured_row):
    broken = {**measured_row, "batch_size": 8, "p90_ms": measured_row["p50_ms"] / 2}  # p90 < p50
    valid, invalid, _ = split_valid_rows([measured_row, broken], training_suite())
    assert [r["batch_size"] for r in valid] == [4]
    assert len(invalid) == 1 and any("p90_ms" in why for why in invalid[0][1])


def test_unsupported_precisions_become_classified_failure_rows():
    int8 = run_training_configuration(_config(precision="int8"), "test-run")
    assert int8["status"] == "failed" and int8["failure_class"] == "unsupported_configuration"
    assert "float formats only" in int8["message"] and int8["scenario"] == "training"
    fp16 = run_training_configuration(_config(precision="fp16"), "test-run")
    if unsupported_precision_reason("fp16", "cpu"):  # a CPU without native fp16 (AVX512-FP16, AMX-FP16)
        assert fp16["status"] == "failed" and fp16["failure_class"] == "unsupported_configuration"
        assert "no native fp16" in fp16["message"] and fp16["scenario"] == "training"
    bf16 = run_training_configuration(_config(precision="bf16"), "test-run")
    if unsupported_precision_reason("bf16", "cpu"):  # a CPU without native bf16 (this host)
        assert bf16["status"] == "failed" and bf16["failure_class"] == "unsupported_configuration"
        assert "no native bf16" in bf16["message"]
    else:  # a CPU with AVX512-BF16 or AMX trains under bf16 autocast
        assert bf16["status"] == "ok" and bf16["precision_ran"] == "bf16"


def test_training_on_an_inference_runtime_is_refused():
    row = run_training_configuration(TrainingConfig("bert", "tiny", "cpu-onnxruntime", 1, 8), "test-run")
    assert row["failure_class"] == "unsupported_configuration" and "torch targets" in row["message"]


@pytest.fixture(scope="module")
def fresh_process():
    """Runs one configuration in a new process per call (forked from a server that has imported torch and
    the model code once), so each row's RSS high-water mark is that batch's own."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hwbench_pipeline.bench.scenarios.training", "hwbench_pipeline.bench.tasks",
                                    "transformers.models.bert.modeling_bert"])

    def measure(cfg: TrainingConfig) -> dict:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(run_training_configuration, cfg, "test-run").result(timeout=300)

    return measure


def test_batch_scaling_stops_at_the_memory_budget(fresh_process):
    # bert-tiny at 128 tokens: a batch of 32 needs ~100 MiB more than a batch of 2 (attention activations and
    # their gradients), so a budget 24 MiB above a batch of 2's peak lets 2 in and stops the sweep at 32
    base = _config(batch=2, seq=128, count_flops=False)
    probe = fresh_process(base)
    assert probe["status"] == "ok", probe.get("message")
    budget = probe["peak_rss_mb"] + 24
    rows = []
    for cfg in sweep_configs(dataclasses.replace(base, memory_budget_mb=budget), [2, 32, 128], max_batch=128):
        if sweep_skip_reason(cfg, rows) is None:
            rows.append(fresh_process(cfg))
    mark_batch_scaling(rows)
    assert all(r["status"] == "ok" for r in rows), [r.get("message") for r in rows]
    assert [r["batch_size"] for r in rows] == [2, 32], "the sweep stops at the first batch over the budget"
    assert rows[0]["within_budget"] is True and rows[0]["peak_rss_mb"] <= budget
    assert rows[1]["within_budget"] is False and rows[1]["peak_rss_mb"] > budget > rows[0]["peak_rss_mb"]
    assert {r["max_batch_in_budget"] for r in rows} == {2}
    assert {r["batch_scaling_stop"] for r in rows} == {"memory_budget"}
    assert "over the" in sweep_skip_reason(dataclasses.replace(base, batch_size=128), rows)
    listed_but_not_run = not_run_rows([dataclasses.replace(base, memory_budget_mb=budget, batch_size=128)], rows,
                                      "sweep")
    assert [(r["batch_size"], r["failure_class"]) for r in listed_but_not_run] == [(128, "skipped")]
    assert "over the" in listed_but_not_run[0]["message"], "skipped with the reason, never as out_of_memory"


def test_sweeps_extend_the_listed_batches_and_converge_once():
    configs = sweep_configs(_config(batch=1, convergence_steps=20), [1, 4], max_batch=32)
    assert [c.batch_size for c in configs] == [1, 4, 8, 16, 32]
    assert [c.convergence_steps for c in configs] == [0, 20, 0, 0, 0]
    with pytest.raises(ValueError, match="convergence batch"):
        sweep_configs(_config(), [1, 4], 8, convergence_batch=2)


def test_profile_training_section(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""
        families: [bert]
        presets: [tiny]
        batch_sizes: [1]
        seq_lens: [16]
        precisions: [fp32]
        threads: 1
        training:
          families: [bert, vit]
          presets: [tiny]
          batch_sizes: [2, 4]
          seq_lens: [16]
          precisions: [fp32, bf16]
          convergence_steps: 30
          convergence_batch: 2
          batch_scaling: {max_batch: 16, memory_budget_mb: 900}
    """))
    profile = load_profile(str(path))
    configs = profile.training_configs("cpu-torch")
    bert_fp32 = [c for c in configs if c.family == "bert" and c.precision == "fp32"]
    assert [c.batch_size for c in bert_fp32] == [2, 4, 8, 16]
    assert [c.convergence_steps for c in bert_fp32] == [30, 0, 0, 0]
    assert {c.memory_budget_mb for c in configs} == {900.0} and {c.threads for c in configs} == {1}
    assert {c.seq_len for c in configs if c.family == "vit"} == {1}  # image size fixed by the config
    assert load_profile("smoke").training is not None and load_profile("quick").training is not None

    path.write_text(path.read_text().replace("convergence_batch: 2", "convergence_batch: 3"))
    with pytest.raises(ProfileError, match="convergence_batch"):
        load_profile(str(path))
    path.write_text(path.read_text().replace("convergence_batch: 3", "momentum: 0.9"))
    with pytest.raises(ProfileError, match="unknown keys momentum"):
        load_profile(str(path))


@pytest.mark.slow
def test_training_through_ray_dispatch_runs_each_batch_in_a_fresh_worker_and_stops_sweeps(tmp_path):
    from hwbench_pipeline.bench.dispatch import run_configurations
    from hwbench_pipeline.bench.scenarios.training import TrainingScenario

    fits = sweep_configs(_config("vit", batch=1, seq=1, count_flops=False), [1, 2], max_batch=2)
    # 1 MiB cannot hold a Python process: the sweep's first batch is over budget and the second is not run
    over = sweep_configs(_config(batch=1, memory_budget_mb=1.0, count_flops=False), [1, 2], max_batch=2)
    logged: list[str] = []
    rows = run_configurations(TrainingScenario(), fits + over, "ray-run", lock_dir=tmp_path, timeout_s=300,
                              retry_contaminated=0, log=logged.append)
    mark_batch_scaling(rows)
    assert all(r["status"] == "ok" for r in rows), [r.get("message") for r in rows]
    assert [(r["family"], r["batch_size"]) for r in rows] == [("vit", 1), ("vit", 2), ("bert", 1)]
    assert len({r["worker_pid"] for r in rows}) == 3  # a fresh Ray worker per configuration
    assert [r["max_batch_in_budget"] for r in rows[:2]] == [2, 2] and rows[0]["batch_scaling_stop"] == "batch_cap"
    assert rows[2]["within_budget"] is False and rows[2]["max_batch_in_budget"] is None
    assert any("bs=2" in line and "not run" in line and "memory budget" in line for line in logged), logged


@pytest.mark.slow
def test_training_runs_asset_stores_validated_rows_and_classified_failures(tmp_path, monkeypatch):
    import dagster as dg

    from hwbench_pipeline.assets.training import training_runs
    from hwbench_pipeline.resources.ray import RayResource
    from hwbench_pipeline.resources.settings import HwbenchSettings
    from hwbench_pipeline.resources.warehouse import WarehouseResource
    from hwbench_pipeline.warehouse.store import Warehouse

    profile = tmp_path / "train.yaml"
    profile.write_text(textwrap.dedent("""
        families: [bert]
        presets: [tiny]
        batch_sizes: [1]
        seq_lens: [16]
        precisions: [fp32]
        threads: 1
        stopping: {ci_target: 0.05, min_samples: 5, max_seconds: 0.5, warmup_max_seconds: 0.2}
        training:
          families: [bert]
          presets: [tiny]
          batch_sizes: [4]
          seq_lens: [16]
          precisions: [fp32, bf16, fp16]
          convergence_steps: 5
    """))
    data_dir = tmp_path / "data"
    monkeypatch.setenv("HWBENCH_LOCK_DIR", str(tmp_path / "locks"))  # not queued behind other checkouts' runs
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch"])
        result = dg.materialize(
            [training_runs], partition_key="cpu-torch", instance=instance,
            resources={"settings": HwbenchSettings(profile=str(profile)),
                       "warehouse": WarehouseResource(data_dir=str(data_dir)),
                       "ray": RayResource(address="")},
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name for c in checks} == {"training_results_suite", "failures_suite", "latency_samples_suite"}
        assert all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]
    warehouse = Warehouse(data_dir)
    # What this CPU can train is asked of the engine's own detection: bf16 and fp16 run where they are native
    # (AVX512-BF16, AMX; AVX512-FP16, AMX-FP16) and are refusals with their reason elsewhere.
    reasons = {p: unsupported_precision_reason(p, "cpu") for p in ("fp32", "bf16", "fp16")}
    trained = [p for p, why in reasons.items() if why is None]
    refused = sorted(p for p, why in reasons.items() if why is not None)
    results = warehouse.read("training_results")
    results = results.sort(pl.col("precision").replace_strict({p: i for i, p in enumerate(reasons)}))
    assert results["precision"].to_list() == trained and set(results["status"]) == {"ok"}
    assert results["precision_ran"].to_list() == trained
    assert results["loss_curve"].list.len().to_list() == [5] * len(trained)
    failures = warehouse.read("failures").sort("precision")
    assert failures["precision"].to_list() == refused and set(failures["scenario"]) == {"training"}
    if refused:
        assert set(failures["failure_class"]) == {"unsupported_configuration"}
    messages = dict(zip(failures["precision"], failures["message"], strict=True))
    for precision in refused:
        assert f"no native {precision}" in messages[precision]
    samples = warehouse.read("latency_samples")
    assert set(samples["scenario"]) == {"training"} and samples.height == results["n_samples"].sum()
    runs = warehouse.read("runs")
    assert runs["scenario"].to_list() == ["training"] and runs["run_id"][0].endswith("-training")
