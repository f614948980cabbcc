"""--model names a family, a model type, a config file or a checkpoint folder; each bad one is refused."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.catalog.generic import build_config
from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
from hwbench_pipeline.bench.catalog.sources import ModelSourceError, resolve_model

TINY_ROBERTA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    vocab_size=100, max_position_embeddings=40)


@pytest.fixture
def checkpoint(tmp_path):
    """A real safetensors checkpoint of a tiny RoBERTa, written the way transformers writes one."""
    torch.manual_seed(123)
    model = AutoModel.from_config(AutoConfig.for_model("roberta", **TINY_ROBERTA))
    folder = tmp_path / "my-roberta"
    model.save_pretrained(folder)
    return folder, model


def test_a_name_is_a_curated_family_first_then_a_model_type():
    assert resolve_model("bert").kind == "family"
    source = resolve_model("roberta")
    assert (source.kind, source.model_type, source.curated) == ("model_type", "roberta", False)


def test_a_config_file_is_built_as_given_or_scaled(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "roberta", **TINY_ROBERTA, "num_hidden_layers": 6}))
    assert resolve_model(str(path)).kind == "config"
    assert build_config(str(path), "as-is").num_hidden_layers == 6
    assert build_config(str(path), "tiny").num_hidden_layers == 2


def test_a_checkpoint_is_measured_with_its_own_weights(checkpoint):
    folder, saved = checkpoint
    assert resolve_model(str(folder)).kind == "checkpoint"
    built = models.build_model(str(folder), "as-is", seed=0)  # the seed must not matter: weights are loaded
    for (name, expected), actual in zip(saved.state_dict().items(), built.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name
    config = models.build_config(str(folder), "as-is")
    inputs = models.make_inputs(str(folder), config, 2, 8, model=built)
    assert models.forward(built, inputs).shape == (2, 8, 32)
    with pytest.raises(ModelSourceError, match="use preset as-is"):
        models.build_config(str(folder), "tiny")


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_refused(checkpoint):
    folder, _ = checkpoint
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "intermediate_size": 128}))
    with pytest.raises(Exception, match="size mismatch|do not match"):
        models.build_model(str(folder), "as-is")


@pytest.mark.parametrize(("make", "expected"), [
    (lambda d: None, "needs a config.json"),
    (lambda d: (d / "config.json").write_text('{"model_type": "roberta"}'), r"no weights \(\*.safetensors\)"),
    (lambda d: [(d / "config.json").write_text('{"model_type": "roberta"}'),
                (d / "pytorch_model.bin").write_bytes(b"x")], "only pickled weights"),
    (lambda d: (d / "config.json").write_text('{"model_type": "roberta", "auto_map": {"AutoModel": "x.Y"}}'),
     "remote code"),
    (lambda d: (d / "config.json").write_text("{not json"), "not a readable JSON config"),
])
def test_bad_checkpoint_folders_are_refused_in_one_line(tmp_path, make, expected):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    make(folder)
    with pytest.raises(ModelSourceError, match=expected) as refused:
        resolve_model(str(folder))
    assert "\n" not in str(refused.value)


def test_a_config_of_an_unknown_model_type_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "not-a-model"}')
    with pytest.raises(UnknownArchitectureError, match="'not-a-model' is not an architecture"):
        resolve_model(str(path))
