"""Greedy decoding with a KV cache on the exported-graph runtimes (ONNX Runtime past-io, OpenVINO stateful),
checked against transformers' own ``generate`` on the catalog's tiny decoders."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends.decoder_graph import cache_layout
from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV
from hwbench_pipeline.bench.failures import BenchmarkFailure
from hwbench_pipeline.bench.scenarios.generation import reference_generation

#: runtime -> (backend module, its one cache implementation)
RUNTIMES = {
    "onnxruntime": ("hwbench_pipeline.bench.backends.onnxruntime.backend", "past-io"),
    "openvino": ("hwbench_pipeline.bench.backends.openvino.backend", "stateful"),
}
NEW_TOKENS = 6
PROMPT = 7


def _backend(runtime: str):
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not importable here")
    module = __import__(RUNTIMES[runtime][0], fromlist=["BACKEND"])
    return module.BACKEND


@pytest.fixture(scope="module")
def tiny() -> Callable[..., torch.nn.Module]:
    """The catalog's tiny model of a family, with eager attention (as built) or switched to SDPA (the generation
    scenario's default attention)."""
    built: dict[tuple[str, str], torch.nn.Module] = {}

    def get(family: str, attention: str = "eager") -> torch.nn.Module:
        if (family, attention) not in built:
            model = models.build_model(family, "tiny")
            if attention != "eager":
                assert models.use_default_attention(model) == attention
            built[family, attention] = model
        return built[family, attention]

    return get


@contextlib.contextmanager
def _export_cache(directory: Path) -> Iterator[None]:
    """HWBENCH_EXPORT_CACHE set to ``directory`` within the block (a module-scoped fixture has no monkeypatch)."""
    saved = os.environ.get(EXPORT_CACHE_ENV)
    os.environ[EXPORT_CACHE_ENV] = str(directory)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(EXPORT_CACHE_ENV, None)
        else:
            os.environ[EXPORT_CACHE_ENV] = saved


@pytest.fixture(scope="module")
def generator(tiny, tmp_path_factory) -> Iterator[Callable[..., object]]:
    """One prepared fp32 generator per (runtime, family), shared by the tests (exports take seconds). Each was
    exported into an export cache of its own , as a configuration's first process does."""
    made: dict[tuple[str, str, str], object] = {}

    def get(runtime: str, family: str, attention: str = "eager"):
        key = runtime, family, attention
        if key not in made:
            backend = _backend(runtime)
            model = tiny(family, attention)
            inputs = models.make_inputs(family, model.config, 1, PROMPT, seed=0, model=model)
            directory = tmp_path_factory.mktemp(f"export-cache-{runtime}-{family}-{attention}")
            with _export_cache(directory):
                made[key] = backend.prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=NEW_TOKENS,
                                                      cache=RUNTIMES[runtime][1])
            made[key].export_cache_directory = directory  # for the export cache test
        return made[key]

    yield get
    for made_generator in made.values():
        made_generator.release()


