"""Whisper: an encoder-decoder speech recognizer (log-mel features in, text tokens out)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _whisper(vocab: int, d_model: int, layers: int, heads: int, ffn: int, mels: int, source: int, **kw):
    """Whisper encoder input must be exactly 2 * max_source_positions mel frames (1500 -> 3000 = 30 s)."""
    return dict(
        vocab_size=vocab, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_mel_bins=mels, max_source_positions=source,
        max_target_positions=448, **kw,
    )


# (vocab, d_model, layers each side, heads, ffn, mel bins, max_source_positions); tiny/small shorten the
# audio window through max_source_positions, base/full keep the published 30 s (3000 mel frames).
_PRESETS = {
    "tiny": _whisper(
        1024, 32, 2, 2, 64, 16, 32, pad_token_id=1, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3, begin_suppress_tokens=None,
    ),
    "small": _whisper(51865, 384, 4, 6, 1536, 80, 250),  # shape of openai/whisper-tiny, 5 s window
    "base": _whisper(51865, 512, 6, 8, 2048, 80, 1500),  # shape of openai/whisper-base
    # shape of openai/whisper-large-v3
    "full": _whisper(
        51866, 1280, 32, 20, 5120, 128, 1500, bos_token_id=50257, eos_token_id=50257, pad_token_id=50256,
        decoder_start_token_id=50258,
    ),
}
# fmt: on


def _text_limit(config: Any) -> int:
    return config.max_target_positions


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Log-mel features of real speech (the shipped clip, looped to the window), a random decoder prompt."""
    from hwbench_pipeline.bench.speech import speech_log_mel

    check_seq_len("whisper", seq_len, _text_limit(config), "decoder tokens")
    return {
        "input_features": speech_log_mel(batch, config.num_mel_bins, 2 * config.max_source_positions),
        "decoder_input_ids": token_ids(gen, batch, seq_len, config.vocab_size, first=config.decoder_start_token_id),
    }


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """A tone's log-mel features; the decoder's prompt carries no class information."""
    from hwbench_pipeline.bench import tasks

    frames = inputs["input_features"].shape[-1]
    waveforms = tasks.tone_waveforms(gen, labels, tasks.samples_for_frames(frames))
    inputs["input_features"] = tasks.log_mel(waveforms, config.num_mel_bins, frames)
    inputs["decoder_input_ids"] = tasks.decoder_prompt(config.decoder_start_token_id, labels.shape[0], seq_len)


WHISPER = CuratedFamily(
    spec=FamilySpec(
        "whisper", "audio", "audio",
        "decoder text tokens (the encoder always takes 2 x max_source_positions mel frames)",
        True, "WhisperForConditionalGeneration", 32,
    ),
    presets=_PRESETS,
    make_inputs=_inputs,
    task="audio_tone",
    objective="answer_token",
    plant_task=_plant_task,
    text_limit=_text_limit,
)
