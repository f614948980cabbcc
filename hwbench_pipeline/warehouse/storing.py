"""Store one measurement run of one partition: valid rows to the results table (and their raw samples),
rows that fail the suite to quarantine, failures to the failures table, one summary row to runs."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.warehouse.schema import CONFIG_KEY, FAILURES
from hwbench_pipeline.warehouse.store import Warehouse, row_json
from hwbench_pipeline.warehouse.validation import ValidationOutcome, split_valid_rows


@dataclass
class StoredRun:
    valid: list[dict]
    invalid: list[tuple[dict, list[str]]]
    failed: list[dict]
    outcome: ValidationOutcome
    paths: dict[str, Path] = field(default_factory=dict)


def latency_sample_rows(rows: list[dict], scenario: str = "inference") -> list[dict]:
    """The raw samples of measured rows, one row per sample in call order."""
    key = ["run_id", *CONFIG_KEY]
    return [{**{k: row[k] for k in key}, "scenario": scenario, "sample_index": i, "latency_ms": float(v)}
            for row in rows for i, v in enumerate(row.get("samples_ms") or [])]


def store_measurements(warehouse: Warehouse, rows: list[dict], *, results_table: str, suite, scenario: str,
                       run_id: str, partition: str, dagster_run_id: str, profile: str, started: datetime,
                       expected: bool, with_samples: bool) -> StoredRun:
    """Validate and write the rows of one finished sweep, every table's file in one transaction: the whole run
    is visible or none of it, whatever kills the writer (warehouse/transaction.py). The run is ``failed`` when
    nothing valid landed although measurements were ``expected``."""
    measured = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    valid, invalid, outcome = split_valid_rows(measured, suite)
    stored = StoredRun(valid, invalid, failed, outcome)
    with warehouse.transaction() as tx:
        if valid:
            stored.paths[results_table] = tx.write(results_table, valid, run_id=run_id, partition=partition)
            if with_samples:
                stored.paths["latency_samples"] = tx.write(
                    "latency_samples", latency_sample_rows(valid, scenario), run_id=run_id, partition=partition)
        if failed:
            # scenario-specific fields a failure row may carry (a strategy's options) stay in its message
            stored.paths["failures"] = tx.write(
                "failures", [{k: v for k, v in r.items() if k in FAILURES.names} for r in failed],
                run_id=run_id, partition=partition)
        if invalid:
            stored.paths["quarantine"] = tx.write("quarantine", [
                {"run_id": run_id, "source_table": results_table, "failed_expectations": "; ".join(why),
                 "row_json": row_json(row), "quarantined_at": datetime.now(UTC)} for row, why in invalid
            ], run_id=run_id, partition=partition)
        tx.write("runs", [{
            "run_id": run_id, "dagster_run_id": dagster_run_id, "profile": profile, "target": partition,
            "scenario": scenario, "n_configs": len(rows), "n_ok": len(valid), "n_failed": len(failed),
            "n_quarantined": len(invalid), "started_at": started, "finished_at": datetime.now(UTC),
            "status": "ok" if valid or not expected else "failed", **environment_fields(),
        }], run_id=run_id, partition=partition)
    return stored
