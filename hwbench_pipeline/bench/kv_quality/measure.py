"""The quality figures of a KV-cache precision on the copy-task decoder, against the full-precision cache."""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import LlamaForCausalLM

from hwbench_pipeline.bench.backends.torch.kv_cache import make_cache
from hwbench_pipeline.bench.kv_quality.decoder import torch_threads
from hwbench_pipeline.bench.kv_quality.task import CopyPrompt
from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION

#: torch threads the quality figures are computed on: one, for the reason Training.threads gives (16 prompts
# through the int8 cache: 1.9-2.4 s on one thread, 16-21 s on two beside another process), and so that they do
# not depend on the threads the caller measures with
QUALITY_THREADS = 1


def _step(model: LlamaForCausalLM, cache: Any, ids: torch.Tensor) -> torch.Tensor:
    """One forward through ``cache`` (positions follow from what it holds): the last position's logits, fp64."""
    out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    return out.logits[0, -1].double()


def _decode(model: LlamaForCausalLM, cache_precision: str, residual_length: int, prompt: CopyPrompt,
            forced: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode L tokens after ``prompt`` through a fresh cache: greedily (``forced`` None) or fed ``forced``'s
    tokens (teacher forcing). (the tokens fed back, (L,); each step's logits, (L, vocab))."""
    length = prompt.expected.numel()
    cache = make_cache(model, cache_precision, "dynamic", max_cache_len=prompt.ids.shape[1] + length,
                       residual_length=residual_length)
    logits = [_step(model, cache, prompt.ids)]
    tokens = []
    for i in range(length):
        tokens.append(logits[-1].argmax() if forced is None else forced[i])
        if i + 1 < length:  # the last token is never fed back
            logits.append(_step(model, cache, tokens[-1].view(1, 1)))
    return torch.stack(tokens), torch.stack(logits)


def _nll(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    return torch.nn.functional.cross_entropy(logits, tokens, reduction="sum").item()


def kv_cache_quality(model: LlamaForCausalLM, cache_precision: str, *, residual_length: int,
                     prompts: list[CopyPrompt]) -> dict[str, Any]:
    """The copy task under ``cache_precision`` against the full-precision cache, over ``prompts`` (each at batch
    1, a fresh cache each, the model called step by step with greedy choices):

    * ``task_accuracy``, ``task_accuracy_full``: the fraction of expected tokens generated right (position by
      position) under the cache and under the full-precision cache; ``sequence_accuracy``(``_full``): the
      fraction of prompts copied entirely right;
    * ``top1_agreement``, ``kl_divergence``: teacher-forced on the full cache's own greedy tokens, so both caches
      see the same contexts: the fraction of steps whose argmax equals the full cache's, and the mean
      KL(full || quantized) of the next-token distributions in nats. Over the decode steps only (L - 1 per
      prompt): the first token comes from the prefill, whose attention sees the unquantized prompt, so it never
      depends on the cache;
    * ``perplexity``, ``perplexity_full``: exp of the mean negative log-likelihood of the expected continuation
      (all L tokens), teacher-forced, under each cache.

    Raises what make_cache raises for a precision that cannot run (a missing backend package, ...)."""
    tokens_total = steps_total = 0
    right = right_full = exact = exact_full = agree = 0
    kl_sum = nll = nll_full = 0.0
    with torch.inference_mode(), torch_threads(QUALITY_THREADS):
        for prompt in prompts:
            length = prompt.expected.numel()
            full_tokens, full_logits = _decode(model, MODEL_CACHE_PRECISION, 0, prompt, None)
            tokens, _ = _decode(model, cache_precision, residual_length, prompt, None)
            _, forced_logits = _decode(model, cache_precision, residual_length, prompt, full_tokens)
            right += int((tokens == prompt.expected).sum())
            right_full += int((full_tokens == prompt.expected).sum())
            exact += int(torch.equal(tokens, prompt.expected))
            exact_full += int(torch.equal(full_tokens, prompt.expected))
            tokens_total += length
            # decode steps: logits row i >= 1 came from a step that read the cache
            agree += int((forced_logits[1:].argmax(-1) == full_logits[1:].argmax(-1)).sum())
            log_p = torch.log_softmax(full_logits[1:], -1)
            log_q = torch.log_softmax(forced_logits[1:], -1)
            kl_sum += float((log_p.exp() * (log_p - log_q)).sum())
            steps_total += length - 1
            # the expected continuation's likelihood: the runs above were fed it when the full cache got it right
            if torch.equal(full_tokens, prompt.expected):
                nll_full += _nll(full_logits, prompt.expected)
                nll += _nll(forced_logits, prompt.expected)
            else:
                nll_full += _nll(_decode(model, MODEL_CACHE_PRECISION, 0, prompt, prompt.expected)[1], prompt.expected)
                nll += _nll(_decode(model, cache_precision, residual_length, prompt, prompt.expected)[1],
                            prompt.expected)
    return {
        "cache_precision": cache_precision,
        "residual_length": residual_length,
        "prompts": len(prompts),
        "tokens": tokens_total,
        "task_accuracy": right / tokens_total,
        "task_accuracy_full": right_full / tokens_total,
        "sequence_accuracy": exact / len(prompts),
        "sequence_accuracy_full": exact_full / len(prompts),
        "top1_agreement": agree / steps_total,
        "kl_divergence": kl_sum / steps_total,
        "perplexity": math.exp(nll / tokens_total),
        "perplexity_full": math.exp(nll_full / tokens_total),
    }


