"""The model families of the catalog and their presets, by name: what is accepted, checked without importing
torch or transformers (a command can refuse a bad name in milliseconds). How each family is built is
:mod:`hwbench_pipeline.bench.models`."""

from __future__ import annotations

from dataclasses import dataclass

PRESETS: tuple[str, ...] = ("tiny", "small", "base", "full")
CATEGORIES: tuple[str, ...] = ("embedding", "text generation", "vision", "audio", "multimodal", "video")


@dataclass(frozen=True)
class FamilySpec:
    """One model family of the catalog."""

    name: str
    category: str  # one of CATEGORIES
    modality: str  # "text", "image", "audio", "image+text", "audio+text", "video+text"
    sequence_meaning: str  # what make_inputs' seq_len means for this family
    generates_tokens: bool  # decoder / seq2seq text generator: tokens/s is meaningful
    hf_class: str  # transformers model class built by build_model
    default_seq_len: int  # sensible default seq_len (1 where seq_len is ignored)


class UnknownModelError(ValueError):
    """Unknown family or preset; the message lists the accepted values."""


# fmt: off
_TEXT = "text tokens"
_IGNORED = "ignored (image size fixed by config)"

FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec("bert", "embedding", "text", _TEXT, False, "BertModel", 128),
        FamilySpec(
            "t5", "text generation", "text", "text tokens (encoder input; the decoder gets the same length)",
            True, "T5ForConditionalGeneration", 128,
        ),
        FamilySpec("llama", "text generation", "text", _TEXT, True, "LlamaForCausalLM", 128),
        FamilySpec("qwen2", "text generation", "text", _TEXT, True, "Qwen2ForCausalLM", 128),
        FamilySpec(
            "clip", "multimodal", "text+image", "text tokens (image size fixed by config)",
            False, "CLIPModel", 77,
        ),
        FamilySpec("vit", "vision", "image", _IGNORED, False, "ViTForImageClassification", 1),
        FamilySpec("detr", "vision", "image", _IGNORED, False, "DetrForObjectDetection", 1),
        FamilySpec(
            "clap", "audio", "audio+text",
            "text tokens (audio: a fixed log-mel window of spec_size x freq_ratio frames, about 10 s)",
            False, "ClapModel", 64,
        ),
        FamilySpec(
            "whisper", "audio", "audio",
            "decoder text tokens (the encoder always takes 2 x max_source_positions mel frames)",
            True, "WhisperForConditionalGeneration", 32,
        ),
        FamilySpec(
            "wav2vec2", "audio", "audio", "audio samples (16 kHz raw waveform)", False, "Wav2Vec2Model", 16000
        ),
        FamilySpec(
            "llava", "multimodal", "image+text", "text tokens (one image's placeholder tokens come on top)",
            True, "LlavaForConditionalGeneration", 64,
        ),
        FamilySpec(
            "llava_next", "multimodal", "image+text",
            "text tokens (placeholder tokens of one 2x2-tile AnyRes image come on top)",
            True, "LlavaNextForConditionalGeneration", 64,
        ),
        FamilySpec(
            "xclip", "video", "video+text", "text tokens (frame count and size fixed by config)",
            False, "XCLIPModel", 77,
        ),
    )
}


# ----------------------------------------------------------------------------------------------------------
# Preset tables. Helpers take sizes in the order (hidden, layers, heads, intermediate) and return the config
# kwargs; anything else is passed through by keyword.
# ----------------------------------------------------------------------------------------------------------
# fmt: on


def family_spec(family: str) -> FamilySpec:
    try:
        return FAMILIES[family]
    except KeyError:
        accepted = ", ".join(FAMILIES)
        raise UnknownModelError(f"unknown model family {family!r}; accepted families: {accepted}") from None


def check_model(family: str, preset: str) -> FamilySpec:
    """The family's spec; raises :class:`UnknownModelError` for an unknown family or preset."""
    spec = family_spec(family)
    if preset not in PRESETS:
        accepted = ", ".join(PRESETS)
        raise UnknownModelError(f"unknown preset {preset!r} for {family!r}; accepted presets: {accepted}")
    return spec


def default_seq_len(family: str) -> int:
    """A sensible default seq_len for the family (1 where seq_len is ignored)."""
    return family_spec(family).default_seq_len
