"""hardware_targets: the targets this host offers; each becomes a dynamic partition."""

from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.bench import hardware
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.resources.settings import HwbenchSettings


def detected_target_rows(run_id: str) -> list[dict]:
    env = environment_fields()
    names = {(kind, index): name for kind, index, name in hardware._accelerator_devices()}
    rows = []
    for target in hardware.detect_targets():
        backend = load_backend(target.backend)
        name = env["cpu_model"] if target.device_kind == "cpu" else names.get(
            (target.device_kind, target.device_index), target.device_kind)
        rows.append({
            "run_id": run_id,
            "target": target.key,
            "device_kind": target.device_kind,
            "device_index": target.device_index,
            "backend": target.backend,
            "device_name": name,
            "precisions": ",".join(backend.precisions(target.device_kind)),
            "detected_at": datetime.now(UTC),
            **env,
        })
    return rows


@dg.asset(group_name="catalog", pool="hwbench_warehouse")
def hardware_targets(context: dg.AssetExecutionContext, settings: HwbenchSettings) -> dg.MaterializeResult:
    """Targets detected on this host (device × runtime), registered as partitions of the run assets.
    Targets that are absent are listed with the reason, never silently dropped."""
    rows = detected_target_rows(context.run.run_id)
    keys = [r["target"] for r in rows]
    existing = set(context.instance.get_dynamic_partitions(hardware_target_partitions.name))
    new = [k for k in keys if k not in existing]
    if new:
        context.instance.add_dynamic_partitions(hardware_target_partitions.name, new)
    path = settings.warehouse().write("hardware_targets", rows, run_id=context.run.run_id)
    skipped = hardware.skipped_targets()
    return dg.MaterializeResult(metadata={
        "targets": ", ".join(keys),
        "new_partitions": ", ".join(new) or "none",
        "not_available": dg.MetadataValue.md("\n".join(f"- `{k}`: {why}" for k, why in skipped) or "none"),
        "path": dg.MetadataValue.path(str(path)),
    })
