import json

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.config_key import UNBUILT, config_hash, identity_fields, model_config_hash
from hwbench_pipeline.bench.scenarios.distributed import DistributedConfig
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig
from hwbench_pipeline.bench.scenarios.training import TrainingConfig
from hwbench_pipeline.warehouse.schema import CONFIG_KEY


def test_a_config_hash_follows_the_settings_and_ignores_where_the_config_was_written():
    config = models.build_config("bert", "tiny")
    same = models.build_config("bert", "tiny")
    same._name_or_path = "/somewhere/else"
    same.transformers_version = "0.0.1"
    wider = models.build_config("bert", "tiny")
    wider.intermediate_size += 1
    assert config_hash(config) == config_hash(same)
    assert config_hash(config) != config_hash(wider)
    assert len(config_hash(config)) == 16 and model_config_hash("bert", "tiny") == config_hash(config)


def test_a_sub_config_change_changes_the_hash():
    config = models.build_config("llava", "tiny")
    other = models.build_config("llava", "tiny")
    other.vision_config.num_hidden_layers += 1
    assert config_hash(config) != config_hash(other)


def test_an_edited_config_file_is_a_new_configuration(tmp_path):
    path = tmp_path / "config.json"
    base = {"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64}
    path.write_text(json.dumps(base))
    before = model_config_hash(str(path), "as-is")
    path.write_text(json.dumps({**base, "num_hidden_layers": 3}))
    after = model_config_hash(str(path), "as-is")
    assert UNBUILT not in (before, after) and before != after


def test_a_model_that_cannot_be_built_keys_as_unbuilt():
    assert model_config_hash("bert", "no-such-preset") == UNBUILT


def test_every_scenario_key_holds_every_key_column():
    inference = InferenceConfig("bert", "tiny", "cpu-torch", batch_size=1, seq_len=16)
    training = TrainingConfig("bert", "tiny", "cpu-torch", batch_size=1, seq_len=16)
    distributed = DistributedConfig(family="bert", preset="tiny", target="cpu-torch", strategy="ddp", workers=2,
                                    batch_size=4, seq_len=16)
    assert list(inference.key_fields()) == list(training.key_fields()) == CONFIG_KEY  # in the warehouse's order
    assert list(distributed.key_fields()) == [*CONFIG_KEY, "strategy", "workers"]
    assert identity_fields("bert", "tiny") == {"config_hash": config_hash(models.build_config("bert", "tiny")),
                                               "quantization": "none", "cache_precision": "none",
                                               "attention": "eager", "measurement_method": "hwbench-1"}
