"""Trained task models: fp32 training keeps its weights, and their task accuracy is measured at other precisions."""

import json
import os
from pathlib import Path

import pytest
import torch

from hwbench_pipeline.bench import models, tasks
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV
from hwbench_pipeline.bench.precision import SPECS, parse_spec
from hwbench_pipeline.bench.quality import QUALITY_SAMPLES, task_quality
from hwbench_pipeline.bench.scenarios.training import TrainingConfig, run_training_configuration
from hwbench_pipeline.bench.scenarios.training.config import EVAL_SAMPLES
from hwbench_pipeline.bench.scenarios.training.measure import above_chance
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.bench.trained import load_trained, metadata_path, read_metadata, weights_path

QUICK_RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.3, warmup_min_calls=2, warmup_window=2,
                          warmup_max_seconds=0.1)
CHANCE = 1.0 / tasks.NUM_CLASSES
RUN_ID = "quality-test"
# bert tiny at batch 8 reaches 100 % held-out accuracy within 40 steps of its default learning rate (3e-3)
STEPS, BATCH, SEQ = 40, 8, 16


def _train(root, precision="fp32", **kw) -> dict:
    cfg = TrainingConfig("bert", "tiny", "cpu-torch", BATCH, SEQ, precision=precision, threads=1, rule=QUICK_RULE,
                         convergence_steps=kw.pop("convergence_steps", STEPS), count_flops=False,
                         keep_weights_dir=str(root), **kw)
    return run_training_configuration(cfg, RUN_ID)


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    return root, _train(root)


@pytest.fixture(scope="module")
def fp32_quality(kept):
    _, row = kept
    return task_quality("bert", "tiny", Path(row["trained_weights"]), "cpu-torch", "fp32")


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_fp32_training_run_that_learned_keeps_its_weights_with_metadata(kept):
    root, row = kept
    assert row["status"] == "ok", row.get("message")
    assert above_chance(row["final_accuracy"], EVAL_SAMPLES, CHANCE), row["convergence_note"]
    path = weights_path(root, "bert", "tiny", row["config_hash"])
    assert row["trained_weights"] == str(path)
    # the weights and the JSON beside them, nothing left under a temporary name
    assert _files(root) == [f"bert/tiny/{row['config_hash']}.json", f"bert/tiny/{row['config_hash']}.safetensors"]
    meta = read_metadata(path)
    assert json.loads(metadata_path(path).read_text()) == meta.to_dict()
    assert (meta.family, meta.preset, meta.task, meta.precision, meta.run_id) == (
        "bert", "tiny", "text_keyword", "fp32", RUN_ID)
    assert (meta.seed, meta.seq_len, meta.batch_size, meta.steps) == (0, SEQ, BATCH, STEPS)
    assert (meta.final_accuracy, meta.final_loss, meta.learning_rate) == (
        row["final_accuracy"], row["final_loss"], row["learning_rate"])
    assert meta.created_at.startswith("20")


