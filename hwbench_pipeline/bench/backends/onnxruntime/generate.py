"""Greedy decoding with ONNX Runtime: one exported decode-step graph, past key/values passed in and out.

The model is wrapped by ``decoder_graph`` (one step over flat tensors) and exported once with the dynamo
exporter with dynamic batch, sequence and past lengths; the same graph runs the prefill (zero-length past) and
every decode step. The loop is ours: argmax of the last position's logits, and the presents a step returns become
the next step's past. Steps are plain ``session.run`` calls with numpy arrays, which ORT reads in place on the CPU.
An IO binding (presents kept as OrtValues and bound back, outputs rebound each step since they grow) and
``run_with_ort_values`` were measured as alternatives (llama small, 2 threads, batch 1 and 8, interleaved): both
2-5 % slower per token than this, so the simplest call stays. Each step still writes a whole new present tensor per
layer (the graph concatenates past and new), which is what a past-in/present-out cache costs.

fp32 runs the export; int8-dynamic is derived from it by ORT's dynamic quantizer (quantize.py), and the precision
reported is read from the graph the session executes. The export goes into the configuration's export cache
where the process has one (entry ``onnxruntime-generation``, beside the forward scenario's), else into a
temporary directory of the generator's own, removed on release.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench.backends.decoder_graph import CacheLayout, dynamic_shapes, example_inputs
from hwbench_pipeline.bench.backends.export_cache import configuration_cache, publish
from hwbench_pipeline.bench.backends.exported_decoder import ExportedDecoder, check_request, decode_step_graph
from hwbench_pipeline.bench.backends.onnxruntime.config import SESSION_GRAPH_FILE, TMP_PREFIX
from hwbench_pipeline.bench.failures import BenchmarkFailure

#: the cache implementations this runtime offers, its default first
GENERATION_CACHES: tuple[str, ...] = ("past-io",)
#: the precision specs the decode path runs. int8-static would need calibration batches that include past
#: key/values; fp16/bf16 have no CPU kernels or converter here (backend.unsupported_reason)
GENERATION_PRECISIONS: tuple[str, ...] = ("fp32", "int8-dynamic")
#: this path's entry in a configuration's export cache: ``model.onnx`` and its external data file
CACHE_ENTRY = "onnxruntime-generation"
_MODEL_FILE = "model.onnx"
_DERIVED_DIR = "derived"
#: ONNX tensor element type -> the number format a cache in it holds
_CACHE_FORMATS = {"tensor(float)": "fp32", "tensor(float16)": "fp16", "tensor(bfloat16)": "bf16",
                  "tensor(uint8)": "u8", "tensor(int8)": "i8"}
#: the same for the numpy arrays the session returns
_NUMPY_FORMATS = {"float32": "fp32", "float16": "fp16", "uint8": "u8", "int8": "i8"}


def generation_caches(device_kind: str) -> tuple[str, ...]:
    """The caches offered on a device kind: the decode path runs on the CPU only (not verified on a GPU)."""
    return GENERATION_CACHES if device_kind == "cpu" else ()


def _export(graph: torch.nn.Module, layout: CacheLayout, directory: Path) -> Path:
    """Export the decode-step graph to ``directory/model.onnx``; raises a classified BenchmarkFailure."""
    from hwbench_pipeline.bench.backends.onnxruntime.backend import (
        error_summary,
        is_out_of_memory,
        is_unsupported_operator,
    )

    path = directory / _MODEL_FILE
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # positional: the graph's forward advertises named arguments but takes the past as *args
            torch.onnx.export(graph, tuple(example_inputs(layout).values()), str(path),
                              input_names=layout.input_names(), output_names=layout.output_names(),
                              dynamic_shapes=dynamic_shapes(layout), dynamo=True, external_data=True,
                              verbose=False)
    except Exception as exc:  # noqa: BLE001 - every exporter failure becomes a classified row
        if is_out_of_memory(exc):
            failure_class = "out_of_memory"
        elif is_unsupported_operator(exc):
            failure_class = "unsupported_operator"
        else:
            failure_class = "export_error"
        raise BenchmarkFailure(failure_class, f"ONNX export of the decode-step graph failed: "
                                              f"{error_summary(exc)}") from exc
    return path


def _cached_export(graph: torch.nn.Module, layout: CacheLayout, entry: Path) -> tuple[Path, bool]:
    """(model path, whether it came from the cache): the export an earlier process of this configuration
    published at ``entry``, else a new one published there."""
    path = entry / _MODEL_FILE
    if path.is_file():
        return path, True
    with publish(entry) as staged:
        staged.mkdir()
        _export(graph, layout, staged)  # the external data file beside it moves with the directory
    if not path.is_file():  # only if something other than an export was published at that name
        raise BenchmarkFailure("export_error", f"the export cache entry {entry} holds no {_MODEL_FILE}")
    return path, False


class OnnxRuntimeGenerator(ExportedDecoder):
    """Greedy decoding over an ``InferenceSession`` of the decode-step graph (module docstring)."""

    cache_implementation = "past-io"

    def __init__(self, session: Any, layout: CacheLayout, directory: Path | None, *, precision: str = "fp32",
                 from_cache: bool = False, model_path: Path | None = None,
                 heavy_ops: dict[str, int] | None = None, notes: tuple[str, ...] = ()) -> None:
        # cache_write_s 0: the export is written in place and published by a rename
        super().__init__(layout, precision=precision, from_cache=from_cache, cache_write_s=0.0)
        #: the model file the session loaded; heavy nodes per format of a derived model's executed graph
        self.model_path = model_path
        self.heavy_ops = heavy_ops
        self.notes = notes
        self.session = session
        # the generator's own directory (no export cache, or a derived model), removed on release
        self._finalizer = (weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
                           if directory is not None else None)
        declared = {arg.name: arg.type for arg in session.get_inputs()}
        missing = [name for name in layout.input_names() if name not in declared]
        if missing or len(declared) != len(layout.input_names()):
            raise BenchmarkFailure("export_error", f"the decode-step graph's inputs are {', '.join(declared)}, not "
                                                   f"{', '.join(layout.input_names())}")
        #: the cache's element format: what the graph declares until a step has run, then what its presents hold
        self.cache_precision = _CACHE_FORMATS.get(declared[layout.past_names()[0]], declared[layout.past_names()[0]])
        self._output_names = layout.output_names()
        self._past: list[np.ndarray] = []

    def _reset_cache(self, batch: int) -> None:
        # zero-length past tensors, one array shared by every layer (ORT only reads inputs)
        empty = torch.zeros(self.layout.past_shape(batch, 0), dtype=self.layout.dtype).numpy()
        self._past = [empty] * len(self.layout.past_names())

    def _run_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> Any:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                **dict(zip(self.layout.past_names(), self._past, strict=True))}
        outputs = self.session.run(self._output_names, feed)
        self._past = outputs[1:]
        return outputs[0]

    def start(self, inputs: dict[str, Any]) -> torch.Tensor:
        tokens = super().start(inputs)
        self.cache_precision = _NUMPY_FORMATS.get(self._past[0].dtype.name, self._past[0].dtype.name)
        return tokens

    def cache_bytes(self) -> int | None:
        """Bytes of the present tensors the next step takes as its past (what the runtime holds as the cache)."""
        return sum(int(value.nbytes) for value in self._past)

    def release(self) -> None:
        super().release()
        self.session = None
        self._past = []
        if self._finalizer is not None:
            self._finalizer()


def prepare_generator(model: torch.nn.Module, inputs: dict[str, Any], device: str, precision: str, *,
                      max_new_tokens: int, cache: str) -> OnnxRuntimeGenerator:
    """``model`` (a transformers decoder-only causal LM, eval, fp32, CPU) exported and loaded for greedy decoding
    of prompts like ``inputs`` (the graph takes any batch and length). Raises UnsupportedConfigurationError for a
    device, cache, precision or model this path does not run, a classified BenchmarkFailure for a failed export."""
    from hwbench_pipeline.bench.backends.onnxruntime.backend import (
        BACKEND,
        derived_model,
        make_session,
        session_formats,
    )

    spec = check_request("onnxruntime", BACKEND, device, cache, precision, max_new_tokens,
                         caches=GENERATION_CACHES, precisions=GENERATION_PRECISIONS,
                         cpu_only="the onnxruntime decode path runs on the CPU only (not verified on a GPU)",
                         precision_note=": int8-static would need calibration batches with past key/values, and "
                                        "fp16/bf16 have no CPU kernels")
    graph, layout = decode_step_graph(model, inputs)
    export_cache = configuration_cache()
    directory = Path(tempfile.mkdtemp(prefix=TMP_PREFIX)) if export_cache is None or spec != "fp32" else None
    try:
        if export_cache is not None:
            path, from_cache = _cached_export(graph, layout, export_cache / CACHE_ENTRY)
        else:
            path, from_cache = _export(graph, layout, directory), False
        if spec == "fp32":
            session = make_session(path, "CPUExecutionProvider", None)
            return OnnxRuntimeGenerator(session, layout, directory, from_cache=from_cache, model_path=path)
        path, notes = derived_model(spec, path, directory / _DERIVED_DIR, ())
        session = make_session(path, "CPUExecutionProvider", None, optimized=path.with_name(SESSION_GRAPH_FILE))
        ran, heavy = session_formats(path.with_name(SESSION_GRAPH_FILE))
        return OnnxRuntimeGenerator(session, layout, directory, precision=ran, from_cache=from_cache,
                                    model_path=path, heavy_ops=heavy, notes=tuple(notes))
    except BaseException:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
