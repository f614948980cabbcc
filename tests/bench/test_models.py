"""Tests for the model catalog (hwbench_pipeline.bench.models): tiny presets only run real forwards."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwbench_pipeline.bench import models as M

FAMILY_NAMES = list(M.FAMILIES)
DESCRIBE_KEYS = {"family", "preset", "category", "modality", "sequence_meaning", "hf_class", "params"}
DESCRIBE_KEYS |= {"layers", "hidden_size", "heads", "intermediate_size", "vocab_size"}
DESCRIBE_KEYS |= {"vision_layers", "vision_hidden_size", "kv_heads", "experts", "attention_kind", "model_type"}


def _short_seq(family: str) -> int:
    """A small sequence length valid for the family (audio samples for wav2vec2)."""
    return 4000 if family == "wav2vec2" else 8


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_catalog_shape():
    expected = ["bert", "t5", "llama", "qwen2", "clip", "vit", "detr", "clap", "whisper", "wav2vec2"]
    assert expected + ["llava", "llava_next", "xclip"] == FAMILY_NAMES
    assert M.PRESETS == ("tiny", "small", "base", "full")
    for name, spec in M.FAMILIES.items():
        assert spec.name == name
        assert spec.category in M.CATEGORIES
        assert spec.default_seq_len == M.default_seq_len(name) >= 1
    generators = {n for n, s in M.FAMILIES.items() if s.generates_tokens}
    assert generators == {"t5", "llama", "qwen2", "whisper", "llava", "llava_next"}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_forward_is_finite_and_deterministic(family: str):
    model = M.build_model(family, "tiny", seed=0)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    for seq_len in (M.default_seq_len(family), _short_seq(family)):
        inputs = M.make_inputs(family, model.config, 2, seq_len, seed=3)
        again = M.make_inputs(family, model.config, 2, seq_len, seed=3)
        assert inputs.keys() == again.keys()
        assert all(torch.equal(inputs[k], again[k]) for k in inputs)
        with torch.inference_mode():
            out = M.forward(model, inputs)
        assert isinstance(out, torch.Tensor)
        assert out.shape[0] == 2
        assert torch.isfinite(out).all()

    # same seed -> same weights and output; another seed -> different weights
    inputs = M.make_inputs(family, model.config, 2, _short_seq(family), seed=0)
    twin = M.build_model(family, "tiny", seed=0)
    other = M.build_model(family, "tiny", seed=1)
    with torch.inference_mode():
        first, second, third = (M.forward(m, inputs) for m in (model, twin, other))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_text_lengths_follow_seq_len():
    cfg = M.build_config("bert", "tiny")
    assert M.make_inputs("bert", cfg, 2, 17)["input_ids"].shape == (2, 17)
    cfg = M.build_config("t5", "tiny")
    inputs = M.make_inputs("t5", cfg, 2, 9)
    assert inputs["input_ids"].shape == inputs["decoder_input_ids"].shape == (2, 9)
    cfg = M.build_config("whisper", "tiny")
    inputs = M.make_inputs("whisper", cfg, 2, 5)
    assert inputs["decoder_input_ids"].shape == (2, 5)
    assert inputs["input_features"].shape == (2, cfg.num_mel_bins, 2 * cfg.max_source_positions)
    with pytest.raises(ValueError, match="seq_len"):
        M.make_inputs("clip", M.build_config("clip", "tiny"), 1, 78)


@pytest.mark.parametrize("family", ["llava", "llava_next"])
def test_llava_prompts_hold_one_image_worth_of_tokens(family: str):
    cfg = M.build_config(family, "tiny")
    inputs = M.make_inputs(family, cfg, 2, 10)
    n_image = M.image_tokens(family, cfg)
    assert n_image > 0
    assert inputs["input_ids"].shape == (2, 10 + n_image)
    assert ((inputs["input_ids"] == cfg.image_token_index).sum(dim=1) == n_image).all()


def test_llava_next_follows_the_configured_image_size():
    cfg = M.build_config("llava_next", "tiny")
    tile = cfg.vision_config.image_size
    assert M.llava_next_image_size(cfg) == (2 * tile, 2 * tile)  # default: 2x2 AnyRes grid + base tile
    assert M.make_inputs("llava_next", cfg, 1, 4)["pixel_values"].shape[1] == 5
    cfg.bench_image_size = (tile, 2 * tile)  # a wide image: 1x2 grid + base tile
    inputs = M.make_inputs("llava_next", cfg, 2, 4)
    assert inputs["pixel_values"].shape[1] == 3
    model = M.build_model("llava_next", "tiny")
    with torch.inference_mode():
        out = M.forward(model, inputs)
    assert out.shape[:2] == (2, 4 + M.image_tokens("llava_next", cfg))


def test_tokens_per_call():
    assert M.tokens_per_call("bert", M.build_config("bert", "tiny"), 4, 128) == 512
    assert M.tokens_per_call("whisper", M.build_config("whisper", "tiny"), 2, 64) == 128
    for family in ("vit", "detr", "wav2vec2"):
        assert M.tokens_per_call(family, M.build_config(family, "tiny"), 4, 128) is None


def test_meta_device_allocates_nothing():
    model = M.build_model("llama", "full", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 7_000_000_000


def test_describe_all_presets():
    rows = {(f, p): M.describe(f, p) for f in FAMILY_NAMES for p in M.PRESETS}
    for (family, preset), row in rows.items():
        assert set(row) == DESCRIBE_KEYS, (family, preset)
        assert row["family"] == family and row["preset"] == preset
        assert row["params"] > 0
        assert row["layers"] > 0 and row["hidden_size"] > 0 and row["heads"] > 0
        assert row["hf_class"] == M.FAMILIES[family].hf_class
    for family in FAMILY_NAMES:
        counts = [rows[family, p]["params"] for p in M.PRESETS]
        assert counts == sorted(set(counts)), (family, counts)  # tiny < small < base < full
        assert counts[0] < 2_000_000
        assert 5_000_000 <= counts[1] <= 40_000_000, (family, counts[1])
    for family in ("clip", "xclip", "llava", "llava_next"):
        assert rows[family, "base"]["vision_layers"] > 0
    assert rows["bert", "base"]["vision_layers"] is None
    assert (rows["llama", "base"]["attention_kind"], rows["bert", "base"]["attention_kind"]) == ("gqa", "mha")
    assert {rows[f, "tiny"]["model_type"] for f in FAMILY_NAMES} == set(FAMILY_NAMES)  # each is a model type
    assert rows["vit", "base"]["vocab_size"] is None


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_describe_params_match_real_tiny_model(family: str):
    model = M.build_model(family, "tiny")
    assert M.describe(family, "tiny")["params"] == sum(p.numel() for p in model.parameters())


# Published parameter counts of the checkpoints the presets copy (class as built by build_model).
PUBLISHED_PARAMS = {
    ("bert", "base"): 109_482_240,  # google-bert/bert-base-uncased, BertModel incl. pooler
    ("bert", "full"): 335_141_888,  # google-bert/bert-large-uncased, BertModel incl. pooler
    ("t5", "base"): 222_903_552,  # google-t5/t5-base, T5ForConditionalGeneration (tied lm head)
    ("llama", "base"): 1_235_814_400,  # meta-llama/Llama-3.2-1B
    ("llama", "full"): 8_030_261_248,  # meta-llama/Meta-Llama-3-8B
    ("qwen2", "base"): 494_032_768,  # Qwen/Qwen2-0.5B
    ("qwen2", "full"): 7_615_616_512,  # Qwen/Qwen2-7B
    ("clip", "base"): 151_277_313,  # openai/clip-vit-base-patch32
    ("clip", "full"): 427_616_513,  # openai/clip-vit-large-patch14
    ("vit", "base"): 86_567_656,  # google/vit-base-patch16-224 (1000-class head)
    ("whisper", "base"): 72_593_920,  # openai/whisper-base
    ("whisper", "full"): 1_543_490_560,  # openai/whisper-large-v3
    ("llava", "full"): 7_063_427_072,  # llava-hf/llava-1.5-7b-hf
}


@pytest.mark.parametrize(("family", "preset"), list(PUBLISHED_PARAMS))
def test_published_parameter_counts(family: str, preset: str):
    assert M.describe(family, preset)["params"] == PUBLISHED_PARAMS[family, preset]


def test_unknown_family_or_preset():
    with pytest.raises(M.UnknownModelError) as err:
        M.build_config("gpt9", "tiny")
    message = str(err.value)
    assert "gpt9" in message and all(f in message for f in FAMILY_NAMES)
    assert "\n" not in message

    with pytest.raises(M.UnknownModelError) as err:
        M.build_model("bert", "huge")
    assert "huge" in str(err.value) and all(p in str(err.value) for p in M.PRESETS)

    for call in (
        lambda: M.describe("nope", "tiny"),
        lambda: M.default_seq_len("nope"),
        lambda: M.make_inputs("nope", None, 1, 1),
    ):
        with pytest.raises(M.UnknownModelError):
            call()
    assert issubclass(M.UnknownModelError, ValueError)


def test_flop_counter_sees_attention_matmuls():
    config = M.build_config("bert", "tiny")
    assert config._attn_implementation == "eager"
    model = M.build_model("bert", "tiny")
    inputs = M.make_inputs("bert", config, 2, 32)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        M.forward(model, inputs)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = {op: n for op, n in counts.items() if op in ("aten.bmm", "aten.matmul", "aten.baddbmm")}
    assert attention, counts
    # QK^T and AV: 2 matmuls x 2 FLOPs x batch x seq^2 x hidden per layer
    cfg = model.config
    expected = 2 * 2 * 2 * 32 * 32 * cfg.hidden_size * cfg.num_hidden_layers
    assert sum(attention.values()) == expected
    assert counter.get_total_flops() > sum(attention.values())


def test_sub_configs_use_eager_attention():
    for family in ("clip", "llava", "llava_next", "xclip", "clap"):
        config = M.build_config(family, "tiny")
        for key in ("text_config", "vision_config", "audio_config"):
            sub = getattr(config, key, None)
            if sub is not None:
                assert sub._attn_implementation == "eager", (family, key)
