"""Bad input: one line that says what was wrong and what is accepted, exit status 2, nothing stored."""

import subprocess
import sys

import pytest


def _hwbench(*args, data_dir, tmp_path):
    env = {"HWBENCH_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(tmp_path / "dagster_home"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (["run", "--profile", "turbo"],
     "unknown profile 'turbo': use one of architectures, coverage, full, precision, quick, smoke"),
    (["run", "--profile", "smoke", "--targets", "tpu0-jax"], "unknown hardware target 'tpu0-jax'"),
    (["run", "--profile", "smoke", "--targets", "cuda7-torch"], "not available on this host"),
    (["bench", "--model", "gpt5"], "model_type 'gpt5' is not an architecture transformers"),
    (["bench", "--model", "robertta"], "did you mean roberta"),
    (["bench", "--model", "./nowhere/config.json"], "no such config file or checkpoint folder"),
    (["bench", "--model", "roberta", "--preset", "huge"], "accepted presets: tiny, small, base, full, as-is"),
    (["bench", "--model", "bert", "--target", "cpu-torch,tpu0-jax"], "unknown hardware target 'tpu0-jax'"),
    (["bench", "--model", "bert", "--preset", "huge"], "unknown preset 'huge'"),
    (["bench", "--model", "bert", "--batch", "0,x"], "--batch must be comma-separated positive integers"),
])
def test_bad_input_is_one_line_exit_2_and_stores_nothing(tmp_path, args, expected):
    data_dir = tmp_path / "data"
    result = _hwbench(*args, data_dir=data_dir, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("text, expected", [
    ("families: [bert]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [16]\n", "missing precisions"),
    ("families: [bert]\npresets: [tiny]\nbatch_sizes: [0]\nseq_lens: [16]\nprecisions: [fp32]\n",
     "'batch_sizes' must be a non-empty list of positive integers"),
    ("families: [bort]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [16]\nprecisions: [fp32]\n",
     "unknown families bort; accepted: bert, t5"),
    ("families: [bert\n", "not valid YAML"),
    ("families: [bert]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [16]\nprecisions: [fp32]\nspeed: 11\n",
     "unknown keys speed"),
])
def test_malformed_profile_file_is_refused(tmp_path, text, expected):
    profile = tmp_path / "mine.yaml"
    profile.write_text(text)
    result = _hwbench("run", "--profile", str(profile), data_dir=tmp_path / "data", tmp_path=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "data").exists()
