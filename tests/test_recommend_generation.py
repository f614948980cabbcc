"""``hwbench recommend --mode generation`` on a warehouse of real tiny generation measurements on this host:
llama/tiny decoding 6 new tokens greedily from a 16-token prompt (batch 1), then from an 8-token prompt at batch 1
and 2 with a dynamic cache, batch 1 with a static cache and batch 1 in bf16, and int8-static refused by the
generation scenario (a real failure row). Every figure a test expects is read from those rows."""

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.scenarios.generation import GENERATION_RULE, GenerationConfig, run_generation_configuration
from hwbench_pipeline.cli import main
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.predict.generation_advice import NOT_PREDICTED
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import store_measurements

TARGET = "cpu-torch"
NEW_TOKENS = 6
RULE = dataclasses.replace(GENERATION_RULE, min_samples=3, max_seconds=0.5, warmup_max_seconds=0.2)


def _config(batch: int, prompt: int, **options) -> GenerationConfig:
    return GenerationConfig("llama", "tiny", TARGET, batch_size=batch, seq_len=prompt, new_tokens=NEW_TOKENS,
                            rule=RULE, **options)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[str, list[dict], dict]:
    """(data directory, the successful rows in the order measured, the failure row)."""
    from hwbench_pipeline.warehouse.validation import generation_suite

    configs = [_config(1, 16), _config(1, 8), _config(2, 8), _config(1, 8, cache="static"),
               _config(1, 8, precision="bf16"), _config(1, 8, precision="int8", quantization="static")]
    with host_measurement_lock(host_lock_dir(), log=lambda _: None):
        rows = [run_generation_configuration(cfg, "gen-1") for cfg in configs]
    ok, (failure,) = rows[:-1], rows[-1:]
    assert all(r["status"] == "ok" for r in ok), [r.get("message") for r in ok]
    assert failure["status"] == "failed" and failure["failure_class"] == "unsupported_configuration"
    data_dir = tmp_path_factory.mktemp("generation_warehouse")
    stored = store_measurements(Warehouse(data_dir), rows, results_table="generation_results",
                                suite=generation_suite(), scenario="generation", run_id="gen-1", partition=TARGET,
                                dagster_run_id="none", profile="test", started=datetime.now(UTC), expected=True,
                                with_samples=False)
    assert len(stored.valid) == len(ok) and not stored.invalid, stored.invalid
    return str(data_dir), ok, failure


