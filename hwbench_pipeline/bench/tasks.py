"""Standard learnable training tasks, one per modality, generated deterministically from a seed.

Every task is a ``NUM_CLASSES``-way classification whose answer is planted in the input, so a model that
learns gets its loss well below chance (``ln NUM_CLASSES``) within tens of steps, and one that cannot learn
(a broken backward, a frozen parameter, a bad precision) stays at chance:

* ``text_keyword``  - filler tokens with one of the class keywords somewhere in the sequence;
* ``image_orientation`` - a noisy sine grating at the class's orientation (video: a drifting grating);
* ``audio_tone``    - a noisy sine tone at the class's frequency (raw waveform, or its log-mel spectrogram);
* ``image_text`` / ``audio_text`` / ``video_text`` - the image, audio or video task, scored by a
  contrastive model against one text prompt per class whose first token is the class keyword, or asked of a
  vision-language model whose answer comes after a text prompt.

How each family turns its output into class scores (its loss) is :data:`OBJECTIVES`: a small linear head on
mean-pooled hidden states (encoders without a head), the model's own classifier restricted to the first
``NUM_CLASSES`` labels, the model's LM head at the last position restricted to the answer tokens (decoders and
seq2seq), or the image/audio/video-to-prompt similarity logits of contrastive models. Scores always have
``NUM_CLASSES`` columns, so chance loss is the same for every family and "half the initial loss" means the
same amount of learning everywhere. Batches are a pure function of (family, config, batch size, sequence
length, seed, step): a run is repeatable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.catalog.curated import CURATED, curated
from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily

NUM_CLASSES = 4
SAMPLE_RATE = 16_000
TONE_HZ = (250.0, 500.0, 1000.0, 2000.0)  # an octave apart: distinct mel bands even with 16 mel bins
N_FFT, HOP = 400, 160  # 25 ms window, 10 ms hop (Whisper's and CLAP's front end)
NOISE_STD = 0.5  # image noise around a unit-amplitude grating
TONE_NOISE_STD = 0.1

# Token symbols: the keywords, the answers, one query marker and filler. A symbol's id is SYMBOL_OFFSET + symbol:
# every catalog config keeps its special ids (pad, bos, eos, unk, decoder start) below 8 or near the top of
# its vocabulary, so the task never collides with them.
SYMBOL_OFFSET = 8
FILLER_SYMBOLS = 64
KEYWORD = 0
ANSWER = NUM_CLASSES
QUERY = 2 * NUM_CLASSES
FILLER = QUERY + 1

#: task -> modality group of the issue (text, vision, audio, multimodal)
TASK_MODALITY: dict[str, str] = {
    "text_keyword": "text", "image_orientation": "vision", "audio_tone": "audio",
    "image_text": "multimodal", "audio_text": "multimodal", "video_text": "multimodal",
}
#: the ways a family's output becomes (batch, NUM_CLASSES) scores (see TaskModel.forward)
OBJECTIVE_KINDS: tuple[str, ...] = ("pooled_head", "own_classifier", "answer_token", "prompt_similarity")


def _grouped(order: tuple[str, ...], value: Callable[[CuratedFamily], str]) -> dict[str, str]:
    """family -> ``value`` of its curated unit, the families grouped in ``order`` (catalog order within a group);
    a value outside ``order`` fails here, at import."""
    units = sorted(CURATED.values(), key=lambda unit: order.index(value(unit)))
    return {unit.name: value(unit) for unit in units}


#: family -> its task, grouped by modality
FAMILY_TASKS: dict[str, str] = _grouped(tuple(TASK_MODALITY), lambda unit: unit.task)
#: family -> how its output becomes (batch, NUM_CLASSES) scores
OBJECTIVES: dict[str, str] = _grouped(OBJECTIVE_KINDS, lambda unit: unit.objective)


@dataclass
class TaskBatch:
    """One batch of a task: the model's inputs, the class of each sample, and the text tokens it carries."""

    task: str
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    text_tokens: int | None

    def to(self, device: str | torch.device) -> TaskBatch:
        return TaskBatch(self.task, {k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device),
                         self.text_tokens)


