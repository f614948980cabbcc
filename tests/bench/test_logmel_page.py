"""The browser page's log-mel features (logmel.mjs, run under node) match tasks.log_mel on the speech inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hwbench_pipeline.bench import models, speech, tasks

PAGE = Path(tasks.__file__).parent / "backends" / "browser" / "page" / "logmel.mjs"
NODE = shutil.which("node")
# features live on the (x + 4) / 4 scale, about [-1, 1.5]; node computes in float64, torch's stft in float32
TOLERANCE = 1e-3

DRIVER = """
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [page, dir] = process.argv.slice(2);
const { logMel, transposeToFramesMels } = await import(pathToFileURL(page).href);
const spec = JSON.parse(readFileSync(`${dir}/spec.json`, "utf8"));
const floats = (name) => {
  const bytes = readFileSync(`${dir}/${name}`);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
};
const waveform = floats("waveform.bin");
const filters = floats("filters.bin");
const times = [];
let features;
for (let run = 0; run < spec.runs; run++) {
  const start = performance.now();
  features = logMel(waveform, spec.batch, spec.samples, filters, spec.nMels, spec.frames);
  times.push(performance.now() - start);
}
if (spec.layout === "1-frames-mels") features = transposeToFramesMels(features, spec.batch, spec.nMels, spec.frames);
writeFileSync(`${dir}/features.bin`, features);
console.log(JSON.stringify({ times }));
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: it runs the browser page's JavaScript")


def _page_log_mel(tmp_path: Path, recipe: speech.LogMelRecipe, runs: int = 1) -> tuple[torch.Tensor, list[float]]:
    """What logmel.mjs computes from the recipe's waveform, in the recipe's layout, and the ms each run took."""
    batch, samples = recipe.waveform.shape
    (tmp_path / "driver.mjs").write_text(DRIVER)
    (tmp_path / "waveform.bin").write_bytes(recipe.waveform.numpy().astype("<f4").tobytes())
    (tmp_path / "filters.bin").write_bytes(tasks.mel_filters(recipe.n_mels).numpy().astype("<f4").tobytes())
    spec = {"batch": batch, "samples": samples, "nMels": recipe.n_mels, "frames": recipe.frames,
            "layout": recipe.layout, "runs": runs}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([NODE, str(tmp_path / "driver.mjs"), str(PAGE), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shape = (batch, recipe.n_mels, recipe.frames) if recipe.layout == "mels-frames" else \
        (batch, 1, recipe.frames, recipe.n_mels)
    features = np.fromfile(tmp_path / "features.bin", dtype="<f4").reshape(shape)
    return torch.from_numpy(features), json.loads(done.stdout)["times"]


@pytest.mark.parametrize(("family", "layout"), [("whisper", "mels-frames"), ("clap", "1-frames-mels")])
def test_the_page_computes_the_features_the_model_is_fed(tmp_path, family, layout):
    # whisper small: 80 mels x 500 frames; clap small: 64 mels x 1024 frames, frames first
    config = models.build_config(family, "small")
    features = models.make_inputs(family, config, 2, 8)["input_features"]
    recipe = speech.log_mel_recipe(features)
    assert recipe is not None and recipe.layout == layout and recipe.waveform.shape[0] == 2
    page, _ = _page_log_mel(tmp_path, recipe)
    assert page.shape == features.shape
    assert float((page - features).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("n_mels", [80, 64])
@pytest.mark.parametrize("layout", ["mels-frames", "1-frames-mels"])
def test_the_page_matches_torch_in_both_layouts(tmp_path, n_mels, layout):
    frames = 300
    waveform = speech.speech_waveform(2, tasks.samples_for_frames(frames))
    expected = tasks.log_mel(waveform, n_mels, frames)
    if layout == "1-frames-mels":
        expected = expected.transpose(1, 2).unsqueeze(1)
    page, _ = _page_log_mel(tmp_path, speech.LogMelRecipe(waveform, n_mels, frames, layout))
    assert page.shape == expected.shape
    assert float((page - expected).abs().max()) <= TOLERANCE


def test_the_page_keeps_the_utterance_maximum_of_frames_it_cuts(tmp_path):
    # a waveform longer than the frames asked for: the 8-decade floor comes from every frame torch.stft makes
    gen = torch.Generator().manual_seed(0)
    waveform = tasks.tone_waveforms(gen, torch.tensor([0, 3]), tasks.SAMPLE_RATE)
    waveform[:, : tasks.SAMPLE_RATE // 2] *= 1e-3  # quiet first half: its own maximum would set a lower floor
    expected = tasks.log_mel(waveform, 16, 40)
    page, _ = _page_log_mel(tmp_path, speech.LogMelRecipe(waveform, 16, 40, "mels-frames"))
    assert float((page - expected).abs().max()) <= TOLERANCE
