"""The comparison report's generation section, rendered from real tiny generation runs on this host: llama/tiny
greedy decoding of 6 new tokens at batch 1 and 2 (prompt 8), prompt 16 (batch 1) and a static cache (batch 1,
prompt 8) in one run, batch 1 prompt 8 again in a later run (the report must show the newer one), and gpt2/tiny
asked for more positions than its context holds (a real refusal, recorded as a failure). Rows are stored as the
generation_runs asset stores them, through the generation suite."""

import dataclasses
from datetime import UTC, datetime

import polars as pl
import pytest
import report_pages

from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.scenarios.generation import (
    GENERATION_RULE,
    GenerationConfig,
    measure_generation,
    run_generation_configuration,
)
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.report.generation_section import (
    FAILURE_COLUMNS,
    MESSAGE_CHARS,
    NO_GENERATION,
    STREAM_COLUMNS,
    TABLE_COLUMNS,
    TITLE,
)
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import store_measurements

TARGET = "cpu-torch"
NEW_TOKENS = 6
RULE = dataclasses.replace(GENERATION_RULE, min_samples=3, max_seconds=0.5, warmup_max_seconds=0.2)


def _config(batch: int, prompt: int, cache: str = "dynamic", family: str = "llama",
            stream_clients: tuple[int, ...] = ()) -> GenerationConfig:
    return GenerationConfig(family, "tiny", TARGET, batch_size=batch, seq_len=prompt, new_tokens=NEW_TOKENS,
                            cache=cache, rule=RULE, stream_clients=stream_clients)


def _store(warehouse: Warehouse, rows: list[dict], run_id: str) -> None:
    from hwbench_pipeline.warehouse.validation import generation_suite

    stored = store_measurements(warehouse, rows, results_table="generation_results", suite=generation_suite(),
                                scenario="generation", run_id=run_id, partition=TARGET, dagster_run_id="none",
                                profile="test", started=datetime.now(UTC), expected=True, with_samples=False)
    assert not stored.invalid, stored.invalid


@pytest.fixture(scope="module")
def generation_runs() -> dict[str, list[dict]]:
    """Two real generation runs; gen-b measures batch 1, prompt 8, dynamic cache again, streamed to 1 and 2
    clients too. gen-a also holds the gpt2/tiny configuration whose prompt and new tokens do not fit its 1024
    positions."""
    with host_measurement_lock(host_lock_dir(), log=lambda _: None):
        first = [run_generation_configuration(cfg, "gen-a") for cfg in (
            _config(1, 8), _config(2, 8), _config(1, 16), _config(1, 8, "static"),
            _config(1, 1020, family="gpt2"))]
        second = [run_generation_configuration(_config(1, 8, stream_clients=(1, 2)), "gen-b")]
    assert [r["status"] for r in first] == ["ok"] * 4 + ["failed"], [r.get("message") for r in first]
    assert second[0]["status"] == "ok", second[0].get("message")
    return {"gen-a": first, "gen-b": second}


