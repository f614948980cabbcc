"""The standard learnable tasks: deterministic, the answer really is in the input, every family can score them."""

import math

import pytest
import torch

from hwbench_pipeline.bench import models, tasks


@pytest.mark.parametrize("family", ["bert", "whisper", "clip"])
def test_batches_are_a_pure_function_of_seed_and_step(family):
    config = models.build_config(family, "tiny")
    a = tasks.make_task_batch(family, config, 4, 16, seed=3, step=7)
    b = tasks.make_task_batch(family, config, 4, 16, seed=3, step=7)
    c = tasks.make_task_batch(family, config, 4, 16, seed=3, step=8)
    held_out = tasks.make_task_batch(family, config, 4, 16, seed=3, step=7, split="eval")
    assert a.inputs.keys() == b.inputs.keys()
    assert all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs) and torch.equal(a.labels, b.labels)
    changed = [k for k in a.inputs if not torch.equal(a.inputs[k], c.inputs[k])]
    assert changed, "the next step must be a different batch"
    assert any(not torch.equal(a.inputs[k], held_out.inputs[k]) for k in a.inputs)


def test_text_task_plants_the_label_keyword_once():
    config = models.build_config("llama", "tiny")
    batch = tasks.make_task_batch("llama", config, 16, 12, seed=0)
    ids = batch.inputs["input_ids"]
    keyword_ids = ids - tasks.SYMBOL_OFFSET
    for row, label in zip(keyword_ids, batch.labels.tolist(), strict=True):
        keywords = row[row < tasks.NUM_CLASSES]
        assert keywords.tolist() == [label]
        assert int(row[-1]) == tasks.QUERY  # the answer comes after the query token
    assert int(ids.max()) < config.vocab_size and int(ids.min()) >= tasks.SYMBOL_OFFSET


def test_grating_orientation_is_the_label():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3] * 4)
    images = tasks.grating_images(gen, labels, 3, 48, 48)
    # the grating varies across x for 0 degrees, along the diagonal for 45, across y for 90, anti-diagonal 135:
    # the direction with the least change between neighbouring pixels runs along the stripes
    steps = {
        0: images[..., 1:, :] - images[..., :-1, :],  # along y
        1: images[..., 1:, :-1] - images[..., :-1, 1:],  # along (+y, -x)
        2: images[..., :, 1:] - images[..., :, :-1],  # along x
        3: images[..., 1:, 1:] - images[..., :-1, :-1],  # along (+y, +x)
    }
    energy = torch.stack([d.pow(2).mean(dim=(1, 2, 3)) for d in steps.values()], dim=1)
    assert torch.equal(energy.argmin(dim=1), labels)


def test_audio_tone_is_at_the_label_frequency():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    waves = tasks.tone_waveforms(gen, labels, tasks.SAMPLE_RATE // 2)
    spectrum = torch.fft.rfft(waves).abs()
    peak_hz = spectrum.argmax(dim=1).float() * tasks.SAMPLE_RATE / waves.shape[1]
    expected = torch.tensor(tasks.TONE_HZ)[labels]
    assert torch.allclose(peak_hz, expected, atol=2.0)
    mel = tasks.log_mel(waves, 16, 40)
    assert mel.shape == (8, 16, 40)
    loudest_band = mel.mean(dim=2).argmax(dim=1)
    assert len(set(zip(labels.tolist(), loudest_band.tolist(), strict=True))) == tasks.NUM_CLASSES
    assert all(loudest_band[labels == k].unique().numel() == 1 for k in range(tasks.NUM_CLASSES))


@pytest.mark.parametrize("family", list(models.FAMILIES))
def test_every_family_scores_its_task_with_one_column_per_class(family):
    torch.manual_seed(0)
    task_model, config = tasks.trainable(family, "tiny")
    seq = 4000 if family == "wav2vec2" else 8
    batch = tasks.make_task_batch(family, config, 2, seq, seed=0)
    reference = models.make_inputs(family, config, 2, seq, seed=0)
    for key, value in batch.inputs.items():  # the task fills the model's own input shapes
        if tasks.OBJECTIVES[family] == "prompt_similarity" and key in ("input_ids", "attention_mask"):
            assert value.shape == (tasks.NUM_CLASSES, reference[key].shape[1])
        else:
            assert value.shape == reference[key].shape, key
    scores = task_model(batch.inputs)
    assert scores.shape == (2, tasks.NUM_CLASSES)
    loss = torch.nn.functional.cross_entropy(scores, batch.labels)
    # an untrained model is near chance: within a factor of 2 of ln(classes)
    assert math.log(tasks.NUM_CLASSES) / 2 < float(loss.detach()) < 2 * math.log(tasks.NUM_CLASSES)
    loss.backward()
    # the loss reaches (nearly) the whole model; what it misses is by design: bert's unused pooler, detr's box
    # head, the last vision layer llava skips (it takes the penultimate layer's features)
    total = sum(p.numel() for p in task_model.parameters())
    reached = sum(p.numel() for p in task_model.parameters() if p.grad is not None)
    assert reached / total >= 0.95


def test_unknown_family_is_refused_with_the_accepted_list():
    with pytest.raises(models.UnknownModelError, match="accepted"):
        tasks.make_task_batch("resnet", None, 1, 1)
