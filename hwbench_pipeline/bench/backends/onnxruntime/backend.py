"""ONNX Runtime on CPU, CUDA and ROCm: the torch model exported to ONNX, run by an ``InferenceSession``.

Each configuration exports its own graph with its own (static) input shapes into a temporary directory, so
the export time is part of the load time the scenario records. Where the process has a configuration's export
cache (export_cache.py), the export is published there once and the configuration's later processes load it
instead: their load time is the session's alone. The dynamo exporter (``torch.export`` + onnxscript) is tried
first, then the legacy TorchScript exporter; the graph's only output is the tensor ``models.forward`` returns.
A failure of both exporters becomes a classified :class:`BenchmarkFailure`.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench.backends.export_cache import configuration_cache, publish
from hwbench_pipeline.bench.backends.exportable import traceable_experts
from hwbench_pipeline.bench.backends.onnxruntime.config import (
    CACHE_ENTRY,
    CUDA_PROVIDER_OPTIONS,
    GPU_HINTS,
    GPU_PROVIDERS,
    INTER_OP_THREADS,
    INVALID_MODEL_MARKERS,
    LEGACY_OPSET,
    PRECISIONS,
    TMP_PREFIX,
    TOLERANCE,
    UNSUPPORTED_OPERATOR_MARKERS,
)
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError, classify

# The exporter logs a warning per torchvision op it cannot register (torchvision is not a dependency):
# four lines per configuration that say nothing about the model being exported.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY_CHARS = 400
#: the exporters, in the order tried; each writes ``<exporter>/model.onnx`` in the export directory
_EXPORTERS = ("dynamo", "torchscript")
_MODEL_FILE = "model.onnx"


def _onnxruntime():
    import onnxruntime

    return onnxruntime


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------


class _KeywordModule(torch.nn.Module):
    """``model(**inputs)`` -> the one tensor ``forward(model, inputs)`` returns (the dynamo exporter)."""

    def __init__(self, model: torch.nn.Module, forward: Any) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(self.model, inputs)


class _PositionalModule(torch.nn.Module):
    """The same for the TorchScript exporter, which passes inputs positionally: maps them back to names
    (transformers 5 models fed positional inputs misplace them, e.g. into ``use_cache``)."""

    def __init__(self, model: torch.nn.Module, forward: Any, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward
        self._names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self._forward(self.model, dict(zip(self._names, args, strict=True)))


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first."""
    chain = [exc]
    while True:
        last = chain[-1]
        cause = last.__cause__ if last.__cause__ is not None else (
            None if last.__suppress_context__ else last.__context__)
        if cause is None or cause in chain:
            return chain
        chain.append(cause)


def _summary(exc: BaseException) -> str:
    """One line saying what failed: the outer exception type and the innermost cause's first line."""
    chain = _chain(exc)
    root = chain[-1]
    lines = [line.strip() for line in _ANSI.sub("", str(root)).splitlines() if line.strip()]
    text = f"{type(root).__name__}: {lines[0] if lines else ''}"
    if root is not exc:
        text = f"{type(exc).__name__} <- {text}"
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


def _is_unsupported_operator(exc: BaseException) -> bool:
    text = " ".join(f"{type(e).__name__}: {e}" for e in _chain(exc)).lower()
    return any(marker in text for marker in UNSUPPORTED_OPERATOR_MARKERS)


def _is_out_of_memory(exc: BaseException) -> bool:
    return any(classify(e) == "out_of_memory" for e in _chain(exc))


def _export(model: torch.nn.Module, inputs: dict[str, torch.Tensor], forward: Any, directory: Path) -> tuple[Path, str]:
    """Export to ONNX in ``directory``; returns (model path, exporter used) or raises a classified failure."""
    errors: dict[str, BaseException] = {}
    path = directory / "dynamo" / _MODEL_FILE
    path.parent.mkdir()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_KeywordModule(model, forward).eval(), (), str(path), kwargs=dict(inputs),
                              dynamo=True, external_data=True, verbose=False)
        return path, "dynamo"
    except Exception as exc:  # noqa: BLE001 - any exporter failure falls back to the legacy exporter
        errors["dynamo"] = exc
        shutil.rmtree(path.parent, ignore_errors=True)

    path = directory / "torchscript" / _MODEL_FILE
    path.parent.mkdir()
    names = list(inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_PositionalModule(model, forward, names).eval(), tuple(inputs.values()), str(path),
                              input_names=names, output_names=["output"], opset_version=LEGACY_OPSET,
                              dynamo=False)
        return path, "torchscript"
    except Exception as exc:  # noqa: BLE001 - classified below with both messages
        errors["torchscript"] = exc

    if any(_is_out_of_memory(e) for e in errors.values()):
        failure_class = "out_of_memory"
    elif any(_is_unsupported_operator(e) for e in errors.values()):
        failure_class = "unsupported_operator"
    else:
        failure_class = "export_error"
    detail = "; ".join(f"{name} exporter: {_summary(e)}" for name, e in errors.items())
    raise BenchmarkFailure(failure_class, f"ONNX export failed with both exporters. {detail}")


