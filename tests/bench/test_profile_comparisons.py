"""A profile's comparisons section: two targets or two precisions of one configuration, each side measured one
window per process; a malformed comparison is one line naming the file, the item and the key."""

import pytest
import yaml
from profile_invariants import profile_violations

from hwbench_pipeline.bench.profiles import ProfileError, load_profile

BASE = {"families": ["bert"], "presets": ["tiny"], "batch_sizes": [1], "seq_lens": [16], "precisions": ["fp32"],
        "threads": 1}


def _load(tmp_path, comparisons):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**BASE, "comparisons": comparisons}))
    return load_profile(str(path))


def test_two_targets_and_two_precisions_become_pairs_of_one_window_configurations(tmp_path):
    profile = _load(tmp_path, [
        {"model": "bert", "preset": "small", "batch_size": 1, "seq_len": 128,
         "targets": ["cpu-torch", "cpu-onnxruntime"]},
        {"model": "gpt2", "preset": "tiny", "batch_size": 2, "seq_len": 32, "precisions": ["fp32", "int8"],
         "target": "cpu-openvino", "pairs": 8, "seconds_per_process": 0.25, "threshold": 0.02},
    ])
    assert profile_violations(profile) == []
    by_target, by_precision = profile.comparisons
    assert by_target.labels == ("cpu-torch", "cpu-onnxruntime") and by_target.precisions == ("fp32", "fp32")
    assert by_target.pairs == 6 and by_target.seconds_per_process == 0.5
    # int8 is its canonical spec, the dynamic recipe; the sides are the labels
    assert by_precision.labels == ("fp32", "int8-dynamic") and by_precision.targets == ("cpu-openvino",) * 2
    a, b = by_precision.configs(threads=2)
    assert (a.target, a.precision, a.quantization) == ("cpu-openvino", "fp32", "none")
    assert (b.precision, b.quantization) == ("int8", "dynamic")
    # one window per process: each pair is one process of each side
    assert a.rule.processes == a.rule.max_processes == 1 and a.rule.max_seconds == 0.25
    assert (a.family, a.preset, a.batch_size, a.seq_len, a.threads) == ("gpt2", "tiny", 2, 32, 2)


def test_a_profile_without_comparisons_has_none(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_profile(str(path)).comparisons == ()


ITEM = {"model": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 16}


@pytest.mark.parametrize("comparisons, message", [
    ([], "expected a non-empty list"),
    ([{**ITEM}], "give 'targets' (two targets) or 'precisions'"),
    ([{**ITEM, "targets": ["cpu-torch", "cpu-onnxruntime"], "precisions": ["fp32", "bf16"]}], "exactly one of"),
    ([{**ITEM, "targets": ["cpu-torch", "cpu-torch"]}], "two different names"),
    ([{**ITEM, "targets": ["cpu-torch"]}], "two different names"),
    ([{**ITEM, "targets": ["cpu-torch", "cpu-onnxruntime"], "target": "cpu-openvino"}], "not both"),
    ([{**ITEM, "targets": ["cpu-torch", "tpu9"]}], "unknown target 'tpu9'"),
    ([{**ITEM, "precisions": ["fp32", "int3"]}], "unknown precision 'int3'"),
    ([{**ITEM, "precisions": ["int8", "int8-dynamic"]}], "name the same precision"),
    ([{**ITEM, "model": "nosuchmodel", "precisions": ["fp32", "bf16"]}], "unknown model 'nosuchmodel'"),
    ([{**ITEM, "preset": "huge", "precisions": ["fp32", "bf16"]}], "unknown preset 'huge'"),
    ([{**ITEM, "pairs": 0, "precisions": ["fp32", "bf16"]}], "'pairs' must be an integer > 0"),
    ([{**ITEM, "seconds_per_process": float("nan"), "precisions": ["fp32", "bf16"]}], "'seconds_per_process'"),
    ([{**ITEM, "batch_size": True, "precisions": ["fp32", "bf16"]}], "'batch_size' must be an integer"),
    ([{**ITEM, "speed": 11, "precisions": ["fp32", "bf16"]}], "unknown keys 'speed'"),
    ([{**ITEM, "precisions": ["fp32", "bf16"]}] * 2, "listed twice"),
    # the same sides measured with other settings would be two rows of one key
    ([{**ITEM, "precisions": ["fp32", "bf16"]}, {**ITEM, "precisions": ["fp32", "bf16"], "pairs": 8}], "listed twice"),
])
def test_a_bad_comparison_is_refused_in_one_line_naming_it(tmp_path, comparisons, message):
    with pytest.raises(ProfileError) as refused:
        _load(tmp_path, comparisons)
    text = str(refused.value)
    assert message in text and "\n" not in text and text.startswith(f"{tmp_path / 'mine.yaml'}: comparisons"), text


def test_the_quick_profile_asks_whether_onnxruntime_beats_torch_with_enough_pairs_for_a_verdict():
    (spec,) = load_profile("quick").comparisons
    assert spec.labels == ("cpu-torch", "cpu-onnxruntime") and spec.pairs >= 6  # a verdict needs six pairs
