"""The coverage sweep on the fixed CI sample: every category on cpu-torch, a dozen exports to ONNX Runtime and
OpenVINO, each probe in a fresh process. The full sweep is benchmarks/architecture_sweep.py (docs/catalog.md)."""

import pytest

from hwbench_pipeline.bench.catalog.probe import ProbeConfig
from hwbench_pipeline.bench.catalog.sample import CI_EXPORT_SAMPLE, CI_SAMPLE
from hwbench_pipeline.bench.catalog.sweep import coverage_table, run_sweep
from hwbench_pipeline.bench.failures import FAILURE_CLASSES

# What ran when this sample was swept on an AMD EPYC with AVX-512 and native bf16 (probes run fp32 at one
# thread, so the set does not depend on the CPU's features). A capability lost is a regression; one gained
# shows in the printed table.
RUNS_ON = {
    "cpu-torch": set(CI_SAMPLE) - {"idefics3"},  # idefics3: its image path fails, the text tower alone runs
    "cpu-onnxruntime": set(CI_EXPORT_SAMPLE),  # mixtral: exported with batched experts (backends/exportable.py)
    "cpu-openvino": {"roberta", "llama", "t5", "vit", "convnext", "wav2vec2", "clip", "whisper", "videomae",
                     "mixtral"},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    journal = tmp_path_factory.mktemp("sweep") / "sample.jsonl"
    probes = [ProbeConfig(m) for m in CI_SAMPLE] + [
        ProbeConfig(m, target=t) for t in ("cpu-onnxruntime", "cpu-openvino") for m in CI_EXPORT_SAMPLE]
    return run_sweep(probes, journal, "ci-sample", timeout_s=240)


@pytest.mark.slow
def test_every_probe_of_the_sample_ends_in_a_row_and_the_known_ones_run(swept):
    table = coverage_table(swept)
    for (category, target), counts in sorted(table.items()):
        print(f"{target:16} {category:16} {dict(counts)}")
    assert len(swept) == len(CI_SAMPLE) + 2 * len(CI_EXPORT_SAMPLE)
    for row in swept:
        assert row["status"] in ("ok", "failed")
        if row["status"] == "failed":
            assert row["failure_class"] in FAILURE_CLASSES and row["message"], row
    for target, expected in RUNS_ON.items():
        ran = {r["model_type"] for r in swept if r["target"] == target and r["status"] == "ok"
               and r.get("complete", True)}
        assert expected <= ran, f"{target}: {sorted(expected - ran)} no longer run"


@pytest.mark.slow
def test_exported_models_agree_with_torch(swept):
    exported = [r for r in swept if r["target"] != "cpu-torch" and r["status"] == "ok"]
    assert exported and all(r["max_rel_diff"] is not None and r["max_rel_diff"] < 1e-3 for r in exported)


@pytest.mark.slow
def test_every_complete_probe_is_timed_and_counted_for_the_predictor(swept):
    complete = [r for r in swept if r["status"] == "ok" and r.get("complete", True)]
    for row in complete:
        timed = row["stop_reason"] in ("ci_reached", "time_cap", "sample_cap")
        assert timed or row["stop_reason"].startswith("not_timed"), row
        if timed:
            assert row["p50_ms"] > 0 and row["n_samples"] >= 3, row
        assert row["leaf_modules"] > 0, row
        assert row["flops_per_call"] is None or row["flops_per_call"] > 0, row  # None: the counter cannot trace it
