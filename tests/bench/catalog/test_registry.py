"""The architecture registry is read from the installed transformers and classifies every entry."""

import pytest
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

from hwbench_pipeline.bench.catalog.registry import (
    CATEGORIES,
    UnknownArchitectureError,
    architecture,
    architectures,
)


def test_every_model_type_with_a_base_model_class_is_an_entry_with_a_category():
    registry = architectures()
    assert set(registry) == set(MODEL_MAPPING_NAMES)  # the denominator: nothing left out, nothing invented
    assert {entry.category for entry in registry.values()} <= set(CATEGORIES)
    # "other" is the exception, not a bucket: almost every architecture has a real category
    assert sum(entry.category == "other" for entry in registry.values()) <= 5


@pytest.mark.parametrize(("model_type", "category"), [
    ("roberta", "text encoder"), ("llama", "text decoder"), ("t5", "encoder-decoder"), ("vit", "vision"),
    ("wav2vec2", "audio"), ("llava", "vision-language"), ("clip", "multimodal"), ("videomae", "video"),
    ("whisper", "speech-text"), ("patchtst", "time series"), ("clip_vision_model", "vision"),
    ("qwen2_vl_text", "text decoder"),
])
def test_well_known_architectures_land_in_their_category(model_type, category):
    assert architecture(model_type).category == category


def test_an_unknown_model_type_is_refused_with_close_matches():
    with pytest.raises(UnknownArchitectureError, match=r"'robertta' is not an architecture .* did you mean roberta"):
        architecture("robertta")


def test_the_ci_sample_covers_every_category_and_says_each_one_right():
    from hwbench_pipeline.bench.catalog.sample import CI_EXPORT_SAMPLE, CI_SAMPLE

    assert {model_type: architecture(model_type).category for model_type in CI_SAMPLE} == CI_SAMPLE
    assert set(CI_SAMPLE.values()) == set(CATEGORIES) - {"other"}
    assert set(CI_EXPORT_SAMPLE) <= set(CI_SAMPLE)
