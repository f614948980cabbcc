"""The catalog row of any architecture: its shape read from its config, its parameters counted on meta."""

from __future__ import annotations

from typing import Any

from hwbench_pipeline.bench.catalog.generic import build_config, parameter_count
from hwbench_pipeline.bench.catalog.registry import architecture
from hwbench_pipeline.bench.catalog.scaling import config_text_tower
from hwbench_pipeline.bench.catalog.sources import resolve_model


def _first(config: Any, *names: str) -> Any:
    return next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)


def _count(value: Any) -> int | None:
    """A shape column as one integer: a per-stage list (a hierarchical vision model's heads) as its largest."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return max(value)
    return None


def attention_kind(config: Any) -> str:
    """mla (latent key/value projections), mqa, gqa, mha, or none (convolutional, state-space models)."""
    heads = _first(config, "num_attention_heads", "num_heads", "n_head", "encoder_attention_heads")
    if not isinstance(heads, int) or heads == 0:
        return "none"
    if _first(config, "kv_lora_rank") is not None:
        return "mla"
    kv = _first(config, "num_key_value_heads", "num_kv_heads", "multi_query_group_num")
    if not isinstance(kv, int) or kv >= heads:
        return "mha"
    return "mqa" if kv == 1 else "gqa"


def config_shape(config: Any) -> dict[str, Any]:
    """Shape columns of a config: the main tower is the language model where there is one, the config itself
    otherwise; vision_* describe a vision tower where there is one."""
    main = config_text_tower(config)
    vision = getattr(config, "vision_config", None)
    return {
        "layers": _count(_first(main, "num_hidden_layers", "num_layers", "n_layer", "encoder_layers")),
        "hidden_size": _count(_first(main, "hidden_size", "d_model", "n_embd", "embed_dim")),
        "heads": _count(_first(main, "num_attention_heads", "num_heads", "n_head", "encoder_attention_heads")),
        "intermediate_size": _count(_first(main, "intermediate_size", "d_ff", "n_inner", "encoder_ffn_dim")),
        "vocab_size": _count(_first(main, "vocab_size")),
        "vision_layers": _count(_first(vision, "num_hidden_layers", "depth")) if vision is not None else None,
        "vision_hidden_size": _count(_first(vision, "hidden_size", "embed_dim")) if vision is not None else None,
        "kv_heads": _count(_first(main, "num_key_value_heads", "num_kv_heads", "multi_query_group_num")),
        "experts": _count(_first(main, "num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")),
        "attention_kind": attention_kind(main),
    }


def describe_architecture(model: str, preset: str) -> dict[str, Any]:
    """The catalog row of ``model`` (a model type, config file or checkpoint) at ``preset``."""
    source = resolve_model(model)
    entry = architecture(source.model_type)
    config = build_config(source, preset)
    return {
        "family": model,
        "preset": preset,
        "category": entry.category,
        "modality": None,
        "sequence_meaning": "text tokens where the model takes text; ignored otherwise",
        "hf_class": entry.model_class,
        "params": parameter_count(config),
        **config_shape(config),
        "model_type": source.model_type,
    }
