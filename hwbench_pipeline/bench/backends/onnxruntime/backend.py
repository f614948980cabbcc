"""ONNX Runtime on CPU, CUDA and ROCm: the torch model exported to ONNX, run by an ``InferenceSession``.

Each configuration exports its own graph with its own (static) input shapes into a temporary directory, so
the export time is part of the load time the scenario records. Where the process has a configuration's export
cache (export_cache.py), the export is published there once and the configuration's later processes load it
instead: their load time is the session's alone. The dynamo exporter (``torch.export`` + onnxscript) is tried
first, then the legacy TorchScript exporter; the graph's only output is the tensor ``models.forward`` returns.
A failure of both exporters becomes a classified :class:`BenchmarkFailure`.

fp16 and int8 models are derived from the fp32 export at prepare time (quantize.py), in a directory of the
runner's own removed on release, so the derivation is part of the load time. The precision the runner reports
is read from the graph the session executes (graph.py), not taken from the request.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench.backends.export_cache import configuration_cache, publish
from hwbench_pipeline.bench.backends.exportable import traceable_experts
from hwbench_pipeline.bench.backends.onnxruntime.config import (
    CACHE_ENTRY,
    CUDA_PROVIDER_OPTIONS,
    FP32_ONLY_KINDS,
    GPU_HINTS,
    GPU_PROVIDERS,
    INTER_OP_THREADS,
    INVALID_MODEL_MARKERS,
    LEGACY_OPSET,
    NO_BF16_CONVERTER,
    REFUSED,
    SESSION_GRAPH_FILE,
    TMP_PREFIX,
    TOLERANCE,
    UNSUPPORTED_OPERATOR_MARKERS,
)
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError, classify
from hwbench_pipeline.bench.precision import canonical_spec, offered_specs, unknown_spec_reason

# The exporter logs a warning per torchvision op it cannot register (torchvision is not a dependency):
# four lines per configuration that say nothing about the model being exported.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY_CHARS = 400
#: the exporters, in the order tried; each writes ``<exporter>/model.onnx`` in the export directory
_EXPORTERS = ("dynamo", "torchscript")
_MODEL_FILE = "model.onnx"
#: where a derived (fp16/int8) model is written inside the runner's own directory
_DERIVED_DIR = "derived"


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


def error_summary(exc: BaseException) -> str:
    """One line saying what failed: the outer exception type and the innermost cause's first line."""
    chain = _chain(exc)
    root = chain[-1]
    lines = [line.strip() for line in _ANSI.sub("", str(root)).splitlines() if line.strip()]
    text = f"{type(root).__name__}: {lines[0] if lines else ''}"
    if root is not exc:
        text = f"{type(exc).__name__} <- {text}"
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


def is_unsupported_operator(exc: BaseException) -> bool:
    text = " ".join(f"{type(e).__name__}: {e}" for e in _chain(exc)).lower()
    return any(marker in text for marker in UNSUPPORTED_OPERATOR_MARKERS)


def is_out_of_memory(exc: BaseException) -> bool:
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

    if any(is_out_of_memory(e) for e in errors.values()):
        failure_class = "out_of_memory"
    elif any(is_unsupported_operator(e) for e in errors.values()):
        failure_class = "unsupported_operator"
    else:
        failure_class = "export_error"
    detail = "; ".join(f"{name} exporter: {error_summary(e)}" for name, e in errors.items())
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


def export_fp32(model: torch.nn.Module, inputs: dict[str, torch.Tensor], forward: Any, *,
                own_directory: bool = False) -> tuple[Path, str, bool, Path | None]:
    """The model's fp32 ONNX export (the configuration's cached one where the process has an export cache):
    (model path, exporter, whether it came from the cache, the caller's own temporary directory or None).
    The caller removes that directory when done; with ``own_directory`` there is one even beside a cache (to
    derive other models in). An export that fails removes it and raises a classified failure."""
    traceable_experts(model)
    cache = configuration_cache()
    directory = Path(tempfile.mkdtemp(prefix=TMP_PREFIX)) if cache is None or own_directory else None
    try:
        if cache is not None:
            path, exporter, from_cache = _cached_export(model, inputs, forward, cache / CACHE_ENTRY)
        else:
            (path, exporter), from_cache = _export(model, inputs, forward, directory), False
    except BaseException:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return path, exporter, from_cache, directory


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


