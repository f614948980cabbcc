"""The generation scenario on tiny models: tokens come one by one and equal transformers' generate(), the
figures come from the timestamps, the cache bytes grow by what each token stores, and bad input is refused."""

import dataclasses

import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.failures import BenchmarkFailure
from hwbench_pipeline.bench.scenarios.generation import (
    GENERATION_RULE,
    GenerationConfig,
    GenerationScenario,
    generate,
    measure_generation,
    reference_generation,
    run_generation_configuration,
    sequence_figures,
)
from hwbench_pipeline.bench.scenarios.generation.decode import leading_matches
from hwbench_pipeline.bench.scenarios.generation.inputs import check_context, generation_inputs

NEW = 6
GENERATIVE = [name for name, spec in models.FAMILIES.items() if spec.generates_tokens]
QUICK_RULE = dataclasses.replace(GENERATION_RULE, min_samples=3, max_seconds=0.5, warmup_max_seconds=0.2)


def _prepared(family, batch=2, prompt=12, cache="dynamic"):
    model = models.build_model(family, "tiny")
    inputs = generation_inputs(family, model.config, batch, prompt, seed=0, model=model)
    reference, logits = reference_generation(model, inputs, NEW)
    generator = load_backend("torch").prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=NEW,
                                                        cache=cache)
    return generator, inputs, reference, logits


class Recording:
    """The real generator, with each call's argument and result kept (what was fed back, and when)."""

    def __init__(self, generator):
        self.generator, self.calls = generator, []

    def start(self, inputs):
        token = self.generator.start(inputs)
        self.calls.append(("start", None, token.clone()))
        return token

    def next(self, tokens):
        token = self.generator.next(tokens)
        self.calls.append(("next", tokens.clone(), token.clone()))
        return token


def test_tokens_come_one_by_one_each_fed_the_previous_and_the_text_equals_generate():
    generator, inputs, reference, _ = _prepared("llama")
    recording = Recording(generator)
    sequence = generate(recording, inputs, NEW)
    assert [name for name, _, _ in recording.calls] == ["start"] + ["next"] * (NEW - 1)
    for (_, _, produced), (_, fed, _) in zip(recording.calls, recording.calls[1:], strict=False):
        assert torch.equal(fed, produced)  # step k was fed exactly what step k-1 returned
    stamps = [sequence.start_ns, *sequence.token_ns]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert torch.equal(sequence.token_matrix(), reference)


@pytest.mark.parametrize("family", GENERATIVE)
def test_every_generative_family_decodes_greedily_as_generate_does(family):
    generator, inputs, reference, logits = _prepared(family)
    sequence = generate(generator, inputs, NEW)
    assert leading_matches(sequence.token_matrix(), reference) == NEW
    generator.start(inputs)
    assert torch.allclose(generator.last_logits(), logits[0], atol=1e-4)
    generator.next(reference[:, 0])  # one decode step fed generate()'s own first tokens
    assert torch.allclose(generator.last_logits(), logits[1], atol=1e-4)


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_a_second_sequence_starts_from_a_fresh_cache(cache):
    generator, inputs, reference, _ = _prepared("qwen2", cache=cache)
    first = generate(generator, inputs, NEW).token_matrix()
    second = generate(generator, inputs, NEW).token_matrix()
    assert torch.equal(first, reference) and torch.equal(second, reference)


def test_a_dynamic_cache_grows_by_what_each_token_stores():
    generator, inputs, _, _ = _prepared("llama", batch=2, prompt=12)
    config = generator.model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4  # keys and values, fp32
    generator.start(inputs)
    prompt_bytes = generator.cache_bytes()
    token = generator.start(inputs)
    for _ in range(NEW - 1):
        token = generator.next(token)
    assert prompt_bytes == 2 * 12 * per_token
    assert generator.cache_bytes() - prompt_bytes == 2 * (NEW - 1) * per_token
    assert generator.cache_precision == "fp32"


