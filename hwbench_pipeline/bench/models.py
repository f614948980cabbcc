"""Model catalog: 13 transformer families x 4 size presets, built offline from configs.

Every model is built from a ``transformers`` config with random weights (nothing is downloaded, no
``from_pretrained``, no tokenizer), so the catalog works on air-gapped hosts. Presets:

* ``tiny``  - unit-test size (< ~2 M params, builds in well under a second);
* ``small`` - realistic architecture at reduced size (~5-40 M params);
* ``base``  - the family's canonical reference size that fits a 2-core / 24 GB CPU host in fp32;
* ``full``  - the published size for big hosts (count its parameters with ``device="meta"``).

Each curated family is one unit of :mod:`hwbench_pipeline.bench.catalog.curated`: its presets (the config
keyword arguments; ``base``/``full`` sizes are copied from the published ``config.json`` of the model id cited
next to them: only sizes matter, weights are random), its inputs, how it is described and its training task.
Preset keys starting with ``bench_`` are not transformers fields: they are stored on the config as extra
attributes and read by :func:`make_inputs` (the DETR / LLaVA-NeXT input image size).

Attention is configured as ``attn_implementation="eager"`` (``config_key.ATTENTION``), so FLOP counting with
``torch.utils.flop_counter.FlopCounterMode`` sees the attention matmuls (the CPU SDPA kernel is not counted);
:func:`use_default_attention` switches a built model to what users run (docs/measurement.md, "Attention").
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import torch
import transformers

from hwbench_pipeline.bench.catalog.curated import curated
from hwbench_pipeline.bench.catalog.curated.llava import llava_next_image_size  # noqa: F401 - re-exported
from hwbench_pipeline.bench.config_key import ATTENTION
from hwbench_pipeline.bench.families import (  # noqa: F401 - the catalog's names, re-exported
    CATEGORIES,
    FAMILIES,
    PRESETS,
    FamilySpec,
    UnknownModelError,
    check_model,
    default_seq_len,
    family_spec,
)

# ----------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------


def is_curated(family: str) -> bool:
    """Whether ``family`` is a curated family (hand-written presets and inputs) rather than any other
    architecture of transformers, a config file or a checkpoint (:mod:`hwbench_pipeline.bench.catalog`)."""
    return family in FAMILIES


def import_model_code(family: str) -> None:
    """Import the model's module now (transformers imports it lazily, seconds the first time in a process), so
    that a measured load time is building the model, not importing Python."""
    if is_curated(family):
        _model_class(family_spec(family))
        return
    from hwbench_pipeline.bench.catalog.registry import architecture
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    getattr(transformers, architecture(resolve_model(family).model_type).model_class)


def _model_class(spec: FamilySpec) -> type[transformers.PreTrainedModel]:
    return getattr(transformers, spec.hf_class)


def build_config(family: str, preset: str) -> transformers.PretrainedConfig:
    """Config of ``family`` at ``preset`` with eager attention; nothing is downloaded."""
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic

        return generic.build_config(family, preset)
    spec = check_model(family, preset)
    kwargs = copy.deepcopy(curated(family).presets[preset])
    extras = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith("bench_")}
    config = _model_class(spec).config_class(**kwargs)
    config._attn_implementation = ATTENTION  # the setter recurses into the sub-configs
    for key, value in extras.items():
        setattr(config, key, value)
    return config


def build_model(
    family: str, preset: str, *, seed: int = 0, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Random-init fp32 model in eval mode with frozen parameters; ``device="meta"`` allocates nothing.

    Real weights are drawn on the CPU after ``torch.manual_seed(seed)`` and then moved, so a seed gives the
    same weights on every device. A checkpoint folder's model has its own weights.
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        source = resolve_model(family)
        checkpoint = source.path if source.kind == "checkpoint" else None
        config = generic.build_config(source, preset)
        if torch.device(device).type == "meta":
            from transformers import AutoModel

            with torch.device("meta"):
                return AutoModel.from_config(config, attn_implementation=ATTENTION).eval()
        return generic.build_model(config, seed=seed, checkpoint=checkpoint).to(device)
    spec = check_model(family, preset)
    config = build_config(family, preset)
    cls = _model_class(spec)
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            model = cls(config)
    else:
        torch.manual_seed(seed)
        with torch.device("cpu"):
            model = cls(config)
    # Inference only. Frozen parameters also keep FlopCounterMode's module tracker off autograd hooks, which
    # fail under inference_mode for modules fed a parameter (wav2vec2's weight-norm parametrization).
    model.requires_grad_(False)
    return model.to(device=device, dtype=torch.float32).eval()


def generates_tokens(model: str) -> bool:
    """Whether ``model`` (a curated family, model type, config file or checkpoint) generates text tokens."""
    if is_curated(model):
        return family_spec(model).generates_tokens
    from hwbench_pipeline.bench.catalog.generative import head_class
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    return head_class(resolve_model(model).model_type) is not None


def generative_names() -> str:
    """The curated generative families, and how many other architectures generate, for a refusal's message."""
    from hwbench_pipeline.bench.catalog.generative import EXAMPLES, generative_architectures

    curated_names = [name for name, spec in FAMILIES.items() if spec.generates_tokens]
    others = [name for name in generative_architectures() if name not in FAMILIES]
    examples = ", ".join(name for name in EXAMPLES if name in others)
    return f"{', '.join(curated_names)}, or any of {len(others)} other architectures such as {examples}"