def _exported(directory: Path) -> tuple[Path, str] | None:
    """(model path, exporter) of a finished export in ``directory``, None when it holds none."""
    for exporter in _EXPORTERS:
        path = directory / exporter / _MODEL_FILE
        if path.is_file():
            return path, exporter
    return None


def _cached_export(model: torch.nn.Module, inputs: dict[str, torch.Tensor], forward: Any,
                   entry: Path) -> tuple[Path, str, bool]:
    """(model path, exporter, whether it came from the cache): the export published at ``entry`` by an earlier
    process of this configuration, else a new export published there (the file the session reads from)."""
    found = _exported(entry)
    if found is not None:
        return *found, True
    with publish(entry) as staged:
        staged.mkdir()
        _export(model, inputs, forward, staged)  # its external data file moves with it: a directory is published
    found = _exported(entry)
    if found is None:  # only if something other than an export was published at that name
        raise BenchmarkFailure("export_error", f"the export cache entry {entry} holds no {_MODEL_FILE}")
    return *found, False


# ----------------------------------------------------------------------------------------------------------
# Session
# ----------------------------------------------------------------------------------------------------------


def _gpu_provider() -> str:
    """The GPU execution provider of this onnxruntime build (torch's cuda:N is CUDA or ROCm)."""
    have = _onnxruntime().get_available_providers()
    for provider in GPU_PROVIDERS.values():
        if provider in have:
            return provider
    raise UnsupportedConfigurationError(
        f"onnxruntime {_onnxruntime().__version__} has no GPU execution provider here "
        f"(available: {', '.join(have)}); install the onnxruntime-gpu build"
    )


def _session(path: Path, provider: str, device_id: int | None) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if provider == "CPUExecutionProvider":
        providers: list[Any] = [provider]
    else:
        extra = CUDA_PROVIDER_OPTIONS if provider == GPU_PROVIDERS["cuda"] else {}
        providers = [(provider, {"device_id": str(device_id), **extra})]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        text = str(exc).lower()
        if not _is_out_of_memory(exc) and _is_unsupported_operator(exc):
            raise BenchmarkFailure("unsupported_operator", f"onnxruntime has no kernel: {_summary(exc)}") from exc
        if not _is_out_of_memory(exc) and any(marker in text for marker in INVALID_MODEL_MARKERS):
            raise BenchmarkFailure("export_error", f"onnxruntime rejected the exported model: {_summary(exc)}") from exc
        raise
    if session.get_providers()[0] != provider:
        # ORT falls back to the CPU silently when a GPU provider cannot start (missing CUDA libraries)
        raise UnsupportedConfigurationError(
            f"onnxruntime could not start {provider} on device {device_id} (session providers: "
            f"{', '.join(session.get_providers())})"
        )
    return session


