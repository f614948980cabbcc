"""Real speech for audio models: a short shipped clip, its waveform batches and their log-mel features.

Audio models are measured on speech rather than noise: attention, activations and any data-dependent path see
what they see in use. The clip (``speech_clip.wav``, 16 kHz mono 16-bit PCM) was synthesized once with
espeak-ng by :func:`write_speech_clip`; ``speech_clip.json`` beside it records how (tool, version, command,
text, date, sha256). At run time the library only reads the shipped clip: espeak-ng need not be installed.

Batches loop the clip to any length, each row starting a quarter second after the one before (modulo the clip),
so the rows differ as a batch of real utterances does while staying a pure function of (batch, samples).
:func:`log_mel_recipe` recognizes features made here, so a runtime that computes its own features (the browser
page) can be handed the waveform they came from.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.resources
import io
import json
import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench import tasks

CLIP_NAME = "speech_clip.wav"
PROVENANCE_NAME = "speech_clip.json"
SAMPLE_RATE = tasks.SAMPLE_RATE
CLIP_SECONDS = 3.0  # espeak's output is cut here: the sentence ends at 2.9 s, the rest is its trailing silence
TEXT = "The quick brown fox jumps over the lazy dog."
ESPEAK_ARGS = ("-v", "en", "-s", "150")
ROW_OFFSET = SAMPLE_RATE // 4  # each batch row starts this many samples after the previous one
# a log-mel row spans at most 8 decades of power, i.e. 2 on the (x + 4) / 4 scale
LOG_MEL_RANGE = 2.0
LAYOUTS = ("mels-frames", "1-frames-mels")


# ---- the shipped clip ---------------------------------------------------------------------------------------


@functools.cache
def _clip() -> torch.Tensor:
    raw = importlib.resources.files(__package__).joinpath(CLIP_NAME).read_bytes()
    with wave.open(io.BytesIO(raw)) as clip:
        if (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{CLIP_NAME} must be {SAMPLE_RATE} Hz mono 16-bit PCM")
        pcm = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


def speech_clip() -> torch.Tensor:
    """The shipped clip: (samples,) float32 in [-1, 1) at :data:`SAMPLE_RATE`."""
    return _clip().clone()


def provenance() -> dict[str, Any]:
    """How the shipped clip was made (``speech_clip.json``)."""
    return json.loads(importlib.resources.files(__package__).joinpath(PROVENANCE_NAME).read_text())


def speech_waveform(batch: int, samples: int) -> torch.Tensor:
    """(batch, samples) float32 in [-1, 1]: the clip looped or cut to ``samples``, row ``i`` starting
    ``i * ROW_OFFSET`` samples into it (modulo its length)."""
    if batch < 1 or samples < 1:
        raise ValueError(f"speech_waveform needs batch >= 1 and samples >= 1, got {batch}, {samples}")
    clip = _clip()
    length = clip.shape[0]
    offsets = [(row * ROW_OFFSET) % length for row in range(batch)]
    looped = clip.repeat(math.ceil((max(offsets) + samples) / length))
    # stack copies the slices: the result owns its memory and never aliases the cached clip
    return torch.stack([looped[offset:offset + samples] for offset in offsets])


def min_frames() -> int:
    """Fewest log-mel frames :func:`speech_log_mel` makes: torch.stft's reflect padding needs more than
    ``N_FFT / 2`` samples."""
    frames = 1
    while tasks.samples_for_frames(frames) <= tasks.N_FFT // 2:
        frames += 1
    return frames


def speech_log_mel(batch: int, n_mels: int, frames: int) -> torch.Tensor:
    """(batch, n_mels, frames) log-mel features of :func:`speech_waveform`, as :func:`tasks.log_mel` makes them."""
    if frames < min_frames():
        raise ValueError(f"speech log-mel features need at least {min_frames()} frames, got {frames}")
    return tasks.log_mel(speech_waveform(batch, tasks.samples_for_frames(frames)), n_mels, frames)


# ---- recognizing speech features ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMelRecipe:
    """How a tensor of speech log-mel features was made: its waveform, mel bins, frames and layout."""

    waveform: torch.Tensor  # (batch, samples) float32
    n_mels: int
    frames: int
    layout: str  # "mels-frames" for (batch, n_mels, frames) or "1-frames-mels" for (batch, 1, frames, n_mels)


def _as_mels_frames(value: torch.Tensor) -> tuple[torch.Tensor, str] | None:
    if value.dim() == 3:
        return value, "mels-frames"
    if value.dim() == 4 and value.shape[1] == 1:
        return value[:, 0].transpose(1, 2), "1-frames-mels"
    return None


def log_mel_recipe(value: torch.Tensor) -> LogMelRecipe | None:
    """The recipe of ``value`` if it is exactly :func:`speech_log_mel` features (either layout), else None."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or value.numel() == 0:
        return None
    shaped = _as_mels_frames(value)
    if shaped is None:
        return None
    features, layout = shaped
    batch, n_mels, frames = features.shape
    if not 1 <= n_mels <= tasks.N_FFT // 2 + 1 or frames < min_frames():
        return None
    # cheap on the tensor's own device: every row spans at most 8 decades (random values span more)
    flat = features.detach().reshape(batch, -1)
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    if not bool(torch.isfinite(flat).all()) or bool((spread > LOG_MEL_RANGE + 1e-5).any()):
        return None
    features = features.detach().cpu()
    # the first row alone before a whole batch: a tone or another clip fails here at a fraction of the cost
    if batch > 1 and not torch.allclose(features[:1], speech_log_mel(1, n_mels, frames), atol=1e-4, rtol=0):
        return None
    waveform = speech_waveform(batch, tasks.samples_for_frames(frames))
    if not torch.equal(features, tasks.log_mel(waveform, n_mels, frames)):
        return None
    return LogMelRecipe(waveform=waveform, n_mels=n_mels, frames=frames, layout=layout)


