"""Precisions as users name them: one spelling per (format, recipe), in profiles, keys and the CLI."""

import argparse

import pytest

from hwbench_pipeline.bench.precision import PrecisionError, canonical_spec, number_format, parse_spec, spec_name
from hwbench_pipeline.bench.profiles import ProfileError, load_profile
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig
from hwbench_pipeline.commands.argtypes import accuracy_drop, precision_specs


def test_a_spec_names_the_format_and_the_recipe_and_plain_int8_is_the_dynamic_recipe():
    assert parse_spec("int8") == parse_spec("INT8-Dynamic") == ("int8", "dynamic")
    assert parse_spec("int8-static") == ("int8", "static")
    assert parse_spec("bf16") == ("bf16", "none")
    assert spec_name("int8", "static") == "int8-static" and spec_name("fp32", "none") == "fp32"
    assert spec_name("int8", "unrecorded") == "int8"  # an import that does not say which recipe
    assert canonical_spec("int8") == "int8-dynamic" and number_format("int8-static") == "int8"


@pytest.mark.parametrize("text", ["int4", "fp8", "int8-awq", "", "float32"])
def test_an_unknown_precision_is_a_one_line_error_naming_the_known_ones(text):
    with pytest.raises(PrecisionError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert "\n" not in message and "int8-static" in message and repr(text) in message


def test_int8_recipes_are_different_configurations():
    def key(quantization: str) -> dict:
        return InferenceConfig("bert", "tiny", "cpu-torch", 1, 16, precision="int8",
                               quantization=quantization).key_fields()

    dynamic, static = key("dynamic"), key("static")
    assert dynamic["quantization"] == "dynamic" and static["quantization"] == "static"
    assert dynamic != static and {k for k in dynamic if dynamic[k] != static[k]} == {"quantization"}
    assert InferenceConfig("bert", "tiny", "cpu-torch", 1, 16).key_fields()["quantization"] == "none"
    assert "int8-static" in InferenceConfig("bert", "tiny", "cpu-torch", 1, 16, precision="int8",
                                            quantization="static").label


PROFILE = """
description: test
families: [bert]
presets: [tiny]
batch_sizes: [1]
seq_lens: [16]
precisions: {precisions}
threads: 1
stopping: {{ci_target: 0.05, min_samples: 5, max_seconds: 0.5}}
timeout_s: 60
"""


def _profile(tmp_path, precisions: str):
    path = tmp_path / "test.yaml"
    path.write_text(PROFILE.format(precisions=precisions))
    return load_profile(str(path))


def test_a_profile_takes_specs_and_makes_one_configuration_per_format_and_recipe(tmp_path):
    profile = _profile(tmp_path, "[fp32, int8, int8-static]")
    assert profile.precisions == ("fp32", "int8-dynamic", "int8-static")
    configs = profile.inference_configs("cpu-torch")
    assert [(c.precision, c.quantization) for c in configs] == [("fp32", "none"), ("int8", "dynamic"),
                                                                ("int8", "static")]


@pytest.mark.parametrize("precisions, expected", [
    ("[fp32, int4]", "unknown precisions int4; accepted: fp32, bf16, fp16, int8-dynamic, int8-static"),
    ("[int8, int8-dynamic]", "int8-dynamic"),  # the same spec twice, once through its alias
    ("[]", "non-empty list"),
])
def test_a_bad_precision_in_a_profile_is_a_one_line_error(tmp_path, precisions, expected):
    with pytest.raises(ProfileError) as caught:
        _profile(tmp_path, precisions)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_reads_comma_separated_specs_once_each_and_accuracy_bounds_as_percent_or_fraction():
    assert precision_specs("fp32,int8,int8-dynamic, int8-static") == [
        ("fp32", "none"), ("int8", "dynamic"), ("int8", "static")]
    assert accuracy_drop("1%") == pytest.approx(0.01) and accuracy_drop("0.02") == pytest.approx(0.02)
    for bad in ("int4", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            precision_specs(bad)
    for bad in ("-1%", "150%", "nan", "one"):
        with pytest.raises(argparse.ArgumentTypeError):
            accuracy_drop(bad)


def test_kept_weights_go_to_one_shape_per_model_and_precision_and_config_files_are_skipped(tmp_path):
    from hwbench_pipeline.bench.config_key import model_config_hash
    from hwbench_pipeline.bench.trained import weights_path

    config = tmp_path / "my-model" / "config.json"
    config.parent.mkdir()
    config.write_text('{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, '
                      '"num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 128}')
    path = tmp_path / "test.yaml"
    path.write_text(PROFILE.format(precisions="[fp32, int8]").replace("families: [bert]",
                                                                       f"families: [bert, {config}]")
                    .replace("batch_sizes: [1]", "batch_sizes: [1, 4]"))
    weights = weights_path(tmp_path / "trained", "bert", "tiny", model_config_hash("bert", "tiny"))
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")  # planning only looks for the file; scoring it is tests/bench/test_trained_quality.py
    profile = load_profile(str(path)).with_trained_dir(tmp_path / "trained")
    configs = profile.inference_configs("cpu-torch")
    with_weights = [(c.family, c.batch_size, c.spec) for c in configs if c.trained_weights]
    assert with_weights == [("bert", 1, "fp32"), ("bert", 1, "int8-dynamic")]
    assert all(c.trained_weights == str(weights) for c in configs if c.trained_weights)
    assert {c.family for c in configs} == {"bert", str(config)}  # a config-file family is planned, without weights
