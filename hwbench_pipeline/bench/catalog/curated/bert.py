"""BERT: a text encoder, benchmarked as an embedding model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import TEXT_TOKENS, CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, full_attention_mask, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _bert(vocab: int, hidden: int, layers: int, heads: int, inter: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=512, type_vocab_size=2,
    )


_PRESETS = {
    "tiny": _bert(1024, 64, 2, 4, 128),
    "small": _bert(30522, 512, 4, 8, 2048),  # shape of google/bert_uncased_L-4_H-512_A-8 (BERT-Small)
    "base": _bert(30522, 768, 12, 12, 3072),  # shape of google-bert/bert-base-uncased
    "full": _bert(30522, 1024, 24, 16, 4096),  # shape of google-bert/bert-large-uncased
}
# fmt: on


def _text_limit(config: Any) -> int:
    return config.max_position_embeddings


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    import torch

    check_seq_len("bert", seq_len, _text_limit(config), "text tokens")
    return {
        "input_ids": token_ids(gen, batch, seq_len, config.vocab_size),
        "attention_mask": full_attention_mask(batch, seq_len),
        "token_type_ids": torch.zeros(batch, seq_len, dtype=torch.long),
    }


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """The keyword anywhere in the text."""
    from hwbench_pipeline.bench import tasks

    inputs["input_ids"] = tasks.symbol_ids(tasks.keyword_symbols(gen, labels, seq_len))


BERT = CuratedFamily(
    spec=FamilySpec("bert", "embedding", "text", TEXT_TOKENS, False, "BertModel", 128),
    presets=_PRESETS,
    make_inputs=_inputs,
    task="text_keyword",
    objective="pooled_head",
    plant_task=_plant_task,
    text_limit=_text_limit,
)
