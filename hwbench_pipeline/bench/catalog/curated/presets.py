"""Preset helpers shared by several curated families. Sizes come in the order (hidden, layers, heads,
intermediate); anything else is passed through by keyword."""

from __future__ import annotations

from typing import Any


def tower(hidden: int, layers: int, heads: int, inter: int, **kw: Any) -> dict[str, Any]:
    """A CLIP-style text or vision tower (also CLAP's text tower, X-CLIP, wav2vec2 and the LLaVA vision tower)."""
    return dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter, **kw
    )


def decoder_lm(
    vocab: int, hidden: int, layers: int, heads: int, inter: int, kv: int, **kw: Any
) -> dict[str, Any]:
    """A Llama / Qwen2 decoder (kv = key/value heads for grouped-query attention; also LLaVA's LM)."""
    return dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, num_key_value_heads=kv, **kw,
    )
