"""KV-cache quality on a decoder that has learned something: the copy-task decoder learns its task, a 2-bit cache
costs it more than an 8-bit one, its weights are kept with their provenance, and a kept file trained on other
settings is never reused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from hwbench_pipeline.bench import kv_quality
from hwbench_pipeline.bench.backends.torch import kv_cache
from hwbench_pipeline.bench.kv_quality import decoder as decoder_module

#: enough held-out prompts to see the direction (16 x 16 copied tokens), few enough to keep the tests short
PROMPTS = 16
#: a training run too short to learn anything, for the tests about what is kept (~1 s)
BRIEF = dataclasses.replace(kv_quality.TRAINING, steps=3, min_accuracy=0.0)


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory) -> Path:
    """The default decoder, trained once for this module (~10 s on 2 idle cores)."""
    directory = tmp_path_factory.mktemp("kv_quality")
    kv_quality.learned_decoder(directory)
    return directory


@pytest.fixture(scope="module")
def decoder(decoder_dir) -> torch.nn.Module:
    return kv_quality.learned_decoder(decoder_dir)


@pytest.fixture(scope="module")
def prompts() -> list[kv_quality.CopyPrompt]:
    return kv_quality.held_out_prompts(kv_quality.TASK, PROMPTS)


def installed(precision: str) -> None:
    """The KV-cache packages and the C++ compiler quanto builds with are installed by the project itself (pyproject,
    the Makefile's compiler target): one missing is a broken setup, which fails here rather than skipping."""
    missing = kv_cache.missing_dependency(precision)
    assert missing is None, missing


def quality(decoder, precision: str, prompts) -> dict:
    installed(precision)
    return kv_quality.kv_cache_quality(decoder, precision, residual_length=0, prompts=prompts)


def test_the_learned_decoder_copies_held_out_prompts_through_the_full_precision_cache(decoder, prompts):
    result = quality(decoder, "model", prompts)
    assert result["task_accuracy_full"] >= 0.95
    # the same cache twice: the same computations, so the same distributions
    assert result["top1_agreement"] == 1.0
    assert result["kl_divergence"] == 0.0
    assert result["perplexity_full"] < 1.5  # near-certain of every right token (a uniform guess: 64)


def test_a_2_bit_cache_costs_the_learned_decoder_more_than_an_8_bit_one(decoder, prompts):
    int8, int2 = quality(decoder, "int8", prompts), quality(decoder, "int2", prompts)
    assert int8["top1_agreement"] >= int2["top1_agreement"]
    assert int2["kl_divergence"] > int8["kl_divergence"]
    assert int2["task_accuracy"] <= int8["task_accuracy"]
    assert int2["task_accuracy_full"] == int8["task_accuracy_full"]  # one reference for both


def test_held_out_prompts_are_fixed_by_their_seed_and_are_not_training_batches():
    first, again = kv_quality.held_out_prompts(kv_quality.TASK, 4), kv_quality.held_out_prompts(kv_quality.TASK, 4)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.expected, b.expected)
    task = kv_quality.TASK
    prompt = first[0]
    assert prompt.ids[0, 0] == task.bos and prompt.ids[0, -1] == task.sep
    assert torch.equal(prompt.ids[0, 1:-1], prompt.expected)  # the answer is the prompt's content, copied
    first_batch = task.sequences(kv_quality.TRAINING.batch_size,
                                 torch.Generator().manual_seed(kv_quality.TRAINING.seed))
    trained_on = {tuple(row[:task.prompt_len].tolist()) for row in first_batch}
    assert not any(tuple(p.ids[0].tolist()) in trained_on for p in first)


