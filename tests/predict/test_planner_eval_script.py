"""benchmarks/planner_eval.py runs end to end in worker processes and saves the curves the report draws (a small
sample: one seed, two strategies, big rounds; the full evaluation is the script's defaults)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_evaluation_script_prints_and_saves_learning_curves_for_each_strategy(tmp_path):
    out = tmp_path / "curves.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "planner_eval.py"), "--seeds", "1",
                           "--strategies", "random,committee", "--per-round", "150", "--workers", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads(out.read_text())
    curves = saved["averaged"]["150 configurations"]
    assert set(curves) == {"random", "committee"}
    for points in curves.values():
        # 10 to start with, then 150 a round until the pool is spent: every strategy ends on the full grid
        assert points[0]["n_measured"] == 10 and points[1]["n_measured"] == 160
        assert points[-1]["mape"] == pytest.approx(saved["full_grid_mean"]["mape"])
    assert "summary, 150 configurations a round" in done.stdout
    assert "below random's MAPE at" in done.stdout
