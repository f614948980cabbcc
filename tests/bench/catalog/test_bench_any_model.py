"""`hwbench bench` measures any architecture, config file or checkpoint, on several targets at once."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule

RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.5, warmup_max_seconds=0.2,
                    processes=1, max_processes=1)


def test_an_uncurated_architecture_is_measured_like_a_family():
    row = run_configuration(InferenceConfig("mixtral", "tiny", "cpu-torch", 2, 8, rule=RULE), "test")
    assert row["status"] == "ok", row.get("message")
    assert row["family"] == "mixtral" and row["preset"] == "tiny"
    assert row["p50_ms"] > 0 and row["n_samples"] >= 5 and row["flops_per_call"] > 0
    assert row["throughput_tokens_s"] == pytest.approx(2 * 8 / (row["p50_ms"] / 1e3))


@pytest.mark.slow
def test_bench_cli_measures_a_checkpoint_on_two_targets(tmp_path):
    torch.manual_seed(0)
    config = AutoConfig.for_model("roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=100, max_position_embeddings=40)
    AutoModel.from_config(config).save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "rows.json"
    env = {**os.environ, "HWBENCH_DATA_DIR": str(tmp_path / "data"), "HWBENCH_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "hwbench_pipeline.cli", "bench", "--model", str(tmp_path / "ckpt"), "--preset",
         "as-is", "--target", "cpu-torch,cpu-onnxruntime", "--batch", "1", "--seq", "8", "--threads", "1",
         "--max-seconds", "0.5", "--ci-target", "0.05", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["target"], r["status"]) for r in rows] == [("cpu-torch", "ok"), ("cpu-onnxruntime", "ok")], rows
    assert rows[1]["max_rel_diff"] < 1e-3  # the exported checkpoint agrees with torch
    assert "cpu-torch" in result.stdout and "cpu-onnxruntime" in result.stdout