@pytest.fixture(scope="module")
def generation_report(generation_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generation_report")
    warehouse = Warehouse(tmp / "data")
    for run_id, rows in generation_runs.items():  # in order: gen-b is written last, so it is the newest
        _store(warehouse, rows, run_id)
    return render_comparison_report(warehouse, tmp / "report")


def _measured(runs: dict[str, list[dict]]) -> dict[tuple[int, int, str], dict]:
    """The newest successful row of each llama configuration by (batch, prompt, cache)."""
    newest = {}
    for rows in runs.values():  # gen-a, then gen-b: the later run replaces the earlier one
        for r in rows:
            if r["status"] == "ok":
                newest[r["batch_size"], r["seq_len"], r["cache_implementation"]] = r
    return newest


def test_an_empty_warehouse_shows_the_empty_state_line_in_every_format(tmp_path):
    report = render_comparison_report(Warehouse(tmp_path / "data"), tmp_path / "out")
    assert "generation" in report.empty_sections
    page, md = report.html.read_text(), report.markdown.read_text()
    assert NO_GENERATION in report_pages.section_html(page, "generation")
    assert f"## {TITLE}" in md and f"*{NO_GENERATION}*" in md
    pdf = report_pages.pdf_text(report.pdf)
    assert TITLE in pdf and NO_GENERATION in pdf


def test_the_table_shows_each_configurations_newest_measurement(generation_runs, generation_report):
    assert "generation" not in generation_report.empty_sections
    section = report_pages.section_html(generation_report.html.read_text(), "generation")
    measured, _, failures = report_pages.tables(section)
    assert list(measured[0]) == TABLE_COLUMNS and list(failures[0]) == FAILURE_COLUMNS
    rows = {(int(r["batch"]), int(r["prompt"]), r["cache"]): r for r in measured}
    expected = _measured(generation_runs)
    assert set(rows) == set(expected) == {(1, 8, "dynamic"), (2, 8, "dynamic"), (1, 16, "dynamic"), (1, 8, "static")}
    assert rows[1, 8, "dynamic"]["run"] == "gen-b" and rows[2, 8, "dynamic"]["run"] == "gen-a"
    for key, r in expected.items():
        line = rows[key]
        assert line["target"] == TARGET and line["model"] == "llama/tiny" and line["new tokens"] == str(NEW_TOKENS)
        assert line["precision"] == "fp32" and line["KV precision ran"] == r["cache_precision_ran"]
        assert line["TTFT p50 ms"] == f"{r['ttft_p50_ms']:.3f}" and line["TTFT p99 ms"] == f"{r['ttft_p99_ms']:.3f}"
        assert line["ITL p50 ms"] == f"{r['itl_p50_ms']:.3f}" and line["ITL p99 ms"] == f"{r['itl_p99_ms']:.3f}"
        assert line["tokens/s"] == f"{r['tokens_per_s']:.1f}"
        assert line["KV bytes/token"] == f"{r['kv_cache_bytes_per_token']:.0f}"
        assert line["peak RSS MiB"] == f"{r['peak_rss_mb']:.0f}"
        assert line["tokens equal to generate()"] == f"{r['tokens_matching_reference']}/{NEW_TOKENS}"
    # the newer run's figures, not the older one's
    older = generation_runs["gen-a"][0]
    assert rows[1, 8, "dynamic"]["TTFT p50 ms"] == f"{generation_runs['gen-b'][0]['ttft_p50_ms']:.3f}"
    assert older["ttft_samples_ms"] != generation_runs["gen-b"][0]["ttft_samples_ms"]


def test_the_streaming_table_shows_the_overhead_and_each_client_counts_figures(generation_runs, generation_report):
    _, streaming, _ = report_pages.tables(report_pages.section_html(generation_report.html.read_text(), "generation"))
    streamed = generation_runs["gen-b"][0]
    assert list(streaming[0]) == STREAM_COLUMNS and len(streaming) == 1  # only the configuration asked to stream
    line = streaming[0]
    assert line["run"] == "gen-b" and line["clients"] == "1 / 2" and line["tokens equal in process"] == "yes"
    assert line["TTFT overhead ms"] == f"{streamed['stream_overhead_ttft_ms']:+.2f}"
    assert line["TTFT p50 ms"] == " / ".join(f"{v:.2f}" for v in streamed["stream_ttft_p50_ms"])


def test_the_ttft_chart_plots_p50_against_prompt_length_with_a_whisker_to_p99(generation_runs, generation_report):
    figures = report_pages.figures(generation_report.html.read_text())
    traces = report_pages.traces(figures["generation-ttft-llama-tiny"])
    measured = _measured(generation_runs)
    assert set(traces) == {f"{TARGET} cache=dynamic bs=1", f"{TARGET} cache=dynamic bs=2",
                           f"{TARGET} cache=static bs=1"}
    line = traces[f"{TARGET} cache=dynamic bs=1"]
    points = [measured[1, 8, "dynamic"], measured[1, 16, "dynamic"]]
    assert line["x"] == [8, 16]
    assert line["y"] == pytest.approx([r["ttft_p50_ms"] for r in points])
    assert line["error_y"]["array"] == pytest.approx([r["ttft_p99_ms"] - r["ttft_p50_ms"] for r in points])
    assert traces[f"{TARGET} cache=static bs=1"]["y"] == pytest.approx([measured[1, 8, "static"]["ttft_p50_ms"]])


def test_the_itl_chart_plots_p50_and_p99_against_batch_size(generation_runs, generation_report):
    figures = report_pages.figures(generation_report.html.read_text())
    traces = report_pages.traces(figures["generation-itl-llama-tiny"])
    measured = _measured(generation_runs)
    name = f"{TARGET} cache=dynamic prompt=8"
    assert set(traces) == {name, f"{name} p99", f"{TARGET} cache=dynamic prompt=16",
                           f"{TARGET} cache=dynamic prompt=16 p99", f"{TARGET} cache=static prompt=8",
                           f"{TARGET} cache=static prompt=8 p99"}
    points = [measured[1, 8, "dynamic"], measured[2, 8, "dynamic"]]
    assert traces[name]["x"] == traces[f"{name} p99"]["x"] == [1, 2]
    assert traces[name]["y"] == pytest.approx([r["itl_p50_ms"] for r in points])
    assert traces[f"{name} p99"]["y"] == pytest.approx([r["itl_p99_ms"] for r in points])
    assert traces[f"{name} p99"]["line"]["dash"] == "dash"
    assert traces[name]["line"]["color"] == traces[f"{name} p99"]["line"]["color"]


def test_failures_are_listed_with_their_class_and_message(generation_runs, generation_report):
    failed = generation_runs["gen-a"][-1]
    _, _, failures = report_pages.tables(report_pages.section_html(generation_report.html.read_text(), "generation"))
    assert len(failures) == 1
    row = failures[0]
    assert (row["model"], row["batch"], row["prompt"], row["new tokens"]) == ("gpt2/tiny", "1", "1020", "6")
    assert row["failure class"] == failed["failure_class"] == "unsupported_configuration"
    assert row["message"] == failed["message"].splitlines()[0][:MESSAGE_CHARS]
    assert "beyond the model's context of 1024" in row["message"] and row["run"] == "gen-a"


def test_failures_alone_show_the_empty_state_line_and_the_failures(generation_runs, tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    _store(warehouse, [generation_runs["gen-a"][-1]], "gen-a")
    report = render_comparison_report(warehouse, tmp_path / "out")
    section = report_pages.section_html(report.html.read_text(), "generation")
    assert NO_GENERATION in section and "unsupported_configuration" in section
    assert "generation" not in report.empty_sections and not any(
        image.name.startswith("generation-") for image in report.images)


def test_the_charts_and_table_reach_the_markdown_and_the_pdf(generation_runs, generation_report):
    md = generation_report.markdown.read_text()
    for key in ("generation-ttft-llama-tiny", "generation-itl-llama-tiny"):
        data = (generation_report.markdown.parent / f"comparison_report_files/{key}.png").read_bytes()
        assert f"(comparison_report_files/{key}.png)" in md and data[:8] == b"\x89PNG\r\n\x1a\n"
    newest = generation_runs["gen-b"][0]
    assert f"| {newest['ttft_p50_ms']:.3f} |" in md and NO_GENERATION not in md
    pdf = report_pages.pdf_text(generation_report.pdf)
    assert TITLE in pdf and "gen-b" in pdf and "unsupported_configuration" in pdf


def test_a_quantized_cache_is_shown_beside_the_models_own_with_what_it_costs_the_learned_decoder(tmp_path):
    from hwbench_pipeline.report.generation_section import KV_COLUMNS, generation_section

    rows = [measure_generation(dataclasses.replace(_config(1, 12), cache_precision=kv, quality_dir=str(tmp_path)),
                               "gen-kv") for kv in ("model", "int2")]
    section = generation_section(pl.DataFrame(rows, infer_schema_length=None), pl.DataFrame())
    [kv] = [t for t in section.tables if t.columns == KV_COLUMNS]
    [line] = [dict(zip(KV_COLUMNS, row, strict=True)) for row in kv.rows]
    plain, int2 = rows
    assert line["KV precision ran"] == "quanto-int2" and line["copy accuracy"] == f"{int2['kv_task_accuracy']:.3f}"
    assert line["KL nats/step"] == f"{int2['kv_kl_divergence']:.4f}"
    saved = 1 - int2["kv_cache_bytes_per_token"] / plain["kv_cache_bytes_per_token"]
    assert line["saved vs the model's cache"] == f"{saved:.0%}" and saved > 0.5
