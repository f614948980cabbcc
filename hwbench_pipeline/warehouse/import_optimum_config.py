"""What ran, from an optimum-benchmark config: the hwbench target, precision, threads, model name and
environment columns (the mapping table is in ``warehouse/import_optimum.py``); settings hwbench has no column
for are refused.
"""

from __future__ import annotations

import re
from typing import Any

from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target
from hwbench_pipeline.warehouse.import_reader import (
    MAX_STRING,
    BadFile,
    finite,
    get_field,
    positive_int,
    safe_name,
    show,
)

UNRECORDED_HOST = "unrecorded"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def optimum_target(backend: dict) -> tuple[str, str]:
    """(target key, hwbench backend) from optimum-benchmark's backend name, device and device ids."""
    name = get_field(backend, "name", str, "config.backend", required=True)
    device = get_field(backend, "device", str, "config.backend", required=True)
    runtime = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}.get(name)
    if runtime is None:
        raise BadFile(f"backend {show(name)} has no hwbench target (pytorch, onnxruntime and openvino do)")
    if device == "cpu":
        place = "cpu"
    elif device == "mps" and runtime == "torch":
        place = "mps"
    elif device == "cuda":
        ids = backend.get("device_ids")
        ids = str(ids) if isinstance(ids, int) and not isinstance(ids, bool) else ids
        # ASCII digits only, and few: str.isdigit() accepts superscripts, and int() refuses thousands of digits
        if not isinstance(ids, str) or re.fullmatch(r"[0-9]{1,6}", ids.strip()) is None:
            raise BadFile(f"config.backend.device_ids {show(ids)} is not one GPU index: hwbench targets one device")
        place = f"cuda{int(ids)}"
        provider = backend.get("provider")
        if runtime == "onnxruntime" and provider not in (None, "CUDAExecutionProvider"):
            raise BadFile(f"onnxruntime provider {show(provider)} has no hwbench target")
    else:
        raise BadFile(f"{name} on device {show(device)} has no hwbench target")
    try:
        return parse_target(f"{place}-{runtime}").key, runtime
    except UnknownTargetError as exc:
        raise BadFile(str(exc)) from None


_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_OV_HINTS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _major(version: Any) -> int | None:
    match = re.match(r"(\d+)\.", version) if isinstance(version, str) else None
    return int(match[1]) if match else None


def _refuse_settings(backend: dict, settings: dict[str, Any]) -> None:
    for key, neutral in settings.items():
        value = backend.get(key)
        if value not in (None, neutral, {}, ""):
            raise BadFile(f"config.backend.{key} is {show(value)}: hwbench has no column for that setting")


def optimum_precision(backend: dict, runtime: str, environment: dict) -> tuple[str, str | None]:
    """(precision asked for, precision that ran when the file says)."""
    where = "config.backend"
    if runtime == "torch":
        _refuse_settings(backend, {"torch_compile": False, "to_bettertransformer": False, "quantization_scheme": None,
                                   "deepspeed_inference": False, "peft_type": None, "tp_plan": None,
                                   "device_map": None})
        if get_field(backend, "autocast_enabled", bool, where):
            dtype = get_field(backend, "autocast_dtype", str, where) or (
                "bfloat16" if backend.get("device") == "cpu" else "float16")
        else:
            dtype = get_field(backend, "torch_dtype", str, where)
            if dtype is None:
                major = _major(environment.get("transformers_version"))
                if major is None or major >= 5:
                    raise BadFile("config.backend.torch_dtype is unset and transformers "
                                  f"{show(environment.get('transformers_version'))} loads the checkpoint's own dtype, "
                                  "which the file does not record")
                dtype = "float32"
        if dtype not in _DTYPES:
            raise BadFile(f"torch dtype {show(dtype)} does not map onto an hwbench precision (fp32, bf16, fp16)")
        return _DTYPES[dtype], _DTYPES[dtype]
    if runtime == "onnxruntime":
        if backend.get("quantization") or backend.get("auto_quantization"):
            return "int8", "int8"
        dtype = get_field(backend, "torch_dtype", str, where) or "float32"
        if dtype not in _DTYPES:
            raise BadFile(f"torch dtype {show(dtype)} does not map onto an hwbench precision (fp32, bf16, fp16)")
        return _DTYPES[dtype], _DTYPES[dtype]
    if backend.get("load_in_4bit"):
        raise BadFile("config.backend.load_in_4bit: hwbench has no 4-bit precision")
    ov_config = get_field(backend, "ov_config", dict, where) or {}
    hint = get_field(ov_config, "INFERENCE_PRECISION_HINT", str, f"{where}.ov_config")
    if hint is not None:
        if hint.lower() not in _OV_HINTS:
            raise BadFile(f"INFERENCE_PRECISION_HINT {show(hint)} does not map onto an hwbench precision")
        return _OV_HINTS[hint.lower()], _OV_HINTS[hint.lower()]
    if backend.get("load_in_8bit"):
        return "int8", None
    return ("fp16" if backend.get("half") else "fp32"), None


def optimum_threads(backend: dict, runtime: str) -> int:
    where = "config.backend"
    if runtime == "torch":
        threads, field_name = backend.get("inter_op_num_threads"), "inter_op_num_threads"
    elif runtime == "onnxruntime":
        options = get_field(backend, "session_options", dict, where) or {}
        threads, field_name = options.get("intra_op_num_threads"), "session_options.intra_op_num_threads"
    else:
        options = get_field(backend, "ov_config", dict, where) or {}
        threads, field_name = options.get("INFERENCE_NUM_THREADS"), "ov_config.INFERENCE_NUM_THREADS"
    if threads is None:
        raise BadFile(f"{where}.{field_name} is unset: the thread count was the runtime's default, which the file "
                      "does not record, and hwbench keys results by threads")
    return positive_int(threads, f"{where}.{field_name}")


def model_label(model: str) -> str:
    """A Hub id ``org/name`` → ``org--name``; a local path → its last folder name."""
    if _CONTROL.search(model):
        raise BadFile(f"config.backend.model {show(model)} has control characters")
    parts = [p for p in model.replace("\\", "/").split("/") if p]
    is_hub_id = not model.startswith(("/", ".", "~")) and len(parts) == 2 and ":" not in model
    label = "--".join(parts) if is_hub_id else (parts[-1] if parts else "")
    return safe_name(label, "model name")


def optimum_environment(environment: dict, backend: dict, runtime: str) -> dict:
    where = "config.environment"
    versions = {k.removesuffix("_version"): v for k, v in environment.items()
                if k.endswith("_version") and k != "python_version" and isinstance(v, str)}
    versions[runtime] = get_field(backend, "version", str, "config.backend") or versions.get(runtime)
    ram_mb = get_field(environment, "cpu_ram_mb", float, where)
    cpu = get_field(environment, "cpu", str, where)
    return {
        "host": UNRECORDED_HOST,
        "cpu_model": cpu.strip()[:200] if cpu else None,
        "cpu_cores": get_field(environment, "cpu_count", int, where),
        "memory_gb": round(finite(ram_mb, f"{where}.cpu_ram_mb", 1e6 / 2**30), 2) if ram_mb else None,
        "python_version": get_field(environment, "python_version", str, where),
        "torch_version": versions.get("torch") if runtime == "torch" else None,
        "transformers_version": get_field(environment, "transformers_version", str, where),
        "package_versions": ";".join(f"{k}={v}" for k, v in sorted(versions.items()) if v)[:MAX_STRING],
        "git_revision": None,
    }
