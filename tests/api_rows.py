"""Rows for the REST API's tests: a measured row as the engine writes one, with a fixed environment."""

from datetime import UTC, datetime

ENV = {"host": "bench-host-1", "cpu_model": "Test CPU", "cpu_cores": 2, "python_version": "3.11.7",
       "torch_version": "2.13.0", "transformers_version": "5.24.0", "git_revision": "abc123"}


def measured_row(run_id: str, target: str, p50: float, hour: int) -> dict:
    samples = [p50 * 0.98, p50, p50, p50 * 1.03]
    return {"run_id": run_id, "target": target, "family": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 16,
            "precision": "fp32", "threads": 2, "precision_ran": "fp32", "status": "ok", "n_samples": len(samples),
            "p50_ms": p50, "p90_ms": max(samples), "p99_ms": max(samples), "throughput_samples_s": 1000 / p50,
            "samples_ms": samples, "started_at": datetime(2026, 3, 1, hour, tzinfo=UTC),
            "finished_at": datetime(2026, 3, 1, hour, 1, tzinfo=UTC), **ENV}
