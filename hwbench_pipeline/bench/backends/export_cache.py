"""The export cache of one configuration: exported or converted models shared by the processes that measure it.

A configuration is measured by several short processes one after another. Exporting to ONNX or converting to
OpenVINO costs seconds each time, so the first process publishes its artifact into the directory named by
``HWBENCH_EXPORT_CACHE`` and the later ones load it. The launcher sets that variable, one directory per
configuration, so nothing here keys artifacts by model, shapes or precision: each backend keeps one entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: names the directory of the configuration being measured; unset or empty: no cache
EXPORT_CACHE_ENV = "HWBENCH_EXPORT_CACHE"

#: prefix of an artifact still being written. Readers only open the final names, so what a process killed
#: mid-export leaves under this prefix is never loaded.
STAGING_PREFIX = ".staging-"


def configuration_cache() -> Path | None:
    """The directory shared by the processes that measure this configuration, or None without one."""
    value = os.environ.get(EXPORT_CACHE_ENV, "")
    return Path(value) if value else None


@contextlib.contextmanager
def publish(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination`` to write a file or directory at; when the block ends
    without error it becomes ``destination`` by one ``os.replace`` (same directory, hence atomic), otherwise it
    is removed. Where another process published a directory at ``destination`` first, that one is kept (a file
    is replaced: both processes wrote the same configuration's artifact)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staged = destination.parent / f"{STAGING_PREFIX}{destination.name}-{uuid.uuid4().hex}"
    try:
        yield staged
        try:
            os.replace(staged, destination)
        except OSError:
            if not destination.exists():  # a real failure, not a directory that a concurrent process published
                raise
    finally:
        if staged.is_dir():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            staged.unlink(missing_ok=True)


@contextlib.contextmanager
def without_cache() -> Iterator[None]:
    """Run the block with no configuration cache (``HWBENCH_EXPORT_CACHE`` unset), then restore it.

    The cache holds one entry per backend for the configuration's own model; a second model prepared in the
    same process (the trained task model whose accuracy is measured) would otherwise load that entry, or
    publish itself over it."""
    saved = os.environ.pop(EXPORT_CACHE_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[EXPORT_CACHE_ENV] = saved


#: the torch fp32 eager output the first process computed (the agreement check's reference): the same model built
#: from the same seed on the same inputs gives it again, so the later processes load it instead of running it
REFERENCE_FILE = "reference.pt"


def load_reference(fingerprint: str) -> Any | None:
    """The configuration's reference output, when an earlier process of it published one for the same model and
    inputs (``fingerprint``); None otherwise (a model whose build did not repeat computes its own)."""
    cache = configuration_cache()
    path = cache / REFERENCE_FILE if cache is not None else None
    if path is None or not path.is_file():
        return None
    import torch

    published = torch.load(path, weights_only=True)
    return published["output"] if published.get("fingerprint") == fingerprint else None


def save_reference(reference: Any, fingerprint: str) -> None:
    """Publish the configuration's reference output for its later processes (nothing without a cache)."""
    cache = configuration_cache()
    if cache is None or (cache / REFERENCE_FILE).is_file():
        return
    import torch

    with publish(cache / REFERENCE_FILE) as staged:
        torch.save({"output": reference, "fingerprint": fingerprint}, staged)