def build_generative_model(family: str, preset: str, *, seed: int = 0, device: str = "cpu") -> torch.nn.Module:
    """``family``/``preset`` with the head that generates tokens (a curated family's own class; any other
    architecture's causal-LM or sequence-to-sequence LM head), fp32, frozen, in eval mode; ``device="meta"``
    allocates nothing."""
    if is_curated(family):
        if not family_spec(family).generates_tokens:
            from hwbench_pipeline.bench.failures import UnsupportedConfigurationError

            raise UnsupportedConfigurationError(f"{family} does not generate tokens; generative models: "
                                                f"{generative_names()}")
        return build_model(family, preset, seed=seed, device=device)
    from hwbench_pipeline.bench.catalog import generic
    from hwbench_pipeline.bench.catalog.generative import build_generative_model as build_with_head
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    source = resolve_model(family)
    checkpoint = source.path if source.kind == "checkpoint" else None
    config = generic.build_config(source, preset)
    if device == "meta":
        with torch.device("meta"):
            return build_with_head(config, source.model_type, meta=True)
    return build_with_head(config, source.model_type, seed=seed, checkpoint=checkpoint).to(device)


def use_default_attention(model: torch.nn.Module) -> str:
    """Switch a model built with eager attention to the one transformers picks by default (SDPA where every part
    of the model supports it, else eager), weights unchanged; returns the implementation that now runs."""
    try:
        model.set_attn_implementation("sdpa")
    except (ValueError, ImportError):  # a part without SDPA (DETR's ResNet, CLAP): the default is eager
        model.set_attn_implementation(ATTENTION)
        return ATTENTION
    # A part that cannot switch may only be warned about: one implementation for the whole model, or eager
    ran = {m.config._attn_implementation for m in model.modules() if isinstance(m, transformers.PreTrainedModel)}
    if ran != {"sdpa"}:
        model.set_attn_implementation(ATTENTION)
        return ATTENTION
    return "sdpa"


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def image_tokens(family: str, config: Any) -> int:
    """Image placeholder tokens make_inputs puts in each prompt on top of seq_len (llava, llava_next; 0 for
    families without them)."""
    family_spec(family)
    return curated(family).image_tokens(config)


