"""Greedy decoding with OpenVINO: the decode-step graph converted and made stateful, compiled for the CPU.

The model is wrapped by ``decoder_graph`` (one step over flat tensors) and converted with ``ov.convert_model``.
Each past/present pair then becomes a variable of the model: the past parameter a ``ReadValue``, the present result
an ``Assign`` (:func:`make_stateful`), so the cache lives in the infer request's state between steps and the graph
takes only the tokens, the mask and the positions. OpenVINO's own ``MakeStateful`` pass does the same without an
initial value: a reset state then has shape [0, 0, 0, head_dim] and the first concatenation with a batch of
sequences fails, so the ReadValues here start from zeros shaped [batch, kv_heads, 0, head_dim], batch read from
``input_ids``. ``start`` resets the state; the same request decodes every step.

Compiled with the backend's compile properties (explicit precision, threads, one stream) plus KV_CACHE_PRECISION
set to the model's own element type. That property governs the CPU plugin's fused stateful attention, whose cache
the plugin keeps itself; the attention of the catalog's models (eager) is not fused, so the cache is the state
tensors, in the element type :attr:`OpenVINOGenerator.cache_precision` reads back from them.

The converted stateful model is saved into the configuration's export cache where the process has one (entry
``openvino-generation``); int8-dynamic weights are compressed at prepare time, as the forward scenario does.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench.backends.decoder_graph import LOGITS, CacheLayout, argument_name, example_inputs
from hwbench_pipeline.bench.backends.export_cache import configuration_cache
from hwbench_pipeline.bench.backends.exported_decoder import ExportedDecoder, check_request, decode_step_graph
from hwbench_pipeline.bench.backends.openvino.config import RAN_PRECISIONS

#: the cache implementations this runtime offers, its default first
GENERATION_CACHES: tuple[str, ...] = ("stateful",)
#: the precision specs the decode path runs; int8-static would need calibration batches through the stateful model
GENERATION_PRECISIONS: tuple[str, ...] = ("fp32", "int8-dynamic")
#: this path's entry in a configuration's export cache: the stateful model as ``ov.save_model`` writes it
CACHE_ENTRY = "openvino-generation"
#: OpenVINO element type names of the torch dtypes a cache can have
_OV_TYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
#: runtime layer types of the CPU plugin's attention node; when one is fed by the state, the plugin keeps the KV
#: cache itself, in KV_CACHE_PRECISION
_ATTENTION_LAYERS = ("ScaledDotProductAttention", "ScaledAttn", "SDPA")


def generation_caches(device_kind: str) -> tuple[str, ...]:
    """The caches offered on a device kind: the CPU plugin only."""
    return GENERATION_CACHES if device_kind == "cpu" else ()


def _format(type_name: str) -> str:
    """Our name of an OpenVINO element type: fp32/bf16/fp16, the OpenVINO name (u8, i8, u4) otherwise."""
    ran = RAN_PRECISIONS.get(type_name, type_name)
    return ran if ran != "int8" else type_name


def make_stateful(model: Any, layout: CacheLayout) -> None:
    """Turn each past parameter / present result pair of the converted decode-step graph into a variable, in
    place: ReadValue (initially zeros [batch, kv_heads, 0, head_dim]) where the past was read, Assign of the
    present. Raises ValueError where the graph lacks one of the names."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    params = {name: p for p in model.get_parameters() for name in p.get_output_tensor(0).get_names()}
    results = {name: r for r in model.get_results() for name in r.get_output_tensor(0).get_names()}
    missing = [n for n in layout.past_names() if n not in params] + [n for n in layout.present_names()
                                                                      if n not in results]
    if missing or "input_ids" not in params:
        raise ValueError(f"the converted graph has no {', '.join(missing or ['input_ids'])}")
    element = getattr(ov.Type, _OV_TYPES[layout.dtype])
    batch = ops.gather(ops.shape_of(params["input_ids"], "i64"), ops.constant([0], ov.Type.i64),
                       ops.constant(0, ov.Type.i64))
    shape = ops.concat([batch, ops.constant([layout.kv_heads, 0, layout.head_dim], ov.Type.i64)], 0)
    empty = ops.broadcast(ops.constant(0, element), shape)
    variables, sinks = [], []
    for past, present in zip(layout.past_names(), layout.present_names(), strict=True):
        info = VariableInfo()
        info.variable_id = past
        info.data_shape = ov.PartialShape([-1, layout.kv_heads, -1, layout.head_dim])
        info.data_type = element
        variable = Variable(info)
        read = ops.read_value(empty, variable)
        params[past].output(0).replace(read.output(0))
        result = results[present]
        sinks.append(ov.op.assign(result.input_value(0).get_node(), variable))
        variables.append(variable)
        model.remove_result(result)
        model.remove_parameter(params[past])
    model.add_variables(variables)
    model.add_sinks(sinks)
    model.validate_nodes_and_infer_types()


def _convert(graph: torch.nn.Module, layout: CacheLayout) -> Any:
    """The decode-step graph converted and made stateful; raises a classified BenchmarkFailure."""
    import openvino as ov

    from hwbench_pipeline.bench.backends.openvino.backend import classified_failure, disable_telemetry
    from hwbench_pipeline.bench.backends.openvino.extensions import conversion_extensions

    disable_telemetry()
    try:
        # tracing warns about shapes read as Python values; the graph's dynamic shapes are checked by the
        # decode itself (the tests compare its tokens with transformers' generate at other shapes)
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            converted = ov.convert_model(graph, example_input=example_inputs(layout),
                                         extension=conversion_extensions())
    except Exception as exc:  # noqa: BLE001 - every conversion error becomes a classified row
        raise classified_failure("conversion", exc) from exc
    try:
        # inputs are named after the forward's arguments; outputs come in the graph's order, unnamed
        for port, name in zip(converted.inputs, layout.input_names(), strict=True):
            if argument_name(name) not in port.get_names():
                raise ValueError(f"input {port.get_any_name()!r} where {argument_name(name)!r} was expected")
            port.get_tensor().set_names({name})
        for port, name in zip(converted.outputs, layout.output_names(), strict=True):
            port.get_tensor().set_names({name})
        make_stateful(converted, layout)
    except Exception as exc:  # noqa: BLE001
        raise classified_failure("stateful transformation", exc) from exc
    return converted