def test_figures_come_from_the_timestamps():
    generator, inputs, _, _ = _prepared("llama", batch=2)
    sequences = [generate(generator, inputs, NEW) for _ in range(3)]
    figures = sequence_figures(sequences, batch_size=2, prompt_tokens=12, new_tokens=NEW)
    ttft = sorted(s.ttft_ms for s in sequences)
    assert figures["ttft_p50_ms"] == pytest.approx(ttft[1])
    assert len(figures["itl_samples_ms"]) == 3 * (NEW - 1)
    assert figures["decode_tokens_per_s"] == pytest.approx(2 / (figures["itl_p50_ms"] / 1e3))
    totals = sorted(s.total_ms for s in sequences)
    assert figures["tokens_per_s"] == pytest.approx(2 * NEW / (totals[1] / 1e3))


def test_a_measured_row_carries_the_key_the_figures_and_the_agreement_with_generate():
    cfg = GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW, threads=1,
                           rule=QUICK_RULE)
    row = measure_generation(cfg, "run-1")
    assert row["status"] == "ok" and row["new_tokens"] == NEW and row["cache_implementation"] == "dynamic"
    assert row["tokens_matching_reference"] == NEW and row["max_rel_diff"] < 1e-4
    assert row["n_samples"] >= 3 and len(row["ttft_samples_ms"]) == row["n_samples"]
    assert row["ttft_p50_ms"] <= row["max_ms"] and row["kv_cache_bytes"] > row["kv_cache_bytes_prompt"]
    assert row["attention_ran"] == "sdpa" and row["cache_precision_ran"] == "fp32"


def test_a_prompt_beyond_the_context_is_refused_naming_both():
    config = models.build_config("llama", "small")  # 256 positions
    with pytest.raises(BenchmarkFailure, match="512 \\+ 64 new tokens = 576 positions, beyond the model's context "
                                               "of 256"):
        check_context(config, 512, 64, "llama/small")
    cfg = GenerationConfig("llama", "small", "cpu-torch", batch_size=1, seq_len=512, new_tokens=64, rule=QUICK_RULE)
    row = run_generation_configuration(cfg, "run-1")
    assert row["failure_class"] == "unsupported_configuration" and "context of 256" in row["message"]


def test_an_encoder_decoder_is_refused_a_static_cache_with_the_reason():
    model = models.build_model("t5", "tiny")
    inputs = generation_inputs("t5", model.config, 1, 8, seed=0, model=model)
    with pytest.raises(BenchmarkFailure, match="encoder-decoder"):
        load_backend("torch").prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=4, cache="static")


def test_bad_configurations_are_refused_when_made():
    with pytest.raises(ValueError, match="positive"):
        GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=0)
    with pytest.raises(ValueError, match="residual_length"):
        GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=4, residual_length=-1)


def test_the_plan_refuses_a_quantized_cache_off_torch_and_keeps_each_backends_caches(tmp_path):
    from hwbench_pipeline.bench.profiles import load_profile

    path = tmp_path / "gen.yaml"
    path.write_text("families: [llama]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [8]\nprecisions: [fp32]\n"
                    "generation:\n  families: [llama]\n  presets: [tiny]\n  batch_sizes: [1]\n  prompt_lens: [8]\n"
                    "  new_tokens: 4\n  caches: [dynamic, static]\n  cache_precisions: [model, int4]\n")
    profile = load_profile(str(path))
    torch_plan = GenerationScenario().plan(profile, "cpu-torch", "run-1")
    assert sorted((c.cache, c.cache_precision) for c in torch_plan.runnable) == [
        ("dynamic", "int4"), ("dynamic", "model"), ("static", "int4"), ("static", "model")]
    ort_plan = GenerationScenario().plan(profile, "cpu-onnxruntime", "run-1")
    assert [(c.cache, c.cache_precision) for c in ort_plan.runnable] == [("past-io", "model")]
    assert [r["cache_precision"] for r in ort_plan.refused] == ["int4"]
    assert "torch targets only" in ort_plan.refused[0]["message"]


