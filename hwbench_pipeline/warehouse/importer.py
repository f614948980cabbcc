"""Import results measured elsewhere into the warehouse: hwbench's own JSON and optimum-benchmark reports.

``hwbench db import PATH...`` calls :func:`import_paths`. The format is read from the content, not the name:

* **hwbench JSON** — what ``hwbench bench --json FILE`` writes: a list of result rows (``status`` ``ok``) and
  failure rows, with the columns of ``inference_results`` / ``failures``.
* **optimum-benchmark** — ``benchmark.json`` (``{"config": ..., "report": ...}``) or ``benchmark_report.json``
  (the report alone; its configuration is read from ``benchmark_config.json`` in the same folder). A folder
  given as PATH means its ``benchmark.json`` (else its ``benchmark_report.json``).

An import is all-or-nothing. Every file is parsed, mapped and validated in memory first (the Great
Expectations suites of ``inference_results``, ``failures`` and ``latency_samples``); only then is anything
written, in one warehouse transaction (``warehouse/transaction.py``): a write that fails, or a kill at any
point, leaves the warehouse as it was or, once past the commit, with the whole import. The run id is
``import-<12 hex>`` from the SHA-256 of the measurement (the file's bytes for hwbench JSON; the config and
report for optimum-benchmark, so ``benchmark.json`` and ``benchmark_report.json`` of one run are one run):
importing the same file again rewrites the same files, and row counts stay the same. ``source`` says where a
row came from (``hwbench-json``, ``optimum-benchmark``); ``runs`` also keeps the file's path and SHA-256.

Hostile input is refused with one line naming the file (``warehouse/import_reader.py`` lists what is refused).
The formats are mapped by ``warehouse/import_hwbench.py`` and ``warehouse/import_optimum.py`` (which documents
how each ``inference_results`` column is read from an optimum-benchmark report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hwbench_pipeline.warehouse.import_hwbench import from_hwbench
from hwbench_pipeline.warehouse.import_measurement import WRITE_ORDER, Measurement
from hwbench_pipeline.warehouse.import_optimum import from_optimum, looks_like_report, sibling_config
from hwbench_pipeline.warehouse.import_reader import BadFile, one_line, read_json
from hwbench_pipeline.warehouse.store import Warehouse, to_arrow


class ImportRejected(ValueError):
    """A file cannot be imported: one line naming the file and what is wrong. Nothing was stored."""


@dataclass
class ImportSummary:
    files: list[str]
    rows_by_table: dict[str, int]
    run_ids: list[str]

    def describe(self) -> str:
        rows = ", ".join(f"{table} {n}" for table, n in self.rows_by_table.items() if n) or "no rows"
        files = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        return f"imported {files} as run{'s' if len(self.run_ids) != 1 else ''} {', '.join(self.run_ids)}: {rows}"


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("benchmark.json", "benchmark_report.json"):
            if (path / name).is_file():
                return path / name
        raise ImportRejected(f"{path}: folder has no benchmark.json or benchmark_report.json")
    return path


def _prepare(path: Path) -> Measurement:
    """One file as rows, checked for everything but the suites; ImportRejected naming the file otherwise."""
    path = _resolve(path)
    try:
        doc, data = read_json(path)
        if isinstance(doc, list):
            return from_hwbench(path, doc, data)
        if isinstance(doc, dict) and {"config", "report"} <= set(doc):
            return from_optimum(path, doc["config"], doc["report"], data)
        if isinstance(doc, dict) and looks_like_report(doc):
            return from_optimum(path, sibling_config(path), doc, data)
        if isinstance(doc, dict) and {"backend", "scenario", "launcher"} <= set(doc):
            raise BadFile("an optimum-benchmark config without its report: import benchmark.json or "
                          "benchmark_report.json instead")
        raise BadFile("unknown format: expected hwbench JSON (a list of rows) or an optimum-benchmark "
                      "benchmark.json / benchmark_report.json")
    except BadFile as exc:
        raise ImportRejected(f"{path}: {exc}") from None


def _validate(measurements: list[Measurement]) -> None:
    """Every table's rows through its suite, all files at once; the first failing row names its file."""
    import pandas as pd

    from hwbench_pipeline.warehouse import validation

    suites = {"inference_results": validation.inference_suite, "failures": validation.failures_suite,
              "latency_samples": validation.latency_samples_suite}
    for table, suite in suites.items():
        rows, owners = [], []
        for m in measurements:
            rows += m.rows[table]
            owners += [m.path] * len(m.rows[table])
        if not rows:
            continue
        frame_rows = [{k: v for k, v in r.items() if k != "samples_ms"} for r in rows]
        valid, invalid, outcome = validation.split_valid_rows(frame_rows, suite())
        if invalid:
            bad_row, reasons = invalid[0]
            owner = owners[next(i for i, r in enumerate(frame_rows) if r is bad_row)]
            raise ImportRejected(f"{owner}: {len(invalid)} {table} row(s) fail validation, first "
                                 f"{_row_label(bad_row)}: {'; '.join(reasons)[:300]}")
        if not outcome.success:  # a table-level failure names no row: find the file that fails alone
            culprit = next((m for m in measurements if m.rows[table] and not validation.validate(
                pd.DataFrame([{k: v for k, v in r.items() if k != "samples_ms"} for r in m.rows[table]]),
                suite()).success), measurements[0])
            raise ImportRejected(f"{culprit.path}: {one_line(outcome.summary(), 300)}")