class OpenVINOGenerator(ExportedDecoder):
    """Greedy decoding with one infer request of the stateful compiled model (module docstring)."""

    cache_implementation = "stateful"

    def __init__(self, compiled: Any, layout: CacheLayout, model: torch.nn.Module, *, precision: str,
                 from_cache: bool = False, cache_write_s: float = 0.0) -> None:
        super().__init__(layout, precision=precision, from_cache=from_cache, cache_write_s=cache_write_s)
        self._compiled = compiled
        #: KV_CACHE_PRECISION as the compiled model reports it (what a fused stateful attention would store);
        #: None where the plugin does not report the property
        self.kv_cache_precision_property: str | None = None
        with contextlib.suppress(Exception):
            self.kv_cache_precision_property = _format(compiled.get_property("KV_CACHE_PRECISION").get_type_name())
        layers = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops()
                  if "layerType" in op.get_rt_info()]
        #: whether the plugin fused attention with the cache (then it stores the cache itself, in the property's
        #: precision); otherwise the cache is the state tensors
        self.fused_attention = any(any(a in layer for a in _ATTENTION_LAYERS) for layer in layers)
        self._declared = _format(_OV_TYPES[layout.dtype])  # the variables' type (make_stateful)
        self._observed: str | None = None
        self._request = compiled.create_infer_request()
        # convert_model shares the torch weights' memory with the converted constants: keep their owner alive
        self._model = model
        self._length = 0  # the mask length the state holds: 0 until a step has run on a fresh state

    @property
    def cache_precision(self) -> str:
        """The cache's element format: the plugin's KV_CACHE_PRECISION where it fused attention with the cache,
        else the state tensors' type, read from them once a sequence has run (the declared one before)."""
        if self.fused_attention and self.kv_cache_precision_property is not None:
            return self.kv_cache_precision_property
        if self._observed is None and self._length:
            states = self._request.query_state()
            if states:
                self._observed = _format(states[0].state.element_type.get_type_name())
        return self._observed or self._declared

    def _reset_cache(self, batch: int) -> None:
        self._request.reset_state()  # every variable back to its zero-length initial value
        self._length = 0

    def _run_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> Any:
        # inputs shared, not copied (alive for the synchronous call); the logits stay the request's own tensor
        self._request.infer({"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids},
                            share_inputs=True, share_outputs=True)
        self._length = attention_mask.shape[1]
        return self._request.get_tensor(LOGITS).data

    def cache_bytes(self) -> int | None:
        """Bytes of the state tensors, read through ``query_state`` (for checks, between steps); None where the
        plugin keeps the cache itself and the states would not show its storage."""
        if self.fused_attention:
            return None
        if not self._length:
            return 0
        return sum(int(state.state.byte_size) for state in self._request.query_state())

    def release(self) -> None:
        super().release()
        self._request = self._compiled = self._model = None


def prepare_generator(model: torch.nn.Module, inputs: dict[str, Any], device: str, precision: str, *,
                      max_new_tokens: int, cache: str) -> OpenVINOGenerator:
    """``model`` (a transformers decoder-only causal LM, eval, fp32, CPU) converted, made stateful and compiled
    for greedy decoding of prompts like ``inputs`` (the graph takes any batch and length). Raises
    UnsupportedConfigurationError for a device, cache, precision or model this path does not run, a classified
    BenchmarkFailure for a failed conversion or compilation."""

    from hwbench_pipeline.bench.backends.openvino.backend import (
        BACKEND,
        cached_model,
        check_threads,
        classified_failure,
        core,
        save_cached,
    )
    from hwbench_pipeline.bench.backends.openvino.observe import executed_precision
    from hwbench_pipeline.bench.backends.openvino.quantize import compress_weights, dynamic_quantization_missing

    spec = check_request("openvino", BACKEND, device, cache, precision, max_new_tokens, caches=GENERATION_CACHES,
                         precisions=GENERATION_PRECISIONS, cpu_only="openvino runs on the CPU here")
    graph, layout = decode_step_graph(model, inputs)
    export_cache = configuration_cache()
    entry = export_cache / CACHE_ENTRY if export_cache is not None else None
    converted = cached_model(entry)
    from_cache = converted is not None
    if not from_cache:
        converted = _convert(graph, layout)
    runnable = converted
    if spec == "int8-dynamic":
        try:
            runnable = compress_weights(converted)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model NNCF cannot compress is a classified row
            raise classified_failure("int8-dynamic weight compression (nncf)", exc) from exc
    properties = {**BACKEND.compile_properties(spec), "KV_CACHE_PRECISION": _OV_TYPES[layout.dtype]}
    try:
        compiled = core().compile_model(runnable, "CPU", properties)
    except Exception as exc:  # noqa: BLE001
        raise classified_failure("compilation", exc) from exc
    check_threads(compiled)
    # the fp32 stateful model that compiled
    cache_write_s = save_cached(converted, entry) if entry is not None and not from_cache else 0.0
    dynamic = int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) != 0
    ran = executed_precision(compiled, dynamic_int8=dynamic and dynamic_quantization_missing() is None)
    return OpenVINOGenerator(compiled, layout, model, precision=ran, from_cache=from_cache,
                             cache_write_s=cache_write_s)
