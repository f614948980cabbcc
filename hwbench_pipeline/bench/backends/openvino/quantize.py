"""int8 recipes of the OpenVINO backend, applied with NNCF to the converted fp32 model at prepare time.

* int8-static: post-training quantization (``nncf.quantize``) calibrated on the generated calibration batches:
  FakeQuantize ops on weights and activations, which the CPU plugin runs as int8 kernels.
* int8-dynamic: int8 weight compression (``nncf.compress_weights``) and the CPU plugin's dynamic activation
  quantization (DYNAMIC_QUANTIZATION_GROUP_SIZE), which quantizes each FullyConnected's activations per call.

NNCF is imported only here, and only for an int8 spec (its import takes seconds).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator, Sequence
from typing import Any

from hwbench_pipeline.bench.backends.openvino.config import (
    DYNAMIC_QUANTIZATION_GROUP_SIZE,
    NNCF_LOG_LEVEL,
    WEIGHT_COMPRESSION_MODE,
)

#: ops whose inputs pass constants through unchanged in value terms (a weight stays a weight)
_CONSTANT_CARRIERS = ("Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Multiply", "Subtract")


def nncf_missing() -> str | None:
    """Why NNCF cannot be used here, or None."""
    try:
        import nncf  # noqa: F401
    except ImportError as exc:
        return f"nncf cannot be imported here ({exc})"
    return None


@contextlib.contextmanager
def quiet_nncf() -> Iterator[None]:
    """NNCF's info tables (logger) and rich progress bars (written to sys.stdout) kept out of worker output;
    its warnings still show."""
    from nncf.common.logging.logger import nncf_logger

    levels = [(nncf_logger, nncf_logger.level)] + [(h, h.level) for h in nncf_logger.handlers]
    for item, _ in levels:
        item.setLevel(NNCF_LOG_LEVEL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for item, level in levels:
            item.setLevel(level)


def _is_constant(output: Any, depth: int = 4) -> bool:
    node = output.get_node()
    if node.get_type_name() == "Constant":
        return True
    if depth == 0 or node.get_type_name() not in _CONSTANT_CARRIERS:
        return False
    return all(_is_constant(node.input_value(i), depth - 1) for i in range(node.get_input_size()))


def is_transformer(model: Any) -> bool:
    """Whether the graph has attention: a ScaledDotProductAttention op (torch's SDPA) or a Softmax beside a
    MatMul of two activations (eager attention's scores). That is the structure NNCF's TRANSFORMER model type
    is about: it keeps the quantizers away from softmax, normalizations and the residual adds around it."""
    types = {op.get_type_name() for op in model.get_ops()}
    if "ScaledDotProductAttention" in types:
        return True
    if "Softmax" not in types and "SoftMax" not in types:
        return False
    return any(op.get_type_name() == "MatMul" and not _is_constant(op.input_value(0))
               and not _is_constant(op.input_value(1)) for op in model.get_ops())


def _feeds(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """A calibration batch as the model's inputs want it: numpy arrays under the model's input names."""
    feeds = {}
    for port in model.inputs:
        name = next((n for n in port.get_names() if n in batch), None)
        if name is None:  # the plugin would calibrate on whatever its unset input tensor holds
            raise KeyError(f"a calibration batch lacks the model input {port.get_any_name()!r} "
                           f"(it has {', '.join(batch) or 'nothing'})")
        feeds[port.get_any_name()] = batch[name].detach().cpu().contiguous().numpy()
    return feeds


def quantize_static(model: Any, calibration: Sequence[dict[str, Any]]) -> Any:
    """The model with NNCF's post-training int8 quantization, ranges calibrated on ``calibration``.

    Transformers get NNCF's TRANSFORMER model type (see is_transformer) without SmoothQuant (config.py says
    why). ``model`` itself is left unchanged (the export cache keeps the fp32 graph).
    """
    import nncf

    transformer = is_transformer(model)
    advanced = nncf.AdvancedQuantizationParameters(
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1, convolution=-1))
    dataset = nncf.Dataset(list(calibration), functools.partial(_feeds, model))
    with quiet_nncf():
        return nncf.quantize(model.clone(), dataset, subset_size=len(calibration),
                             target_device=nncf.TargetDevice.CPU,
                             model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                             advanced_parameters=advanced)


def compress_weights(model: Any) -> Any:
    """The model with int8 weights (per output channel) for the dynamic recipe; ``model`` left unchanged."""
    import nncf

    with quiet_nncf():
        return nncf.compress_weights(model.clone(), mode=getattr(nncf.CompressWeightsMode, WEIGHT_COMPRESSION_MODE))


@functools.cache
def dynamic_quantization_missing() -> str | None:
    """Why the CPU plugin does not quantize activations per call here, or None where it does.

    Observed, not assumed: the runtime graph looks the same with and without it, so a one-layer model with
    int8-compressed weights runs once with DYNAMIC_QUANTIZATION_GROUP_SIZE and once with 0; only an activation
    quantization makes the two outputs differ (the plugin needs AVX2-VNNI or AVX512-VNNI for it).
    """
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    if (missing := nncf_missing()) is not None:
        return missing
    rng = np.random.default_rng(0)
    try:
        x = ops.parameter([4, 64], ov.Type.f32, name="x")
        weights = ops.constant(rng.standard_normal((64, 64)).astype(np.float32))
        probe = compress_weights(ov.Model([ops.matmul(x, weights, False, True)], [x], "probe"))
        data = rng.standard_normal((4, 64)).astype(np.float32)
        outputs = []
        for group in (DYNAMIC_QUANTIZATION_GROUP_SIZE, 0):
            compiled = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                              "INFERENCE_NUM_THREADS": 1,
                                                              "DYNAMIC_QUANTIZATION_GROUP_SIZE": group})
            outputs.append(compiled({0: data})[0])
    except Exception as exc:  # noqa: BLE001 - whatever stops the probe, the recipe cannot be shown to run
        text = " ".join(str(exc).split())[:300]
        return (f"int8 weight compression with dynamic quantization failed on a one-layer model "
                f"({type(exc).__name__}: {text})")
    if np.array_equal(*outputs):
        return (f"the CPU plugin does not quantize activations per call here (int8 {WEIGHT_COMPRESSION_MODE} "
                f"weights with DYNAMIC_QUANTIZATION_GROUP_SIZE={DYNAMIC_QUANTIZATION_GROUP_SIZE} ran like weight-only "
                f"decompression to f32; it needs AVX2-VNNI or AVX512-VNNI)")
    return None
