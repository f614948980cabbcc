"""hardware_targets: the targets this host offers, with measured peaks; each becomes a dynamic partition."""

import json
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.bench import hardware
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import measure_device_peaks
from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.bench.precision import PRECISIONS, parse_spec
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
        if hasattr(backend, "detail"):  # a browser: its version and WebGPU adapter (a software one named so)
            name = f"{backend.detail()} on {env['cpu_model']}"
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
    """hardware_targets' peak columns from measure_peaks' result (peak_gflops_int8 holds GOPS: integer ops)."""
    compute = peaks["compute_gflops"]
    return {
        "peak_threads": peaks["threads"],
        **{f"peak_gflops_{p}": compute[p]["value"] if p in compute else None for p in PRECISIONS},
        "peak_gbps": peaks["copy_gbps"]["value"],
        "peak_details": json.dumps(peaks, sort_keys=True),
    }


def _formats(specs: str) -> set[str]:
    """The number formats of a comma-separated list of precision specs (int8-dynamic and int8-static: int8)."""
    return {parse_spec(spec)[0] for spec in specs.split(",") if spec}


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
    int8_by_runtime: dict[tuple[str, str], dict] = {}
    for row in rows:
        target = hardware.parse_target(row["target"])
        device = target.torch_device
        if device not in peaks_by_device:
            # Every float precision any backend runs on this device; the best library's figure is the device's
            # peak. int8 is not among them: each runtime has its own int8 kernels (below).
            precisions = tuple(sorted({p for r in rows if hardware.parse_target(r["target"]).torch_device == device
                                       for p in _formats(r["precisions"]) if p != "int8"}))
            peaks_by_device[device] = measure_device_peaks(
                row["target"], precisions, threads, ray_address=ray.cluster_address,
                lock_dir=host_lock_dir(), log=context.log.info)
            context.log.info(f"{device}: peaks {json.dumps(peaks_by_device[device])}")
        peaks = peaks_by_device[device]
        if "int8" in _formats(row["precisions"]):
            # an int8 row is compared with its own runtime's int8 GEMM: measured once per device and runtime
            key = (device, target.backend)
            if key not in int8_by_runtime:
                # the device's GEMM size and bandwidth are known from its float peaks: only the GEMM is timed
                int8_by_runtime[key] = measure_device_peaks(
                    row["target"], ("int8",), threads, ray_address=ray.cluster_address,
                    lock_dir=host_lock_dir(), log=context.log.info, gemm_n=peaks["gemm_n"], copy_mib=0)
                context.log.info(f"{row['target']}: int8 peak {json.dumps(int8_by_runtime[key]['compute_gflops'])}")
            measured = int8_by_runtime[key]
            peaks = {**peaks, "backend": measured.get("backend"),
                     "compute_gflops": {**peaks["compute_gflops"], "int8": measured["compute_gflops"]["int8"]}}
        row.update(peak_columns(peaks))
    path = warehouse.warehouse().write("hardware_targets", rows, run_id=context.run.run_id)
    skipped = hardware.skipped_targets()
    peaks_md = ["| target | threads | fp32 GFLOP/s | bf16 GFLOP/s | int8 GOPS | copy GB/s |",
                "|---|---:|---:|---:|---:|---:|"]
    peaks_md += [f"| {r['target']} | {r['peak_threads']} | {r['peak_gflops_fp32'] or 0:.1f} | "
                 f"{r['peak_gflops_bf16'] or 0:.1f} | {r['peak_gflops_int8'] or 0:.1f} | {r['peak_gbps']:.1f} |"
                 for r in rows]
    return dg.MaterializeResult(metadata={
        "targets": ", ".join(keys),
        "new_partitions": ", ".join(new) or "none",
        "measured_peaks": dg.MetadataValue.md("\n".join(peaks_md)),
        "not_available": dg.MetadataValue.md("\n".join(f"- `{k}`: {why}" for k, why in skipped) or "none"),
        "path": dg.MetadataValue.path(str(path)),
    })