class OnnxRuntimeRunner:
    """An ``InferenceSession`` with its inputs bound once: numpy arrays fed to ``run`` (CPU), or with
    ``binding=(ORT device type, device id)`` an IO binding whose inputs were copied there once (CUDA)."""

    def __init__(self, session: Any, inputs: dict[str, torch.Tensor], directory: Path | None, exporter: str,
                 binding: tuple[str, int] | None = None, *, from_cache: bool = False) -> None:
        self.precision = "fp32"
        self.exporter = exporter
        self.from_cache = from_cache
        self.cache_write_s = 0.0  # the export is written in place and published by a rename
        self.session = session
        # ``directory`` is this runner's own export, removed on release; a cached export (None) outlives it
        self._finalizer = (weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
                           if directory is not None else None)
        self._outputs = [output.name for output in session.get_outputs()]
        # the exporters drop inputs the graph does not use: feed exactly the ones the session declares
        feeds = {}
        for arg in session.get_inputs():
            if arg.name not in inputs:
                raise BenchmarkFailure("export_error", f"the exported graph expects an input {arg.name!r} that "
                                                       f"the model was not given ({', '.join(inputs)})")
            feeds[arg.name] = np.ascontiguousarray(inputs[arg.name].detach().cpu().numpy())
        #: the inputs fed at each call, in the session's order
        self.input_names = tuple(feeds)
        self._feeds: dict[str, Any] | None = None
        self._binding = None
        self._device_inputs: dict[str, Any] | None = None
        if binding is None:
            self._feeds = feeds
        else:
            ort, (device_type, device_id) = _onnxruntime(), binding
            # inputs copied to the device once; outputs allocated on the device by ORT at each call
            self._device_inputs = {name: ort.OrtValue.ortvalue_from_numpy(array, device_type, device_id)
                                   for name, array in feeds.items()}
            self._binding = session.io_binding()
            for name, value in self._device_inputs.items():
                self._binding.bind_ortvalue_input(name, value)
            for name in self._outputs:
                self._binding.bind_output(name, device_type, device_id)

    def __call__(self) -> Any:
        if self._binding is None:
            return self.session.run(self._outputs[:1], self._feeds)[0]
        self.session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()  # returns only once the device has finished
        return self._binding.get_outputs()[0]

    def output(self) -> torch.Tensor:
        if self._binding is None:
            return torch.from_numpy(np.asarray(self())).float()
        self()
        return torch.from_numpy(self._binding.copy_outputs_to_cpu()[0]).float()

    def peak_memory_mb(self) -> float | None:
        # CPU: the process RSS is the measure. GPU: ORT's arena exposes no peak statistic (see the report).
        return None

    def release(self) -> None:
        self._binding = self._feeds = self.session = None
        self._device_inputs = None
        if self._finalizer is not None:
            self._finalizer()


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def available(self, device_kind: str) -> tuple[bool, str]:
        try:
            ort = _onnxruntime()
        except ImportError as exc:
            return False, f"onnxruntime cannot be imported here ({exc})"
        if device_kind == "cpu":
            return True, ""
        if device_kind in GPU_PROVIDERS:
            provider, have = GPU_PROVIDERS[device_kind], ort.get_available_providers()
            if provider in have:
                return True, ""
            return False, (f"onnxruntime {ort.__version__} has no {provider} (available: {', '.join(have)}); "
                           f"{GPU_HINTS[device_kind]}")
        return False, f"the onnxruntime backend does not run on {device_kind}"

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        return PRECISIONS.get(device_kind, ())

    def tolerance(self, precision: str) -> float:
        return TOLERANCE[precision]

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str,
                precision: str) -> OnnxRuntimeRunner:
        dev = torch.device(device)
        binding: tuple[str, int] | None = None
        if dev.type == "cpu":
            provider, kind, device_id = "CPUExecutionProvider", "cpu", None
        elif dev.type == "cuda":
            provider = _gpu_provider()
            kind = next(k for k, p in GPU_PROVIDERS.items() if p == provider)
            device_id = dev.index if dev.index is not None else 0
            # CUDA: inputs stay on the device. ROCm (older ORT builds only) is fed from the host, so its
            # timings include the copies: ORT's "cuda" device alias means NVIDIA memory.
            binding = ("cuda", device_id) if kind == "cuda" else None
        else:
            raise UnsupportedConfigurationError(f"the onnxruntime backend does not run on {device}")
        allowed = self.precisions(kind)
        if precision not in allowed:
            raise UnsupportedConfigurationError(
                f"precision {precision} is not supported by onnxruntime on {device} (supported: {', '.join(allowed)})"
            )
        not_tensors = [name for name, value in inputs.items() if not isinstance(value, torch.Tensor)]
        if not_tensors:
            raise UnsupportedConfigurationError(f"onnxruntime takes tensor inputs only, not {', '.join(not_tensors)}")
        traceable_experts(model)
        cache = configuration_cache()
        if cache is not None:
            path, exporter, from_cache = _cached_export(model, inputs, forward, cache / CACHE_ENTRY)
            session = _session(path, provider, device_id)
            return OnnxRuntimeRunner(session, inputs, None, exporter, binding, from_cache=from_cache)
        directory = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        try:
            path, exporter = _export(model, inputs, forward, directory)
            session = _session(path, provider, device_id)
            return OnnxRuntimeRunner(session, inputs, directory, exporter, binding)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise


BACKEND = OnnxRuntimeBackend()
