"""KV-cache precision for the torch generation path: the plain cache holds the model's dtype, each quantized width
really shrinks the measured bytes, decoding through it stays close to the plain cache's, and what cannot run
says why."""

from __future__ import annotations

import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends.torch import kv_cache
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError

QUANTIZED = ("int8", "int4", "int3", "int2")


@pytest.fixture(scope="module")
def llama() -> torch.nn.Module:
    model = models.build_model("llama", "tiny")
    models.use_default_attention(model)
    return model


def prompt(model: torch.nn.Module, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (1, length), generator=generator)


def fp32_bytes_per_token(model: torch.nn.Module) -> int:
    """What one token costs in a plain fp32 cache, from the config: keys and values of every layer."""
    config = model.config
    return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4


def step(model: torch.nn.Module, cache: kv_cache.Cache, ids: torch.Tensor) -> torch.Tensor:
    """One forward through the cache (positions follow from what it holds); the last position's logits."""
    with torch.inference_mode():
        return model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]


def greedy(model: torch.nn.Module, cache: kv_cache.Cache, ids: torch.Tensor, new_tokens: int):
    """Greedy decoding token by token: the generated tokens and the logits of each step."""
    logits = [step(model, cache, ids)]
    tokens = [logits[-1].argmax(-1)]
    for _ in range(new_tokens - 1):
        logits.append(step(model, cache, tokens[-1][:, None]))
        tokens.append(logits[-1].argmax(-1))
    return torch.cat(tokens), torch.cat(logits)


def test_a_plain_dynamic_cache_holds_exactly_the_fp32_keys_and_values_of_its_tokens(llama):
    cache = kv_cache.make_cache(llama, "model", "dynamic", max_cache_len=64, residual_length=0)
    step(llama, cache, prompt(llama, 24))
    assert kv_cache.cache_bytes(cache) == 24 * fp32_bytes_per_token(llama)
    assert kv_cache.cache_precision_ran(cache) == "fp32"


def test_a_static_cache_holds_its_whole_preallocated_length_whatever_it_used(llama):
    cache = kv_cache.make_cache(llama, "model", "static", max_cache_len=80, residual_length=0)
    step(llama, cache, prompt(llama, 16))
    # plus each layer's token counter, an int64 tensor (kept as a tensor for torch.compile)
    assert kv_cache.cache_bytes(cache) == 80 * fp32_bytes_per_token(llama) + 8 * llama.config.num_hidden_layers
    assert kv_cache.cache_settings(cache) == {"cache": "static", "max_cache_len": 80}


def test_a_bf16_model_runs_a_bf16_plain_cache_of_half_the_bytes():
    model = models.build_model("llama", "tiny").to(torch.bfloat16)
    cache = kv_cache.make_cache(model, "model", "dynamic", max_cache_len=32, residual_length=0)
    step(model, cache, prompt(model, 16))
    assert kv_cache.cache_precision_ran(cache) == "bf16"
    assert kv_cache.cache_bytes(cache) == 16 * fp32_bytes_per_token(model) // 2


@pytest.mark.parametrize(
    ("width", "at_most"),
    # measured on llama/tiny (2 kv heads x 16, groups of 32 with an fp32 scale and zero point each): 0.31, 0.19,
    # 0.19, 0.13 of fp32; int3 packs 10 values per int32, so at groups of 32 it takes int4's room
    [("int8", 0.35), ("int4", 0.25), ("int3", 0.25), ("int2", 0.15)],
)
def test_a_quantized_cache_of_a_long_context_measures_a_fraction_of_the_fp32_bytes(llama, width, at_most):
    ids = prompt(llama, 128)
    plain = kv_cache.make_cache(llama, "model", "dynamic", max_cache_len=160, residual_length=0)
    quantized = kv_cache.make_cache(llama, width, "dynamic", max_cache_len=160, residual_length=4)
    greedy(llama, plain, ids, 9)
    greedy(llama, quantized, ids, 9)  # 8 decoded tokens: two flushes of the 4-token residual
    assert quantized.get_seq_length() == plain.get_seq_length() == 136
    spec = kv_cache.KV_CACHE_BACKENDS[width]
    assert kv_cache.cache_precision_ran(quantized) == f"{spec.backend}-{width}"
    assert kv_cache.cache_bytes(quantized) < at_most * kv_cache.cache_bytes(plain)
    settings = kv_cache.cache_settings(quantized)
    assert (settings["backend"], settings["nbits"], settings["residual_length"]) == (spec.backend, spec.nbits, 4)