def make_inputs(
    family: str,
    config: Any,
    batch_size: int,
    seq_len: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    model: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Deterministic inputs for one forward pass; ``seq_len`` means ``FAMILIES[family].sequence_meaning``.

    Other architectures get the first generic input recipe their ``model`` runs (docs/catalog.md)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        resolve_model(family)  # an unknown name is refused as such
        if model is None:
            raise ValueError(f"{family}: inputs of an uncurated architecture are chosen with its model")
        inputs = generic.choose_inputs(model, config, batch_size, seq_len, seed=seed)
        return {key: value.to(device) for key, value in inputs.items()}
    gen = torch.Generator().manual_seed(seed)
    inputs = curated(family).make_inputs(config, batch_size, seq_len, gen)
    return {key: value.to(device) for key, value in inputs.items()}


# ----------------------------------------------------------------------------------------------------------
# Running and describing
# ----------------------------------------------------------------------------------------------------------

NON_TEXT_CATEGORIES = frozenset({"vision", "audio", "video", "time series", "other"})
_GENERATOR_CLASSES = frozenset(spec.hf_class for spec in FAMILIES.values() if spec.generates_tokens)
# the main output tensor: first field present wins (contrastive logits, task logits, then hidden states)
_OUTPUT_FIELDS = ("logits_per_image", "logits_per_video", "logits_per_audio", "logits", "last_hidden_state")


@functools.cache
def accepts_use_cache(model_class: type) -> bool:
    """Whether the class's forward takes ``use_cache`` (asked once per class: reading a signature costs ~25 us,
    too much inside a timed call)."""
    return "use_cache" in inspect.signature(model_class.forward).parameters


def forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One inference call (grad mode is the caller's job); returns the main output tensor.

    Decoders run with ``use_cache=False``. Contrastive models (clip, clap, xclip) return the
    ``(batch, batch)`` similarity logits, the others their logits or last hidden state.
    """
    inner = getattr(model, "_orig_mod", model)  # see through torch.compile
    generates = type(inner).__name__ in _GENERATOR_CLASSES or accepts_use_cache(type(inner))
    out = model(**inputs, **({"use_cache": False} if generates else {}))
    if isinstance(out, torch.Tensor):
        return out
    for name in _OUTPUT_FIELDS:
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return out[0]


def tokens_per_call(family: str, config: Any, batch_size: int, seq_len: int) -> int | None:
    """Text tokens per call (batch x seq_len) for text-bearing families; None for vision and raw audio.

    Counts the text tokens the caller asked for: t5's encoder input, whisper's decoder tokens; llava's image
    placeholder tokens are not included (see :func:`image_tokens`).
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog.registry import architecture
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        category = architecture(resolve_model(family).model_type).category
        return None if category in NON_TEXT_CATEGORIES else batch_size * seq_len
    spec = family_spec(family)
    if "text" not in spec.modality and not spec.generates_tokens:
        return None
    return batch_size * seq_len


def model_default_seq_len(model: str) -> int:
    """The sequence length a model runs when none is asked for: a curated family's own, else 128 text tokens
    (1 for an architecture that takes no text)."""
    if is_curated(model):
        return default_seq_len(model)
    from hwbench_pipeline.bench.catalog.registry import architecture
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    return 1 if architecture(resolve_model(model).model_type).category in NON_TEXT_CATEGORIES else 128


@functools.cache
def _param_count(family: str, preset: str) -> int:
    model = build_model(family, preset, device="meta")
    return sum(p.numel() for p in model.parameters())


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def describe(family: str, preset: str) -> dict[str, Any]:
    """Catalog row; params are exact, counted on the meta device (no memory, nothing downloaded).

    layers / hidden_size / heads / intermediate_size describe the main tower: the text tower of multimodal
    models (clip, clap, xclip, llava*), the encoder of whisper, t5 and detr. vision_* describe the vision
    tower where there is one (detr: its ResNet backbone's residual blocks and output channels).
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog.describe import describe_architecture

        return describe_architecture(family, preset)
    from hwbench_pipeline.bench.catalog.describe import config_shape

    spec = check_model(family, preset)
    config = build_config(family, preset)
    shape = config_shape(config)
    unit = curated(family)
    main = unit.main_tower(config)
    vision_layers, vision_hidden_size = unit.vision_tower(config) or (None, None)
    return {
        "family": family,
        "preset": preset,
        "category": spec.category,
        "modality": spec.modality,
        "sequence_meaning": spec.sequence_meaning,
        "hf_class": spec.hf_class,
        "params": _param_count(family, preset),
        "layers": _first(main, "num_hidden_layers", "num_layers", "encoder_layers"),
        "hidden_size": _first(main, "hidden_size", "d_model"),
        "heads": _first(main, "num_attention_heads", "num_heads", "encoder_attention_heads"),
        "intermediate_size": _first(main, "intermediate_size", "d_ff", "encoder_ffn_dim"),
        "vocab_size": main.vocab_size if unit.has_vocabulary else None,
        "vision_layers": vision_layers,
        "vision_hidden_size": vision_hidden_size,
        **{key: shape[key] for key in ("kv_heads", "experts", "attention_kind")},
        "model_type": config.model_type,
    }