def _generator(seed: int, step: int, split: str) -> torch.Generator:
    # distinct, reproducible streams for every (seed, split, step); the eval split never meets a train batch
    salt = {"train": 0, "eval": 1}[split]
    return torch.Generator().manual_seed((seed * 2 + salt) * 1_000_003 + step)


def symbol_ids(symbols: torch.Tensor) -> torch.Tensor:
    """Token ids of task symbols."""
    return symbols + SYMBOL_OFFSET


def answer_token_ids() -> list[int]:
    """Token ids of the class answers (what an answer_token objective scores)."""
    return [SYMBOL_OFFSET + ANSWER + k for k in range(NUM_CLASSES)]


# ---- modality data ------------------------------------------------------------------------------------------


def keyword_symbols(gen: torch.Generator, labels: torch.Tensor, length: int) -> torch.Tensor:
    """(batch, length) filler symbols with the label's keyword at a random position."""
    if length < 1:
        raise ValueError("the text task needs at least one free token position")
    batch = labels.shape[0]
    symbols = FILLER + torch.randint(0, FILLER_SYMBOLS, (batch, length), generator=gen)
    position = torch.randint(0, length, (batch,), generator=gen)
    symbols[torch.arange(batch), position] = KEYWORD + labels
    return symbols


def grating_images(gen: torch.Generator, labels: torch.Tensor, channels: int, height: int, width: int,
                   frames: int | None = None) -> torch.Tensor:
    """Noisy sine gratings whose orientation is the label (0, 45, 90, 135 degrees), with a random wavelength
    (4-8 px) and phase per image; ``frames`` gives each sample that many frames (a drifting grating).

    Every patch of the image shows the orientation, so a patch-based model can learn it without first
    learning where to look."""
    per_sample = frames or 1
    batch = labels.shape[0]
    y = torch.arange(height, dtype=torch.float32).view(height, 1)
    x = torch.arange(width, dtype=torch.float32).view(1, width)
    theta = (math.pi / NUM_CLASSES) * labels.float().view(batch, 1, 1, 1)
    wavelength = 4.0 + 4.0 * torch.rand(batch, per_sample, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(batch, per_sample, 1, 1, generator=gen)
    wave = torch.sin(2 * math.pi * (x * torch.cos(theta) + y * torch.sin(theta)) / wavelength + phase)
    images = wave.unsqueeze(2) + NOISE_STD * torch.randn(batch, per_sample, channels, height, width, generator=gen)
    return images if frames else images[:, 0]


def tone_waveforms(gen: torch.Generator, labels: torch.Tensor, samples: int) -> torch.Tensor:
    """(batch, samples) sine tones at TONE_HZ[label], random phase and level, plus white noise."""
    batch = labels.shape[0]
    t = torch.arange(samples, dtype=torch.float32) / SAMPLE_RATE
    freq = torch.tensor(TONE_HZ)[labels].unsqueeze(1)
    phase = 2 * math.pi * torch.rand(batch, 1, generator=gen)
    level = 0.5 + 0.5 * torch.rand(batch, 1, generator=gen)
    return level * torch.sin(2 * math.pi * freq * t + phase) + TONE_NOISE_STD * torch.randn(
        batch, samples, generator=gen)


@functools.cache
def mel_filters(n_mels: int) -> torch.Tensor:
    """(N_FFT // 2 + 1, n_mels) Slaney mel filter bank that :func:`log_mel` projects power spectra with
    (shared with the browser page, which computes the same features in JavaScript)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                           mel_scale="slaney")
    return torch.from_numpy(bank).float()  # (freq bins, mels)


def log_mel(waveforms: torch.Tensor, n_mels: int, frames: int) -> torch.Tensor:
    """(batch, n_mels, frames) log-mel spectrogram, scaled like Whisper's features (log10, 8 decades, /4)."""
    spec = torch.stft(waveforms, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec.abs() ** 2  # (batch, freq bins, time)
    mel = torch.einsum("bft,fm->bmt", power, mel_filters(n_mels)).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
    return ((mel + 4.0) / 4.0)[..., :frames]


def samples_for_frames(frames: int) -> int:
    """Waveform samples whose log-mel spectrogram has ``frames`` frames."""
    return (frames - 1) * HOP  # torch.stft (centred) gives 1 + samples // HOP frames


# ---- family inputs ------------------------------------------------------------------------------------------


def class_prompts(
    family: str, config: Any, seq_len: int, seed: int, *, leading: int = 0
) -> dict[str, torch.Tensor]:
    """One text prompt per class for a contrastive model: the class keyword, then fixed filler, with the
    special tokens make_inputs gives that family (``leading`` of them before the keyword: clap's <s>)."""
    text = models.make_inputs(family, config, NUM_CLASSES, seq_len, seed=seed)
    ids = text["input_ids"].clone()
    free = ids.shape[1] - leading - 1  # every family here ends its text with an end token
    if free < 1:
        raise ValueError(f"{family}: seq_len={seq_len} leaves no room for the class keyword")
    body = torch.full((NUM_CLASSES, free), FILLER)
    body[:, 0] = KEYWORD + torch.arange(NUM_CLASSES)
    ids[:, leading:leading + free] = symbol_ids(body)
    return {"input_ids": ids, "attention_mask": text["attention_mask"]}


def decoder_prompt(start: int, batch: int, seq_len: int) -> torch.Tensor:
    """A decoder prompt that carries no class information: the start token, then query markers."""
    prompt = torch.full((batch, seq_len), SYMBOL_OFFSET + QUERY)
    prompt[:, 0] = start
    return prompt


def make_task_batch(family: str, config: Any, batch_size: int, seq_len: int, *, seed: int = 0, step: int = 0,
                    split: str = "train") -> TaskBatch:
    """Batch ``step`` of the family's standard task; shapes are those of ``models.make_inputs``."""
    if family not in FAMILY_TASKS:
        raise models.UnknownModelError(f"unknown model family {family!r}; accepted: {', '.join(FAMILY_TASKS)}")
    unit = curated(family)
    gen = _generator(seed, step, split)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=gen)
    inputs = models.make_inputs(family, config, batch_size, seq_len, seed=seed)
    unit.plant_task(config, inputs, labels, gen, seq_len, seed)
    if unit.objective == "prompt_similarity":  # the text it reads is the class prompts, not one text per sample
        text_tokens = NUM_CLASSES * seq_len
    else:
        text_tokens = models.tokens_per_call(family, config, batch_size, seq_len)
    return TaskBatch(unit.task, inputs, labels, text_tokens)


# ---- objectives ---------------------------------------------------------------------------------------------


def _hidden_size(config: Any) -> int:
    return int(config.hidden_size)


class TaskModel(nn.Module):
    """A catalog model plus what turns its main output into (batch, NUM_CLASSES) class scores."""

    def __init__(self, family: str, model: nn.Module, config: Any) -> None:
        super().__init__()
        self.family = family
        self.objective = OBJECTIVES[family]
        self.model = model
        if self.objective == "pooled_head":
            self.head = nn.Linear(_hidden_size(config), NUM_CLASSES)
        self.register_buffer("answers", torch.tensor(answer_token_ids()), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = models.forward(self.model, inputs)
        if self.objective == "pooled_head":  # (batch, positions, hidden)
            return self.head(out.mean(dim=1))
        if self.objective == "own_classifier":  # vit (batch, labels); detr (batch, queries, labels + 1)
            return (out.mean(dim=1) if out.dim() == 3 else out)[:, :NUM_CLASSES]
        if self.objective == "answer_token":  # (batch, positions, vocabulary)
            return out[:, -1].index_select(-1, self.answers)
        return out  # prompt_similarity: (batch, NUM_CLASSES) logits against the class prompts


def trainable(family: str, preset: str, *, seed: int = 0) -> tuple[TaskModel, Any]:
    """The catalog model of ``family``/``preset`` (random init) in training mode, every parameter trainable."""
    config = models.build_config(family, preset)
    model = models.build_model(family, preset, seed=seed)
    torch.manual_seed(seed)  # the head's init
    task_model = TaskModel(family, model, config)
    task_model.requires_grad_(True)
    return task_model.train(), config


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(dim=-1) == labels).float().mean())