def test_the_kept_weights_are_the_model_at_the_end_of_training_not_after_the_timed_steps(kept):
    _, row = kept
    model, meta = load_trained(row["trained_weights"])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # the training's held-out figures, measured the same way (chunks of its batch), come back exactly
    config = models.build_config("bert", "tiny")
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for chunk in range(EVAL_SAMPLES // BATCH):
            batch = tasks.make_task_batch("bert", config, BATCH, SEQ, seed=meta.seed, step=chunk, split="eval")
            scores = model(batch.inputs)
            loss += float(torch.nn.functional.cross_entropy(scores, batch.labels, reduction="sum"))
            correct += int((scores.argmax(-1) == batch.labels).sum())
    assert correct / EVAL_SAMPLES == row["final_accuracy"]
    assert loss / EVAL_SAMPLES == pytest.approx(row["final_loss"], rel=1e-4)


def test_a_bf16_training_run_does_not_keep_its_weights(tmp_path):
    row = _train(tmp_path, precision="bf16")
    assert row.get("trained_weights") is None and _files(tmp_path) == []
    if row["status"] == "ok":  # a CPU with native bf16: it learned, and still nothing is kept
        assert above_chance(row["final_accuracy"], EVAL_SAMPLES, CHANCE), row["convergence_note"]
    else:
        assert row["failure_class"] == "unsupported_configuration", row["message"]


def test_a_run_that_stays_at_chance_keeps_nothing(tmp_path):
    row = _train(tmp_path, convergence_steps=5, learning_rate=1e-9)
    assert row["status"] == "ok", row.get("message")
    assert not above_chance(row["final_accuracy"], EVAL_SAMPLES, CHANCE)
    assert row["trained_weights"] is None and _files(tmp_path) == []


def test_above_chance_means_more_right_than_a_guesser_gets_by_luck():
    # 4 classes, 32 samples: a guesser gets 14 or more right 1.6 % of the time, 15 or more 0.6 %
    assert above_chance(15 / 32, 32, 0.25) and not above_chance(14 / 32, 32, 0.25)
    assert not above_chance(0.25, 32, 0.25) and above_chance(1.0, 32, 0.25)


def test_the_trained_model_loses_nothing_on_torch_fp32(fp32_quality):
    q = fp32_quality
    assert set(q) == {"task", "task_samples", "task_accuracy", "task_accuracy_fp32", "accuracy_drop",
                      "trained_run_id", "task_precision_ran"}
    assert q["task_precision_ran"] == "fp32"
    assert (q["task"], q["task_samples"], q["trained_run_id"]) == ("text_keyword", QUALITY_SAMPLES, RUN_ID)
    assert q["task_accuracy"] == q["task_accuracy_fp32"] and q["accuracy_drop"] == 0
    assert above_chance(q["task_accuracy_fp32"], QUALITY_SAMPLES, CHANCE)


def _lower_precisions() -> list:
    """Every spec but fp32, those the torch backend does not offer on this CPU skipped with the reason."""
    offered = load_backend("torch").precisions("cpu")
    return [pytest.param(spec, marks=pytest.mark.skipif(
        spec not in offered, reason=f"the torch backend offers {', '.join(offered)} on this CPU, not {spec}"))
        for spec in SPECS if spec != "fp32"]


@pytest.mark.parametrize("spec", _lower_precisions())
def test_a_lower_precision_scores_whole_samples_of_the_eval_set(kept, fp32_quality, spec):
    _, row = kept
    q = task_quality("bert", "tiny", Path(row["trained_weights"]), "cpu-torch", spec)
    n = q["task_samples"]
    for accuracy in (q["task_accuracy"], q["task_accuracy_fp32"]):
        assert 0 <= accuracy <= 1 and (accuracy * n).is_integer()
    assert q["task_accuracy_fp32"] == fp32_quality["task_accuracy_fp32"]  # the same reference, every spec
    assert q["accuracy_drop"] == q["task_accuracy_fp32"] - q["task_accuracy"]
    assert q["task_precision_ran"] == parse_spec(spec)[0]  # the task model ran the format asked for


def test_onnxruntime_scores_the_trained_model_through_the_same_function_without_the_export_cache(
        kept, fp32_quality, tmp_path, monkeypatch):
    _, row = kept
    cache = tmp_path / "configuration-cache"
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(cache))  # the cache of the configuration being measured
    q = task_quality("bert", "tiny", Path(row["trained_weights"]), "cpu-onnxruntime", "fp32")
    assert not cache.exists()  # the task model was exported elsewhere, the configuration's entry untouched
    assert os.environ[EXPORT_CACHE_ENV] == str(cache)  # and the variable is back for the configuration's model
    assert q["task_accuracy_fp32"] == fp32_quality["task_accuracy_fp32"]
    # ONNX Runtime's fp32 kernels differ from torch's in the last bits: at most a near-tie sample could flip
    assert abs(q["accuracy_drop"]) <= 1 / q["task_samples"]
    assert q["accuracy_drop"] == q["task_accuracy_fp32"] - q["task_accuracy"]


def test_weights_of_another_model_are_refused(kept):
    _, row = kept
    with pytest.raises(ValueError, match="not vit/tiny"):
        task_quality("vit", "tiny", Path(row["trained_weights"]), "cpu-torch", "fp32")
    with pytest.raises(ValueError, match="cannot name a directory"):
        weights_path("/tmp", "../bert", "tiny", "abc")


def test_an_inference_row_of_a_trained_model_carries_its_task_accuracy_and_passes_the_suite(kept, fp32_quality):
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
    from hwbench_pipeline.warehouse.validation import inference_suite, split_valid_rows

    _, row = kept
    spec = next(s for s in ("int8-dynamic", "bf16", "fp32") if s in load_backend("torch").precisions("cpu"))
    precision, quantization = parse_spec(spec)
    cfg = InferenceConfig("bert", "tiny", "cpu-torch", 1, SEQ, precision=precision, quantization=quantization,
                          threads=1, rule=QUICK_RULE, trained_weights=row["trained_weights"])
    measured = run_configuration(cfg, "inference-with-task")
    assert measured["status"] == "ok", measured.get("message")
    assert measured["task"] == "text_keyword" and measured["task_samples"] == QUALITY_SAMPLES
    assert measured["task_accuracy_fp32"] == fp32_quality["task_accuracy_fp32"]
    assert measured["task_precision_ran"] == precision and measured["trained_run_id"] == RUN_ID
    assert measured["accuracy_drop"] == measured["task_accuracy_fp32"] - measured["task_accuracy"]
    valid, invalid, _ = split_valid_rows([measured], inference_suite())
    assert len(valid) == 1, invalid

    # weights that cannot be read leave the timing standing, and the row says why it has no accuracy
    gone = run_configuration(InferenceConfig("bert", "tiny", "cpu-torch", 1, SEQ, threads=1, rule=QUICK_RULE,
                                             trained_weights="/nonexistent/bert.safetensors"), "inference-no-task")
    assert gone["status"] == "ok" and gone["p50_ms"] > 0 and gone.get("task_accuracy") is None
    assert gone["task_note"].startswith("task accuracy not measured: ") and "\n" not in gone["task_note"]