def _row_label(row: dict) -> str:
    return (f"{row.get('target')} {row.get('family')}/{row.get('preset')} bs={row.get('batch_size')} "
            f"seq={row.get('seq_len')} {row.get('precision')} t={row.get('threads')}")


def _write_all(wh: Warehouse, writes: list[tuple[str, str, str, pa.Table]]) -> None:
    """Every file in one warehouse transaction (warehouse/transaction.py): all of them land, or none."""
    try:
        with wh.transaction() as tx:
            for table, partition, run_id, data in writes:
                try:
                    tx.write(table, data, run_id=run_id, partition=partition)
                except Exception as exc:
                    raise ImportRejected(f"writing {table}/{partition} failed ({one_line(str(exc))}); "
                                         "nothing of this import was kept") from exc
    except OSError as exc:
        raise ImportRejected(f"committing the import failed ({one_line(str(exc))}); nothing of it is visible until "
                             "the warehouse is opened again, which completes it") from exc


def _arrow_writes(measurements: list[Measurement]) -> list[tuple[str, str, str, pa.Table]]:
    """(table, partition, run id, Arrow table) for every file to write, built before anything is written."""
    writes = []
    for table in WRITE_ORDER:
        for m in measurements:
            by_target: dict[str, list[dict]] = {}
            for row in m.rows[table]:
                by_target.setdefault(row["target"], []).append(row)
            for target, rows in by_target.items():
                try:
                    writes.append((table, target, m.run_id, to_arrow(table, rows)))
                except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:  # e.g. beyond int64
                    raise ImportRejected(f"{m.path}: rows do not fit {table}: {one_line(str(exc))}") from None
    return writes


def import_paths(warehouse: Warehouse, paths: Sequence[str | Path]) -> ImportSummary:
    """Import hwbench JSON and optimum-benchmark reports; all of them or none (see the module docstring)."""
    if not paths:
        raise ImportRejected("no files to import")
    measurements: list[Measurement] = []
    files: list[str] = []
    for path in paths:
        m = _prepare(Path(path))
        files.append(str(m.path))
        # One run given twice (a file twice, or benchmark.json beside its benchmark_report.json) lands once.
        if all(m.run_id != other.run_id for other in measurements):
            measurements.append(m)
    _validate(measurements)
    _write_all(warehouse, _arrow_writes(measurements))
    tables = ("inference_results", "failures", "latency_samples", "runs")
    rows_by_table = {t: sum(len(m.rows[t]) for m in measurements) for t in tables}
    return ImportSummary(files=files, rows_by_table=rows_by_table, run_ids=[m.run_id for m in measurements])
