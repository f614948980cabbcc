"""``hwbench plan``: prints and stores a plan, refuses bad input in one line, and with --run measures the plan,
stores it and retrains the predictor, on a warehouse of the fixture's real measurements."""

import shutil
from pathlib import Path

import polars as pl
import pytest
from fixture_data import seed_warehouse

from hwbench_pipeline.cli import main
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.predictor import Predictor, train
from hwbench_pipeline.warehouse.store import Warehouse

PROFILE = """families: [bert]
presets: [tiny]
batch_sizes: [1]
seq_lens: [32]
precisions: [fp32]
threads: 1
planner:
  families: [bert, vit]
  batch_sizes: [1, 2]
  budget: "2"
  strategy: committee
  stopping:
    min_samples: 3
    max_seconds: 0.3
    warmup_max_seconds: 0.2
    processes: 1
    max_processes: 1
"""


@pytest.fixture(scope="module")
def trained_warehouse(tmp_path_factory, measurements, hardware) -> Path:
    """A warehouse of the fixture's cpu-torch tiny rows and a predictor trained on them (trained once)."""
    rows = measurements.filter((pl.col("target") == "cpu-torch") & (pl.col("preset") == "tiny"))
    store = seed_warehouse(tmp_path_factory.mktemp("planned") / "data", rows, hardware)
    inputs = data.load(store)
    train(inputs.results, inputs.models, inputs.targets, store.data_dir / "predictor")
    return store.data_dir


@pytest.fixture()
def warehouse_dir(tmp_path: Path, trained_warehouse: Path) -> Path:
    """A copy of the trained warehouse of one's own, and the profile with the planner section."""
    shutil.copytree(trained_warehouse, tmp_path / "data")
    (tmp_path / "planner.yaml").write_text(PROFILE)
    return tmp_path


def plan(tmp: Path, *extra: str) -> int:
    return main(["plan", "--profile", str(tmp / "planner.yaml"), "--data-dir", str(tmp / "data"),
                 "--targets", "cpu-torch", *extra])


def test_a_plan_is_printed_with_its_lessons_and_stored(warehouse_dir, capsys):
    assert plan(warehouse_dir) == 0
    out = capsys.readouterr().out
    assert "strategy committee, budget 2 configurations per target" in out
    assert "cpu-torch: 2 of 2 candidates" in out
    stored = Warehouse(warehouse_dir / "data").read("benchmark_plans")
    assert stored.height == 2 and set(stored["family"]) == {"bert", "vit"}
    assert stored["batch_size"].to_list() == [2, 2]  # batch 1 of both is measured already
    assert all("boosters disagree" in lesson for lesson in stored["expected_lesson"])
    assert stored["predictor_held_out_mape"].null_count() == 0


@pytest.mark.parametrize(("target", "args", "message"), [
    ("cpu-torch", ["--budget", "ten minutes"], "give a number of configurations"),
    ("cpu-torch", ["--budget", "5m"], "record how long they took"),  # the fixture predates machine_s
    ("cpu-tpu", [], "no measured peaks for cpu-tpu"),
])
def test_bad_input_is_refused_in_one_line_and_nothing_is_stored(warehouse_dir, capsys, target, args, message):
    assert main(["plan", "--profile", str(warehouse_dir / "planner.yaml"), "--data-dir",
                 str(warehouse_dir / "data"), "--targets", target, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not Warehouse(warehouse_dir / "data").files("benchmark_plans")


@pytest.mark.slow
def test_run_measures_the_plan_stores_it_and_retrains_the_predictor(warehouse_dir, capsys):
    before = Predictor.load(warehouse_dir / "data" / "predictor").schema["n_rows"]
    assert plan(warehouse_dir, "--budget", "1", "--run") == 0
    out = capsys.readouterr().out
    pick = Warehouse(warehouse_dir / "data").read("benchmark_plans").row(0, named=True)
    results = Warehouse(warehouse_dir / "data").read("inference_results")
    measured = results.filter(pl.col("run_id") == pick["run_id"])
    assert measured.height == 1
    row = measured.row(0, named=True)
    assert (row["family"], row["preset"], row["batch_size"], row["seq_len"]) == (
        pick["family"], pick["preset"], pick["batch_size"], pick["seq_len"])
    assert row["p50_ms"] > 0 and row["processes"] == 1
    # its time on the machine, timed by the dispatcher from launch to row: more than the process spent loading
    assert row["machine_s"] > sum(row["process_load_s"])
    assert "measured 1 of 1 planned configurations" in out
    assert f"measured {row['p50_ms']:.3g} ms, predicted {pick['predicted_ms']:.3g} ms" in out
    assert "before," in out and "after" in out
    assert "on the 1 measured pick(s): MAPE" in out and "with their architecture held out after" in out
    assert Predictor.load(warehouse_dir / "data" / "predictor").schema["n_rows"] == before + 1
