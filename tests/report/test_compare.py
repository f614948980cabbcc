from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from key_columns import IDENTITY

from hwbench_pipeline.report.compare import compare_latest_runs


def _run(run_id, minutes, samples, family="bert", contaminated=False):
    # Sample lists stand in for two runs' raw latencies: the comparison logic is what is under test.
    return {"run_id": run_id, "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
            "seq_len": 16, "precision": "fp32", "threads": 1, **IDENTITY, "status": "ok",
            "p50_ms": float(np.median(samples)),
            "n_samples": len(samples), "samples_ms": [float(s) for s in samples], "contaminated": contaminated,
            "git_revision": run_id, "package_versions": "torch=2.13.0", "host": "h",
            "_written_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)}


def test_slowdown_is_flagged_noise_is_not_and_busy_runs_prove_nothing():
    rng = np.random.default_rng(0)
    base = 10 + rng.normal(0, 0.1, 50)
    history = pl.DataFrame([
        _run("r1", 0, base), _run("r2", 1, base * 1.2),                                   # 20 % slower
        _run("r1", 0, base, family="vit"), _run("r2", 1, 10 + rng.normal(0, 0.1, 50), family="vit"),  # same
        _run("r1", 0, base, family="t5"), _run("r2", 1, base * 1.5, family="t5", contaminated=True),
        _run("r2", 1, base, family="clip"),                                               # first run
    ])
    verdicts = {c.key["family"]: c for c in compare_latest_runs(history)}
    assert verdicts["bert"].verdict == "slower" and round(verdicts["bert"].change_pct) == 20
    assert verdicts["bert"].previous_run == "r1" and "git_revision: r1 → r2" in verdicts["bert"].environment_change
    assert verdicts["vit"].verdict == "unchanged"
    assert verdicts["t5"].verdict == "unreliable"
    assert verdicts["clip"].verdict == "new" and verdicts["clip"].previous_run is None
