"""Runtime backends. Each is a folder with ``backend.py`` (load, run, release) and ``config.py`` beside it.

To add one, copy ``torch/``, implement :class:`~hwbench_pipeline.bench.backends.base.Backend` and register
its module path here; target keys ``<device>-<name>`` then become valid and are detected where available. A
module serving several backends (the browser targets) holds them in a ``BACKENDS`` dict by name.
"""

from __future__ import annotations

import importlib

from hwbench_pipeline.bench.backends.base import Backend
from hwbench_pipeline.bench.backends.browser.config import BROWSER_TARGETS

_BROWSER_MODULE = "hwbench_pipeline.bench.backends.browser.backend"

BACKENDS: dict[str, str] = {
    "torch": "hwbench_pipeline.bench.backends.torch.backend",
    "onnxruntime": "hwbench_pipeline.bench.backends.onnxruntime.backend",
    "openvino": "hwbench_pipeline.bench.backends.openvino.backend",
    **{name: _BROWSER_MODULE for name in BROWSER_TARGETS},
}
#: backends that run in a browser: their targets are ``browser-<name>`` (browser-chromium-wasm …)
BROWSER_BACKENDS = frozenset(BROWSER_TARGETS)


def load_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module = importlib.import_module(BACKENDS[name])
    return module.BACKENDS[name] if name in BROWSER_BACKENDS else module.BACKEND


def backend_available(name: str, device_kind: str) -> tuple[bool, str]:
    """Whether the backend can run on that kind of device here, and why not."""
    try:
        backend = load_backend(name)
    except ImportError as exc:
        return False, f"{name} cannot be imported here ({exc})"
    return backend.available(device_kind)
