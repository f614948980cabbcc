"""Llama and Qwen2: decoder-only text generators (the same inputs and task; Qwen2 adds q/k/v biases)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import TEXT_TOKENS, CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.presets import decoder_lm
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, full_attention_mask, token_ids

if TYPE_CHECKING:
    import torch

# fmt: off
_LLAMA_PRESETS = {  # (vocab, hidden, layers, heads, intermediate, kv heads)
    "tiny": decoder_lm(1024, 64, 2, 4, 128, 2),
    # shape of karpathy/tinyllamas stories15M (llama2.c: dim 288, 6 layers, 6 heads, tied embeddings)
    "small": decoder_lm(32000, 288, 6, 6, 768, 6, max_position_embeddings=256, tie_word_embeddings=True),
    # shape of meta-llama/Llama-3.2-1B
    "base": decoder_lm(
        128256, 2048, 16, 32, 8192, 8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
        rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        },
    ),
    # shape of meta-llama/Meta-Llama-3-8B
    "full": decoder_lm(
        128256, 4096, 32, 32, 14336, 8, max_position_embeddings=8192, rms_norm_eps=1e-5,
        bos_token_id=128000, eos_token_id=128001,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    ),
}
_QWEN2_PRESETS = {  # (vocab, hidden, layers, heads, intermediate, kv heads)
    "tiny": decoder_lm(1024, 64, 2, 4, 128, 2, tie_word_embeddings=True),
    # reduced Qwen2-0.5B (GQA, tied embeddings, head_dim 64) with the vocabulary cut to 32k
    "small": decoder_lm(32000, 256, 6, 4, 1408, 2, tie_word_embeddings=True),
    # shape of Qwen/Qwen2-0.5B
    "base": decoder_lm(
        151936, 896, 24, 14, 4864, 2, max_position_embeddings=131072, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    ),
    # shape of Qwen/Qwen2-7B
    "full": decoder_lm(
        152064, 3584, 28, 28, 18944, 4, max_position_embeddings=131072, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    ),
}
# fmt: on


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator, *, family: str) -> dict[str, torch.Tensor]:
    check_seq_len(family, seq_len, None, "text tokens")
    return {
        "input_ids": token_ids(gen, batch, seq_len, config.vocab_size),
        "attention_mask": full_attention_mask(batch, seq_len),
    }


def _plant_task(
    config: Any,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    gen: torch.Generator,
    seq_len: int,
    seed: int,
    *,
    family: str,
) -> None:
    """The keyword in the text, then the query token whose next token is the answer."""
    import torch

    from hwbench_pipeline.bench import tasks

    if seq_len < 2:
        raise ValueError(f"{family}: the text task needs seq_len >= 2 (text, then the query token)")
    query = torch.full((labels.shape[0], 1), tasks.QUERY)
    inputs["input_ids"] = tasks.symbol_ids(torch.cat([tasks.keyword_symbols(gen, labels, seq_len - 1), query], dim=1))


def _decoder(name: str, hf_class: str, presets: dict[str, dict[str, Any]]) -> CuratedFamily:
    return CuratedFamily(
        spec=FamilySpec(name, "text generation", "text", TEXT_TOKENS, True, hf_class, 128),
        presets=presets,
        make_inputs=partial(_inputs, family=name),
        task="text_keyword",
        objective="answer_token",
        plant_task=partial(_plant_task, family=name),
    )


LLAMA = _decoder("llama", "LlamaForCausalLM", _LLAMA_PRESETS)
QWEN2 = _decoder("qwen2", "Qwen2ForCausalLM", _QWEN2_PRESETS)
