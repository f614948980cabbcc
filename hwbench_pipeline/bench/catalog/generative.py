"""Any architecture of transformers that generates text: its language-model head, and the prompt it is fed.

An architecture generates when transformers registers a causal-LM head for a text decoder, or a
sequence-to-sequence LM head for an encoder-decoder (the registry's tasks and category). Its model is built with
that head (``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM``), from the scaled config or a checkpoint's own
weights, and its prompt is random token ids over its vocabulary, as the curated decoders' prompts are.
"""

from __future__ import annotations

from typing import Any

from hwbench_pipeline.bench.failures import UnsupportedConfigurationError

#: the registry's (category, task head) pairs that make an architecture generate text, and the auto class each
#: head is built with
GENERATIVE_HEADS = {
    ("text decoder", "CAUSAL_LM"): "AutoModelForCausalLM",
    ("encoder-decoder", "SEQ_TO_SEQ_CAUSAL_LM"): "AutoModelForSeq2SeqLM",
}

EXAMPLES = ("gpt2", "mistral", "phi3", "opt", "gemma2", "bart", "mt5")


def head_class(model_type: str) -> str | None:
    """The auto class that builds ``model_type`` with its generating head (None: the architecture does not
    generate text, or is unknown)."""
    from hwbench_pipeline.bench.catalog.registry import architectures

    entry = architectures().get(model_type)
    if entry is None:
        return None
    return next((auto for (category, task), auto in GENERATIVE_HEADS.items()
                 if entry.category == category and task in entry.tasks), None)


def generative_architectures() -> list[str]:
    """Every model type of the installed transformers that generates text, sorted."""
    from hwbench_pipeline.bench.catalog.registry import architectures

    return sorted(name for name in architectures() if head_class(name) is not None)


def check_generative(model_type: str, name: str) -> str:
    """The auto class for ``model_type``; a model that does not generate text is refused, saying which do."""
    auto = head_class(model_type)
    if auto is None:
        from hwbench_pipeline.bench.catalog.registry import architecture

        category = architecture(model_type).category
        some = generative_architectures()
        what = f"a {category} model" if name == model_type else f"{model_type}, a {category} model"
        raise UnsupportedConfigurationError(
            f"{name} ({what}) does not generate text: generation takes a text decoder with a "
            f"causal-LM head or an encoder-decoder with a sequence-to-sequence LM head ({len(some)} architectures "
            f"here, e.g. {', '.join(n for n in EXAMPLES if n in some)})")
    return auto


def build_generative_model(config: Any, model_type: str, *, seed: int = 0, checkpoint: Any = None,
                           meta: bool = False) -> Any:
    """``config``'s architecture with its generating head, fp32, frozen, in eval mode (``meta``: its shapes only,
    for the caller's ``torch.device("meta")``)."""
    import transformers

    from hwbench_pipeline.bench.catalog.generic import build_model
    from hwbench_pipeline.bench.config_key import ATTENTION

    auto = getattr(transformers, check_generative(model_type, model_type))
    if meta:
        return auto.from_config(config, attn_implementation=ATTENTION).eval()
    return build_model(config, seed=seed, checkpoint=checkpoint, auto_class=auto)


def prompt_inputs(config: Any, batch_size: int, prompt_tokens: int, *, seed: int) -> dict[str, Any]:
    """Random token ids over the vocabulary, every position attended (an encoder-decoder reads them in its
    encoder)."""
    import torch

    from hwbench_pipeline.bench.catalog.curated.tensors import full_attention_mask, token_ids

    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    vocab = getattr(text, "vocab_size", None) or getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 2:
        raise UnsupportedConfigurationError(f"{getattr(config, 'model_type', 'the model')}: the config names no "
                                            "vocabulary size, so no prompt can be made")
    gen = torch.Generator().manual_seed(seed)
    return {"input_ids": token_ids(gen, batch_size, prompt_tokens, vocab),
            "attention_mask": full_attention_mask(batch_size, prompt_tokens)}
