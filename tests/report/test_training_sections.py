"""The comparison report's training and distributed-training sections, rendered from real tiny runs on this host:
bert/tiny trained at batch 2 and 8 (a 60-step convergence run at 8) and llama/tiny at batch 2 in one run, bert at
batch 2 again in a later run (the report must show the newer one); DDP of bert/tiny on 1 and 2 Ray Train workers
from the session's distributed sweep (slow: a private Ray instance starts). Rows are stored as the assets store
them, through the validation suites."""

import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import report_pages

from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.scenarios.training import TrainingConfig, mark_batch_scaling, run_training_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.report.training_sections import NO_DISTRIBUTED, NO_TRAINING
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import store_measurements

RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.5, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.2)
TARGET = "cpu-torch"
TRAINING_TITLE = "Training: throughput, memory and convergence"
DISTRIBUTED_TITLE = "Distributed training: scaling with workers"
CONVERGENCE_STEPS = 60  # bert/tiny at batch 8 halves its loss within 60 steps (tests/bench/test_training.py)


def _training(family: str, batch: int, convergence_steps: int = 0) -> TrainingConfig:
    return TrainingConfig(family, "tiny", TARGET, batch, 16, threads=1, rule=RULE,
                          convergence_steps=convergence_steps)


def _store(warehouse: Warehouse, rows: list[dict], scenario: str, run_id: str) -> None:
    from hwbench_pipeline.warehouse.validation import distributed_suite, training_suite

    suite = training_suite() if scenario == "training" else distributed_suite()
    stored = store_measurements(warehouse, rows, results_table=f"{scenario}_results", suite=suite,
                                scenario=scenario, run_id=run_id, partition=TARGET, dagster_run_id="none",
                                profile="test", started=datetime.now(UTC), expected=True,
                                with_samples=scenario == "training")
    assert len(stored.valid) == len(rows), (stored.invalid, [r.get("message") for r in stored.failed])


@pytest.fixture(scope="module")
def training_runs() -> dict[str, list[dict]]:
    """Two real training runs; train-b measures bert at batch 2 again."""
    with host_measurement_lock(host_lock_dir(), log=lambda _: None):
        first = [run_training_configuration(cfg, "train-a") for cfg in (
            _training("bert", 2), _training("bert", 8, CONVERGENCE_STEPS), _training("llama", 2))]
        second = [run_training_configuration(_training("bert", 2), "train-b")]
    for rows in (first, second):
        assert all(r["status"] == "ok" for r in rows), [r.get("message") for r in rows]
        mark_batch_scaling(rows)
    return {"train-a": first, "train-b": second}


def _write_training(warehouse: Warehouse, runs: dict[str, list[dict]]) -> None:
    for run_id, rows in runs.items():  # in order: train-b is written last, so it is the newest
        _store(warehouse, rows, "training", run_id)


def _table_rows(section_html: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", section_html, flags=re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in re.findall(r"<tr>(.*?)</tr>", body,
                                                                                      flags=re.S)]


def _assert_png_links(markdown: Path, keys: list[str]) -> None:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown.read_text())
    for key in keys:
        link = f"comparison_report_files/{key}.png"
        assert link in links, f"{link} not in the Markdown"
        data = (markdown.parent / link).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_an_empty_warehouse_says_why_in_every_format(tmp_path):
    report = render_comparison_report(Warehouse(tmp_path / "data"), tmp_path / "out")
    assert {"training", "distributed"} <= set(report.empty_sections) and report.n_charts == 0
    html, md = report.html.read_text(), report.markdown.read_text()
    for text in (html, md):
        assert NO_TRAINING in text and NO_DISTRIBUTED in text
    assert '<section id="training">' in html and '<section id="distributed">' in html
    pdf = report_pages.pdf_text(report.pdf)
    assert TRAINING_TITLE in pdf and DISTRIBUTED_TITLE in pdf
    assert NO_TRAINING in pdf and NO_DISTRIBUTED in pdf


