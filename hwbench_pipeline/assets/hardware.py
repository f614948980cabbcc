"""hardware_targets: the targets this host offers, with measured peaks; each becomes a dynamic partition."""

import json
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.bench import hardware
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import measure_device_peaks
from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource


def detected_target_rows(run_id: str) -> list[dict]:
    env = environment_fields()
    names = {(kind, index): name for kind, index, name in hardware.accelerator_devices()}
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


def peak_columns(peaks: dict) -> dict:
    compute = peaks["compute_gflops"]
    return {
        "peak_threads": peaks["threads"],
        **{f"peak_gflops_{p}": compute[p]["value"] if p in compute else None for p in ("fp32", "bf16", "fp16")},
        "peak_gbps": peaks["copy_gbps"]["value"],
        "peak_details": json.dumps(peaks, sort_keys=True),
    }


@dg.asset(group_name="catalog", pool="hwbench_warehouse")
def hardware_targets(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                     warehouse: WarehouseResource, ray: RayResource) -> dg.MaterializeResult:
    """Targets detected on this host (device × runtime), registered as partitions of the run assets, each with
    the measured peak GFLOP/s per precision and copy bandwidth of its device (the roofline rows are compared
    against). Targets that are absent are listed with the reason, never silently dropped."""
    rows = detected_target_rows(context.run.run_id)
    keys = [r["target"] for r in rows]
    existing = set(context.instance.get_dynamic_partitions(hardware_target_partitions.name))
    new = [k for k in keys if k not in existing]
    if new:
        context.instance.add_dynamic_partitions(hardware_target_partitions.name, new)

    threads = settings.load_profile().threads
    peaks_by_device: dict[str, dict] = {}
    for row in rows:
        device = hardware.parse_target(row["target"]).torch_device
        if device not in peaks_by_device:
            # Every precision any backend runs on this device; the best library's figure is the device's peak.
            precisions = tuple(sorted({p for r in rows if hardware.parse_target(r["target"]).torch_device == device
                                       for p in r["precisions"].split(",")}))
            peaks_by_device[device] = measure_device_peaks(
                row["target"], precisions, threads, ray_address=ray.cluster_address,
                lock_dir=host_lock_dir(), log=context.log.info)
            context.log.info(f"{device}: peaks {json.dumps(peaks_by_device[device])}")
        row.update(peak_columns(peaks_by_device[device]))
    path = warehouse.warehouse().write("hardware_targets", rows, run_id=context.run.run_id)
    skipped = hardware.skipped_targets()
    peaks_md = ["| target | threads | fp32 GFLOP/s | bf16 GFLOP/s | copy GB/s |", "|---|---:|---:|---:|---:|"]
    peaks_md += [f"| {r['target']} | {r['peak_threads']} | {r['peak_gflops_fp32'] or 0:.1f} | "
                 f"{r['peak_gflops_bf16'] or 0:.1f} | {r['peak_gbps']:.1f} |" for r in rows]
    return dg.MaterializeResult(metadata={
        "targets": ", ".join(keys),
        "new_partitions": ", ".join(new) or "none",
        "measured_peaks": dg.MetadataValue.md("\n".join(peaks_md)),
        "not_available": dg.MetadataValue.md("\n".join(f"- `{k}`: {why}" for k, why in skipped) or "none"),
        "path": dg.MetadataValue.path(str(path)),
    })
