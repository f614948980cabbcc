"""Measuring one generation configuration in its worker process: build the model, take transformers'
generate() as the reference, prepare the target's generator, check its first step against the reference, time
whole greedy sequences under the stopping rule, and return one row (or its classified failure row)."""

from __future__ import annotations

import math
import time
from datetime import datetime

from hwbench_pipeline.bench.config_key import ATTENTION, DEFAULT_ATTENTION
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION
from hwbench_pipeline.bench.scenarios.generation.config import GenerationConfig
from hwbench_pipeline.bench.scenarios.generation.decode import (
    generate,
    leading_matches,
    sequence_figures,
    time_sequences,
)
from hwbench_pipeline.bench.scenarios.generation.inputs import (
    check_context,
    decoder_prompt_tokens,
    generation_inputs,
)
from hwbench_pipeline.bench.scenarios.generation.refusals import unsupported_reason
from hwbench_pipeline.bench.scenarios.rows import failure_fields, load_fields, measured_or_failure, now, series_fields
from hwbench_pipeline.bench.trackers.stats import summarize


def reference_generation(model, inputs: dict, new_tokens: int):
    """transformers' own greedy generate() on the fp32 model: (new tokens (batch, new), each step's logits).
    No end-of-sequence token stops it, so every run generates ``new_tokens``, as ours do."""
    import torch
    from transformers import GenerationConfig

    from hwbench_pipeline.bench.failures import BenchmarkFailure

    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    start = int(inputs["decoder_input_ids"][0, 0]) if encoder_decoder else None  # the prompt's own start token
    pad = getattr(model.config, "pad_token_id", None) or 0
    # plain greedy: generate() fills what a passed config leaves unset from the model's own generation config
    # (its end-of-sequence token, suppressed tokens, forced ids, repetition rules), so that one is swapped for a
    # bare config for the call
    bare = GenerationConfig(do_sample=False, pad_token_id=pad, decoder_start_token_id=start)
    own, model.generation_config = model.generation_config, bare
    try:
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, return_dict_in_generate=True,
                                 output_logits=True)
    finally:
        model.generation_config = own
    prompt = inputs["decoder_input_ids" if encoder_decoder else "input_ids"].shape[1]
    sequences = out.sequences[:, prompt:]  # an encoder-decoder returns its decoder prompt first
    if tuple(sequences.shape) != (sequences.shape[0], new_tokens):
        raise BenchmarkFailure("runtime_error", f"transformers' generate() returned {sequences.shape[1]} new tokens, "
                                                f"not {new_tokens}: the reference cannot be compared")
    return sequences, [logits.float() for logits in out.logits]


