"""Runtime backends. Each is a folder with ``backend.py`` (load, run, release) and ``config.py`` beside it.

To add one, copy ``torch/``, implement :class:`~hwbench_pipeline.bench.backends.base.Backend` and register
its module path here; target keys ``<device>-<name>`` then become valid and are detected where available.
"""

from __future__ import annotations

import importlib

from hwbench_pipeline.bench.backends.base import Backend

BACKENDS: dict[str, str] = {
    "torch": "hwbench_pipeline.bench.backends.torch.backend",
    "onnxruntime": "hwbench_pipeline.bench.backends.onnxruntime.backend",
    "openvino": "hwbench_pipeline.bench.backends.openvino.backend",
}


def load_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return importlib.import_module(BACKENDS[name]).BACKEND


def backend_available(name: str, device_kind: str) -> tuple[bool, str]:
    """Whether the backend can run on that kind of device here, and why not."""
    try:
        backend = load_backend(name)
    except ImportError as exc:
        return False, f"{name} cannot be imported here ({exc})"
    return backend.available(device_kind)
