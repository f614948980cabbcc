"""An optimum-benchmark run (its config and its report) as warehouse rows.

How an optimum-benchmark report maps onto ``inference_results`` (read from optimum-benchmark 0.6.0's
``benchmark/report.py``, ``trackers/latency.py``, ``trackers/memory.py`` and its backend configs):

=======================  ==================================================================================
hwbench column           optimum-benchmark source
=======================  ==================================================================================
target                   ``backend.name`` + ``backend.device``: pytorch/cpu → ``cpu-torch``, onnxruntime/cpu →
                         ``cpu-onnxruntime``, openvino/cpu → ``cpu-openvino``, cuda with ``device_ids`` "N" →
                         ``cudaN-<backend>``, mps → ``mps-torch``. Several GPUs, Intel GPUs, TensorRT and
                         other backends are refused (no hwbench target). A ROCm GPU reports as cuda.
family                   ``backend.model_type`` (e.g. bert)
preset                   the model reference: a Hub id ``org/name`` → ``org--name``; a local path → its last
                         folder name. Not an hwbench preset size: ``source`` tells them apart.
batch_size, seq_len      ``scenario.input_shapes.batch_size`` / ``.sequence_length`` (required)
config_hash              ``"unrecorded"``: the report names a model, not the config hwbench would hash
attention                ``backend.attn_implementation``; ``"default"`` when unset (transformers' own choice)
quantization             ``"none"``; ``"unrecorded"`` for int8 (the report does not name the recipe)
cache_precision          ``"none"`` (only single forward passes are imported)
measurement_method       ``"optimum-benchmark"``: another tool's method, never one configuration with hwbench's
precision                pytorch: ``autocast_dtype`` when ``autocast_enabled`` (torch's default, bf16 on CPU and
                         fp16 on CUDA, when unset), else ``torch_dtype``; unset means fp32 with transformers < 5
                         and the checkpoint's dtype (unknown: refused) from 5 on. onnxruntime: ``torch_dtype``,
                         int8 when (auto_)quantization is on, else fp32. openvino: ``INFERENCE_PRECISION_HINT``
                         of ``ov_config``, else fp16 for ``half``, int8 for ``load_in_8bit``, else fp32.
precision_ran            pytorch/onnxruntime: as precision. openvino: the hint, else null (OpenVINO picks
                         bf16 on CPUs that have it, and the report does not say).
threads                  pytorch: ``backend.inter_op_num_threads`` (optimum-benchmark passes that field to
                         ``torch.set_num_threads``); onnxruntime: ``session_options.intra_op_num_threads``;
                         openvino: ``ov_config.INFERENCE_NUM_THREADS``. Unset: refused (torch and the
                         runtimes pick a host-dependent default the file does not record).
n_samples, samples_ms    ``report.forward.latency.count`` / ``.values`` (seconds → ms); also latency_samples
p50/p90/p99/mean_ms      the report's own ``p50``/``p90``/``p99``/``mean`` (s → ms); from ``values`` if absent
std_ms, cv, min/max_ms,  computed from ``values`` with hwbench's statistics (sample std, ddof 1; the report's
median CI                ``stdev`` is the population std); null without values
throughput_samples_s     batch_size / p50, hwbench's definition (the report's throughput is batch / mean)
throughput_tokens_s      batch_size × seq_len / p50 for text tasks, else null
warmup_calls             ``scenario.warmup_runs``
first_call_ms            ``report.first_forward.latency``
load_s                   ``report.load_model.latency`` (``report.load`` in older reports)
peak_rss_mb              the largest ``memory.max_ram`` of any report part, MB (10⁶ B) → MiB; required, so
                         reports run with ``scenario.memory: false`` are refused. optimum-benchmark samples
                         RSS every 10 ms, so a short spike can be missed.
device_peak_mb           ``memory.max_allocated`` (CUDA allocator peak), MB → MiB
cpu_model, cpu_cores,    ``environment.cpu``, ``.cpu_count`` (logical CPUs), ``.cpu_ram_mb`` (→ GiB),
memory_gb,               ``.python_version``; torch_version from ``backend.version`` when the backend is
python_version, …        pytorch; package_versions lists every ``*_version`` of the environment
host                     ``"unrecorded"``: optimum-benchmark does not record the host name
stop_reason, ci_target,  null: optimum-benchmark stops after ``iterations`` calls and ``duration`` seconds,
params, flops, load,     counts no FLOPs or parameters, watches no machine load and records no timestamps
started_at, git_revision
=======================  ==================================================================================

Only the inference scenario's ``forward`` part maps onto hwbench (one forward pass per call); generation
(prefill/decode/per_token), diffusion and training reports, torchrun launches and settings hwbench has no
column for (torch.compile, BetterTransformer, quantization schemes, PEFT, DeepSpeed, device maps) are refused
rather than stored under a key that would claim a plain eager run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.hardware import parse_target
from hwbench_pipeline.warehouse.import_measurement import (
    Measurement,
    add_samples_and_runs,
    fill_statistics,
    import_run_id,
)
from hwbench_pipeline.warehouse.import_optimum_config import (
    model_label,
    optimum_environment,
    optimum_precision,
    optimum_target,
    optimum_threads,
)
from hwbench_pipeline.warehouse.import_reader import (
    MAX_MEMORY_MIB,
    BadFile,
    finite,
    get_field,
    latencies,
    non_negative,
    positive_int,
    read_json,
    safe_name,
    show,
)
from hwbench_pipeline.warehouse.schema import UNRECORDED

SOURCE_OPTIMUM = "optimum-benchmark"
_MIB_PER_MB = 1e6 / 2**20
_REPORT_PARTS = {"memory", "latency", "throughput", "energy", "efficiency"}
_TEXT_TASKS = {"feature-extraction", "fill-mask", "text-classification", "token-classification",
               "question-answering", "sentence-similarity", "multiple-choice"}


def looks_like_report(doc: dict) -> bool:
    return bool(doc) and all(isinstance(v, dict) and set(v) <= _REPORT_PARTS for v in doc.values())


def _latency_block(report: dict, part: str) -> dict | None:
    block = get_field(report, part, dict, "report")
    if block is None:
        return None
    latency = get_field(block, "latency", dict, f"report.{part}")
    if latency is not None:
        unit = get_field(latency, "unit", str, f"report.{part}.latency", required=True)
        if unit != "s":
            raise BadFile(f"report.{part}.latency.unit is {show(unit)}, expected 's'")
    return latency


def _seconds(latency: dict | None, key: str, where: str) -> float | None:
    if latency is None:
        return None
    value = get_field(latency, key, float, where)
    if value is None:
        return None
    value = finite(value, f"{where}.{key}")
    non_negative(value * 1e3, f"{where}.{key} in ms")
    return value


def _optimum_identity(backend: dict, precision: str) -> dict[str, str]:
    """The key columns a report does not state as hwbench does: no config (a model id names it), the attention
    implementation asked for (``default``: the library's own choice), int8's quantization recipe unknown."""
    attention = backend.get("attn_implementation")
    return {"config_hash": UNRECORDED, "quantization": UNRECORDED if precision == "int8" else "none",
            "cache_precision": "none", "measurement_method": SOURCE_OPTIMUM,
            "attention": safe_name(attention, "config.backend.attn_implementation") if attention else "default"}


def optimum_row(config: dict, report: dict, run_id: str) -> dict:
    """The inference_results row of one optimum-benchmark run (the mapping table is in the module docstring)."""
    backend = get_field(config, "backend", dict, "config", required=True)
    scenario = get_field(config, "scenario", dict, "config", required=True)
    launcher = get_field(config, "launcher", dict, "config") or {}
    environment = get_field(config, "environment", dict, "config") or {}
    scenario_name = get_field(scenario, "name", str, "config.scenario", required=True)
    if scenario_name != "inference":
        raise BadFile(f"scenario {show(scenario_name)}: only inference reports map onto hwbench's tables")
    launcher_name = get_field(launcher, "name", str, "config.launcher")
    if launcher_name not in (None, "inline", "process"):
        raise BadFile(f"launcher {show(launcher_name)}: results pooled over several processes are not one target's")
    target, runtime = optimum_target(backend)
    family = safe_name(get_field(backend, "model_type", str, "config.backend", required=True).lower(), "model_type")
    preset = model_label(get_field(backend, "model", str, "config.backend", required=True))
    shapes = get_field(scenario, "input_shapes", dict, "config.scenario", required=True)
    batch = positive_int(shapes.get("batch_size"), "config.scenario.input_shapes.batch_size")
    if shapes.get("sequence_length") is None:
        raise BadFile("config.scenario.input_shapes.sequence_length is unset: the sequence length is unknown")
    seq_len = positive_int(shapes.get("sequence_length"), "config.scenario.input_shapes.sequence_length")
    precision, precision_ran = optimum_precision(backend, runtime, environment)
    threads = optimum_threads(backend, runtime)

    if "forward" not in report:
        parts = ", ".join(sorted(report))[:120]
        raise BadFile(f"report has no 'forward' part (it has {parts}): only single forward passes map onto hwbench")
    forward = _latency_block(report, "forward")
    if forward is None:
        raise BadFile("report.forward.latency is missing (scenario.latency was off)")
    values = forward.get("values")
    samples_ms = latencies(values, "report.forward.latency.values", 1e3) if values is not None else []
    count = get_field(forward, "count", int, "report.forward.latency")
    if count is not None and samples_ms and count != len(samples_ms):
        raise BadFile(f"report.forward.latency.count is {count} but values holds {len(samples_ms)} latencies")

    row: dict[str, Any] = {"run_id": run_id, "target": target, "family": family, "preset": preset,
                           "batch_size": batch, "seq_len": seq_len, "precision": precision,
                           **_optimum_identity(backend, precision),
                           "precision_ran": precision_ran, "threads": threads, "backend": runtime,
                           "device_kind": parse_target(target).device_kind, "status": "ok",
                           "n_samples": count if count is not None else len(samples_ms) or None,
                           "warmup_calls": get_field(scenario, "warmup_runs", int, "config.scenario"),
                           "source": SOURCE_OPTIMUM}
    own = ("p50", "p90", "p99", "mean")
    for key in own:
        seconds = _seconds(forward, key, "report.forward.latency")
        row[f"{key}_ms"] = seconds * 1e3 if seconds is not None else None
    if samples_ms:
        row["samples_ms"] = samples_ms
        fill_statistics(row, samples_ms)
    missing = [f"{k}" for k in own if row[f"{k}_ms"] is None]
    if missing:
        raise BadFile(f"report.forward.latency has no {', '.join(missing)} and no values to compute them from")
    row["throughput_samples_s"] = batch / (row["p50_ms"] / 1e3) if row["p50_ms"] > 0 else None
    task = get_field(backend, "task", str, "config.backend")
    if task in _TEXT_TASKS and row["p50_ms"] > 0:
        row["throughput_tokens_s"] = batch * seq_len / (row["p50_ms"] / 1e3)

    first = _latency_block(report, "first_forward")
    first_values = first.get("values") if first else None
    if first_values:
        row["first_call_ms"] = latencies(first_values, "report.first_forward.latency.values", 1e3)[0]
    load = _latency_block(report, "load_model") if "load_model" in report else _latency_block(report, "load")
    row["load_s"] = _seconds(load, "mean", "report.load_model.latency")

    peaks_ram, peaks_device = [], []
    for part in report:
        block = get_field(report, part, dict, "report") or {}
        memory = get_field(block, "memory", dict, f"report.{part}")
        if memory is None:
            continue
        unit = get_field(memory, "unit", str, f"report.{part}.memory", required=True)
        if unit != "MB":
            raise BadFile(f"report.{part}.memory.unit is {show(unit)}, expected 'MB'")
        for key, into in (("max_ram", peaks_ram), ("max_allocated", peaks_device)):
            value = get_field(memory, key, float, f"report.{part}.memory")
            if value is not None:
                if value <= 0:
                    raise BadFile(f"report.{part}.memory.{key} is {value!r}: memory must be positive")
                mib = finite(value, f"report.{part}.memory.{key}", _MIB_PER_MB)
                if mib > MAX_MEMORY_MIB:
                    raise BadFile(f"report.{part}.memory.{key} is {value!r} MB: more than a PiB is not a peak hwbench "
                                  "accepts")
                into.append(mib)
    if not peaks_ram:
        raise BadFile("the report has no memory.max_ram (scenario.memory was off): hwbench requires peak memory")
    row["peak_rss_mb"] = max(peaks_ram)
    row["device_peak_mb"] = max(peaks_device) if peaks_device else None
    row.update(optimum_environment(environment, backend, runtime))
    return row


def sibling_config(path: Path) -> Any:
    sibling = path.with_name("benchmark_config.json")
    if not sibling.is_file():
        raise BadFile("a report alone does not say what ran (backend, device, model, shapes) and no "
                      "benchmark_config.json is beside it")
    try:
        config, _ = read_json(sibling)
    except BadFile as exc:
        raise BadFile(f"its benchmark_config.json: {exc}") from None
    return config


def from_optimum(path: Path, config: Any, report: Any, data: bytes) -> Measurement:
    if not isinstance(config, dict):
        raise BadFile(f"config must be an object, got {type(config).__name__}")
    if not isinstance(report, dict) or not looks_like_report(report):
        raise BadFile("report is not an optimum-benchmark report (parts with memory/latency/throughput)")
    # The measurement, not the file, names the run: benchmark.json and benchmark_report.json of one run agree.
    canonical = json.dumps({"config": config, "report": report}, sort_keys=True, separators=(",", ":"))
    m = Measurement(path, import_run_id(hashlib.sha256(canonical.encode()).hexdigest()))
    m.rows["inference_results"].append(optimum_row(config, report, m.run_id))
    add_samples_and_runs(m, SOURCE_OPTIMUM, hashlib.sha256(data).hexdigest())
    return m