def measure_generation(cfg: GenerationConfig, run_id: str) -> dict:
    """Measure one configuration. Raises on failure (see :func:`run_generation_configuration`)."""
    import torch

    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.scenarios.inference.timing import check_agreement
    from hwbench_pipeline.bench.trackers.memory import current_rss_mb, rss_high_water_mb
    from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times

    started = now()
    target = parse_target(cfg.target)
    torch.set_num_threads(cfg.threads)
    backend = load_backend(target.backend)
    why = unsupported_reason(cfg, backend, target.device_kind)  # the plan refuses these; other callers too
    if why is not None:
        raise UnsupportedConfigurationError(why)
    models.import_model_code(cfg.family)
    baseline_rss = current_rss_mb()

    t0 = time.perf_counter()
    config = models.build_config(cfg.family, cfg.preset)
    check_context(config, cfg.seq_len, cfg.new_tokens, cfg.label)  # before building anything large
    model = models.build_generative_model(cfg.family, cfg.preset, seed=cfg.seed)
    inputs = generation_inputs(cfg.family, config, cfg.batch_size, cfg.seq_len, seed=cfg.seed, model=model)
    # the positions the decoder holds: its prompt as built (llava's image tokens included) and the new tokens
    decoder_prompt = decoder_prompt_tokens(inputs, config)
    check_context(config, decoder_prompt, cfg.new_tokens, cfg.label)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    reference_tokens, reference_logits = reference_generation(model, inputs, cfg.new_tokens)
    t0 = time.perf_counter()
    attention_ran = models.use_default_attention(model) if cfg.attention == DEFAULT_ATTENTION else ATTENTION
    extra = {"cache_precision": cfg.cache_precision, "residual_length": cfg.residual_length} \
        if target.backend == "torch" else {}
    generator = backend.prepare_generator(model, inputs, target.torch_device, cfg.spec,
                                          max_new_tokens=cfg.new_tokens, cache=cfg.cache, **extra)
    load_s = build_s + time.perf_counter() - t0 - generator.cache_write_s
    try:
        first = generate(generator, inputs, cfg.new_tokens)  # cold: compiles, first allocations
        bound = backend.tolerance(cfg.spec)
        if generator.precision != cfg.precision:
            bound = max(bound, backend.tolerance(generator.precision))
        generator.start(inputs)
        prompt_cache_bytes = generator.cache_bytes()
        agreement = check_agreement(generator.last_logits(), reference_logits[0], bound, cfg.label)
        decode_agreement = None
        if cfg.new_tokens > 1:
            # one decode step fed generate()'s own first tokens, so both see the same context: a cache, position
            # or mask bug shows here. A quantized cache's error is what it costs, recorded, not a failure.
            generator.next(reference_tokens[:, 0])
            decode_bound = bound if cfg.cache_precision == MODEL_CACHE_PRECISION else math.inf
            decode_agreement = check_agreement(generator.last_logits(), reference_logits[1], decode_bound,
                                               f"{cfg.label} (first decode step)")
        tokens = first.token_matrix()
        matched = leading_matches(tokens, reference_tokens)

        cpu_before = read_cpu_times()
        sequences, warmup, stop_reason = time_sequences(generator, inputs, cfg.new_tokens, cfg.rule)
        load = load_between(cpu_before, read_cpu_times())
        final_cache_bytes = generator.cache_bytes()
        device_peak = generator.peak_memory_mb()
        precision_ran, cache_precision_ran = generator.precision, generator.cache_precision
        cache_ran = generator.cache_implementation
    finally:
        generator.release()

    totals = [s.total_ms for s in sequences]
    contaminated = is_contaminated(load)
    held = cfg.batch_size * (decoder_prompt + cfg.new_tokens - 1)  # the last new token is never fed back
    figures = sequence_figures(sequences, cfg.batch_size, cfg.seq_len, cfg.new_tokens)
    peak_rss = rss_high_water_mb()  # before streaming: its servers' generators are not this row's memory
    streamed = stream(cfg, target, backend, model, figures, first.token_matrix()) if cfg.stream_clients else {}
    quality = cache_quality(cfg) if cfg.quality_dir and cfg.cache_precision != MODEL_CACHE_PRECISION else {}
    return {
        "run_id": run_id,
        **cfg.key_fields(),
        "precision_ran": precision_ran,
        "attention_ran": attention_ran,
        "backend": target.backend,
        "device_kind": target.device_kind,
        "status": "ok",
        "cache_ran": cache_ran,
        "cache_precision_ran": cache_precision_ran,
        "residual_length": cfg.residual_length,
        "params": int(params),
        "n_samples": len(sequences),
        "warmup_calls": warmup,
        "stop_reason": stop_reason,
        "ci_target": cfg.rule.ci_target,
        **summarize(totals),
        **figures,
        "first_sequence_ms": first.total_ms,
        "load_s": load_s,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": peak_rss,
        "device_peak_mb": device_peak,
        "kv_cache_bytes_prompt": prompt_cache_bytes,
        "kv_cache_bytes": final_cache_bytes,
        "kv_cache_bytes_per_token": final_cache_bytes / held if final_cache_bytes is not None else None,
        "max_abs_diff": agreement.max_abs_diff,
        "max_rel_diff": agreement.max_rel_diff,
        "mean_rel_diff": agreement.mean_rel_diff,
        "decode_max_rel_diff": decode_agreement.max_rel_diff if decode_agreement else None,
        "tokens_matching_reference": matched,
        **streamed,
        **quality,
        **load_fields(load, contaminated),
        **series_fields(totals, started),
    }


def cache_quality(cfg: GenerationConfig) -> dict:
    """What this cache precision costs a decoder that learned a task needing its cache (bench/kv_quality), or a
    note saying why it was not scored: the timing stands whatever happens here."""
    from hwbench_pipeline.bench.kv_quality import kv_quality_fields

    try:
        return kv_quality_fields(cfg.cache_precision, cfg.residual_length, cfg.quality_dir)
    except Exception as exc:  # noqa: BLE001 - quality is extra: its failure is a note on the row
        return {"kv_quality_note": f"not scored: {type(exc).__name__}: {exc}".splitlines()[0][:300]}


def stream(cfg: GenerationConfig, target, backend, model, figures: dict, tokens) -> dict:
    """The configuration streamed over the WebSocket server (bench/streaming.py), or a note saying why not: the
    in-process figures stand whatever happens here."""
    from hwbench_pipeline.bench.served_model import ServedModel
    from hwbench_pipeline.bench.streaming import streaming_fields

    if target.backend != "torch":
        return {"stream_note": f"not streamed: hwbench serve-generate serves torch targets, not {target.backend}"}
    if cfg.cache == "compiled" or cfg.cache_precision != MODEL_CACHE_PRECISION or cfg.precision == "int8":
        return {"stream_note": "not streamed: the server runs float weights with plain dynamic and static caches "
                               "(a compiled cache would compile per client; int8 weights and quantized caches are "
                               "not served)"}
    served = ServedModel(cfg.family, cfg.preset, cfg.target, target.torch_device, backend, model,
                         precision=cfg.spec, cache=cfg.cache)
    try:
        return streaming_fields(served, cfg.seq_len, cfg.new_tokens, seed=cfg.seed, batch=cfg.batch_size,
                                clients=cfg.stream_clients, in_process={**figures, "tokens": tokens})
    except Exception as exc:  # noqa: BLE001 - the streamed figures are extra: their failure is a note
        return {"stream_note": f"not streamed: {type(exc).__name__}: {exc}".splitlines()[0][:300]}


def generation_failure_row(cfg: GenerationConfig, run_id: str, failure_class: str, message: str,
                           started: datetime | None = None) -> dict:
    return failure_fields("generation", cfg.key_fields(), run_id, failure_class, message, started)


def run_generation_configuration(cfg: GenerationConfig, run_id: str) -> dict:
    """Measure one configuration; any failure becomes a classified failure row instead of an exception."""
    return measured_or_failure(measure_generation, generation_failure_row, cfg, run_id)
