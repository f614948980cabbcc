"""The non-fp32 models, derived from the fp32 ONNX export with ONNX Runtime's own tooling (config.py says which
recipe and why): ``quantize_dynamic`` / ``quantize_static`` after ORT's ``quant_pre_process``, and the fp16
converter of ``onnxruntime.transformers``. Each writes ``model.onnx`` (external data beside it) in a directory
of the prepared runner's own; the export cache keeps only the fp32 export.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwbench_pipeline.bench.backends.onnxruntime.config import (
    STATIC_ACTIVATION_TYPE,
    STATIC_CALIBRATION_METHOD,
    STATIC_OP_TYPES,
    STATIC_QUANT_FORMAT,
    WEIGHT_TYPE,
)
from hwbench_pipeline.bench.cpu_features import int8_saturates
from hwbench_pipeline.bench.failures import BenchmarkFailure

MODEL_FILE = "model.onnx"
_PREPROCESSED_FILE = "preprocessed.onnx"


class _CaptureRecords(logging.Handler, logging.Filter):
    """Keeps the quantizer's log lines (root ``logging.warning`` calls and the ``onnxruntime.*`` loggers) for the
    runner instead of the worker's stderr."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if record.levelno >= logging.WARNING and text:
            self.lines.append(text.splitlines()[0])

    def filter(self, record: logging.LogRecord) -> bool:  # as a filter on the root logger: keep, then drop
        self.emit(record)
        return False


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Within the block, the quantizer's warnings (e.g. "Please consider to run pre-processing") and the
    calibrator's prints are collected into the yielded list, not written to the worker's output."""
    capture, stdout = _CaptureRecords(), io.StringIO()
    root, ours = logging.getLogger(), logging.getLogger("onnxruntime")
    propagate = ours.propagate
    root.addFilter(capture)
    ours.addHandler(capture)
    ours.propagate = False
    try:
        with contextlib.redirect_stdout(stdout):
            yield capture.lines
    finally:
        ours.propagate = propagate
        ours.removeHandler(capture)
        root.removeFilter(capture)
        capture.lines.extend(line.strip() for line in stdout.getvalue().splitlines() if line.strip())


def graph_inputs(path: Path) -> list[str]:
    """The inputs the exported graph declares (exporters drop unused ones), in order."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [value.name for value in graph.input if value.name not in initializers]


class BatchReader:
    """ORT's CalibrationDataReader (which it recognises by ``get_next``) over the calibration batches: numpy
    arrays of the graph's inputs, each batch read once (MinMax calibration reads them once)."""

    def __init__(self, batches: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
        feeds = []
        for number, batch in enumerate(batches):
            missing = [name for name in names if name not in batch]
            if missing:
                raise BenchmarkFailure("runtime_error", f"calibration batch {number} lacks the graph input(s) "
                                                        f"{', '.join(missing)}")
            feeds.append({name: _array(batch[name]) for name in names})
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


def preprocess(source: Path, directory: Path) -> tuple[Path, str | None]:
    """ORT's recommended pre-processing (symbolic shape inference, basic graph optimization, ONNX shape
    inference), which lets the quantizer see shapes and fuse MatMul+Add into Gemm (QGemm). Returns (model to
    quantize, None), or (the export itself, why) where pre-processing fails: it is advice, not a requirement."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = directory / _PREPROCESSED_FILE
    try:
        # its symbolic shape inference writes scratch files (sym_shape_infer_temp.onnx, <uuid>.data) into the
        # working directory when it falls back on a graph it cannot infer (decoders with past key/values): keep
        # them in this runner's own directory, which is removed with it
        with contextlib.chdir(directory):
            quant_pre_process(str(source.resolve()), str(target.resolve()), save_as_external_data=True,
                              all_tensors_to_one_file=True, external_data_location=f"{_PREPROCESSED_FILE}.data")
    except Exception as exc:  # noqa: BLE001 - any failure: quantize the export as it is
        _remove(target)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return source, f"pre-processing skipped ({type(exc).__name__}: {first})"
    return target, None


def _remove(model: Path) -> None:
    model.unlink(missing_ok=True)
    model.with_name(f"{model.name}.data").unlink(missing_ok=True)


def quantize_dynamic_model(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=getattr(QuantType, WEIGHT_TYPE), use_external_data_format=True,
                     reduce_range=int8_saturates())


def quantize_static_model(source: Path, target: Path, batches: Sequence[dict[str, Any]]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = BatchReader(batches, graph_inputs(source))
    quantize_static(source, target, reader, quant_format=getattr(QuantFormat, STATIC_QUANT_FORMAT),
                    op_types_to_quantize=list(STATIC_OP_TYPES),
                    activation_type=getattr(QuantType, STATIC_ACTIVATION_TYPE),
                    weight_type=getattr(QuantType, WEIGHT_TYPE),
                    calibrate_method=getattr(CalibrationMethod, STATIC_CALIBRATION_METHOD),
                    use_external_data_format=True, reduce_range=int8_saturates())


def convert_fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # keep_io_types: the graph still takes and returns fp32, so the runner feeds it the same inputs
    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save_model(converted, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{target.name}.data")


def derive(spec: str, source: Path, directory: Path,
           calibration: Sequence[dict[str, Any]] = ()) -> tuple[Path, list[str]]:
    """Write the ``spec`` model derived from the fp32 export ``source`` into ``directory`` (created); returns
    (its path, notes: what was skipped and the tools' captured warnings). Raises what the tools raise."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MODEL_FILE
    notes: list[str] = []
    with captured_logs() as lines:
        if spec == "fp16":
            convert_fp16(source, target)
        elif spec in ("int8-dynamic", "int8-static"):
            model, skipped = preprocess(source, directory)
            notes += [skipped] if skipped else []
            if spec == "int8-dynamic":
                quantize_dynamic_model(model, target)
            else:
                quantize_static_model(model, target, calibration)
            if model != source:
                _remove(model)
        else:
            raise ValueError(f"no derivation for precision {spec}")
    return target, notes + lines