def make_session(path: Path, provider: str, device_id: int | None, optimized: Path | None = None) -> Any:
    """An InferenceSession of ``path``; with ``optimized``, ORT also writes there the graph it executes."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
        # weights beside it, as the 2 GB protobuf limit requires for big models
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         f"{optimized.name}.data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                         "1024")
        # ORT warns that a graph optimized at this level is host-specific: it is read here and then deleted
        options.log_severity_level = 3
    if provider == "CPUExecutionProvider":
        providers: list[Any] = [provider]
    else:
        extra = CUDA_PROVIDER_OPTIONS if provider == GPU_PROVIDERS["cuda"] else {}
        providers = [(provider, {"device_id": str(device_id), **extra})]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        text = str(exc).lower()
        if not is_out_of_memory(exc) and is_unsupported_operator(exc):
            raise BenchmarkFailure("unsupported_operator", f"onnxruntime has no kernel: {error_summary(exc)}") from exc
        if not is_out_of_memory(exc) and any(marker in text for marker in INVALID_MODEL_MARKERS):
            what = "exported" if optimized is None else "derived"
            raise BenchmarkFailure("export_error",
                                   f"onnxruntime rejected the {what} model: {error_summary(exc)}") from exc
        raise
    if session.get_providers()[0] != provider:
        # ORT falls back to the CPU silently when a GPU provider cannot start (missing CUDA libraries)
        raise UnsupportedConfigurationError(
            f"onnxruntime could not start {provider} on device {device_id} (session providers: "
            f"{', '.join(session.get_providers())})"
        )
    return session


def derived_model(spec: str, source: Path, directory: Path,
                  calibration: Sequence[dict[str, Any]]) -> tuple[Path, list[str]]:
    """quantize.derive with its failures classified: one line saying which tool failed on what."""
    from hwbench_pipeline.bench.backends.onnxruntime.quantize import derive  # imports onnx: only when needed

    try:
        return derive(spec, source, directory, calibration)
    except BenchmarkFailure:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            failure_class = "out_of_memory"
        elif is_unsupported_operator(exc):
            failure_class = "unsupported_operator"
        else:
            failure_class = "export_error"
        tool = "fp16 conversion" if spec == "fp16" else f"{spec} quantization"
        raise BenchmarkFailure(failure_class, f"onnxruntime {tool} failed: {error_summary(exc)}") from exc


def session_formats(optimized: Path) -> tuple[str, dict[str, int]]:
    """(precision that ran, heavy nodes per format) of the graph a session wrote; the file is then removed."""
    from hwbench_pipeline.bench.backends.onnxruntime.graph import observed_precision

    try:
        precision, counts = observed_precision(optimized)
    finally:
        optimized.unlink(missing_ok=True)
        optimized.with_name(f"{optimized.name}.data").unlink(missing_ok=True)
    return precision, dict(counts)


@functools.cache
def _cpu_kernel_missing(element_type: int) -> str | None:
    """ORT's error for a one-node MatMul of that ONNX element type on the CPU provider, None when it loads (a
    missing kernel of a type ORT can cast around, fp16, loads with inserted Casts)."""
    import onnx
    from onnx import helper

    values = [helper.make_tensor_value_info(name, element_type, [2, 2]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "probe", values[:2], values[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    try:
        _onnxruntime().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - the probe's answer is the message
        return error_summary(exc)
    return None


@functools.cache
def _cpu_fp16_matmul_format() -> str:
    """The format the CPU provider runs an fp16 MatMul with fp16 weights in, read from the graph it optimized:
    fp32 where it has no fp16 kernel and inserts Casts around the node."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT16, [64, 64]) for name in ("a", "c")]
    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float16), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["c"])], "probe", values[:1], values[1:],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as directory:
        source = Path(directory) / "probe.onnx"
        onnx.save(model, source)
        make_session(source, "CPUExecutionProvider", None, optimized=Path(directory) / "optimized.onnx")
        return session_formats(Path(directory) / "optimized.onnx")[0]


