"""Size presets of any config: fewer layers, heads and experts, the head width kept.

A preset caps depth and width and shrinks every tower of a config (its sub-configs too) the same way. The
width of one attention head is kept, because rotary sections, partial rotary factors and multi-axis rope
layouts are written against it; the hidden size becomes heads x head width and feed-forward sizes keep their
ratio to it. Vocabularies shrink only where every special token id still fits. ``as-is`` leaves a config as
given. docs/catalog.md gives the rules and the figures they were checked with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

SCALED_PRESETS: tuple[str, ...] = ("tiny", "small", "base")
AS_IS = "as-is"


@dataclass(frozen=True)
class Caps:
    layers: int
    heads: int
    experts: int
    vocab: int
    conv_width: int  # the widest stage of a convolutional tower (hidden_sizes lists)


CAPS = {
    "tiny": Caps(layers=2, heads=2, experts=4, vocab=1024, conv_width=64),
    "small": Caps(layers=4, heads=4, experts=8, vocab=8192, conv_width=256),
    "base": Caps(layers=12, heads=12, experts=16, vocab=65536, conv_width=1024),
}

_LAYER_KEYS = ("num_hidden_layers", "num_layers", "encoder_layers", "decoder_layers", "n_layer", "n_layers",
               "num_decoder_layers", "num_encoder_layers", "text_layers", "vision_layers")
_HEAD_KEYS = ("num_attention_heads", "encoder_attention_heads", "decoder_attention_heads", "n_head", "num_heads")
_HIDDEN_KEYS = ("hidden_size", "d_model", "n_embd", "embed_dim")
_FFN_KEYS = ("intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff", "n_inner", "ffn_dim",
             "moe_intermediate_size", "shared_expert_intermediate_size")
_KV_KEYS = ("num_key_value_heads", "num_kv_heads", "multi_query_group_num")
_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_EXPERTS_PER_TOKEN_KEYS = ("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts")
_PER_LAYER_LIST_SUFFIXES = ("layer_types", "_layers_block_type", "layers_block_type", "mlp_only_layers")


def _get(config: Any, name: str) -> Any:
    """An attribute of a config, or None: some configs raise on attributes that vary per layer."""
    try:
        return getattr(config, name, None)
    except Exception:  # noqa: BLE001 - a per-layer attribute is not one value to scale
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_key(config: Any, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if _int(_get(config, k)) is not None), None)


def _special_token_ids(config: Any) -> list[int]:
    ids = []
    for name, value in vars(config).items():
        if name.endswith(("_token_id", "_token_index", "_token_ids")):
            values = value if isinstance(value, (list, tuple)) else [value]
            ids += [v for v in values if _int(v) is not None]
    return ids


def _stage_count(config: Any, key: str, layers: int) -> bool:
    """Whether ``key`` counts the stages of a hierarchical tower (a per-stage list has that many entries): the
    stages stay, each with fewer blocks."""
    target = getattr(config, "attribute_map", {}).get(key, key)
    per_stage = [v for n, v in vars(config).items() if n in ("depths", "hidden_sizes", "embed_dims")]
    return target == "num_stages" or any(isinstance(v, (list, tuple)) and len(v) == layers for v in per_stage)


def _shrink_layers(config: Any, caps: Caps) -> None:
    for key in _LAYER_KEYS:
        layers = _int(_get(config, key))
        if layers is not None and layers > caps.layers and not _stage_count(config, key, layers):
            try:
                setattr(config, key, caps.layers)
            except NotImplementedError:  # a derived count (prophetnet, funnel): its own keys are set instead
                continue
    depth = max((_int(_get(config, k)) or 0 for k in _LAYER_KEYS), default=0)
    for name, value in list(vars(config).items()):
        # per-layer lists (sliding/full attention patterns, hybrid block types) follow the new depth
        if depth and isinstance(value, (list, tuple)) and name.endswith(_PER_LAYER_LIST_SUFFIXES) \
                and len(value) > depth:
            setattr(config, name, list(value[:depth]))
    depths = _get(config, "depths")  # hierarchical vision towers: fewer blocks per stage
    if isinstance(depths, (list, tuple)) and all(_int(d) for d in depths):
        config.depths = [min(d, max(1, caps.layers // 2)) for d in depths]


def _own_width_key(config: Any, foreign: dict[int, int]) -> str | None:
    """The key holding this tower's own width. A tower with two width keys, one of them equal to a width of a
    tower already scaled, reads that one from the other tower (a vision merger's output size)."""
    keys = [k for k in _HIDDEN_KEYS if _int(_get(config, k))]
    own = [k for k in keys if _get(config, k) not in foreign]
    return (own or keys or [None])[0]


def _shrink_width(config: Any, caps: Caps, foreign: dict[int, int], scaled: set[tuple[int, str]]
                  ) -> tuple[int, int] | None:
    """Fewer heads of the same width; returns (old hidden size, new hidden size) when the width changed and
    records the keys it set in ``scaled``."""
    heads_key, hidden_key = _first_key(config, _HEAD_KEYS), _own_width_key(config, foreign)
    if heads_key is None or hidden_key is None:
        return None
    heads, hidden = _get(config, heads_key), _get(config, hidden_key)
    if heads <= caps.heads or heads == 0:
        return None
    explicit_head_dim = _int(_get(config, "head_dim"))
    if explicit_head_dim is None and hidden % heads:
        return None  # the hidden size is not heads x head width: leave the width alone rather than break it
    new_heads = caps.heads
    if explicit_head_dim is None:
        new_hidden = new_heads * (hidden // heads)
    else:  # projections map the hidden size to heads x head_dim (and latent ranks): it scales with the heads
        new_hidden = max(64, int(hidden * new_heads / heads) // 16 * 16)
    ratio = new_hidden / hidden
    def put(key: str, value: int) -> None:
        setattr(config, key, value)
        scaled.add((id(config), key))

    for key in _HEAD_KEYS:
        if _int(_get(config, key)) == heads:
            put(key, new_heads)
    for key in _HIDDEN_KEYS:
        if _int(_get(config, key)) == hidden:
            put(key, new_hidden)
    for key in _FFN_KEYS:
        ffn = _int(_get(config, key))
        if ffn:
            put(key, max(8, int(round(ffn * ratio / 8)) * 8))
    for key in _KV_KEYS:
        kv = _int(_get(config, key))
        if kv and kv < heads:  # grouped-query attention keeps its group size where it can
            new_kv = max(1, new_heads // max(1, heads // kv))
            put(key, new_kv if new_heads % new_kv == 0 else 1)
        elif kv:
            put(key, new_heads)
    return (hidden, new_hidden) if new_hidden != hidden else None


_CROSS_TOWER_SUFFIXES = ("projection_dim", "projection_size", "text_hidden_size", "vision_hidden_size",
                         "projector_hidden_size", "out_hidden_size", "encoder_hidden_size", "mm_hidden_size",
                         "hidden_size")


def _follow_tower_widths(parts: list[Any], widths: dict[int, int], scaled: set[tuple[int, str]]) -> None:
    """A size one tower reads from another (a projector's output is the language model's hidden size) follows
    that tower's new width; sizes the scaler set itself are left alone."""
    for part in parts:
        for name, value in list(vars(part).items()):
            if (id(part), name) in scaled or _int(value) is None or value not in widths:
                continue
            if name.endswith(_CROSS_TOWER_SUFFIXES):
                setattr(part, name, widths[value])


def _shrink_experts(config: Any, caps: Caps) -> None:
    key = _first_key(config, _EXPERT_KEYS)
    if key is None or _get(config, key) <= caps.experts:
        return
    setattr(config, key, caps.experts)
    for per_token in _EXPERTS_PER_TOKEN_KEYS:
        chosen = _int(_get(config, per_token))
        if chosen and chosen > caps.experts // 2:
            setattr(config, per_token, max(1, caps.experts // 2))
    groups = _int(_get(config, "n_group"))
    if groups and groups > 1:  # grouped routing: the groups must still divide the experts
        config.n_group, config.topk_group = 1, 1


def _shrink_conv(config: Any, caps: Caps) -> None:
    sizes = _get(config, "hidden_sizes")
    if isinstance(sizes, (list, tuple)) and sizes and all(_int(s) for s in sizes) and max(sizes) > caps.conv_width:
        factor = caps.conv_width / max(sizes)
        config.hidden_sizes = [max(8, int(s * factor) // 8 * 8) for s in sizes]


def _fit_vocab(config: Any, caps: Caps, needed: int) -> None:
    """Cut the vocabulary to the cap when every special token id still fits; extend one that does not hold
    them (a default config can pair an image token id with a smaller text vocabulary, which published
    checkpoints of the same architecture extend)."""
    vocab = _int(_get(config, "vocab_size"))
    if vocab is None:
        return
    if vocab > caps.vocab and needed <= caps.vocab:
        config.vocab_size = caps.vocab
    elif vocab < needed and config is config_text_tower(config):
        config.vocab_size = needed


def config_text_tower(config: Any) -> Any:
    """The language model's config (the config itself when there is none, or when several towers qualify)."""
    try:
        return config.get_text_config() if hasattr(config, "get_text_config") else config
    except ValueError:
        return config


#: sizes some default configs leave unset although the model cannot be built without them (time-series
#: forecasters' horizon), set to a common value when they are None
REQUIRED_SIZES = {"prediction_length": 24, "context_length": 24}


def _fill_required_sizes(config: Any) -> None:
    for name, value in REQUIRED_SIZES.items():
        if name in vars(config) and _get(config, name) is None:
            setattr(config, name, value)


def sub_configs(config: Any) -> list[Any]:
    """The config and every config nested in it (towers, backbones, decoders), outermost first."""
    from transformers import PretrainedConfig

    found, stack, seen = [], [config], set()
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        stack += [v for v in vars(current).values() if isinstance(v, PretrainedConfig)]
    return found


def scale_config(config: Any, preset: str) -> Any:
    """A copy of ``config`` at ``preset`` (``tiny``, ``small``, ``base`` or ``as-is``)."""
    if preset == AS_IS:
        return copy.deepcopy(config)
    if preset not in CAPS:
        raise ValueError(f"unknown preset {preset!r}; accepted: {', '.join((*SCALED_PRESETS, AS_IS))}")
    caps = CAPS[preset]
    scaled = copy.deepcopy(config)
    # the language model first: other towers' sizes that read its width follow it
    text = config_text_tower(scaled)
    parts = sorted(sub_configs(scaled), key=lambda part: part is not text)
    # a token id of one tower (the image token of a vision-language model) indexes another's vocabulary
    needed = max((i for part in parts for i in _special_token_ids(part)), default=-1) + 1
    widths: dict[int, int] = {}
    set_by_scaler: set[tuple[int, str]] = set()
    for part in parts:
        _fill_required_sizes(part)
        _shrink_layers(part, caps)
        changed = _shrink_width(part, caps, widths, set_by_scaler)
        if changed:
            widths.setdefault(*changed)
        _shrink_experts(part, caps)
        _shrink_conv(part, caps)
        _fit_vocab(part, caps, needed)
    _follow_tower_widths(parts, widths, set_by_scaler)
    _feed_the_language_model(text, parts)
    return scaled


def _feed_the_language_model(text: Any, parts: list[Any]) -> None:
    """A vision merger's output (``out_hidden_size``) is the language model's input width. Some default configs
    pair towers of two published sizes; a scaled config pairs them as every checkpoint does."""
    width = _int(_get(text, "hidden_size"))
    for part in parts:
        if part is not text and width and _int(vars(part).get("out_hidden_size")):
            part.out_hidden_size = width
