"""The parts of a configuration's key that its labels do not say: the hash of the config the model is built
from, and the numerics and method it is measured with. docs/warehouse.md ("The configuration key") explains
why each is part of the key."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from hwbench_pipeline.bench.precision import NO_QUANTIZATION

#: how hwbench measures, versioned: bumped whenever a change to timing, warm-up, stopping or the timed model
#: could move a number, so that rows of two methods are never compared as a regression of one another.
#: ``hwbench-1``: one measuring window per configuration (training, distributed, probes, and inference with
#: ``processes = max_processes = 1``); ``hwbench-2``: samples spread over several processes (docs/measurement.md)
METHOD = "hwbench-1"
SPREAD_METHOD = "hwbench-2"
#: the attention implementation every model is built with: FLOP counters see its matmuls, exporters trace it,
#: and training runs it
ATTENTION = "eager"
#: what an inference configuration on torch asks for: transformers' own choice, SDPA where every part of the
#: model supports it, as users run it (the row's ``attention_ran`` says which ran)
DEFAULT_ATTENTION = "default"
#: backends that time the model itself; the others time a graph exported from the model as built
_RUN_THE_MODEL = ("torch",)
NO_CACHE = "none"
#: the config hash of a configuration whose config cannot be built (its failure row says why)
UNBUILT = "unbuilt"

#: config fields that say where or by which library version a config was written, not what it builds
_PROVENANCE_FIELDS = ("transformers_version", "_name_or_path")


def _without_provenance(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_provenance(v) for k, v in data.items() if k not in _PROVENANCE_FIELDS}
    if isinstance(data, (list, tuple)):
        return [_without_provenance(v) for v in data]
    return data


def config_hash(config: Any) -> str:
    """16 hex digits of the SHA-256 of ``config``'s settings (sub-configs included), written as sorted JSON."""
    text = json.dumps(_without_provenance(config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_config_hash(family: str, preset: str) -> str:
    """The hash of the config ``family`` (a curated family, a model type, a config file or a checkpoint) builds
    at ``preset``; :data:`UNBUILT` when it cannot be built. A file is read again on every call (it may change)."""
    if "/" in family or family.endswith(".json"):
        return _hash_of(family, preset)
    return _cached_hash_of(family, preset)


def _hash_of(family: str, preset: str) -> str:
    from hwbench_pipeline.bench import models

    try:
        return config_hash(models.build_config(family, preset))
    except Exception:  # noqa: BLE001 - building it again in the measurement raises, and its row says why
        return UNBUILT


_cached_hash_of = functools.lru_cache(maxsize=4096)(_hash_of)


def inference_attention(target: str) -> str:
    """The attention an inference configuration on ``target`` asks for: the default where the backend times the
    model itself, the built model's (eager) where it times an exported graph."""
    from hwbench_pipeline.bench.hardware import parse_target

    return DEFAULT_ATTENTION if parse_target(target).backend in _RUN_THE_MODEL else ATTENTION


def identity_fields(family: str, preset: str, attention: str = ATTENTION, method: str = METHOD) -> dict[str, Any]:
    """The key columns besides the labels, shape, precision and threads of a configuration hwbench measures."""
    return {"config_hash": model_config_hash(family, preset), "quantization": NO_QUANTIZATION,
            "cache_precision": NO_CACHE, "attention": attention, "measurement_method": method}


def key_fields(cfg: Any, attention: str = ATTENTION, method: str = METHOD) -> dict[str, Any]:
    """The configuration key of a scenario's configuration (any object with target, family, preset, batch_size,
    seq_len, precision and threads), in the warehouse's column order."""
    identity = identity_fields(cfg.family, cfg.preset, attention, method)
    identity["quantization"] = getattr(cfg, "quantization", NO_QUANTIZATION)
    return {"target": cfg.target, "family": cfg.family, "preset": cfg.preset, "config_hash": identity["config_hash"],
            "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "precision": cfg.precision,
            "quantization": identity["quantization"], "cache_precision": identity["cache_precision"],
            "attention": identity["attention"], "threads": cfg.threads,
            "measurement_method": identity["measurement_method"]}