class OnnxRuntimeRunner:
    """An ``InferenceSession`` with its inputs bound once: numpy arrays fed to ``run`` (CPU), or with
    ``binding=(ORT device type, device id)`` an IO binding whose inputs were copied there once (CUDA)."""

    def __init__(self, session: Any, inputs: dict[str, torch.Tensor], directory: Path | None, exporter: str,
                 binding: tuple[str, int] | None = None, *, from_cache: bool = False, precision: str = "fp32",
                 model_path: Path | None = None, heavy_ops: dict[str, int] | None = None,
                 notes: Sequence[str] = ()) -> None:
        self.precision = precision
        #: the model file the session loaded (a derived model lives in ``directory`` until release)
        self.model_path = model_path
        #: heavy nodes (MatMul/Gemm/Conv and quantized forms) per format in the executed graph; None for fp32,
        #: whose graph is not inspected
        self.heavy_ops = heavy_ops
        #: what the derivation skipped and the warnings its tools logged (quantize.captured_logs)
        self.notes = tuple(notes)
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
        return offered_specs(self.unsupported_reason, device_kind)

    def unsupported_reason(self, precision: str, device_kind: str) -> str | None:
        if (unknown := unknown_spec_reason(precision)) is not None:
            return unknown
        spec = canonical_spec(precision)
        if device_kind != "cpu" and device_kind not in GPU_PROVIDERS:
            return f"the onnxruntime backend does not run on {device_kind}"
        if spec == "fp32":
            return None
        if device_kind in FP32_ONLY_KINDS:
            return f"onnxruntime runs fp32 only on {device_kind} here (its {GPU_PROVIDERS[device_kind]} is not in " \
                   f"recent releases; other precisions are not implemented for it)"
        if (spec, device_kind) in REFUSED:
            return REFUSED[(spec, device_kind)]
        if device_kind == "cpu" and spec in ("bf16", "fp16"):
            try:
                from onnx import TensorProto
            except ImportError as exc:
                return f"onnx cannot be imported here ({exc})"
            missing = _cpu_kernel_missing(TensorProto.BFLOAT16 if spec == "bf16" else TensorProto.FLOAT16)
            if missing is not None:
                return f"onnxruntime's CPUExecutionProvider cannot run a {spec} MatMul ({missing})"
            if spec == "fp16" and (ran := _cpu_fp16_matmul_format()) != "fp16":
                # an fp16 row would time fp32 matmuls between casts: a row of another format under this name
                return (f"onnxruntime's CPUExecutionProvider has no fp16 MatMul kernel on this CPU: a probe graph's "
                        f"fp16 MatMul ran in {ran} between inserted Casts")
        return NO_BF16_CONVERTER if spec == "bf16" else None

    def tolerance(self, precision: str) -> float:
        return TOLERANCE[canonical_spec(precision)]

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str, *,
                calibration: Sequence[dict[str, Any]] = ()) -> OnnxRuntimeRunner:
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
        reason = self.unsupported_reason(precision, kind)
        if reason is not None:
            raise UnsupportedConfigurationError(
                f"precision {precision} is not supported by onnxruntime on {device}: {reason} "
                f"(supported: {', '.join(self.precisions(kind))})"
            )
        spec = canonical_spec(precision)
        if spec == "int8-static" and not calibration:
            raise UnsupportedConfigurationError("int8-static needs calibration batches and prepare was given none")
        not_tensors = [name for name, value in inputs.items() if not isinstance(value, torch.Tensor)]
        if not_tensors:
            raise UnsupportedConfigurationError(f"onnxruntime takes tensor inputs only, not {', '.join(not_tensors)}")
        path, exporter, from_cache, directory = export_fp32(model, inputs, forward, own_directory=spec != "fp32")
        try:
            if spec == "fp32":
                session = make_session(path, provider, device_id)
                return OnnxRuntimeRunner(session, inputs, directory, exporter, binding, from_cache=from_cache,
                                         model_path=path)
            path, notes = derived_model(spec, path, directory / _DERIVED_DIR, calibration)
            session = make_session(path, provider, device_id, optimized=path.with_name(SESSION_GRAPH_FILE))
            ran, heavy = session_formats(path.with_name(SESSION_GRAPH_FILE))
            return OnnxRuntimeRunner(session, inputs, directory, exporter, binding, from_cache=from_cache,
                                     precision=ran, model_path=path, heavy_ops=heavy, notes=notes)
        except BaseException:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            raise


    def generation_caches(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.onnxruntime.generate import generation_caches

        return generation_caches(device_kind) if self.available(device_kind)[0] else ()

    def generation_precisions(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.onnxruntime.generate import GENERATION_PRECISIONS

        if not self.generation_caches(device_kind):
            return ()
        return tuple(s for s in GENERATION_PRECISIONS if self.unsupported_reason(s, device_kind) is None)

    def prepare_generator(self, model: Any, inputs: dict[str, Any], device: str, precision: str, *,
                          max_new_tokens: int, cache: str) -> Any:
        """An exported decode-step graph with past key/values passed in and out (generate.py)."""
        from hwbench_pipeline.bench.backends.onnxruntime.generate import prepare_generator

        return prepare_generator(model, inputs, device, precision, max_new_tokens=max_new_tokens, cache=cache)


BACKEND = OnnxRuntimeBackend()