def _run(capsys, data_dir: str, *args: str) -> tuple[int, str, str]:
    code = main(["recommend", "--mode", "generation", "--data-dir", data_dir, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _json(capsys, data_dir: str, *args: str) -> tuple[int, dict]:
    code, out, _ = _run(capsys, data_dir, "--model", "llama/tiny", "--json", *args)
    return code, json.loads(out)


def _at_prompt_8(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["seq_len"] == 8]


def _key(r: dict) -> tuple:
    """(batch, precision, cache) of a measured row or of a ranked candidate."""
    return r["batch_size"], r["precision"], r.get("cache") or r["cache_implementation"]


def test_ranks_the_newest_measured_prompt_by_time_to_first_token(capsys, measured):
    data_dir, rows, _ = measured
    code, answer = _json(capsys, data_dir)
    assert code == 0 and answer["mode"] == "generation" and NOT_PREDICTED in answer["notes"]
    # defaults: the prompt and new tokens of the newest measurement (prompt 8 was measured after 16)
    assert (answer["prompt"], answer["new_tokens"]) == (8, NEW_TOKENS)
    expected = sorted(_at_prompt_8(rows), key=lambda r: r["ttft_p50_ms"])
    assert [_key(r) for r in answer["ranked"]] == [_key(r) for r in expected]
    for got, row in zip(answer["ranked"], expected, strict=True):
        assert got["source"] == "measured" and got["run_id"] == "gen-1"
        assert got["ttft_p50_ms"] == pytest.approx(row["ttft_p50_ms"])
        assert got["tokens_per_s"] == pytest.approx(row["tokens_per_s"])
        assert got["latency_ms"] == pytest.approx(row["p50_ms"])
        assert got["itl_p50_ms"] == pytest.approx(row["itl_p50_ms"])
    assert answer["pick"] == answer["ranked"][0]


def test_throughput_ranks_by_tokens_per_second(capsys, measured):
    data_dir, rows, _ = measured
    code, answer = _json(capsys, data_dir, "--objective", "throughput")
    assert code == 0 and answer["objective_column"] == "tokens_per_s"
    expected = sorted(_at_prompt_8(rows), key=lambda r: -r["tokens_per_s"])
    assert [_key(r) for r in answer["ranked"]] == [_key(r) for r in expected]
    assert answer["pick"]["tokens_per_s"] == pytest.approx(max(r["tokens_per_s"] for r in rows if r["seq_len"] == 8))


def test_constraints_keep_only_the_configurations_that_meet_them(capsys, measured):
    data_dir, rows, _ = measured
    at_8 = _at_prompt_8(rows)
    ttft_bound = sorted(r["ttft_p50_ms"] for r in at_8)[len(at_8) // 2]
    rate_bound = sorted(r["tokens_per_s"] for r in at_8)[1]
    code, answer = _json(capsys, data_dir, "--max-ttft-ms", repr(ttft_bound), "--min-tokens-per-s", repr(rate_bound))
    meets = {_key(r) for r in at_8 if r["ttft_p50_ms"] <= ttft_bound and r["tokens_per_s"] >= rate_bound}
    assert answer["constraints"] == {"max_ttft_ms": ttft_bound, "min_tokens_per_s": rate_bound}
    assert {_key(r) for r in answer["ranked"]} == meets and code == (0 if meets else 1)
    missing = [c for c in answer["candidates"] if not c["meets"]]
    assert {_key(c) for c in missing} == {_key(r) for r in at_8} - meets
    assert all(c["misses"] for c in missing)


def test_no_match_lists_what_was_measured_and_the_best_figures(capsys, measured):
    data_dir, rows, _ = measured
    at_8 = _at_prompt_8(rows)
    code, out, err = _run(capsys, data_dir, "--model", "llama/tiny", "--max-ttft-ms", "0.0001")
    assert code == 1 and not err
    assert 'no measured configuration of llama/tiny at prompt 8, 6 new tokens meets {"max_ttft_ms": 0.0001}' in out
    assert ("measured for llama/tiny: targets cpu-torch; batches 1, 2; prompts 8, 16; new tokens 6; precisions "
            "bf16, fp32; caches dynamic, static") in out
    fastest = min(at_8, key=lambda r: r["ttft_p50_ms"])
    busiest = max(at_8, key=lambda r: r["tokens_per_s"])
    assert f"TTFT p50 {fastest['ttft_p50_ms']:.4g} ms" in out and f"{busiest['tokens_per_s']:.4g} tokens/s" in out
    assert f"nearest miss: cpu-torch bs={fastest['batch_size']}" in out and "0.0001 ms" in out
    assert NOT_PREDICTED in out and "none meets all" in out

    code, answer = _json(capsys, data_dir, "--max-ttft-ms", "0.0001")
    assert code == 1 and answer["pick"] is None and answer["ranked"] == []
    assert answer["best"]["ttft_p50_ms"]["value"] == pytest.approx(fastest["ttft_p50_ms"])
    assert answer["message"].startswith("no measured configuration of llama/tiny")
    assert answer["measured"]["prompts"] == [8, 16] and len(answer["candidates"]) == len(at_8)


def test_the_table_shows_the_pick_and_its_measured_figures(capsys, measured):
    data_dir, rows, _ = measured
    code, out, _ = _run(capsys, data_dir, "--model", "llama", "--prompt", "16")
    (row,) = [r for r in rows if r["seq_len"] == 16]
    assert code == 0 and "llama/tiny generation, prompt 16, 6 new tokens" in out
    assert f"recommended: cpu-torch bs=1 fp32 dynamic t=1: TTFT p50 {row['ttft_p50_ms']:.4g} ms" in out
    assert f"{row['tokens_per_s']:.4g}" in out and "measured candidates (best first)" in out


def test_a_configuration_that_failed_is_excluded_with_its_class(capsys, measured):
    data_dir, _, failure = measured
    _, answer = _json(capsys, data_dir)
    (line,) = answer["excluded"]
    assert line.startswith("cpu-torch bs=1 int8-static dynamic t=1: unsupported_configuration: ")
    assert failure["message"].splitlines()[0][:200] in line
    assert "int8-static" not in {r["precision"] for r in answer["candidates"]}


def test_filters_pick_among_measured_configurations(capsys, measured):
    data_dir, rows, _ = measured
    _, answer = _json(capsys, data_dir, "--batch", "2", "--precision", "fp32")
    (row,) = [r for r in rows if r["batch_size"] == 2]
    assert [_key(r) for r in answer["ranked"]] == [(2, "fp32", "dynamic")]
    assert answer["pick"]["ttft_p50_ms"] == pytest.approx(row["ttft_p50_ms"])


@pytest.mark.parametrize("args, expected", [
    (["--model", "llama/tiny", "--prompt", "512"],
     "llama/tiny generation was measured at prompts 8, 16, not 512; generation figures of this model are not "
     "predicted here, as no predictor is saved (materialize performance_predictor)"),
    (["--model", "llama/tiny", "--new-tokens", "7"], "was measured with 6 new tokens, not 7"),
    (["--model", "llama/tiny", "--targets", "cuda-torch"], "--targets cuda-torch: no generation row of llama/tiny"),
    (["--model", "llama/tiny", "--batch", "64"], "--batch 64: no generation row of llama/tiny"),
    (["--model", "gpt9"], "model_type 'gpt9' is not an architecture transformers"),
    (["--model", "bert/tiny"], "no generation row of bert/tiny"),
    (["--model", "llama/tiny", "--objective", "cost"], "--objective cost does not apply to --mode generation"),
    (["--model", "llama/tiny", "--seq", "8"], "--seq does not apply to --mode generation; use --prompt"),
    (["--model", "llama/tiny", "--min-throughput", "5"], "use --min-tokens-per-s"),
])
def test_bad_generation_requests_are_one_clear_line(capsys, measured, args, expected):
    code, out, err = _run(capsys, measured[0], *args)
    lines = err.strip().splitlines()
    assert code == 2 and not out and len(lines) == 1 and expected in lines[0], err


@pytest.mark.parametrize("option", ["--max-ttft-ms", "--min-tokens-per-s", "--prompt", "--new-tokens"])
def test_generation_options_are_refused_in_the_other_modes(capsys, tmp_path, option):
    code = main(["recommend", "--model", "llama/tiny", "--mode", "inference", option, "5",
                 "--data-dir", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"hwbench: error: {option} belongs to --mode generation"]


@pytest.mark.parametrize("option, value, expected", [
    ("--max-ttft-ms", "-1", "expected a positive number, got '-1'"),
    ("--min-tokens-per-s", "-5", "expected a positive number, got '-5'"),
    ("--max-ttft-ms", "nan", "expected a positive number, got 'nan'"),
    ("--prompt", "0", "expected a positive integer, got '0'"),
    ("--new-tokens", "-3", "expected a positive integer, got '-3'"),
])
def test_negative_and_non_finite_numbers_are_refused_by_name(capsys, tmp_path, option, value, expected):
    with pytest.raises(SystemExit) as exited:
        main(["recommend", "--model", "llama/tiny", "--mode", "generation", f"{option}={value}",
              "--data-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert f"error: argument {option}: {expected}" in capsys.readouterr().err.strip().splitlines()[-1]
