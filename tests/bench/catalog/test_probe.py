"""Probes: one architecture, one target, one real forward pass; every outcome is a row, every failure classified."""

import importlib.util
import json

import pytest

from hwbench_pipeline.bench.catalog.probe import ProbeConfig, probe_architecture
from hwbench_pipeline.bench.catalog.sweep import coverage_table, read_journal, run_sweep


@pytest.mark.parametrize(("model_type", "recipe"), [
    ("roberta", "text"), ("llama", "text"), ("t5", "text"), ("vit", "image"), ("wav2vec2", "waveform"),
    ("whisper", "mel (channels first)"), ("speech_to_text", "mel (frames first)"), ("clip", "image+text"),
    ("llava", "image placeholders+text"), ("videomae", "video"), ("patchtst", "time series"),
    ("mixtral", "text"), ("qwen2_5_vl_vision", "patch grid"), ("ernie4_5_vl_moe", "image patch grid+text"),
    ("qwen2_5_vl", "image patch grid+text"),
])
def test_an_architecture_of_each_kind_runs_a_forward_pass_with_the_recipe_that_fits_it(model_type, recipe):
    row = probe_architecture(ProbeConfig(model_type), "test")
    assert row["status"] == "ok", row["message"]
    assert row["recipe"] == recipe and row["params"] > 0 and row["first_call_ms"] > 0
    assert row["output_shape"] and len(row["config_hash"]) == 16


def test_a_probe_times_a_series_counts_flops_and_describes_the_model_it_built():
    from hwbench_pipeline.bench.catalog.generic import build_config, build_model, count_flops
    from hwbench_pipeline.bench.catalog.probe import PROBE_RULE

    row = probe_architecture(ProbeConfig("mixtral"), "test")
    assert row["status"] == "ok", row["message"]
    assert row["n_samples"] >= PROBE_RULE.min_samples or row["stop_reason"] == "time_cap"
    assert row["p50_ms"] > 0 and row["cv"] >= 0 and row["peak_rss_mb"] > row["baseline_rss_mb"] > 0
    config = build_config("mixtral", "tiny")
    assert row["flops_per_call"] == count_flops(build_model(config), config, 1, 16)
    assert (row["layers"], row["experts"], row["kv_heads"], row["attention_kind"]) == (2, 4, 1, "mqa")
    assert row["leaf_modules"] > row["layers"] and isinstance(row["contaminated"], bool)


def test_a_per_stage_list_in_a_config_is_described_by_its_largest_value():
    row = probe_architecture(ProbeConfig("swin"), "test")
    assert row["status"] == "ok", row["message"]
    assert isinstance(row["heads"], int) and row["heads"] >= 2


def test_a_required_companion_input_the_recipe_left_out_is_added():
    row = probe_architecture(ProbeConfig("grounding-dino"), "test")  # an image detector queried with text
    assert row["status"] == "ok", row["message"]
    assert (row["recipe"], row["inputs"]) == ("image", "pixel_values,input_ids,attention_mask")


def test_a_model_that_needs_a_missing_package_is_classified_as_such():
    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here: timm's own wrapper builds")
    row = probe_architecture(ProbeConfig("timm_wrapper"), "test")
    assert (row["status"], row["failure_class"], row["missing_package"]) == ("failed", "missing_dependency", "timm")


def test_a_default_timm_backbone_becomes_transformers_own_and_the_row_says_so():
    row = probe_architecture(ProbeConfig("detr"), "test")
    assert row["status"] == "ok", row["message"]
    assert row["config_fixes"].startswith("backbone_config={'model_type': 'resnet'")


@pytest.mark.parametrize(("model_type", "fix"), [("ministral", "head_dim=128"), ("nemotron", "num_key_value_heads=48")])
def test_a_size_the_default_config_leaves_unset_is_implied_by_the_others_and_the_row_says_so(model_type, fix):
    row = probe_architecture(ProbeConfig(model_type), "test")
    assert row["status"] == "ok", row["message"]
    assert row["config_fixes"].startswith(fix) and "unset in the default config" in row["config_fixes"]


def test_a_model_too_big_for_this_host_is_refused_before_it_is_built(tmp_path):
    # about 1.1 T parameters, 4 TiB of fp32 weights: more than any host this runs on has (counted on meta)
    config = tmp_path / "huge.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 16384, "num_attention_heads": 128,
                                  "num_key_value_heads": 8, "num_hidden_layers": 256, "intermediate_size": 65536}))
    row = probe_architecture(ProbeConfig(str(config), preset="as-is"), "test")
    assert row["failure_class"] == "out_of_memory" and "not built" in row["message"]
    assert "GiB of fp32 weights" in row["message"]


def test_onnx_runtime_and_openvino_run_the_exported_model_and_agree_with_torch():
    for target in ("cpu-onnxruntime", "cpu-openvino"):
        row = probe_architecture(ProbeConfig("roberta", target=target), "test")
        assert row["status"] == "ok", row["message"]
        assert row["max_rel_diff"] < 1e-3


@pytest.mark.parametrize("target", ["cpu-onnxruntime", "cpu-openvino"])
def test_a_mixture_of_experts_is_exported_with_batched_experts_and_the_row_says_so(target):
    row = probe_architecture(ProbeConfig("qwen3_moe", target=target), "test")
    assert row["status"] == "ok", row["message"]
    assert "experts_implementation=batched_mm" in row["config_fixes"] and row["max_rel_diff"] < 1e-3


def test_a_sweep_resumes_from_its_journal_and_counts_outcomes_per_category(tmp_path):
    journal = tmp_path / "sweep.jsonl"
    logged = []
    first = run_sweep([ProbeConfig("roberta"), ProbeConfig("vit")], journal, "sweep-1", log=logged.append)
    assert [r["status"] for r in first] == ["ok", "ok"]
    assert len({r["worker_pid"] for r in first}) == 2  # a fresh process per probe
    with journal.open("a") as out:
        out.write('{"model_type": "cut short')  # what a kill mid-write leaves
    again = run_sweep([ProbeConfig("roberta"), ProbeConfig("vit"), ProbeConfig("bert"),
                       ProbeConfig("roberta", batch_size=2)], journal, "sweep-2", log=logged.append)
    # only the probes not yet in the journal ran: another shape of a probed architecture is another probe
    assert [(r["model_type"], r["batch_size"]) for r in again] == [("bert", 1), ("roberta", 2)]
    assert any("2 already in" in line for line in logged)
    rows = read_journal(journal)
    assert len(rows) == 4 and all(json.dumps(r, default=str) for r in rows)
    table = coverage_table(rows)
    # coverage counts architectures: roberta at two shapes is one
    assert table[("text encoder", "cpu-torch")]["ok"] == 2 and table[("vision", "cpu-torch")]["ok"] == 1
