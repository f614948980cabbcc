"""A configuration's samples spread over several measuring processes: rounds over the configurations, the
figure and interval between processes, disturbed processes left out, what the first process measured kept."""

import json
import tempfile
from datetime import UTC, datetime

import pytest

from hwbench_pipeline.bench.checkpoint import Checkpoint, config_key
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.scenarios.processes import combine_process_rows, disturbed
from hwbench_pipeline.bench.trackers.core_speed import slowest_core_ms
from hwbench_pipeline.bench.trackers.stats import StoppingRule, summarize

RULE = StoppingRule(ci_target=0.01, min_samples=5, max_seconds=0.6, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.2, processes=3, max_processes=3)


def _process_row(samples: list[float], *, contaminated: bool = False, pid: int = 1, load_s: float = 1.0,
                 core_ms: float = 10.0) -> dict:
    """What one measuring process returns, reduced to the fields the combination reads (statistics computed by
    the engine's own summarize)."""
    now = datetime.now(UTC)
    return {"status": "ok", **summarize(samples), "samples_ms": samples, "n_samples": len(samples),
            "warmup_calls": 2, "stop_reason": "time_cap", "contaminated": contaminated, "worker_pid": pid,
            "load_s": load_s, "slowest_core_ms": core_ms, "steal_fraction": 0.0,
            "foreign_busy_fraction": 0.5 if contaminated else 0.01,
            "throughput_samples_s": 1e3 / summarize(samples)["p50_ms"], "started_at": now, "finished_at": now}


def test_the_figure_is_the_median_of_process_medians_with_the_interval_between_them():
    rows = [_process_row([10.0, 10.2, 10.1], pid=1, load_s=3.0), _process_row([12.0, 12.1, 12.2], pid=2),
            _process_row([11.0, 11.1, 11.2], pid=3)]
    row = combine_process_rows(rows, StoppingRule(processes=3), "process_cap")
    assert row["p50_ms"] == pytest.approx(11.1)
    assert (row["median_ci_low_ms"], row["median_ci_high_ms"]) == (10.1, 12.1)
    assert row["ci_coverage"] == pytest.approx(0.75) and row["noisy"]  # ±9 % between three processes
    assert row["process_medians_ms"] == [10.1, 12.1, 11.1] and row["process_pids"] == [1, 2, 3]
    assert row["n_samples"] == 9 and row["process_sample_counts"] == [3, 3, 3]
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["load_s"] == 3.0 and row["process_load_s"] == [3.0, 1.0, 1.0]  # the first process's is the cold one
    assert row["throughput_samples_s"] == pytest.approx(1e3 / 11.1)
    assert not row["contaminated"] and row["attempts"] == 3


def test_disturbed_processes_are_left_out_while_enough_undisturbed_ones_remain():
    quiet = [_process_row([10.0, 10.1, 10.2], pid=p) for p in (1, 3, 4)]
    busy = _process_row([30.0, 31.0, 32.0], contaminated=True, pid=2)
    row = combine_process_rows([quiet[0], busy, *quiet[1:]], StoppingRule(processes=3), "ci_reached")
    assert row["p50_ms"] == pytest.approx(10.1) and row["processes"] == 3 and row["processes_disturbed"] == 1
    assert 2 not in row["process_pids"] and not row["contaminated"] and row["attempts"] == 4

    row = combine_process_rows([quiet[0], busy], StoppingRule(processes=3, max_processes=3), "process_cap")
    assert row["contaminated"] and row["processes"] == 2  # too few quiet ones: all used, and marked


def test_core_slowdowns_are_recorded_against_the_fastest_process():
    rows = [_process_row([10.0, 10.1, 10.2], pid=1, core_ms=10.0),
            _process_row([14.0, 14.1, 14.2], pid=2, core_ms=14.0),
            _process_row([10.1, 10.2, 10.3], pid=3, core_ms=10.4)]
    assert disturbed(rows) == [False, False, False]  # recorded, not a reason to leave a process out
    row = combine_process_rows(rows, StoppingRule(processes=3), "ci_reached")
    assert row["process_core_slowdowns"] == pytest.approx([1.0, 1.4, 1.04])
    assert row["slowest_core_ms"] == 14.0  # the worst any process saw


def test_the_core_probe_times_every_core_this_process_may_use():
    ms = slowest_core_ms(repeats=1)
    assert ms is not None and 0.1 < ms < 1000


def test_configurations_are_measured_in_rounds_each_by_several_fresh_processes(tmp_path):
    configs = [InferenceConfig("bert", "tiny", "cpu-torch", b, 8, threads=1, rule=RULE) for b in (1, 2)]
    journal = tmp_path / "journal.jsonl"
    rows = run_configurations(InferenceScenario(), configs, "spread", dispatch="process", lock_dir=tmp_path,
                              timeout_s=120, checkpoint=Checkpoint(journal, configs))
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    for row in rows:
        assert row["attempts"] == 3 and row["stop_reason"] in ("ci_reached", "process_cap")
        assert len(set(row["process_pids"])) == row["processes"] == len(row["process_medians_ms"])
        assert row["median_ci_low_ms"] <= row["p50_ms"] <= row["median_ci_high_ms"]
        assert row["n_samples"] == sum(row["process_sample_counts"]) == len(row["samples_ms"])
        assert row["flops_per_call"] > 0  # counted by the first process only
    # one process of each configuration per round (three each, all kept: there is no fourth to replace a
    # disturbed one), in the order the journal received their rows (pids are no clock: they wrap)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    keys = [config_key(c) for c in configs]
    ran = [keys.index(r["config"]) for r in records if "process" in r]
    assert ran == [0, 1, 0, 1, 0, 1]
    pids = [r["process"]["worker_pid"] for r in records if "process" in r]
    assert rows[0]["process_pids"] == pids[0::2] and rows[1]["process_pids"] == pids[1::2]


def test_later_processes_of_an_exported_configuration_load_the_first_ones_export(tmp_path):
    rule = StoppingRule(ci_target=0.01, min_samples=5, max_seconds=0.4, warmup_max_seconds=0.1, processes=2,
                        max_processes=2)
    config = InferenceConfig("bert", "tiny", "cpu-onnxruntime", 1, 8, threads=1, rule=rule)
    [row] = run_configurations(InferenceScenario(), [config], "cached", dispatch="process", lock_dir=tmp_path,
                               timeout_s=120)
    assert row["status"] == "ok", row.get("message")
    cold, warm = row["process_load_s"]
    assert warm < cold  # the export is in the first process's load time only


def test_a_configurations_export_cache_is_removed_once_it_is_settled(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rule = StoppingRule(min_samples=3, max_seconds=0.2, warmup_max_seconds=0.1, processes=2, max_processes=2)
    configs = [InferenceConfig("bert", "tiny", "cpu-torch", b, 8, threads=1, rule=rule) for b in (1, 2)]
    seen = []

    def on_result(i, n, cfg, row):
        seen.append(sorted(p.name for p in tmp_path.glob("hwbench-exports-*/*")))

    run_configurations(InferenceScenario(), configs, "tidy", dispatch="process", lock_dir=tmp_path / "locks",
                       timeout_s=120, on_result=on_result)
    assert seen == [["1"], []]  # the first settled while the second still had a process to run
    assert not list(tmp_path.glob("hwbench-exports-*"))