@pytest.mark.parametrize(
    ("width", "bytes_per_group"),
    # a group is 32 values (llama/tiny: 2 kv heads x 16 per token) with an fp32 scale and zero point (8 bytes):
    # 8 bits one byte each; 4 bits two to a byte; 3 bits ten to an int32 (HQQ), so four int32; 2 bits four a byte
    [("int8", 32 + 8), ("int4", 16 + 8), ("int3", 4 * 4 + 8), ("int2", 8 + 8)],
)
def test_the_measured_bytes_are_the_backends_packed_values_scales_and_zero_points(llama, width, bytes_per_group):
    cache = kv_cache.make_cache(llama, width, "dynamic", max_cache_len=40, residual_length=0)
    step(llama, cache, prompt(llama, 40))
    config = llama.config
    groups = 2 * config.num_hidden_layers * 40 * config.num_key_value_heads * config.head_dim // 32
    assert kv_cache.group_size(llama) == 32
    assert kv_cache.cache_bytes(cache) == groups * bytes_per_group


def test_narrower_widths_never_hold_more_bytes(llama):
    ids = prompt(llama, 96)
    sizes = []
    for width in QUANTIZED:
        cache = kv_cache.make_cache(llama, width, "dynamic", max_cache_len=96, residual_length=0)
        step(llama, cache, ids)
        sizes.append(kv_cache.cache_bytes(cache))
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] > sizes[-1]


def test_decoding_through_int8_agrees_with_the_plain_cache_and_error_grows_as_the_width_shrinks(llama):
    ids = prompt(llama, 64)
    reference, reference_logits = greedy(
        llama, kv_cache.make_cache(llama, "model", "dynamic", max_cache_len=96, residual_length=0), ids, 24
    )
    agreement, error = {}, {}
    for width in QUANTIZED:
        cache = kv_cache.make_cache(llama, width, "dynamic", max_cache_len=96, residual_length=4)
        tokens, logits = greedy(llama, cache, ids, 24)
        # the prompt's own forward attends over unquantized states: its token never depends on the cache
        assert tokens[0] == reference[0]
        agreement[width] = (tokens == reference).float().mean().item()
        # the first decode step is the first to read the quantized prompt back; same inputs, so only the
        # cache's rounding moves the logits
        error[width] = (logits[1] - reference_logits[1]).abs().max().item()
    # llama/tiny's random logits are close to ties, so only the widest width is held to (near) full agreement
    assert agreement["int8"] >= 0.9
    assert agreement["int2"] <= agreement["int8"]
    assert 0 < error["int8"] < error["int4"] < error["int2"]
    assert error["int8"] < error["int3"] < error["int2"]


def test_the_prompt_is_quantized_at_once_even_when_shorter_than_the_residual_length(llama):
    # transformers 5.24's QuantizedCache quantizes the whole first update; residual_length only bounds how many
    # decoded tokens wait unquantized
    cache = kv_cache.make_cache(llama, "int4", "dynamic", max_cache_len=64, residual_length=64)
    step(llama, cache, prompt(llama, 16))
    assert kv_cache.cache_bytes(cache) < 0.4 * 16 * fp32_bytes_per_token(llama)


