"""architecture_coverage[target]: the coverage sweep of the profile's ``architectures:`` section on one target.

Opt-in: the asset is in its own group, which no schedule or sensor selects by default. Each probe's row goes to
the target's journal (``data/sweeps/<target>.jsonl``) as it finishes, so a killed sweep resumes where it
stopped, across runs and days; every journal row not yet in the warehouse is written to the
``architecture_coverage`` table at the end of each materialization.
"""

from collections import Counter
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from hwbench_pipeline.assets.partition_target import resolve_target
from hwbench_pipeline.bench.catalog.sweep import outcome_of, read_journal, run_sweep
from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.schema import ARCHITECTURE_COVERAGE

TABLE = "architecture_coverage"


def journal_path(data_dir: str, target: str) -> Path:
    return Path(data_dir).resolve() / "sweeps" / f"{target}.jsonl"


def _table_row(row: dict) -> dict:
    stored = {k: v for k, v in row.items() if k in ARCHITECTURE_COVERAGE.names}
    if isinstance(stored.get("finished_at"), str):  # the journal holds JSON text
        stored["finished_at"] = datetime.fromisoformat(stored["finished_at"])
    return stored


@dg.asset(partitions_def=hardware_target_partitions, group_name="coverage", pool="hwbench_warehouse")
def architecture_coverage(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                          warehouse: WarehouseResource, ray: RayResource):
    """Every architecture of the profile's ``architectures:`` section probed on this target: built at its
    preset, one forward pass, compared with torch on the export runtimes. Each probe in a fresh process."""
    target = context.partition_key
    resolve_target(target, ray)
    profile = settings.load_profile()
    probes = profile.architecture_probes(target)
    if not probes:
        context.log.info(f"profile {profile.name} has no architectures section: nothing to sweep")
        return dg.MaterializeResult(metadata={"profile": profile.name, "probed": 0})
    journal = journal_path(warehouse.data_dir, target)
    run_id = context.run.run_id
    with host_measurement_lock(host_lock_dir(), log=context.log.info):
        new_rows = run_sweep(probes, journal, run_id, timeout_s=profile.architectures.timeout_s,
                             log=context.log.info)

    store = warehouse.warehouse()
    wanted = {(p.model_type, p.preset) for p in probes}
    stored = store.read(TABLE).filter(pl.col("target") == target)
    stored_keys = set(zip(stored["run_id"], stored["model_type"], stored["preset"], strict=True))
    pending = [r for r in read_journal(journal) if (r["model_type"], r["preset"]) in wanted
               and (r["run_id"], r["model_type"], r["preset"]) not in stored_keys]
    path = None
    if pending:
        path = store.write(TABLE, [_table_row(r) for r in pending], run_id=run_id, partition=target)

    latest = {(r["model_type"], r["preset"]): r for r in read_journal(journal)
              if (r["model_type"], r["preset"]) in wanted}
    outcomes = Counter(outcome_of(r) for r in latest.values())
    ok = outcomes["ok"]
    metadata = {
        "profile": profile.name,
        "architectures": len(wanted),
        "probed_now": len(new_rows),
        "rows_stored": len(pending),
        "ok": ok,
        "share_ok": round(ok / max(1, len(latest)), 4),
        "outcomes": ", ".join(f"{k}: {v}" for k, v in outcomes.most_common()),
        "journal": dg.MetadataValue.path(str(journal)),
    }
    if path is not None:
        metadata["table_path"] = dg.MetadataValue.path(str(path))
    context.log.info(f"{target}: {ok} of {len(latest)} architectures ran a forward pass; {metadata['outcomes']}")
    return dg.MaterializeResult(metadata=metadata)
