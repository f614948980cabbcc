"""CLAP: a contrastive text + audio model (RoBERTa-style text tower, HTSAT audio tower)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec, text_tower
from hwbench_pipeline.bench.catalog.curated.presets import tower
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, full_attention_mask, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _htsat(patch_dim: int, depths: list[int], heads: list[int], spec: int = 256, mels: int = 64) -> dict:
    """CLAP audio tower (a Swin transformer over a spec x spec mel image); hidden = last stage width."""
    return dict(
        patch_embeds_hidden_size=patch_dim, depths=depths, num_attention_heads=heads, spec_size=spec,
        num_mel_bins=mels, hidden_size=patch_dim * 2 ** (len(depths) - 1), enable_fusion=False,
        window_size=8 if spec >= 256 else 4,
    )


def _clap(text: dict, audio: dict, projection: int) -> dict[str, Any]:
    text, audio = {"projection_dim": projection, **text}, {"projection_dim": projection, **audio}
    return dict(text_config=text, audio_config=audio, projection_dim=projection)


_PRESETS = {  # RoBERTa-style text tower + HTSAT audio tower
    "tiny": _clap(
        dict(vocab_size=1024, **tower(32, 2, 2, 64)), _htsat(16, [1, 1], [2, 4], spec=64, mels=16), 32
    ),
    # reduced CLAP: 4-layer 256-wide text tower, 4-stage HTSAT with 32-wide patch embeddings
    "small": _clap(tower(256, 4, 4, 1024), _htsat(32, [1, 1, 2, 1], [2, 4, 8, 16]), 256),
    # shape of laion/clap-htsat-unfused (RoBERTa-base text tower, HTSAT-tiny audio tower)
    "base": _clap(tower(768, 12, 12, 3072), _htsat(96, [2, 2, 6, 2], [4, 8, 16, 32]), 512),
    # shape of laion/larger_clap_general (RoBERTa-base text tower, HTSAT-base audio tower)
    "full": _clap(tower(768, 12, 12, 3072), _htsat(128, [2, 2, 12, 2], [4, 8, 16, 32]), 512),
}
# fmt: on


def _text_limit(config: Any) -> int:
    return config.text_config.max_position_embeddings - 2  # RoBERTa positions start at 2


def _inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random text tokens; real speech's log-mel features as a (batch, 1, frames, mels) image."""
    from hwbench_pipeline.bench.speech import speech_log_mel

    text, audio = config.text_config, config.audio_config
    check_seq_len("clap", seq_len, _text_limit(config), "text tokens")
    # the audio tower resizes any log-mel input to spec_size * freq_ratio frames; feed exactly that many
    frames = audio.spec_size * (audio.spec_size // audio.num_mel_bins)
    return {
        "input_ids": token_ids(
            gen, batch, seq_len, text.vocab_size, low=3, first=text.bos_token_id, last=text.eos_token_id
        ),
        "attention_mask": full_attention_mask(batch, seq_len),
        "input_features": speech_log_mel(batch, audio.num_mel_bins, frames).transpose(1, 2).unsqueeze(1).contiguous(),
    }


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """Tones as (frames, mels) log-mel images, scored against one prompt per class (after the text's <s>)."""
    from hwbench_pipeline.bench import tasks

    _, _, frames, mels = inputs["input_features"].shape
    mel = tasks.log_mel(tasks.tone_waveforms(gen, labels, tasks.samples_for_frames(frames)), mels, frames)
    inputs["input_features"] = mel.transpose(1, 2).unsqueeze(1)
    inputs.update(tasks.class_prompts("clap", config, seq_len, seed, leading=1))


CLAP = CuratedFamily(
    spec=FamilySpec(
        "clap", "audio", "audio+text",
        "text tokens (audio: a fixed log-mel window of spec_size x freq_ratio frames, about 10 s)",
        False, "ClapModel", 64,
    ),
    presets=_PRESETS,
    make_inputs=_inputs,
    task="audio_text",
    objective="prompt_similarity",
    plant_task=_plant_task,
    text_limit=_text_limit,
    main_tower=text_tower,
)