def _decode(gen, inputs: dict[str, torch.Tensor], steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(batch, steps) greedy tokens and each step's logits."""
    tokens = [gen.start(inputs)]
    logits = [gen.last_logits()]
    for _ in range(steps - 1):
        tokens.append(gen.next(tokens[-1]))
        logits.append(gen.last_logits())
    return torch.stack(tokens, 1), logits


def _reference(model: torch.nn.Module, inputs: dict[str, torch.Tensor], steps: int):
    """(new tokens, each step's logits) of transformers' plain greedy generate(), as the scenario checks against."""
    return reference_generation(model, inputs, steps)


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize(("family", "batch", "padded", "attention"),
                         [("llama", 1, False, "eager"), ("llama", 2, False, "eager"), ("llama", 2, True, "eager"),
                          ("qwen2", 1, False, "eager"), ("qwen2", 2, False, "eager"),
                          # SDPA, the scenario's default: OpenVINO's SDPA gave NaN on padded prompts before the
                          # graph passed its own finite mask (decoder_graph.attention_bias)
                          ("llama", 2, True, "sdpa")])
def test_greedy_tokens_and_logits_equal_transformers_generate(generator, tiny, runtime, family, batch, padded,
                                                               attention):
    model = tiny(family, attention)
    inputs = models.make_inputs(family, model.config, batch, PROMPT, seed=3, model=model)
    if padded:  # a left-padded second prompt: the mask and the position ids must follow it
        inputs["attention_mask"][1, :3] = 0
    gen = generator(runtime, family, attention)
    reference_tokens, reference_logits = _reference(model, inputs, NEW_TOKENS)
    tokens, logits = _decode(gen, inputs, NEW_TOKENS)
    assert tokens.dtype == torch.int64 and tokens.shape == (batch, NEW_TOKENS)
    assert torch.equal(tokens, reference_tokens)
    for step, (ours, theirs) in enumerate(zip(logits, reference_logits, strict=True)):
        assert ours.dtype == torch.float32 and ours.shape == theirs.shape
        scale = theirs.abs().max().item()
        assert (ours - theirs).abs().max().item() <= 1e-4 * scale, f"step {step} logits differ"
    assert gen.precision == "fp32" and gen.cache_precision == "fp32"
    assert gen.cache_implementation == RUNTIMES[runtime][1]
    assert gen.from_cache is False and gen.peak_memory_mb() is None


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_cache_bytes_grow_by_a_key_and_value_vector_per_layer_kv_head_and_sequence_per_token(generator, tiny,
                                                                                            runtime):
    model = tiny("llama")
    layout = cache_layout(model)
    batch = 2
    per_token = 2 * layout.layers * layout.kv_heads * layout.head_dim * 4 * batch
    assert layout.bytes_per_token(batch) == per_token
    gen = generator(runtime, "llama")
    inputs = models.make_inputs("llama", model.config, batch, PROMPT, seed=1, model=model)
    token = gen.start(inputs)
    if gen.cache_bytes() is None:
        pytest.skip(f"{runtime} keeps this cache inside a fused attention node: its size is not exposed")
    seen = [gen.cache_bytes()]
    for _ in range(3):
        token = gen.next(token)
        seen.append(gen.cache_bytes())
    assert seen == [per_token * (PROMPT + step) for step in range(4)]
    gen.start(inputs)  # a fresh cache holds the prompt only
    assert gen.cache_bytes() == per_token * PROMPT


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_start_after_another_sequence_begins_with_a_fresh_cache(generator, tiny, runtime):
    model = tiny("qwen2")
    gen = generator(runtime, "qwen2")
    first = models.make_inputs("qwen2", model.config, 2, PROMPT, seed=5, model=model)
    other = models.make_inputs("qwen2", model.config, 1, 4, seed=6, model=model)  # another batch and length
    tokens, logits = _decode(gen, first, NEW_TOKENS)
    _decode(gen, other, NEW_TOKENS + 2)
    again, logits_again = _decode(gen, first, NEW_TOKENS)
    assert torch.equal(tokens, again)
    assert torch.equal(logits[-1], logits_again[-1])


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_precision_the_decode_path_does_not_run_is_refused_as_unsupported_configuration(tiny, runtime):
    backend = _backend(runtime)
    model = tiny("llama")
    inputs = models.make_inputs("llama", model.config, 1, PROMPT, seed=0, model=model)
    for precision in ("int8-static", "fp16", "fp64"):
        with pytest.raises(BenchmarkFailure, match=r"precision|fp64") as caught:
            backend.prepare_generator(model, inputs, "cpu", precision, max_new_tokens=2, cache=RUNTIMES[runtime][1])
        assert caught.value.failure_class == "unsupported_configuration"
    with pytest.raises(BenchmarkFailure, match="cache") as caught:
        backend.prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=2, cache="static")
    assert caught.value.failure_class == "unsupported_configuration"


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize(("family", "reason"), [("t5", "encoder-decoder"), ("bert", "cannot generate")])
def test_a_model_that_is_not_a_decoder_only_causal_lm_is_refused_as_unsupported_configuration(runtime, family,
                                                                                             reason):
    backend = _backend(runtime)
    model = models.build_model(family, "tiny")
    inputs = models.make_inputs(family, model.config, 1, PROMPT, seed=0, model=model)
    with pytest.raises(BenchmarkFailure, match=reason) as caught:
        backend.prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=2, cache=RUNTIMES[runtime][1])
    assert caught.value.failure_class == "unsupported_configuration"
    assert type(model).__name__ in str(caught.value)


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_each_runtime_offers_its_cache_on_the_cpu_only(runtime):
    backend = _backend(runtime)
    assert backend.generation_caches("cpu") == (RUNTIMES[runtime][1],)
    assert backend.generation_caches("cuda") == ()


