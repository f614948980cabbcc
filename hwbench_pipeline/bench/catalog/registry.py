"""Every architecture the installed transformers can build: one entry per ``model_type`` with a base model class.

The registry is read from transformers itself (``MODEL_MAPPING_NAMES``), so a new transformers release brings
its new architectures with it. Each entry is classified into a category from the task heads transformers
registers for it, then from its config's sub-configs and name (docs/catalog.md gives the rules and why).
Building the registry imports no model module: it costs the import of transformers' auto classes, about 2 s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hwbench_pipeline.bench.families import FAMILIES, UnknownModelError

CATEGORIES: tuple[str, ...] = (
    "text encoder", "text decoder", "encoder-decoder", "vision", "audio", "vision-language", "multimodal",
    "video", "speech-text", "time series", "other",
)

# Task heads (the middle of transformers' ``MODEL_FOR_<TASK>_MAPPING_NAMES``) that decide a category, in order of
# precedence: a model with a causal-LM head and an image-text-to-text head is a vision-language model.
_TASK_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("video", ("VIDEO_CLASSIFICATION",)),
    ("speech-text", ("SPEECH_SEQ_2_SEQ", "TEXT_TO_SPECTROGRAM", "TEXT_TO_WAVEFORM", "TDT", "RNNT")),
    ("audio", ("AUDIO_CLASSIFICATION", "AUDIO_FRAME_CLASSIFICATION", "AUDIO_XVECTOR", "CTC")),
    ("vision-language", ("IMAGE_TEXT_TO_TEXT", "MULTIMODAL_LM", "VISUAL_QUESTION_ANSWERING",
                         "DOCUMENT_QUESTION_ANSWERING", "TEXT_RECOGNITION", "TABLE_RECOGNITION")),
    ("multimodal", ("ZERO_SHOT_IMAGE_CLASSIFICATION", "ZERO_SHOT_OBJECT_DETECTION", "RETRIEVAL")),
    ("time series", ("TIME_SERIES_CLASSIFICATION", "TIME_SERIES_PREDICTION", "TIME_SERIES_REGRESSION")),
    ("vision", ("IMAGE_CLASSIFICATION", "IMAGE", "OBJECT_DETECTION", "IMAGE_SEGMENTATION", "SEMANTIC_SEGMENTATION",
                "INSTANCE_SEGMENTATION", "UNIVERSAL_SEGMENTATION", "DEPTH_ESTIMATION", "BACKBONE",
                "MASK_GENERATION", "KEYPOINT_DETECTION", "KEYPOINT_MATCHING", "POSE_ESTIMATION", "IMAGE_TO_IMAGE",
                "MASKED_IMAGE_MODELING", "CAUSAL_IMAGE_MODELING", "IMAGE_MATTING", "NORMAL_ESTIMATION",
                "POINTMAP_ESTIMATION")),
    ("encoder-decoder", ("SEQ_TO_SEQ_CAUSAL_LM",)),
    # a masked-LM or text-encoding head marks an encoder, even one that also offers a causal-LM head (RoBERTa)
    ("text encoder", ("MASKED_LM", "TEXT_ENCODING", "NEXT_SENTENCE_PREDICTION", "MULTIPLE_CHOICE")),
    ("text decoder", ("CAUSAL_LM",)),
    ("text encoder", ("MASKED_LM", "SEQUENCE_CLASSIFICATION", "TOKEN_CLASSIFICATION", "TEXT_ENCODING",
                      "QUESTION_ANSWERING", "MULTIPLE_CHOICE", "NEXT_SENTENCE_PREDICTION",
                      "TABLE_QUESTION_ANSWERING")),
)
# Words in a model type that say what an architecture without a task head takes (towers of larger models,
# codecs, time-series models), checked in this order.
_NAME_HINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("text decoder", ("_text", "_assistant")),  # the language model of a multimodal model
    ("video", ("video",)),
    ("audio", ("audio", "speech", "asr", "whisper", "wav", "codec", "encodec", "mimi", "dac", "transcribe",
               "diarization", "parakeet", "clvp", "voice", "vox", "univnet")),
    ("vision", ("vision", "image", "vit", "vqmodel", "sam", "visual")),
    ("time series", ("autoformer", "informer", "time_series", "patchts", "timesfm")),
)
# Architectures that neither their task heads, their sub-configs nor their name place (checked by hand).
_CATEGORY_OVERRIDES = {
    "dpr": "text encoder", "blip_2_qformer": "multimodal", "decision_transformer": "other",
    "mgp-str": "vision", "pixtral": "vision", "radio": "vision", "seggpt": "vision", "uvdoc": "vision",
    "tvp": "video",
}


@dataclass(frozen=True)
class Architecture:
    """One architecture of the installed transformers."""

    model_type: str
    model_class: str  # the base model class (``AutoModel`` builds it)
    category: str  # one of CATEGORIES
    tasks: tuple[str, ...]  # the task heads transformers registers for it


class UnknownArchitectureError(UnknownModelError):
    """A model type the installed transformers does not build; the message says what is accepted."""


def _task_mappings() -> dict[str, dict[str, object]]:
    from transformers.models.auto import modeling_auto

    prefix, suffix = "MODEL_FOR_", "_MAPPING_NAMES"
    return {name[len(prefix):-len(suffix)]: getattr(modeling_auto, name) for name in dir(modeling_auto)
            if name.startswith(prefix) and name.endswith(suffix)}


def _config_category(model_type: str) -> str | None:
    """A category read from the config's sub-configs, for architectures without a task head."""
    from transformers import CONFIG_MAPPING

    try:
        sub_configs = set(getattr(CONFIG_MAPPING[model_type], "sub_configs", {}) or {})
    except (KeyError, ValueError, ImportError):
        return None
    text = bool(sub_configs & {"text_config", "decoder_config", "qformer_config"})
    if "vision_config" in sub_configs and text:
        return "multimodal"
    if "audio_config" in sub_configs and text:
        return "speech-text"
    return None


def classify(model_type: str, tasks: tuple[str, ...]) -> str:
    """The category of an architecture from its task heads, else its sub-configs, else its name."""
    if model_type in _CATEGORY_OVERRIDES:
        return _CATEGORY_OVERRIDES[model_type]
    for category, heads in _TASK_CATEGORIES:
        if set(tasks) & set(heads):
            return category
    by_config = _config_category(model_type)
    if by_config is not None:
        return by_config
    words = model_type.lower().replace("-", "_")
    for category, hints in _NAME_HINTS:
        if any(hint in words for hint in hints):
            return category
    return "other"


@functools.cache
def architectures() -> dict[str, Architecture]:
    """Every model type of the installed transformers that has a base model class, by model type."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    mappings = _task_mappings()
    registry = {}
    for model_type, model_class in MODEL_MAPPING_NAMES.items():
        if isinstance(model_class, (tuple, list)):  # a few types map to several classes: the first is the base
            model_class = model_class[0]
        tasks = tuple(sorted(task for task, names in mappings.items() if model_type in names))
        registry[model_type] = Architecture(model_type, model_class, classify(model_type, tasks), tasks)
    return registry


def architecture(model_type: str) -> Architecture:
    """The registry's entry for ``model_type``; raises :class:`UnknownArchitectureError` with close matches."""
    registry = architectures()
    try:
        return registry[model_type]
    except KeyError:
        import difflib

        import transformers

        close = difflib.get_close_matches(model_type, list(registry), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitectureError(
            f"model_type {model_type!r} is not an architecture transformers {transformers.__version__} builds "
            f"(it has {len(registry)}; the curated families are {', '.join(FAMILIES)}){hint}"
        ) from None
