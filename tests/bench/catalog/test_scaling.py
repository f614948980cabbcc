"""Presets of any config: fewer layers, heads and experts; the head width and every consistency rule kept."""

import pytest
from transformers import AutoConfig

from hwbench_pipeline.bench.catalog.scaling import AS_IS, scale_config, sub_configs


def test_tiny_keeps_the_head_width_and_the_grouped_query_ratio():
    full = AutoConfig.for_model("llama", hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                                intermediate_size=11008, num_hidden_layers=32)
    tiny = scale_config(full, "tiny")
    assert tiny.num_hidden_layers == 2 and tiny.num_attention_heads == 2
    assert tiny.hidden_size // tiny.num_attention_heads == 128  # 4096 / 32
    assert tiny.num_attention_heads % tiny.num_key_value_heads == 0
    assert tiny.intermediate_size == pytest.approx(11008 * tiny.hidden_size / 4096, abs=8)
    assert full.num_hidden_layers == 32  # the original is untouched


def test_per_layer_lists_follow_the_new_depth_and_experts_are_capped():
    config = AutoConfig.for_model("mixtral")
    tiny = scale_config(config, "tiny")
    assert tiny.num_local_experts == 4 and tiny.num_experts_per_tok <= 2
    gemma = scale_config(AutoConfig.for_model("gemma3_text"), "tiny")
    assert len(gemma.layer_types) == gemma.num_hidden_layers == 2


def test_every_tower_of_a_multimodal_config_shrinks_and_token_ids_keep_their_vocabulary():
    config = AutoConfig.for_model("gemma3")
    tiny = scale_config(config, "tiny")
    assert all(getattr(part, "num_hidden_layers", 0) <= 2 for part in sub_configs(tiny))
    # the image token id (262144) indexes the text vocabulary: it is not cut below it
    assert tiny.text_config.vocab_size > tiny.image_token_index


def test_as_is_is_a_copy_and_an_unknown_preset_is_refused():
    config = AutoConfig.for_model("bert")
    assert scale_config(config, AS_IS).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="accepted: tiny, small, base, as-is"):
        scale_config(config, "huge")
