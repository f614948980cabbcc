"""The shipped speech clip and what audio models are fed from it: real speech, deterministic, recognizable."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import math
import shutil
import subprocess
import wave

import numpy as np
import pytest
import torch

from hwbench_pipeline.bench import models, speech, tasks
from hwbench_pipeline.bench.catalog.inputs import RECIPES


def _shipped_wav() -> bytes:
    return importlib.resources.files("hwbench_pipeline.bench").joinpath(speech.CLIP_NAME).read_bytes()


def test_the_shipped_clip_is_the_one_its_provenance_describes():
    raw = _shipped_wav()
    record = speech.provenance()
    assert hashlib.sha256(raw).hexdigest() == record["sha256"]
    assert record["tool"] == "espeak-ng" and record["text"] in record["command"]
    assert {"version", "date", "processing"} <= record.keys()
    with wave.open(io.BytesIO(raw)) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 16_000)
        assert clip.getnframes() == record["samples"]
    assert len(raw) <= 100_000


def test_the_clip_sounds_like_speech_not_silence_or_noise():
    clip = speech.speech_clip().double()
    duration = clip.shape[0] / speech.SAMPLE_RATE
    assert 1.5 <= duration <= 3.05
    rms = float(clip.pow(2).mean().sqrt())
    assert 0.02 < rms < 0.5 and float(clip.abs().max()) < 1.0
    # 20 ms frames: speech is loud most of the time, with syllables and pauses (noise is flat)
    frames = clip[: clip.shape[0] // 320 * 320].view(-1, 320).pow(2).mean(dim=1).sqrt()
    loud = frames > 0.01
    assert loud.double().mean() > 0.5
    assert float(frames.std() / frames.mean()) > 0.5
    # voiced speech keeps most of its energy below 4 kHz (white noise would keep half above)
    power = torch.fft.rfft(clip).abs().pow(2)
    below = power[: power.shape[0] // 2].sum() / power.sum()
    assert float(below) > 0.9


def test_regenerating_the_clip_with_the_same_espeak_gives_the_same_bytes(tmp_path):
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (only regenerating the clip needs it)")
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True).stdout
    if speech.provenance()["version"] not in version:
        pytest.skip(f"espeak-ng here is not version {speech.provenance()['version']}: its speech may differ")
    record = speech.write_speech_clip(tmp_path / "clip.wav")
    assert (tmp_path / "clip.wav").read_bytes() == _shipped_wav()
    assert record["sha256"] == speech.provenance()["sha256"]
    assert (tmp_path / "clip.json").exists()


def test_resampling_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    t = np.arange(22_050) / 22_050
    kept = speech.resample(np.sin(2 * math.pi * 1000 * t), 22_050, 16_000)
    assert kept.shape == (16_000,)
    expected = np.sin(2 * math.pi * 1000 * np.arange(16_000) / 16_000)
    assert np.abs(kept - expected)[500:-500].max() < 1e-3
    # 10 kHz is above the 8 kHz Nyquist frequency of 16 kHz: without the low-pass it would alias to 6 kHz
    removed = speech.resample(np.sin(2 * math.pi * 10_000 * t), 22_050, 16_000)
    assert np.abs(removed)[500:-500].max() < 1e-3


def test_speech_waveform_loops_and_cuts_the_clip_and_offsets_each_row():
    clip = speech.speech_clip()
    length = clip.shape[0]
    short = speech.speech_waveform(3, 1000)
    assert short.shape == (3, 1000) and short.dtype == torch.float32
    assert torch.equal(short[0], clip[:1000])
    assert torch.equal(short[1], clip[speech.ROW_OFFSET:speech.ROW_OFFSET + 1000])
    long = speech.speech_waveform(2, 2 * length + 5)
    assert torch.equal(long[0, :length], clip) and torch.equal(long[0, length:2 * length], clip)
    assert torch.equal(long[1], torch.roll(clip, -speech.ROW_OFFSET).repeat(3)[: 2 * length + 5])
    assert float(long.abs().max()) <= 1.0
    assert torch.equal(speech.speech_waveform(3, 1000), short)
    short.zero_()  # a caller's tensor is its own: the next batch still holds speech
    assert torch.equal(speech.speech_waveform(1, 1000)[0], clip[:1000])
    with pytest.raises(ValueError, match="batch"):
        speech.speech_waveform(0, 10)


def test_speech_log_mel_is_log_mel_of_the_speech_waveform():
    features = speech.speech_log_mel(2, 80, 100)
    assert features.shape == (2, 80, 100)
    waveform = speech.speech_waveform(2, tasks.samples_for_frames(100))
    assert torch.equal(features, tasks.log_mel(waveform, 80, 100))
    assert not torch.equal(features[0], features[1])  # the rows start at different points of the clip
    with pytest.raises(ValueError, match="frames"):
        speech.speech_log_mel(1, 80, 1)


def test_log_mel_recipe_recognizes_both_layouts():
    features = speech.speech_log_mel(2, 64, 120)
    recipe = speech.log_mel_recipe(features)
    assert recipe is not None
    assert (recipe.n_mels, recipe.frames, recipe.layout) == (64, 120, "mels-frames")
    assert torch.equal(recipe.waveform, speech.speech_waveform(2, tasks.samples_for_frames(120)))
    frames_mels = features.transpose(1, 2).unsqueeze(1).contiguous()
    recipe = speech.log_mel_recipe(frames_mels)
    assert recipe is not None and (recipe.n_mels, recipe.frames, recipe.layout) == (64, 120, "1-frames-mels")


def test_log_mel_recipe_refuses_anything_but_exact_speech_features():
    features = speech.speech_log_mel(2, 64, 120)
    gen = torch.Generator().manual_seed(0)
    tone = tasks.log_mel(tasks.tone_waveforms(gen, torch.tensor([0, 1]), tasks.samples_for_frames(120)), 64, 120)
    nudged = features.clone()
    nudged[1, 3, 7] += 1e-6  # the last row only: past the first-row check, caught by the exact comparison
    refused = {
        "random": torch.randn(2, 64, 120, generator=gen),
        "tone": tone,
        "float64": features.double(),
        "nudged": nudged,
        "other frame count": features[..., :119],
        "other mel count": speech.speech_log_mel(2, 80, 120)[:, :64],
        "three channels": features.unsqueeze(1).expand(2, 3, 64, 120),
        "two dimensions": features[0],
        "integers": features.long(),
    }
    assert {name: speech.log_mel_recipe(value) for name, value in refused.items()} == dict.fromkeys(refused)


def test_whisper_and_clap_read_speech_log_mel_features():
    whisper = models.build_config("whisper", "tiny")
    inputs = models.make_inputs("whisper", whisper, 2, 5)
    recipe = speech.log_mel_recipe(inputs["input_features"])
    assert recipe is not None and recipe.layout == "mels-frames"
    assert (recipe.n_mels, recipe.frames) == (whisper.num_mel_bins, 2 * whisper.max_source_positions)
    clap = models.build_config("clap", "tiny")
    inputs = models.make_inputs("clap", clap, 2, 8)
    recipe = speech.log_mel_recipe(inputs["input_features"])
    assert recipe is not None and recipe.layout == "1-frames-mels"
    assert recipe.n_mels == clap.audio_config.num_mel_bins == inputs["input_features"].shape[-1]


def test_wav2vec2_reads_speech_normalized_as_its_feature_extractor_does():
    from transformers import Wav2Vec2FeatureExtractor

    config = models.build_config("wav2vec2", "tiny")
    values = models.make_inputs("wav2vec2", config, 2, 4000)["input_values"]
    rows = list(speech.speech_waveform(2, 4000).numpy())
    expected = torch.from_numpy(np.stack(Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(rows, None)))
    assert values.shape == (2, 4000) and values.dtype == torch.float32
    assert torch.allclose(values, expected, atol=1e-5, rtol=0)


def test_generic_audio_recipes_read_speech():
    gen = torch.Generator().manual_seed(0)
    wav2vec2 = models.build_model("wav2vec2", "tiny")
    waveform = RECIPES["waveform"](wav2vec2, wav2vec2.config, 2, 8, gen)["input_values"]
    assert torch.equal(waveform, speech.speech_waveform(2, waveform.shape[-1]))
    whisper = models.build_model("whisper", "tiny")
    mel = RECIPES["mel (channels first)"](whisper, whisper.config, 2, 4, gen)
    recipe = speech.log_mel_recipe(mel["input_features"])
    assert recipe is not None and recipe.n_mels == whisper.config.num_mel_bins
    assert mel["decoder_input_ids"].shape == (2, 4)