@pytest.fixture(scope="module")
def training_report(training_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("training_report")
    warehouse = Warehouse(tmp / "data")
    _write_training(warehouse, training_runs)
    return warehouse, render_comparison_report(warehouse, tmp / "report")


def test_training_charts_show_each_configurations_newest_measurement(training_runs, training_report):
    _, report = training_report
    html = report.html.read_text()
    assert "training" not in report.empty_sections and "distributed" in report.empty_sections
    figures = report_pages.figures(html)
    (bert2_a, bert8, llama2), (bert2_b,) = training_runs["train-a"], training_runs["train-b"]

    throughput = report_pages.traces(figures["training-throughput-bert-tiny"])[TARGET]
    assert throughput["x"] == [2, 8]
    # batch 2 is train-b's figure (measured last), not train-a's
    assert throughput["y"] == pytest.approx([bert2_b["throughput_samples_s"], bert8["throughput_samples_s"]])
    assert bert2_b["throughput_samples_s"] != bert2_a["throughput_samples_s"]

    memory = report_pages.traces(figures["training-memory-bert-tiny"])
    assert memory[TARGET]["y"] == pytest.approx([bert2_b["peak_rss_mb"], bert8["peak_rss_mb"]])
    assert memory[f"{TARGET} budget"]["y"] == pytest.approx([bert2_b["memory_budget_mb"], bert8["memory_budget_mb"]])
    assert memory[f"{TARGET} budget"]["line"]["dash"] == "dash"

    loss = report_pages.traces(figures["training-loss-bert-tiny"])
    assert set(loss) == {f"{TARGET} bs=8", "target reached"}  # batch 2 ran no convergence: no curve
    assert loss[f"{TARGET} bs=8"]["x"] == list(range(1, CONVERGENCE_STEPS + 1))
    assert loss[f"{TARGET} bs=8"]["y"] == pytest.approx(bert8["loss_curve"])
    assert bert8["converged"], bert8["convergence_note"]
    assert loss["target reached"]["x"] == [bert8["steps_to_target"]]

    # llama: its own throughput and memory charts; no convergence run, so no loss chart
    assert report_pages.traces(figures["training-throughput-llama-tiny"])[TARGET]["y"] == pytest.approx(
        [llama2["throughput_samples_s"]])
    assert "training-loss-llama-tiny" not in figures

    rows = {(r[0], r[2]): r for r in _table_rows(report_pages.section_html(html, "training"))}
    assert set(rows) == {("bert/tiny", "2"), ("bert/tiny", "8"), ("llama/tiny", "2")}
    assert rows[("bert/tiny", "2")][-1] == "train-b" and rows[("bert/tiny", "8")][-1] == "train-a"
    assert rows[("bert/tiny", "8")][13] == f"yes, step {bert8['steps_to_target']} of {CONVERGENCE_STEPS}"
    assert rows[("bert/tiny", "2")][13] == "not run"
    assert rows[("bert/tiny", "8")][8] == f"{bert8['throughput_samples_s']:.1f}"
    assert rows[("bert/tiny", "8")][9] == f"{bert8['throughput_tokens_s']:.0f}"  # text: tokens/s is measured
    assert rows[("bert/tiny", "8")][12].startswith("8")  # both batches fit this host's budget


def test_training_charts_reach_the_markdown_and_the_pdf(training_report):
    _, report = training_report
    keys = ["training-throughput-bert-tiny", "training-memory-bert-tiny", "training-loss-bert-tiny",
            "training-throughput-llama-tiny", "training-memory-llama-tiny"]
    _assert_png_links(report.markdown, keys)
    assert f"## {TRAINING_TITLE}" in report.markdown.read_text()
    pdf = report_pages.pdf_text(report.pdf)
    assert TRAINING_TITLE in pdf and "train-b" in pdf
    assert NO_DISTRIBUTED in pdf and NO_TRAINING not in pdf


@pytest.fixture(scope="module")
def distributed_rows(distributed_sweep) -> list[dict]:
    """DDP of bert/tiny on 1 and 2 Ray Train workers, as the distributed_runs asset measured and stored them
    (the session's distributed sweep, shared with tests/bench/test_distributed.py)."""
    _, sweep_warehouse = distributed_sweep
    stored = sweep_warehouse.read("distributed_results").filter(pl.col("strategy") == "ddp").sort("workers")
    rows = stored.drop("_partition", "_written_at").to_dicts()
    assert [r["workers"] for r in rows] == [1, 2], stored.select("strategy", "workers")
    return rows


@pytest.fixture(scope="module")
def full_report(training_runs, distributed_rows, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full_report")
    warehouse = Warehouse(tmp / "data")
    _write_training(warehouse, training_runs)
    _store(warehouse, distributed_rows, "distributed", distributed_rows[0]["run_id"])
    return render_comparison_report(warehouse, tmp / "report")


@pytest.mark.slow
def test_distributed_charts_show_scaling_and_every_ranks_throughput(distributed_rows, full_report):
    report = full_report
    assert "training" not in report.empty_sections and "distributed" not in report.empty_sections
    html = report.html.read_text()
    figures = report_pages.figures(html)
    one, two = distributed_rows
    efficiency = report_pages.traces(figures["distributed-efficiency"])
    assert efficiency["bert/tiny ddp"]["x"] == [1, 2]
    assert efficiency["bert/tiny ddp"]["y"] == pytest.approx([100.0, 100.0 * two["scaling_efficiency"]])
    assert two["scaling_efficiency"] == pytest.approx(two["throughput_samples_s"] / (2 * one["throughput_samples_s"]))
    assert efficiency["linear (100 %)"]["y"] == [100.0, 100.0]
    throughput = report_pages.traces(figures["distributed-throughput"])["bert/tiny ddp"]
    assert throughput["x"] == [1, 2]
    assert throughput["y"] == pytest.approx([one["throughput_samples_s"], two["throughput_samples_s"]])

    rows = {int(r[3]): r for r in _table_rows(report_pages.section_html(html, "distributed"))}
    assert set(rows) == {1, 2}
    per_rank = two["per_rank_throughput"]
    assert len(per_rank) == 2 and rows[2][11] == ", ".join(f"{v:.1f}" for v in per_rank)
    assert rows[2][12] == f"{100 * two['scaling_efficiency']:.0f}" and rows[1][12] == "100"
    assert rows[2][4] == "gloo" and rows[2][-1] == two["run_id"]


@pytest.mark.slow
def test_distributed_charts_reach_the_markdown_and_the_pdf(full_report):
    _assert_png_links(full_report.markdown, ["distributed-efficiency", "distributed-throughput",
                                             "training-throughput-bert-tiny"])
    pdf = report_pages.pdf_text(full_report.pdf)
    assert DISTRIBUTED_TITLE in pdf and TRAINING_TITLE in pdf and "gloo" in pdf
    assert NO_DISTRIBUTED not in pdf and NO_TRAINING not in pdf