def test_a_configuration_asked_to_stream_is_measured_streamed_too_with_its_overhead():
    cfg = GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW, threads=1,
                           rule=QUICK_RULE, stream_clients=(1, 2))
    row = measure_generation(cfg, "run-1")
    assert row["stream_clients"] == [1, 2] and row["stream_tokens_match"] is True, row.get("stream_note")
    assert len(row["stream_ttft_p50_ms"]) == 2 and min(row["stream_ttft_p50_ms"]) > 0
    assert row["stream_overhead_ttft_ms"] == pytest.approx(row["stream_ttft_p50_ms"][0] - row["ttft_p50_ms"])


def test_a_quantized_cache_is_not_streamed_and_the_row_says_why():
    cfg = GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW, threads=1,
                           cache_precision="int8", rule=QUICK_RULE, stream_clients=(1,))
    row = measure_generation(cfg, "run-1")
    assert "stream_clients" not in row and row["stream_note"].startswith("not streamed: the server runs")


@pytest.mark.slow
def test_the_compiled_cache_decodes_as_generate_does_and_never_recompiles_once_warm():
    from torch._dynamo.utils import counters

    generator, inputs, reference, _ = _prepared("llama", batch=1, cache="compiled")
    assert torch.equal(generate(generator, inputs, NEW).token_matrix(), reference)  # compiles the decode step
    compiled = counters["stats"]["unique_graphs"]
    assert compiled > 0
    for _ in range(3):  # a later sequence reuses the compiled step: no new graph, the same tokens
        assert torch.equal(generate(generator, inputs, NEW).token_matrix(), reference)
    assert counters["stats"]["unique_graphs"] == compiled


def test_one_new_token_has_no_inter_token_latency_and_its_progress_line_says_so():
    cfg = GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=1, threads=1,
                           rule=QUICK_RULE)
    row = measure_generation(cfg, "run-1")
    assert row["status"] == "ok" and row["itl_p50_ms"] is None and row["decode_max_rel_diff"] is None
    line = GenerationScenario().describe(cfg, row)
    assert "ITL" not in line and "TTFT p50" in line


def test_the_reference_ignores_the_models_end_of_sequence_token():
    model = models.build_model("llama", "tiny")
    inputs = generation_inputs("llama", model.config, 1, 12, seed=0, model=model)
    tokens, _ = reference_generation(model, inputs, NEW)
    model.generation_config.eos_token_id = int(tokens[0, 1])  # what greedy picks at the second step
    again, logits = reference_generation(model, inputs, NEW)
    assert torch.equal(again, tokens) and len(logits) == NEW  # neither stopped nor masked there
    assert model.generation_config.eos_token_id == int(tokens[0, 1])  # the model's own settings are put back


def test_a_kv_precision_off_torch_is_refused_whoever_calls_the_measurement():
    cfg = GenerationConfig("llama", "tiny", "cpu-onnxruntime", batch_size=1, seq_len=8, new_tokens=NEW,
                           cache="past-io", cache_precision="int4", rule=QUICK_RULE)
    row = run_generation_configuration(cfg, "run-1")
    assert row["failure_class"] == "unsupported_configuration" and "torch targets only" in row["message"]


def test_a_quantized_cache_row_carries_what_that_precision_costs_the_learned_decoder(tmp_path):
    cfg = GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW, threads=1,
                           cache_precision="int2", rule=QUICK_RULE, quality_dir=str(tmp_path))
    row = measure_generation(cfg, "run-1")
    assert row["cache_precision_ran"] == "quanto-int2" and row["kv_quality_model"] == "llama-copy"
    assert row["kv_task_accuracy_full"] > 0.9  # the decoder learned its task: its quality figures mean something
    assert row["kv_kl_divergence"] > 0 and row["kv_top1_agreement"] < 1  # 2 bits cost it something
    plain = measure_generation(GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8,
                                                new_tokens=NEW, threads=1, rule=QUICK_RULE,
                                                quality_dir=str(tmp_path)), "run-1")
    assert "kv_quality_model" not in plain  # the full-precision cache is the reference, not scored against itself
