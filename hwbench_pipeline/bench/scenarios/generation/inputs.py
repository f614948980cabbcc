"""What a generation configuration feeds: the prompt, and the context the model can hold."""

from __future__ import annotations

from typing import Any

from hwbench_pipeline.bench.failures import UnsupportedConfigurationError


def context_limit(config: Any) -> int | None:
    """The most positions the model's decoder can attend to (None: relative positions, as t5's, have none)."""
    for source in (config, getattr(config, "text_config", None)):
        for name in ("max_target_positions", "max_position_embeddings"):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def check_context(config: Any, prompt_tokens: int, new_tokens: int, label: str) -> None:
    """Refuse a prompt plus new tokens longer than the model's context, naming both."""
    limit = context_limit(config)
    if limit is not None and prompt_tokens + new_tokens > limit:
        raise UnsupportedConfigurationError(
            f"{label}: prompt {prompt_tokens} + {new_tokens} new tokens = {prompt_tokens + new_tokens} positions, "
            f"beyond the model's context of {limit}")


def decoder_prompt_tokens(inputs: dict[str, Any], config: Any) -> int:
    """Positions the decoder's prompt takes as built: the decoder's own prompt of an encoder-decoder, else the
    input ids (llava's image placeholder tokens included)."""
    key = "decoder_input_ids" if getattr(config, "is_encoder_decoder", False) else "input_ids"
    return int(inputs[key].shape[1])


def generation_inputs(family: str, config: Any, batch_size: int, prompt_tokens: int, *, seed: int,
                      model: Any) -> dict[str, Any]:
    """The family's inputs at the prompt length (any other architecture's: random token ids); an encoder-decoder
    that reads its prompt in the encoder (t5) starts its decoder from the start token alone, as generate() does."""
    import torch

    from hwbench_pipeline.bench import models

    if models.is_curated(family):
        inputs = models.make_inputs(family, config, batch_size, prompt_tokens, seed=seed, model=model)
    else:
        from hwbench_pipeline.bench.catalog.generative import prompt_inputs

        inputs = prompt_inputs(config, batch_size, prompt_tokens, seed=seed)
    if getattr(config, "is_encoder_decoder", False) and "input_ids" in inputs:
        start = getattr(config, "decoder_start_token_id", None)
        start = config.pad_token_id if start is None else start
        inputs["decoder_input_ids"] = torch.full((batch_size, 1), start, dtype=torch.int64)
    return inputs