def test_openvino_reports_the_kv_cache_precision_it_was_compiled_with(generator):
    _backend("openvino")
    gen = generator("openvino", "llama")
    # set to the model's own f32: the plugin's default on x86 is u8, which a fused attention would store
    assert gen.kv_cache_precision_property == "fp32"
    if not gen.fused_attention:  # the cache is the state tensors: their type is what ran
        assert gen.cache_precision == "fp32"


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_second_process_of_the_configuration_loads_the_exported_graph_from_the_export_cache(generator, tiny,
                                                                                             monkeypatch, runtime):
    first = generator(runtime, "llama")  # exported into its own export cache
    backend = _backend(runtime)
    model = tiny("llama")
    inputs = models.make_inputs("llama", model.config, 2, PROMPT, seed=2, model=model)
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(first.export_cache_directory))
    second = backend.prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=3, cache=RUNTIMES[runtime][1])
    try:
        assert (first.from_cache, second.from_cache) == (False, True)
        tokens, _ = _decode(second, inputs, 3)
        assert torch.equal(tokens, _decode(first, inputs, 3)[0])
        assert torch.equal(tokens, _reference(model, inputs, 3)[0])
    finally:
        second.release()


def test_onnxruntime_int8_dynamic_runs_int8_matmuls_and_stays_near_fp32(generator, tiny, monkeypatch, tmp_path):
    backend = _backend("onnxruntime")
    monkeypatch.chdir(tmp_path)  # the quantization tools' scratch files must not land in the working directory
    model = tiny("llama")
    inputs = models.make_inputs("llama", model.config, 1, PROMPT, seed=0, model=model)
    # derived from the fp32 export in the configuration's export cache, as a later process would
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(generator("onnxruntime", "llama").export_cache_directory))
    gen = backend.prepare_generator(model, inputs, "cpu", "int8-dynamic", max_new_tokens=2, cache="past-io")
    try:
        assert gen.from_cache and gen.precision == "int8" and gen.heavy_ops.get("int8", 0) > 0
        _, logits = _decode(gen, inputs, 2)
        reference = _reference(model, inputs, 2)[1]
        scale = reference[0].abs().max().item()
        assert (logits[0] - reference[0]).abs().max().item() <= backend.tolerance("int8-dynamic") * scale
        assert gen.cache_precision == "fp32"  # weights are quantized, the cache is not
    finally:
        gen.release()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_prompt_with_an_image_is_refused_rather_than_decoded_without_it(runtime):
    model = models.build_model("llava", "tiny")
    inputs = models.make_inputs("llava", model.config, 1, PROMPT, seed=0, model=model)
    with pytest.raises(BenchmarkFailure, match="also has pixel_values") as refused:
        _backend(runtime).prepare_generator(model, inputs, "cpu", "fp32", max_new_tokens=2,
                                            cache=_backend(runtime).generation_caches("cpu")[0])
    assert refused.value.failure_class == "unsupported_configuration"
