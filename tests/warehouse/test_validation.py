from key_columns import IDENTITY

from hwbench_pipeline.warehouse.validation import inference_suite, split_valid_rows, validate


def _row(family, **overrides):
    row = {"run_id": "r1", "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
           "seq_len": 16, "precision": "fp32", "threads": 2, **IDENTITY, "status": "ok", "p50_ms": 1.0,
           "p90_ms": 1.2, "p99_ms": 1.5, "mean_ms": 1.1, "n_samples": 20, "throughput_samples_s": 1000.0,
           "peak_rss_mb": 300.0, "host": "h"}
    return {**row, **overrides}


def test_bad_rows_are_separated_with_their_reasons_and_good_rows_pass():
    rows = [_row("bert"), _row("vit", p50_ms=2.0), _row("t5", p50_ms=-1.0), _row("clip", host=None)]
    valid, invalid, outcome = split_valid_rows(rows, inference_suite())
    assert [r["family"] for r in valid] == ["bert"]
    reasons = {r["family"]: why for r, why in invalid}
    assert any("p90_ms,p50_ms" in w for w in reasons["vit"])  # percentiles out of order
    assert any("values_to_be_between(p50_ms)" in w for w in reasons["t5"])  # non-positive latency
    assert any("not_be_null(host)" in w for w in reasons["clip"])
    assert not outcome.success
    assert validate(__import__("pandas").DataFrame(valid), inference_suite()).success


def test_missing_required_column_fails_the_table():
    import pandas as pd

    frame = pd.DataFrame([_row("bert")]).drop(columns=["p99_ms"])
    outcome = validate(frame, inference_suite())
    assert not outcome.success
    assert any(f.expectation == "expect_table_columns_to_match_set" for f in outcome.failures)


def test_throughput_that_disagrees_with_batch_and_latency_is_quarantined():
    # 8 samples in 10 ms is 800 samples/s; 100 samples/s claims a figure the latency cannot give
    shape = {"batch_size": 8, "p50_ms": 10.0, "p90_ms": 11.0, "p99_ms": 12.0, "mean_ms": 10.5}
    rows = [_row("bert", **shape, throughput_samples_s=800.0), _row("vit", **shape, throughput_samples_s=100.0)]
    valid, invalid, _ = split_valid_rows(rows, inference_suite())
    assert [r["family"] for r in valid] == ["bert"]
    assert any("throughput_x_p50_per_batch" in w for w in invalid[0][1])


def test_failures_suite_requires_a_known_class_and_a_message():
    from hwbench_pipeline.warehouse.validation import failures_suite

    base = {"run_id": "r1", "scenario": "inference", "target": "cpu-torch", "preset": "tiny", "batch_size": 1,
            "seq_len": 16, "precision": "fp32", "threads": 2, **IDENTITY, "status": "failed"}
    rows = [{**base, "family": "bert", "failure_class": "export_error", "message": "boom"},
            {**base, "family": "vit", "failure_class": "it broke", "message": "boom"},
            {**base, "family": "t5", "failure_class": "timeout", "message": None}]
    valid, invalid, _ = split_valid_rows(rows, failures_suite())
    assert [r["family"] for r in valid] == ["bert"]
    assert {r["family"] for r, _ in invalid} == {"vit", "t5"}


def test_latency_samples_suite_rejects_non_positive_samples_and_duplicate_indices():
    import pandas as pd

    from hwbench_pipeline.warehouse.validation import latency_samples_suite

    base = {"run_id": "r1", "scenario": "inference", "target": "cpu-torch", "family": "bert", "preset": "tiny",
            "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2, **IDENTITY}
    good = [{**base, "sample_index": i, "latency_ms": 1.0 + i} for i in range(3)]
    assert validate(pd.DataFrame(good), latency_samples_suite()).success
    bad = good + [{**base, "sample_index": 2, "latency_ms": 0.0}]
    outcome = validate(pd.DataFrame(bad), latency_samples_suite())
    failed = {f.expectation for f in outcome.failures}
    assert "expect_compound_columns_to_be_unique" in failed and "expect_column_values_to_be_between" in failed


def test_distributed_failures_differing_only_by_strategy_are_distinct():
    from hwbench_pipeline.warehouse.validation import failures_suite

    base = {"run_id": "r1", "scenario": "distributed", "target": "cpu-torch", "family": "bert", "preset": "tiny",
            "batch_size": 8, "seq_len": 32, "precision": "fp32", "threads": 1, **IDENTITY, "status": "failed",
            "failure_class": "worker_crashed", "message": "rank 1 died", "workers": 2}
    rows = [{**base, "strategy": "ddp"}, {**base, "strategy": "fsdp"}]
    valid, invalid, _ = split_valid_rows(rows, failures_suite())
    assert len(valid) == 2 and not invalid
    _, invalid, _ = split_valid_rows([rows[0], dict(rows[0])], failures_suite())
    assert len(invalid) == 2  # the same configuration twice in one run is a duplicate


def _generation_row(family, **overrides):
    # 2 sequences of 8 new tokens in a median of 100 ms: 160 tokens/s
    row = {**_row(family, batch_size=2, p50_ms=100.0, p90_ms=110.0, p99_ms=120.0, mean_ms=104.0),
           "new_tokens": 8, "cache_implementation": "dynamic", "cache_precision": "model", "ttft_p50_ms": 20.0,
           "ttft_p99_ms": 25.0,
           "itl_p50_ms": 11.0, "itl_p99_ms": 14.0, "tokens_per_s": 160.0, "decode_tokens_per_s": 181.8,
           "prefill_tokens_per_s": 1600.0, "kv_cache_bytes_prompt": 1000, "kv_cache_bytes": 1500,
           "kv_cache_bytes_per_token": 32.6, "tokens_matching_reference": 8}
    return {**row, **overrides}


def test_generation_rows_whose_figures_contradict_each_other_are_quarantined():
    from hwbench_pipeline.warehouse.validation import generation_suite

    rows = [_generation_row("llama"), _generation_row("qwen2", tokens_per_s=16.0),  # not what 100 ms gives
            _generation_row("t5", ttft_p50_ms=150.0),  # a first token later than its whole sequence
            _generation_row("whisper", kv_cache_bytes=500),  # a cache that shrank as the context grew
            _generation_row("llava", tokens_matching_reference=9)]  # more matching tokens than generated
    valid, invalid, _ = split_valid_rows(rows, generation_suite())
    assert [r["family"] for r in valid] == ["llama"]
    reasons = {r["family"]: " ".join(why) for r, why in invalid}
    assert "tokens_x_p50_per_sequence" in reasons["qwen2"] and "p50_ms,ttft_p50_ms" in reasons["t5"]
    assert "kv_cache_bytes" in reasons["whisper"] and "tokens_matching_reference" in reasons["llava"]
