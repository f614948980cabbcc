"""T5: an encoder-decoder text generator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, full_attention_mask, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _t5(vocab: int, d_model: int, layers: int, heads: int, d_ff: int, d_kv: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab, d_model=d_model, num_layers=layers, num_heads=heads, d_ff=d_ff, d_kv=d_kv,
        feed_forward_proj="relu",
    )


_PRESETS = {  # (vocab, d_model, layers each side, heads, d_ff, d_kv)
    "tiny": _t5(1024, 64, 2, 4, 128, 16),
    "small": _t5(32128, 256, 4, 4, 1024, 64),  # sizes of google/t5-efficient-tiny
    "base": _t5(32128, 768, 12, 12, 3072, 64),  # shape of google-t5/t5-base
    "full": _t5(32128, 1024, 24, 16, 4096, 64),  # shape of google-t5/t5-large
}
# fmt: on


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    check_seq_len("t5", seq_len, None, "text tokens")
    vocab = config.vocab_size
    return {
        "input_ids": token_ids(gen, batch, seq_len, vocab, last=config.eos_token_id),
        "attention_mask": full_attention_mask(batch, seq_len),
        # T5 starts decoding from the pad token (decoder_start_token_id lives in the generation config)
        "decoder_input_ids": token_ids(gen, batch, seq_len, vocab, first=config.pad_token_id),
    }


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """The keyword in the encoder's text (before </s>); the decoder's prompt carries no class information."""
    from hwbench_pipeline.bench import tasks

    if seq_len < 2:
        raise ValueError("t5: the text task needs seq_len >= 2 (text, then </s>)")
    inputs["input_ids"][:, :-1] = tasks.symbol_ids(tasks.keyword_symbols(gen, labels, seq_len - 1))
    inputs["decoder_input_ids"] = tasks.decoder_prompt(config.pad_token_id, labels.shape[0], seq_len)


T5 = CuratedFamily(
    spec=FamilySpec(
        "t5", "text generation", "text", "text tokens (encoder input; the decoder gets the same length)",
        True, "T5ForConditionalGeneration", 128,
    ),
    presets=_PRESETS,
    make_inputs=_inputs,
    task="text_keyword",
    objective="answer_token",
    plant_task=_plant_task,
)
