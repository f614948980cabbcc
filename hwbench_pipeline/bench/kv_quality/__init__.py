"""What a quantized KV cache costs a decoder that has learned something: a copy task, and a model trained on it.

The catalog's models have random weights, so how far a quantized cache moves their next-token distribution says
nothing about answers. Here a small llama-architecture decoder is trained (once, kept on disk) on a **copy
task**: a prompt is ``BOS x1 .. xL SEP`` with ``x`` drawn at random from ``symbols`` content tokens, and the
answer is ``x1 .. xL`` again. Every answer token after the first can only come from attending over the prompt's
keys and values, which a quantized cache holds quantized (transformers' ``QuantizedCache`` quantizes the prompt
at once, whatever ``residual_length`` is; see backends/torch/kv_cache.py), so the cache precision decides the
answers. The data is drawn by code from a seed: that seed, the task settings and the training settings are its
whole provenance, and they are kept beside the weights.

:func:`kv_cache_quality` decodes a fixed set of held-out prompts, each on its own (batch 1: HQQ's quantization
groups run across the batch, so a batch would mix prompts), once through the full-precision cache and once
through the cache under test, with the model called step by step as the generation scenario's torch loop does.

Modules: ``task`` (the copy task and its held-out prompts), ``decoder`` (training, keeping and reusing the
decoder), ``measure`` (the quality figures); :func:`kv_quality_fields` gives a generation row's fields.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.kv_quality.decoder import (
    DECODER_SUBDIR,
    MODEL_NAME,
    SIDECAR_NAME,
    TRAINING,
    WEIGHTS_NAME,
    Training,
    decoder_config,
    learned_decoder,
    read_sidecar,
    torch_threads,
    train_decoder,
)
from hwbench_pipeline.bench.kv_quality.measure import QUALITY_THREADS, kv_cache_quality
from hwbench_pipeline.bench.kv_quality.task import (
    EVAL_SEED,
    QUALITY_PROMPTS,
    TASK,
    CopyPrompt,
    CopyTask,
    held_out_prompts,
)

__all__ = [
    "DECODER_SUBDIR", "EVAL_SEED", "MODEL_NAME", "QUALITY_PROMPTS", "QUALITY_THREADS", "SIDECAR_NAME", "TASK",
    "TRAINING", "WEIGHTS_NAME", "CopyPrompt", "CopyTask", "Training", "decoder_config", "held_out_prompts",
    "kv_cache_quality", "kv_quality_fields", "learned_decoder", "read_sidecar", "torch_threads", "train_decoder",
]


@functools.cache
def _fields(cache_precision: str, residual_length: int, directory: str) -> dict[str, Any]:
    model = learned_decoder(directory)
    quality = kv_cache_quality(model, cache_precision, residual_length=residual_length,
                               prompts=held_out_prompts(TASK))
    return {
        "kv_quality_model": MODEL_NAME,
        "kv_quality_task": f"copy-{TASK.length}-of-{TASK.symbols}",
        "kv_quality_prompts": quality["prompts"],
        "kv_task_accuracy": quality["task_accuracy"],
        "kv_task_accuracy_full": quality["task_accuracy_full"],
        "kv_top1_agreement": quality["top1_agreement"],
        "kv_kl_divergence": quality["kl_divergence"],
        "kv_perplexity": quality["perplexity"],
        "kv_perplexity_full": quality["perplexity_full"],
    }


def kv_quality_fields(cache_precision: str, residual_length: int, directory: str | Path) -> dict[str, Any]:
    """Row fields for a generation configuration: the learned copy decoder kept in ``directory`` (trained there
    on first use, ~10-15 s) scored under ``cache_precision`` at ``residual_length`` over QUALITY_PROMPTS held-out
    prompts (kv_cache_quality's figures, prefixed ``kv_``), plus which model and task they come from. Computed
    once per process for each argument set. Raises what make_cache raises for a precision that cannot run."""
    return dict(_fields(cache_precision, residual_length, str(Path(directory).resolve())))