def test_the_sidecar_records_how_the_kept_decoder_was_made(decoder_dir):
    sidecar = json.loads((decoder_dir / kv_quality.SIDECAR_NAME).read_text())
    assert sidecar["task_name"] == "copy"
    assert sidecar["task"] == dataclasses.asdict(kv_quality.TASK)
    assert sidecar["training"] == dataclasses.asdict(kv_quality.TRAINING)
    assert sidecar["training"]["seed"] == kv_quality.TRAINING.seed
    assert sidecar["training"]["steps"] == kv_quality.TRAINING.steps
    assert sidecar["final_accuracy"] >= kv_quality.TRAINING.min_accuracy
    assert sidecar["torch_version"] == torch.__version__
    assert sidecar["transformers_version"]
    assert sidecar["created_at"]
    assert sidecar["config"]["vocab_size"] == kv_quality.TASK.vocab_size
    assert str(kv_quality.EVAL_SEED) in sidecar["data"]


def test_a_kept_decoder_is_loaded_not_trained_again(decoder_dir, decoder, monkeypatch):
    monkeypatch.setattr(decoder_module, "train_decoder", lambda *a, **k: pytest.fail("trained again"))
    loaded = kv_quality.learned_decoder(decoder_dir)
    kept, trained = loaded.state_dict(), decoder.state_dict()
    assert kept.keys() == trained.keys()
    assert all(torch.equal(kept[name], trained[name]) for name in kept)


def test_a_changed_task_setting_retrains_instead_of_reusing_the_mismatched_file(tmp_path, monkeypatch):
    trained = []
    train = kv_quality.train_decoder
    monkeypatch.setattr(decoder_module, "train_decoder", lambda *a, **k: trained.append(a) or train(*a, **k))
    kv_quality.learned_decoder(tmp_path, training=BRIEF)
    kv_quality.learned_decoder(tmp_path, training=BRIEF)  # same settings: reused
    assert len(trained) == 1
    shorter = dataclasses.replace(kv_quality.TASK, length=8)
    model = kv_quality.learned_decoder(tmp_path, task=shorter, training=BRIEF)
    assert len(trained) == 2
    assert kv_quality.read_sidecar(tmp_path)["task"]["length"] == 8
    assert model.config.max_position_embeddings == 2 * shorter.prompt_len


def test_a_weights_file_that_disagrees_with_its_sidecar_is_retrained(tmp_path, monkeypatch):
    kv_quality.learned_decoder(tmp_path, training=BRIEF)
    sidecar = kv_quality.read_sidecar(tmp_path)
    (tmp_path / kv_quality.SIDECAR_NAME).write_text(json.dumps({**sidecar, "created_at": "edited"}))
    trained = []
    train = kv_quality.train_decoder
    monkeypatch.setattr(decoder_module, "train_decoder", lambda *a, **k: trained.append(a) or train(*a, **k))
    kv_quality.learned_decoder(tmp_path, training=BRIEF)
    assert len(trained) == 1


def test_a_decoder_that_did_not_learn_is_refused_and_not_kept(tmp_path):
    with pytest.raises(RuntimeError, match="held-out token accuracy"):
        kv_quality.learned_decoder(tmp_path, training=dataclasses.replace(BRIEF, min_accuracy=0.95))
    assert not (tmp_path / kv_quality.WEIGHTS_NAME).exists()
    assert kv_quality.read_sidecar(tmp_path) is None


def test_the_generation_row_fields_name_the_model_and_its_figures(decoder_dir):
    installed("int4")
    fields = kv_quality.kv_quality_fields("int4", 128, decoder_dir)
    assert set(fields) == {"kv_quality_model", "kv_quality_task", "kv_quality_prompts", "kv_task_accuracy",
                           "kv_task_accuracy_full", "kv_top1_agreement", "kv_kl_divergence", "kv_perplexity",
                           "kv_perplexity_full"}
    assert fields["kv_quality_model"] == kv_quality.MODEL_NAME
    assert fields["kv_quality_prompts"] == kv_quality.QUALITY_PROMPTS
    assert 0.0 <= fields["kv_task_accuracy"] <= 1.0 and 0.0 <= fields["kv_top1_agreement"] <= 1.0
    assert fields["kv_kl_divergence"] >= 0.0