def test_decoded_tokens_stay_unquantized_until_the_residual_length_is_reached(llama):
    per_token = fp32_bytes_per_token(llama)
    cache = kv_cache.make_cache(llama, "int4", "dynamic", max_cache_len=64, residual_length=6)
    tokens = [step(llama, cache, prompt(llama, 32)).argmax(-1)]
    quantized_prompt = kv_cache.cache_bytes(cache)
    for held in range(1, 6):  # each decoded token adds exactly its fp32 keys and values
        tokens.append(step(llama, cache, tokens[-1][:, None]).argmax(-1))
        assert kv_cache.cache_bytes(cache) == quantized_prompt + held * per_token
    step(llama, cache, tokens[-1][:, None])  # the 6th reaches residual_length: all 38 tokens are quantized
    assert cache.get_seq_length() == 38
    assert kv_cache.cache_bytes(cache) < quantized_prompt + 6 * per_token
    assert kv_cache.cache_bytes(cache) < 0.4 * 38 * per_token


def test_an_unused_cache_has_no_precision_to_report(llama):
    with pytest.raises(ValueError, match="holds nothing yet"):
        kv_cache.cache_precision_ran(kv_cache.make_cache(llama, "int8", "dynamic", max_cache_len=8, residual_length=0))


def test_unknown_names_list_the_known_ones(llama):
    reason = kv_cache.cache_precision_reason("int5", llama)
    assert "'int5'" in reason and all(name in reason for name in kv_cache.KV_CACHE_BACKENDS)
    with pytest.raises(ValueError, match="known: model, int8, int4, int3, int2"):
        kv_cache.make_cache(llama, "int5", "dynamic", max_cache_len=8, residual_length=0)
    with pytest.raises(ValueError, match="known: dynamic, static"):
        kv_cache.make_cache(llama, "int4", "paged", max_cache_len=8, residual_length=0)
    with pytest.raises(ValueError, match="residual_length"):
        kv_cache.make_cache(llama, "int4", "dynamic", max_cache_len=8, residual_length=-1)


def test_a_static_quantized_cache_is_an_unsupported_configuration(llama):
    assert kv_cache.cache_precision_reason("int4", llama, cache="dynamic") is None
    assert "static" in kv_cache.cache_precision_reason("int4", llama, cache="static")
    with pytest.raises(UnsupportedConfigurationError, match="no preallocated quantized cache"):
        kv_cache.make_cache(llama, "int4", "static", max_cache_len=8, residual_length=0)


def test_a_model_that_is_not_decoder_only_is_refused_with_the_reason():
    for family in ("bert", "t5"):
        model = models.build_model(family, "tiny")
        assert "decoder-only" in kv_cache.cache_precision_reason("int8", model)
        assert "decoder-only" in kv_cache.cache_precision_reason("model", model)
        with pytest.raises(UnsupportedConfigurationError, match="decoder-only"):
            kv_cache.make_cache(model, "int8", "dynamic", max_cache_len=8, residual_length=0)


def test_a_missing_backend_package_names_the_package_and_how_to_install_it(llama, monkeypatch):
    monkeypatch.setattr(kv_cache, "backend_available", lambda spec: spec.backend != "hqq")
    assert "pip install hqq==0.2.8.post1" in kv_cache.cache_precision_reason("int8", llama)
    assert kv_cache.cache_precision_reason("int4", llama) is None  # quanto's widths still run
    assert kv_cache.cache_precision_reason("model", llama) is None
    with pytest.raises(BenchmarkFailure, match="hqq") as raised:
        kv_cache.make_cache(llama, "int3", "dynamic", max_cache_len=8, residual_length=0)
    assert raised.value.failure_class == "missing_dependency"


def test_quanto_widths_need_a_compiler_for_their_extension(llama, monkeypatch):
    monkeypatch.setattr(kv_cache, "compiler", lambda: None)
    assert "C++ compiler" in kv_cache.cache_precision_reason("int2", llama)
    assert kv_cache.cache_precision_reason("int8", llama) is None  # HQQ builds nothing


def test_prepare_does_the_backends_one_time_work_outside_any_measurement():
    assert kv_cache.prepare("model") == 0.0
    for width in QUANTIZED:
        assert kv_cache.prepare(width) > 0
