"""Profiles name any architecture, config file or checkpoint folder for inference, like a curated family."""

import textwrap

import pytest

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.profiles import ProfileError, load_profile

BASE = """
families: {families}
presets: {presets}
batch_sizes: [1]
seq_lens: [16, 4096]
precisions: [fp32]
threads: 1
"""


def _profile(tmp_path, families, presets="[tiny]"):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(BASE.format(families=families, presets=presets)))
    return load_profile(str(path))


def test_model_types_and_config_files_become_inference_configurations(tmp_path):
    config = tmp_path / "mine.json"
    config.write_text('{"model_type": "gpt2", "n_layer": 3, "n_positions": 64}')
    profile = _profile(tmp_path, f"[bert, roberta, vit, {config}]")
    configs = {(c.family, c.seq_len) for c in profile.inference_configs("cpu-torch")}
    # text lengths are capped at the model's positions; a model without text runs at 1
    assert ("roberta", 16) in configs and ("roberta", 512) in configs and ("vit", 1) in configs
    assert (str(config), 64) in configs
    assert models.describe(str(config), "tiny")["layers"] == 2


def test_unknown_models_and_scaled_checkpoints_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ProfileError, match="unknown families robertta; accepted: bert, t5"):
        _profile(tmp_path, "[bert, robertta]")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "roberta"}')
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ProfileError, match="presets: \\[full\\]"):
        _profile(tmp_path, f"[{folder}]")
    assert _profile(tmp_path, f"[{folder}]", presets="[full]").families == (str(folder),)
