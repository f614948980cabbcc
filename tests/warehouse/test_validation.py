from hwbench_pipeline.warehouse.validation import inference_suite, split_valid_rows, validate


def _row(family, **overrides):
    row = {"run_id": "r1", "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
           "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": 1.0, "p90_ms": 1.2,
           "p99_ms": 1.5, "mean_ms": 1.1, "n_samples": 20, "throughput_samples_s": 1000.0, "peak_rss_mb": 300.0,
           "host": "h"}
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
