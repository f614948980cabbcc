"""Where the weights of trained task models live, and how they are written and read.

A training configuration's convergence run (scenarios/training) teaches a catalog model its family's standard
task (bench/tasks.py). Its weights are kept so that inference can measure what a precision does to the task
accuracy of a model that has learned something (bench/quality.py), not only to the outputs of a random one.

Layout: ``<root>/<family>/<preset>/<config_hash>.safetensors`` and ``<config_hash>.json`` beside it. The config
hash (config_key.model_config_hash) names the exact config the model was built from: weights of a preset
whose config changed are never loaded into the new one. One file per (family, preset, config): a later kept
training run of the same model replaces it, and its metadata says which run wrote it.

The metadata is written twice: into the safetensors header (read back by :func:`load_trained`, so weights
and metadata always come from the same atomic write) and into the JSON file, for people and tools that list
trained models without opening safetensors. Both files are written under a temporary name, fsynced, and
moved into place by ``os.replace``: a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: the folder of trained weights under a warehouse's data directory (beside its ``warehouse/`` tables): the
#: measurement assets root training and inference there, so kept weights live and move with the results
TRAINED_DIR = "trained"
#: version of the layout and metadata below; bumped when either changes incompatibly
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".json"
#: the safetensors header key that holds the metadata (JSON)
HEADER_KEY = "hwbench_trained"
#: prefix of a file still being written (never read)
STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class TrainedMetadata:
    """What a kept model was trained on and how well it learned."""

    family: str
    preset: str
    config_hash: str
    task: str
    seed: int
    seq_len: int  # the sequence length of the training batches (and of its held-out set)
    batch_size: int
    steps: int  # optimizer steps of the convergence run
    final_accuracy: float  # held-out accuracy at the end of training
    final_loss: float  # held-out loss at the end of training
    learning_rate: float
    run_id: str
    precision: str  # the precision it was trained at
    created_at: str = dataclasses.field(default_factory=lambda: datetime.now(UTC).isoformat())  # ISO 8601, UTC
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedMetadata:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data) - {"created_at", "format_version"}
        if missing:
            raise ValueError(f"trained-model metadata lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _plain_name(kind: str, value: str) -> str:
    # names become directories: a family or preset with a separator would write outside the root
    if not value or value in (".", "..") or "/" in value or os.sep in value:
        raise ValueError(f"{kind} {value!r} cannot name a directory of trained weights")
    return value


def weights_path(root: str | Path, family: str, preset: str, config_hash: str) -> Path:
    """``<root>/<family>/<preset>/<config_hash>.safetensors``."""
    return (Path(root) / _plain_name("family", family) / _plain_name("preset", preset)
            / f"{_plain_name('config hash', config_hash)}{WEIGHTS_SUFFIX}")


def metadata_path(weights: str | Path) -> Path:
    """The JSON file beside a weights file."""
    return Path(weights).with_suffix(METADATA_SUFFIX)


@contextlib.contextmanager
def _atomic(destination: Path) -> Iterator[Path]:
    """A temporary path beside ``destination`` to write; once written it is fsynced and moved into place by
    one ``os.replace`` (same directory: atomic), and the directory entry fsynced; on error it is removed."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staged = destination.parent / f"{STAGING_PREFIX}{destination.name}-{uuid.uuid4().hex}"
    try:
        yield staged
        fd = os.open(staged, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staged, destination)
        directory = os.open(destination.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        staged.unlink(missing_ok=True)


def save_trained(root: str | Path, task_model: Any, metadata: TrainedMetadata) -> Path:
    """Write ``task_model``'s weights (a tasks.TaskModel) and ``metadata`` under ``root``; returns the weights
    path. Shared (tied) tensors are stored once (``safetensors.torch.save_model``)."""
    from safetensors.torch import save_model

    if task_model.family != metadata.family:
        raise ValueError(f"a {task_model.family} model cannot be saved as {metadata.family}")
    path = weights_path(root, metadata.family, metadata.preset, metadata.config_hash)
    text = json.dumps(metadata.to_dict(), sort_keys=True)
    with _atomic(path) as staged:
        save_model(task_model, str(staged), metadata={HEADER_KEY: text})
    with _atomic(metadata_path(path)) as staged:
        staged.write_text(json.dumps(metadata.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_metadata(weights: str | Path) -> TrainedMetadata:
    """The metadata written with a weights file (from its own header, not the JSON beside it)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        header = handle.metadata() or {}
    if HEADER_KEY not in header:
        raise ValueError(f"{weights} is not a trained task model written by hwbench (no {HEADER_KEY} metadata)")
    return TrainedMetadata.from_dict(json.loads(header[HEADER_KEY]))


def load_trained(weights: str | Path) -> tuple[Any, TrainedMetadata]:
    """(the trained tasks.TaskModel on the CPU in eval mode, its metadata). Raises when the catalog no longer
    builds the config the weights were trained on."""
    from safetensors.torch import load_model

    from hwbench_pipeline.bench import tasks
    from hwbench_pipeline.bench.config_key import model_config_hash

    meta = read_metadata(weights)
    if meta.format_version != FORMAT_VERSION:
        raise ValueError(f"{weights} has trained-model format {meta.format_version}; this hwbench reads "
                         f"{FORMAT_VERSION}")
    built = model_config_hash(meta.family, meta.preset)
    if built != meta.config_hash:
        raise ValueError(f"{weights} was trained on {meta.family}/{meta.preset} config {meta.config_hash}, but "
                         f"that preset now builds config {built}")
    task_model, _ = tasks.trainable(meta.family, meta.preset, seed=meta.seed)
    load_model(task_model, str(weights), strict=True)  # tied tensors: stored once, restored to every name
    task_model.requires_grad_(False)
    return task_model.eval(), meta