# ---- making the clip (needs espeak-ng) ----------------------------------------------------------------------


def resample(signal: np.ndarray, source_rate: int, target_rate: int, *, zero_crossings: int = 32,
             beta: float = 8.6) -> np.ndarray:
    """``signal`` resampled by windowed-sinc interpolation (Kaiser window), low-passed at 95 % of the lower
    Nyquist frequency; float64 in, float64 out, ``len * target / source`` samples (rounded down)."""
    cutoff = 0.95 * min(1.0, target_rate / source_rate)  # in cycles per source sample, relative to Nyquist
    half_width = math.ceil(zero_crossings / cutoff)  # taps on each side, in source samples
    padded = np.concatenate([np.zeros(half_width), signal, np.zeros(half_width + 1)])
    out = np.empty(len(signal) * target_rate // source_rate)
    for start in range(0, len(out), 4096):  # in chunks: (chunk, taps) matrices stay small
        positions = np.arange(start, min(start + 4096, len(out))) * (source_rate / target_rate)
        base = np.floor(positions).astype(np.int64)
        taps = base[:, None] + np.arange(-half_width + 1, half_width + 1)[None, :]
        distance = positions[:, None] - taps
        window = np.i0(beta * np.sqrt(np.clip(1.0 - (distance / half_width) ** 2, 0.0, None))) / np.i0(beta)
        kernel = cutoff * np.sinc(cutoff * distance) * window
        out[start:start + len(positions)] = (padded[taps + half_width] * kernel).sum(axis=1)
    return out


def _espeak_version(espeak: str) -> str:
    # "eSpeak NG text-to-speech: 1.51  Data at: ..." -> "1.51"
    line = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True).stdout
    return line.split(":", 1)[1].split()[0]


def write_speech_clip(path: str | Path) -> dict[str, Any]:
    """Synthesize the clip with espeak-ng into ``path`` (a .wav) and its provenance beside it (.json).

    espeak-ng speaks :data:`TEXT` at 22050 Hz; the result is cut to :data:`CLIP_SECONDS`, resampled to 16 kHz
    (:func:`resample`), rounded to 16-bit PCM. Returns the provenance written."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise FileNotFoundError("espeak-ng is not installed: it synthesizes the speech clip")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        spoken = Path(tmp) / "espeak.wav"
        subprocess.run([espeak, *ESPEAK_ARGS, "-w", str(spoken), TEXT], check=True, capture_output=True)
        with wave.open(str(spoken)) as out:
            if (out.getnchannels(), out.getsampwidth()) != (1, 2):
                raise ValueError("espeak-ng wrote something other than mono 16-bit PCM")
            source_rate = out.getframerate()
            pcm = np.frombuffer(out.readframes(out.getnframes()), dtype="<i2")
    signal = pcm[: int(CLIP_SECONDS * source_rate)].astype(np.float64) / 32768.0
    if source_rate != SAMPLE_RATE:
        signal = resample(signal, source_rate, SAMPLE_RATE)
    clip = np.clip(np.round(signal * 32768.0), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(clip.tobytes())
    command = " ".join(["espeak-ng", *ESPEAK_ARGS, "-w", "espeak.wav", json.dumps(TEXT)])
    record = {
        "tool": "espeak-ng",
        "version": _espeak_version(espeak),
        "command": command,
        "text": TEXT,
        "espeak_sample_rate": source_rate,
        "processing": (
            f"first {CLIP_SECONDS} s of espeak's output; "
            + (f"resampled {source_rate} -> {SAMPLE_RATE} Hz by windowed-sinc interpolation in numpy "
               "(Kaiser window, beta 8.6, 32 zero crossings, cutoff 0.95 x 8 kHz; "
               "hwbench_pipeline.bench.speech.resample); " if source_rate != SAMPLE_RATE else "")
            + "rounded to 16-bit PCM, no gain"
        ),
        "sample_rate": SAMPLE_RATE,
        "samples": len(clip),
        "format": "WAV, mono, 16-bit PCM",
        "generator": "hwbench_pipeline.bench.speech.write_speech_clip",
        "date": datetime.date.today().isoformat(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":  # regenerate the shipped clip: python -m hwbench_pipeline.bench.speech
    print(json.dumps(write_speech_clip(Path(__file__).with_name(CLIP_NAME)), indent=2))
