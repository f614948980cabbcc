"""Generation takes any architecture of transformers that generates text, not only the curated families: built with
its own LM head from a scaled config or a checkpoint, decoded by our loop, checked against generate()."""

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GPT2Config, GPT2LMHeadModel

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.catalog.generative import generative_architectures, head_class
from hwbench_pipeline.bench.scenarios.generation import (
    GENERATION_RULE,
    GenerationConfig,
    generate,
    reference_generation,
    run_generation_configuration,
)
from hwbench_pipeline.bench.scenarios.generation.decode import leading_matches
from hwbench_pipeline.bench.scenarios.generation.inputs import generation_inputs
from hwbench_pipeline.cli import main

NEW = 6
RULE = dataclasses.replace(GENERATION_RULE, min_samples=3, max_seconds=0.4, warmup_max_seconds=0.2)


def test_the_registry_says_which_architectures_generate_and_with_which_head():
    assert head_class("gpt2") == AutoModelForCausalLM.__name__
    assert head_class("bart") == AutoModelForSeq2SeqLM.__name__
    assert head_class("deit") is None  # vision
    assert head_class("roberta") is None  # a text encoder, although transformers registers a causal-LM head for it
    names = generative_architectures()
    assert {"llama", "qwen2", "t5", "gpt2", "mistral", "mamba"} <= set(names) and len(names) > 100


# a plain decoder, an encoder-decoder, and a recurrent model whose cache holds states instead of keys and values
@pytest.mark.parametrize("model_type", ["gpt2", "bart", "mamba"])
def test_an_uncurated_architecture_decodes_greedily_as_generate_does(model_type):
    model = models.build_generative_model(model_type, "tiny")
    inputs = generation_inputs(model_type, model.config, 2, 10, seed=0, model=model)
    reference, logits = reference_generation(model, inputs, NEW)
    generator = load_backend("torch").prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=NEW,
                                                        cache="dynamic")
    sequence = generate(generator, inputs, NEW)
    assert leading_matches(sequence.token_matrix(), reference) == NEW
    generator.start(inputs)
    assert torch.allclose(generator.last_logits(), logits[0], atol=1e-4)
    assert generator.cache_bytes() > 0


def test_a_measured_row_of_an_uncurated_architecture_carries_its_figures():
    row = run_generation_configuration(GenerationConfig("mistral", "tiny", "cpu-torch", batch_size=1, seq_len=12,
                                                        new_tokens=NEW, threads=1, rule=RULE), "test")
    assert row["status"] == "ok", row.get("message")
    assert row["family"] == "mistral" and row["tokens_matching_reference"] == NEW
    assert row["ttft_p50_ms"] > 0 and row["itl_p50_ms"] > 0 and row["kv_cache_bytes"] > row["kv_cache_bytes_prompt"]


def test_a_checkpoint_of_a_causal_lm_decodes_with_its_own_weights(tmp_path):
    torch.manual_seed(1)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=97, n_positions=64)
    saved = GPT2LMHeadModel(config).eval()
    saved.save_pretrained(tmp_path / "ckpt")
    built = models.build_generative_model(str(tmp_path / "ckpt"), "as-is")
    assert torch.equal(built.lm_head.weight, saved.lm_head.weight)  # its weights, not a fresh draw
    row = run_generation_configuration(GenerationConfig(str(tmp_path / "ckpt"), "as-is", "cpu-torch", batch_size=1,
                                                        seq_len=8, new_tokens=NEW, threads=1, rule=RULE), "test")
    assert row["status"] == "ok", row.get("message")
    assert row["tokens_matching_reference"] == NEW


@pytest.mark.parametrize("model_type, expected", [
    ("deit", "deit (a vision model) does not generate text"),
    # a model that keeps no cache: each token would rerun the whole sequence, which is not a cached decode
    ("openai-gpt", "stored nothing in transformers' cache during the prefill"),
])
def test_what_cannot_be_decoded_is_a_classified_row_with_the_reason(model_type, expected):
    row = run_generation_configuration(GenerationConfig(model_type, "tiny", "cpu-torch", batch_size=1, seq_len=8,
                                                        new_tokens=NEW, threads=1, rule=RULE), "test")
    assert row["status"] == "failed" and row["failure_class"] == "unsupported_configuration"
    assert expected in row["message"]


def test_the_bench_command_refuses_a_model_that_does_not_generate_in_one_line(capsys):
    code = main(["bench", "--scenario", "generation", "--model", "deit", "--preset", "tiny", "--target", "cpu-torch"])
    assert code != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "needs a generative model" in err and "deit is not one" in err and "gpt2" in err

