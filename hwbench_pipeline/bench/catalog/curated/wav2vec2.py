"""wav2vec2: a speech encoder over the raw 16 kHz waveform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.presets import tower

if TYPE_CHECKING:
    import torch

# fmt: off
_PRESETS = {  # 7-layer conv feature encoder (stride 320: 49 frames per second) + transformer
    "tiny": tower(
        32, 2, 2, 64, conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4
    ),
    # reduced wav2vec2-base: 256-wide conv feature encoder, 6-layer 384-wide transformer
    "small": tower(384, 6, 6, 1536, conv_dim=[256] * 7),
    # shape of facebook/wav2vec2-base
    "base": tower(768, 12, 12, 3072, feat_extract_norm="group", do_stable_layer_norm=False),
    # shape of facebook/wav2vec2-large-lv60
    "full": tower(
        1024, 24, 16, 4096, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True
    ),
}
# fmt: on


def _frames(config: Any, samples: int) -> int:
    """Feature frames the conv encoder makes of ``samples`` audio samples."""
    frames = samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        frames = (frames - kernel) // stride + 1
    return frames


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Real speech (the shipped clip, looped to seq_len samples), normalized as wav2vec2's feature extractor does:
    zero mean, unit (population) variance per utterance."""
    from hwbench_pipeline.bench.speech import speech_waveform

    if seq_len < 1 or _frames(config, seq_len) < 1:
        raise ValueError(f"wav2vec2: seq_len={seq_len} audio samples is shorter than the conv receptive field")
    wave = speech_waveform(batch, seq_len)
    variance = wave.var(dim=1, keepdim=True, unbiased=False)
    return {"input_values": (wave - wave.mean(dim=1, keepdim=True)) / (variance + 1e-7).sqrt()}


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """A tone's waveform, normalized as wav2vec2's feature extractor does: zero mean, unit variance per utterance."""
    from hwbench_pipeline.bench import tasks

    wave = tasks.tone_waveforms(gen, labels, seq_len)
    inputs["input_values"] = (wave - wave.mean(1, keepdim=True)) / (wave.std(1, keepdim=True) + 1e-7)


WAV2VEC2 = CuratedFamily(
    spec=FamilySpec("wav2vec2", "audio", "audio", "audio samples (16 kHz raw waveform)", False, "Wav2Vec2Model", 16000),
    presets=_PRESETS,
    make_inputs=_inputs,
    task="audio_tone",
    objective="pooled_head",
    plant_task=_plant_task,
    has_vocabulary=False,
)
