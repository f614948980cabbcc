"""The coverage sweep in a browser: seven architectures of the CI sample (text encoder, decoder, encoder-decoder,
vision, audio, image+text, and an audio codec whose output is int64 codes) probed on browser-chromium-wasm, each
in a fresh process with its own page, so the coverage table has a browser column. The sweep of every browser
target is benchmarks/architecture_sweep.py --targets browser-chromium-wasm,… (docs/browser.md)."""

import pytest

from hwbench_pipeline.bench.catalog.probe import ProbeConfig
from hwbench_pipeline.bench.catalog.sample import CI_SAMPLE
from hwbench_pipeline.bench.catalog.sweep import coverage_table, run_sweep
from hwbench_pipeline.bench.failures import FAILURE_CLASSES
from hwbench_pipeline.bench.hardware import skipped_targets

TARGET = "browser-chromium-wasm"
SAMPLE = ("roberta", "llama", "t5", "vit", "whisper", "clip", "encodec")
# Every one of them ran when swept here (2-core AMD EPYC, Chromium 156, onnxruntime-web 1.30), as did the rest of
# the CI export sample: a capability lost is a regression.
RUNS_IN_THE_BROWSER = set(SAMPLE)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    why = dict(skipped_targets()).get(TARGET)
    if why is not None:
        pytest.skip(f"{TARGET} is absent here: {why}")
    journal = tmp_path_factory.mktemp("sweep") / "browser.jsonl"
    assert set(SAMPLE) <= set(CI_SAMPLE)
    return run_sweep([ProbeConfig(m, target=TARGET) for m in SAMPLE], journal, "ci-browser-sample",
                     timeout_s=240)


@pytest.mark.slow
def test_every_probe_in_the_browser_ends_in_a_row_and_the_known_ones_run(swept):
    table = coverage_table(swept)
    for (category, target), counts in sorted(table.items()):
        print(f"{target:24} {category:16} {dict(counts)}")
    assert {target for _, target in table} == {TARGET} and len(swept) == len(SAMPLE)
    for row in swept:
        if row["status"] == "failed":
            assert row["failure_class"] in FAILURE_CLASSES and row["message"], row
    ran = {r["model_type"] for r in swept if r["status"] == "ok"}
    assert ran >= RUNS_IN_THE_BROWSER, f"{sorted(RUNS_IN_THE_BROWSER - ran)} no longer run in the browser"
    # each output that ran was compared with torch (a row only exists when it agreed), and timed
    for row in (r for r in swept if r["status"] == "ok"):
        assert row["max_rel_diff"] is not None, row
        if row["stop_reason"].startswith("not_timed"):  # a first call too slow for a probe, on a slow host
            continue
        assert row["p50_ms"] > 0 and row["n_samples"] >= 3, row
